/**
 * Dataset fragments on their way from the PDU stream to a dataset's sink. A PDV's data arrives as a
 * view on the socket's chunk; a fragment of normal size goes on as it is. Small ones are copied
 * together first: a peer sending a dataset as PDVs of one byte (PS3.8 9.3.5 allows it) made one
 * Buffer object per byte queued for the file, about 500 MB of heap for 5 MB of data, and 24 such
 * associations ran the node out of memory (found in the hostile-peer review). The sink's high-water
 * mark counts bytes, which is right once fragments are this size.
 */

/** Fragments shorter than this are gathered. */
export const SMALL_FRAGMENT_BYTES = 4096;
/** Gathered bytes go on once there are this many, or before a large fragment, or at the end. */
const GATHER_BYTES = 64 * 1024;

export class DatasetFragments {
  private staging: Buffer | undefined;
  private length = 0;

  /** @param deliver receives the fragments in order; it keeps what it is given. */
  constructor(private readonly deliver: (bytes: Buffer) => void) {}

  push(data: Buffer): void {
    if (data.length >= SMALL_FRAGMENT_BYTES) {
      this.flush();
      this.deliver(data);
      return;
    }
    let at = 0;
    while (at < data.length) {
      this.staging ??= Buffer.allocUnsafe(GATHER_BYTES);
      const take = Math.min(GATHER_BYTES - this.length, data.length - at);
      data.copy(this.staging, this.length, at, at + take);
      this.length += take;
      at += take;
      if (this.length === GATHER_BYTES) this.flush();
    }
  }

  /** Passes on what is gathered (at the end of a dataset, and before a large fragment). */
  flush(): void {
    const staging = this.staging;
    if (!staging || this.length === 0) return;
    const length = this.length;
    this.length = 0;
    // A short remainder is copied out, so that the sink does not keep 64 KiB for it.
    if (length < GATHER_BYTES / 2) {
      this.deliver(Buffer.from(staging.subarray(0, length)));
      return;
    }
    this.staging = undefined;
    this.deliver(staging.subarray(0, length));
  }

  /** Forgets what is gathered (the dataset was aborted). */
  discard(): void {
    this.length = 0;
  }
}
