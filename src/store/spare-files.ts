/**
 * Empty incoming files created ahead of need, so that a store does not create its file on the main
 * thread when its first bytes arrive. Creating a file is the costliest step of a small store on some
 * file systems: perf on this project's VM (ext4 without a journal, which skips every inode deleted in
 * the last minutes when it allocates one) put a fifth of the receive thread's time in `open(O_CREAT)`.
 * Here files are created one at a time in the libuv thread pool, beside the receive path.
 */
import { close, open, unlink } from 'node:fs';
import { promisify } from 'node:util';

const openAsync = promisify(open);
const closeAsync = promisify(close);
const unlinkAsync = promisify(unlink);

export interface OpenedFile {
  path: string;
  fd: number;
}

export class SpareFiles {
  private readonly ready: OpenedFile[] = [];
  private filling: Promise<void> | undefined;
  private closed = false;

  /**
   * @param nextPath a new unique path for each file
   * @param size how many files are kept ready (about the number of stores that start at once)
   */
  constructor(
    private readonly nextPath: () => string,
    private readonly size: number,
  ) {}

  /** A file ready to be written, or undefined when none is (the caller creates its own). */
  take(): OpenedFile | undefined {
    const file = this.ready.shift();
    this.fill();
    return file;
  }

  /** Starts creating files until `size` are ready; one at a time, so the pool's threads stay free
   * for the writes and syncs of the stores themselves. A failure (disk full, too many open files)
   * stops filling until the next take: stores then create their own and report the error. */
  fill(): void {
    if (this.closed || this.filling || this.ready.length >= this.size) return;
    this.filling = (async () => {
      try {
        while (!this.closed && this.ready.length < this.size) {
          const path = this.nextPath();
          // 'wx': never reuse a name.
          const fd = await openAsync(path, 'wx', 0o640);
          if (this.closed) {
            await discard({ path, fd });
            return;
          }
          this.ready.push({ path, fd });
        }
      } catch {
        // Left to the store that needs a file: it creates its own, and reports why it cannot.
      } finally {
        this.filling = undefined;
      }
    })();
  }

  /** Waits for a file being created (tests). */
  async settled(): Promise<void> {
    while (this.filling) await this.filling;
  }

  /** Closes and deletes the files not taken; a file being made meanwhile is deleted before this
   * resolves. */
  async closeAll(): Promise<void> {
    this.closed = true;
    await this.settled();
    await Promise.all(this.ready.splice(0).map(discard));
  }
}

async function discard(file: OpenedFile): Promise<void> {
  await closeAsync(file.fd).catch(() => undefined);
  await unlinkAsync(file.path).catch(() => undefined);
}
