/**
 * A file being received: chunks are queued and written with writev in batches. The caller then
 * completes, moves, syncs and closes it; a receiver starts the sync with the last byte (startSync).
 *
 * A write into the page cache takes tens of microseconds, less than a trip through the libuv thread
 * pool (inline-pace.ts; writing inline measured about 8% more instances/s receiving 0.5 MB instances,
 * interleaved A/B). So batches are written on the calling thread while the disk keeps up, and in the
 * pool for a while after a slow write; the socket reader waits only when the queue passes its
 * high-water mark (the association pauses its socket until it drains).
 * Large objects write through the pool while their background sync runs (inline writes gained them
 * nothing, measured, and keep the event loop clear of a write that waits behind the sync). Syncs
 * always run in the pool. Rename and close take microseconds and run inline; creating the file can
 * cost far more (spare-files.ts), so the store usually gets one created ahead.
 */
import { close, closeSync, fdatasync, openSync, renameSync, unlink, writev, writevSync } from 'node:fs';
import { promisify } from 'node:util';
import { InlinePace } from './inline-pace.js';
import type { OpenedFile } from './spare-files.js';

const writevAsync = promisify(writev);
const fdatasyncAsync = promisify(fdatasync);
const closeAsync = promisify(close);
const unlinkAsync = promisify(unlink);

/** Above this many queued bytes, the writer asks its producer to pause. */
const HIGH_WATER_MARK = 4 * 1024 * 1024;
/** Writing starts once this much is queued (or at complete()): fewer, larger writes. */
const BATCH_BYTES = 64 * 1024;
/** Once this many written bytes are not yet synced, a sync starts in the background, so the disk
 * works while the rest of a large object arrives and the final sync has little left to do. */
const SYNC_BEHIND_BYTES = 8 * 1024 * 1024;
/** Writes are batched up to this many buffers (below IOV_MAX). */
const MAX_BATCH_BUFFERS = 512;
/** Whether batches are written inline or in the pool, for every incoming file of this thread. */
const pace = new InlinePace();

/** Writes of every incoming file go to the thread pool for `ms` (what a slow write does; 0 lets them
 * go inline again at once: tests use it to check both paths). */
export function sendWritesToThreadPool(ms: number): void {
  pace.sendToThreadPool(ms);
}

export class IncomingFile {
  private fd: number | undefined;
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
  /** The sync startSync began. */
  private finalSync: Promise<void> | undefined;

  public path: string;

  /** @param file a new path to create, or a file created ahead (spare-files.ts) */
  constructor(file: string | OpenedFile, first?: Buffer) {
    if (typeof file === 'string') {
      this.path = file;
      try {
        // 'wx': never reuse a name; incoming names are unique.
        this.fd = openSync(file, 'wx', 0o640);
      } catch (error) {
        this.fail(error as Error);
      }
    } else {
      this.path = file.path;
      this.fd = file.fd;
    }
    if (first) this.write(first);
  }

  /** Queues a chunk. False: the queue is over its high-water mark; wait for whenDrained(). */
  write(chunk: Buffer): boolean {
    if (this.failure || this.closed) return true; // the failure is reported by complete()
    if (this.finalSync) {
      // Bytes the sync may not cover: the store fails rather than acknowledge them.
      this.fail(new Error('a chunk was written after the file\'s final sync began'));
      return true;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.queuedBytes >= BATCH_BYTES) this.startWriting();
    return this.queuedBytes < HIGH_WATER_MARK;
  }

