/**
 * Free disk under storage.path, kept fresh without a system call per C-STORE: re-read every
 * `intervalMs`, and lowered at once by what each store writes, so a burst cannot overshoot the floor
 * by more than the objects in flight. Beside it, the space the de-identified copies of the originals
 * waiting for de-identification will take (about their own size): what is available to receive is
 * what is free less that (found in the failure review: a burst accepted down to the floor was
 * de-identified into the last bytes of the disk, and its study, never whole, was never forwarded).
 */
export class FreeSpaceMonitor {
  private bytes = Number.POSITIVE_INFINITY;
  private reservedBytes = 0;
  private lastReadAt = 0;
  private timer: NodeJS.Timeout | undefined;

  private readonly intervalMs: number;
  /** The bytes of the originals waiting for de-identification (the index's count). */
  private readonly readReserved: () => number;

  constructor(
    private readonly read: () => Promise<number>,
    options: { intervalMs?: number; reserved?: () => number } = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.readReserved = options.reserved ?? (() => 0);
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The last known free bytes. */
  get freeBytes(): number {
    return this.bytes;
  }

  /** The bytes the waiting originals' de-identified copies will take, as last known. */
  get reserved(): number {
    return this.reservedBytes;
  }

  /** What is free for new originals: the free bytes less what the waiting ones' copies will take. */
  get availableBytes(): number {
    return this.bytes - this.reservedBytes;
  }

  /** When the last reading succeeded (ms; 0: never). */
  get readAt(): number {
    return this.lastReadAt;
  }

  /** Counts an original just written, and the room its copy will take, until the next reading. */
  consumed(bytes: number): void {
    this.bytes -= bytes;
    this.reservedBytes += bytes;
  }

  async refresh(): Promise<number> {
    try {
      this.bytes = await this.read();
      this.lastReadAt = Date.now();
    } catch {
      // Keep the last reading; a failing statfs shows up as write errors soon enough.
    }
    try {
      this.reservedBytes = this.readReserved();
    } catch {
      // Keep the last count (the index closed, or locked for a moment).
    }
    return this.bytes;
  }
}
