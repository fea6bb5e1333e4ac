/**
 * The index's WAL checkpoints off the main thread, so that no commit of the node stops to run one.
 *
 * Why: SQLite checkpoints at the commit that takes the WAL past `wal_autocheckpoint` pages (1000 by
 * default), on the committing connection: it copies the WAL's pages into the database file and syncs
 * both, on the node's main thread, while every association waits. Forwarding, that was about every
 * 120th confirmation, each 1-16 ms, and hundreds of ms when the disk was busy (docs/benchmarks.md).
 *
 * The checkpoints run as tasks of a worker pool the node has anyway (checkpoint-task.ts, a named task
 * of the de-identification threads): a thread of their own cost 8 MB of RSS, against targets of 150.
 * A task every BUSY_MS while the WAL grows, every IDLE_MS while it does not.
 *
 * The node's connection keeps a bound, SAFETY_PAGES: a PASSIVE checkpoint in another thread copies
 * what is committed but cannot restart a WAL that keeps being written (a writer restarts it only
 * when every frame was copied), so under a steady load the WAL would grow without end. At the bound
 * the node's connection checkpoints as before (on the main thread, syncs included), with little left to
 * copy while the tasks keep up, and the next writer restarts the WAL. The bound holds whatever happens
 * to the tasks. They queue behind de-identification tasks (the scheduler keeps about one queued per
 * thread): while de-identification is backed up with large instances, the connection may copy much of
 * the 32 MB itself, once per 8,000 pages, where it copied 1,000 pages at a time before.
 */
import type { Logger } from 'pino';
import type { Db } from './database.js';
import type { WalCheckpoint } from './checkpoint-task.js';

export type { WalCheckpoint } from './checkpoint-task.js';

/** SQLite's own default (PRAGMA wal_autocheckpoint). */
export const DEFAULT_AUTOCHECKPOINT_PAGES = 1000;
/** The node's connection's bound: 32 MB of WAL at 4 KiB pages. */
export const SAFETY_PAGES = 8000;
const BUSY_MS = 100;
const IDLE_MS = 500;
/** The same failure, told again after this long. */
const WARN_AGAIN_MS = 60_000;

export class BackgroundCheckpoints {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Aborts the task under way or queued: behind de-identification tasks, it could wait minutes. */
  private readonly aborting = new AbortController();
  private stopped = false;
  private last = '';
  private readonly waiters: Array<{ resolve: (checkpoint: WalCheckpoint) => void; reject: (error: Error) => void }> = [];
  /** The failure told last, and when: a checkpoint failing at every pass is told once a minute. */
  private lastWarning = { message: '', at: 0 };

  /**
   * Raises `db`'s own checkpoint to its bound and starts checkpointing through `runCheckpoint` (a
   * task of checkpoint-task.ts in a worker thread).
   */
  constructor(
    private readonly db: Db,
    private readonly runCheckpoint: (signal: AbortSignal) => Promise<WalCheckpoint>,
    private readonly log: Pick<Logger, 'warn'>,
    private readonly pace: { busyMs: number; idleMs: number } = { busyMs: BUSY_MS, idleMs: IDLE_MS },
  ) {
    db.pragma(`wal_autocheckpoint = ${SAFETY_PAGES}`);
    this.schedule(0);
  }

  /** The next checkpoint that found the WAL changed since the one before (for tests and benches);
   * rejected if checkpointing stops first. */
  nextCheckpoint(): Promise<WalCheckpoint> {
    if (this.stopped) return Promise.reject(new Error('the index checkpoints were stopped'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stops checkpointing (a task under way or queued is aborted: a PASSIVE checkpoint cut short
   * leaves the WAL as it was) and gives `db` SQLite's default back. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.aborting.abort();
    await this.running;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error('the index checkpoints were stopped'));
    if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT_PAGES}`);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => (this.running = this.pass()), delay);
    // Not a reason for the process to stay up.
    this.timer.unref();
  }

  private async pass(): Promise<void> {
    let delay = this.pace.idleMs;
    try {
      const result = await this.runCheckpoint(this.aborting.signal);
      const state = `${result.log}:${result.checkpointed}`;
      if (state !== this.last) {
        delay = this.pace.busyMs;
        for (const waiter of this.waiters.splice(0)) waiter.resolve(result);
      }
      this.last = state;
    } catch (error) {
      this.warn(error as NodeJS.ErrnoException);
    }
    this.schedule(delay);
  }

  /** A disk error, say, or the pool closing: told, and tried again at the idle pace; the connection's
   * bound still holds the WAL. */
  private warn(error: NodeJS.ErrnoException): void {
    if (this.stopped) return;
    const now = Date.now();
    if (error.message === this.lastWarning.message && now - this.lastWarning.at < WARN_AGAIN_MS) return;
    this.lastWarning = { message: error.message, at: now };
    this.log.warn({ err: error.message, code: error.code }, 'a background checkpoint of the index failed; tried again shortly');
  }
}