  whenDrained(): Promise<void> {
    if (this.failure || this.queuedBytes < HIGH_WATER_MARK) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Waits until everything queued is written. Returns the file's size. The file stays open. */
  async complete(): Promise<number> {
    this.startWriting();
    while (this.flushing) await this.flushing;
    if (this.failure) throw this.failure;
    if (this.queue.length > 0) throw new Error(`the file was closed with ${this.queuedBytes} bytes not written`);
    return this.writtenBytes;
  }

  /** Renames the file (same file system); later calls act on the new name. */
  moveTo(target: string): void {
    if (this.failure) throw this.failure;
    renameSync(this.path, target);
    this.path = target;
  }

  /**
   * Starts writing what is queued and making it durable, without waiting, once the content is whole
   * (nothing is written after it): sync() then waits for this sync. A receiver calls it with an
   * instance's last byte, so that the device takes the data while the header is decoded and the file
   * renamed. Measured receiving 0.5 MB instances from storescu (four runs of 2,000 alternated with
   * the build before, 2-core VM): from the last byte to the answer 0.84-0.91 ms at the median against
   * 0.93-1.16 ms; the data's, the directory's and the WAL's syncs, issued about together, all end when
   * the device has the data. A rename after it needs no second sync: fdatasync covers the content and
   * the size, not the name.
   */
  startSync(): void {
    if (this.finalSync) return;
    this.finalSync = this.complete().then(() => this.syncWritten());
    // Its failure is reported by sync(); a store that fails first (discard) never asks.
    this.finalSync.catch(() => undefined);
  }

  /** Makes the written content durable (fdatasync), or waits for the sync startSync began. */
  async sync(): Promise<void> {
    if (!this.finalSync) return this.syncWritten();
    await this.finalSync;
    if (this.failure) throw this.failure; // e.g. a chunk written after it
  }

  private async syncWritten(): Promise<void> {
    while (this.syncing) await this.syncing;
    if (this.failure) throw this.failure;
    const fd = this.fd;
    if (fd === undefined || this.closed) throw new Error('the file was closed before its sync');
    await fdatasyncAsync(fd);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A sync in the pool must not outlive its descriptor (closed, its number could name another file).
    await this.finalSync?.catch(() => undefined);
    while (this.syncing) await this.syncing;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
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
      const fd = this.fd;
      this.fd = undefined;
      if (fd !== undefined) {
        // A final sync already in the pool keeps the descriptor until it ends (closed, its number could
        // name another file); the discard does not wait for a sync of a file being deleted (a
        // duplicate, an unreadable dataset, a multi-gigabyte one among them).
        if (this.finalSync) void this.finalSync.catch(() => undefined).then(() => closeAsync(fd)).catch(() => undefined);
        else await closeAsync(fd).catch(() => undefined);
      }
    }
    await unlinkAsync(this.path).catch(() => undefined);
  }

  /** Writes what is queued, in order: inline while the disk keeps up and no background sync of this
   * file runs, else (and for the rest, once either changes) in the thread pool; never inline while a
   * pool write runs. */
  private startWriting(): void {
    if (this.flushing || !this.canWrite()) return;
    try {
      while (this.canWrite() && !this.syncing && pace.shouldRunInline()) {
        const batch = this.queue.splice(0, MAX_BATCH_BUFFERS);
        const bytes = byteLength(batch);
        pace.runInlineTimed(() => writeAllSync(this.fd as number, batch, bytes));
        this.written(bytes);
      }
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    // flush() awaits before it ends, so `flushing` is set before it is cleared.
    if (this.canWrite()) this.flushing = this.flush();
  }

  private canWrite(): boolean {
    return this.queue.length > 0 && !this.failure && this.fd !== undefined && !this.closed;
  }

  /** Accounts for a batch written, and starts a background sync when enough is unsynced. */
  private written(bytes: number): void {
    if (this.failure || this.closed) return; // fail() and discard() emptied the queue already
    this.queuedBytes -= bytes;
    this.writtenBytes += bytes;
    if (this.queuedBytes < HIGH_WATER_MARK) this.releaseWaiters();
    if (this.fd !== undefined && !this.syncing && this.writtenBytes - this.syncedBytes >= SYNC_BEHIND_BYTES) this.syncBehind(this.fd);
  }

  private async flush(): Promise<void> {
    try {
      while (this.canWrite()) {
        const batch = this.queue.splice(0, MAX_BATCH_BUFFERS);
        const bytes = byteLength(batch);
        await writeAll(this.fd as number, batch, bytes);
        this.written(bytes);
      }
    } catch (error) {
      this.fail(error as Error);
    } finally {
      this.flushing = undefined;
    }
  }

  private syncBehind(fd: number): void {
    this.syncedBytes = this.writtenBytes;
    this.syncing = fdatasyncAsync(fd)
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

function byteLength(buffers: readonly Buffer[]): number {
  let bytes = 0;
  for (const buffer of buffers) bytes += buffer.length;
  return bytes;
}

/** writev at the file's position, continuing after a short write. */
function writeAllSync(fd: number, buffers: Buffer[], total: number): void {
  let written = writevSync(fd, buffers);
  while (written < total) {
    const more = writevSync(fd, [Buffer.concat(buffers).subarray(written)]);
    if (more === 0) throw new Error('the disk accepted no more bytes');
    written += more;
  }
}

/** writev at the file's position in the thread pool, continuing after a short write. */
async function writeAll(fd: number, buffers: Buffer[], total: number): Promise<void> {
  let written = (await writevAsync(fd, buffers)).bytesWritten;
  while (written < total) {
    const rest = Buffer.concat(buffers).subarray(written);
    const more = (await writevAsync(fd, [rest])).bytesWritten;
    if (more === 0) throw new Error('the disk accepted no more bytes');
    written += more;
  }
}
