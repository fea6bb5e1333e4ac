/**
 * A file being received: chunks are queued and written with writev in the background, so the socket
 * reader never waits on the disk unless the queue passes its high-water mark (then the association
 * pauses its socket until the queue drains). The caller then completes, moves, syncs and closes it.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';

/** Above this many queued bytes, the writer asks its producer to pause. */
const HIGH_WATER_MARK = 4 * 1024 * 1024;
/** Writing starts once this much is queued (or at complete()): fewer, larger writes. */
const BATCH_BYTES = 64 * 1024;
/** Once this many written bytes are not yet synced, a sync starts in the background, so the disk
 * works while the rest arrives and the final sync has little left to do. */
const SYNC_BEHIND_BYTES = 8 * 1024 * 1024;
/** Writes are batched up to this many buffers (below IOV_MAX). */
const MAX_BATCH_BUFFERS = 512;

export class IncomingFile {
  private readonly handle: Promise<FileHandle>;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private writtenBytes = 0;
  private flushing: Promise<void> | undefined;
  private failure: Error | undefined;
  private drainWaiters: Array<() => void> = [];
  private closed = false;
  /** Bytes written when the last (or the running) background sync started. */
  private syncedBytes = 0;
  private syncing: Promise<void> | undefined;

  constructor(public path: string, first?: Buffer) {
    // 'wx': never reuse a name; incoming names are unique.
    this.handle = open(path, 'wx', 0o640);
    this.handle.catch((error: Error) => this.fail(error));
    if (first) this.write(first);
  }

  /** Bytes handed to the writer so far. */
  get size(): number {
    return this.writtenBytes + this.queuedBytes;
  }

  /** Queues a chunk. False: the queue is over its high-water mark; wait for whenDrained(). */
  write(chunk: Buffer): boolean {
    if (this.failure || this.closed) return true; // the failure is reported by complete()
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.queuedBytes >= BATCH_BYTES) this.flushing ??= this.flush();
    return this.queuedBytes < HIGH_WATER_MARK;
  }

  whenDrained(): Promise<void> {
    if (this.failure || this.queuedBytes < HIGH_WATER_MARK) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Waits until everything queued is written. Returns the file's size. The file stays open. */
  async complete(): Promise<number> {
    if (this.queue.length > 0) this.flushing ??= this.flush();
    while (this.flushing) await this.flushing;
    if (this.failure) throw this.failure;
    await this.handle;
    return this.writtenBytes;
  }

  /** Renames the file (same file system); later calls act on the new name. */
  async moveTo(target: string): Promise<void> {
    await this.handle; // the file exists only once it is open
    await rename(this.path, target);
    this.path = target;
  }

  /** Makes the written content durable (fdatasync). */
  async sync(): Promise<void> {
    while (this.syncing) await this.syncing;
    if (this.failure) throw this.failure;
    await (await this.handle).datasync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.syncing) await this.syncing;
    await (await this.handle).close();
  }

  /** Stops writing, closes and deletes the file. Never throws. */
  async discard(): Promise<void> {
    this.queue = [];
    this.queuedBytes = 0;
    this.releaseWaiters();
    if (!this.closed) {
      this.closed = true;
      while (this.flushing) await this.flushing.catch(() => undefined);
      while (this.syncing) await this.syncing;
      const handle = await this.handle.catch(() => undefined);
      await handle?.close().catch(() => undefined);
    }
    await unlink(this.path).catch(() => undefined);
  }

  private async flush(): Promise<void> {
    try {
      const handle = await this.handle;
      while (this.queue.length > 0 && !this.failure) {
        const batch = this.queue.splice(0, MAX_BATCH_BUFFERS);
        let bytes = 0;
        for (const buffer of batch) bytes += buffer.length;
        await writeAll(handle, batch, bytes);
        this.queuedBytes -= bytes;
        this.writtenBytes += bytes;
        if (this.queuedBytes < HIGH_WATER_MARK) this.releaseWaiters();
        if (!this.syncing && this.writtenBytes - this.syncedBytes >= SYNC_BEHIND_BYTES) this.syncBehind(handle);
      }
    } catch (error) {
      this.fail(error as Error);
    } finally {
      this.flushing = undefined;
    }
  }

  private syncBehind(handle: FileHandle): void {
    this.syncedBytes = this.writtenBytes;
    this.syncing = handle
      .datasync()
      .catch((error: Error) => this.fail(error))
      .finally(() => {
        this.syncing = undefined;
      });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.queue = [];
    this.queuedBytes = 0;
    this.releaseWaiters();
  }

  private releaseWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

async function writeAll(handle: FileHandle, buffers: Buffer[], total: number): Promise<void> {
  let { bytesWritten } = await handle.writev(buffers);
  while (bytesWritten < total) {
    // A short write: continue from where it stopped.
    const rest = Buffer.concat(buffers).subarray(bytesWritten);
    const more = await handle.write(rest);
    if (more.bytesWritten === 0) throw new Error('the disk accepted no more bytes');
    bytesWritten += more.bytesWritten;
  }
}
