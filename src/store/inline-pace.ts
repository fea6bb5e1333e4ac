/**
 * Whether a file operation runs inline on the calling thread or goes to the libuv thread pool.
 *
 * On this project's virtual machines a trip through the thread pool costs the event loop more than a
 * page-cache read or write itself: each operation wakes a pool thread, and the hypervisor's handling of
 * those task switches is slow (perf put a quarter of the receive path there). So operations run inline
 * while they are fast, which they are while the page cache serves them. One that takes long says the
 * disk is behind (a write held back by dirty pages, a read of a file no longer cached): operations
 * then go to the pool for a window that doubles with each slow one (1 s up to about a minute), so the
 * event loop waits on a slow disk for at most one operation per window.
 *
 * Each user keeps a pace of its own (received bytes written, files read for forwarding): a slow write
 * says nothing certain about reads, and the other way round.
 */

/** An inline operation slower than this (tens of times a page-cache one) means the disk is behind... */
const SLOW_INLINE_MS = 2;
/** ...and operations go to the thread pool for this long, doubled after each slow one up to the last. */
const POOL_WINDOW_MS = 1000;
const MAX_POOL_WINDOW_MS = 64_000;

export class InlinePace {
  private poolUntil = 0;
  private window = POOL_WINDOW_MS;

  /** @param now the clock, in ms (tests give their own) */
  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Whether the next operation should run inline. */
  shouldRunInline(): boolean {
    return this.now() >= this.poolUntil;
  }

  /** Runs `operation` inline and learns from how long it took (a throw counts too: a write that
   * failed after a long wait says as much about the disk). */
  runInlineTimed<T>(operation: () => T): T {
    const started = this.now();
    try {
      return operation();
    } finally {
      this.took(this.now() - started);
    }
  }

  /** Sends operations to the thread pool for `ms` (0 lets them run inline again at once). */
  sendToThreadPool(ms: number): void {
    this.poolUntil = this.now() + ms;
  }

  private took(ms: number): void {
    if (ms <= SLOW_INLINE_MS) {
      this.window = POOL_WINDOW_MS;
      return;
    }
    this.sendToThreadPool(this.window);
    this.window = Math.min(this.window * 2, MAX_POOL_WINDOW_MS);
  }
}
