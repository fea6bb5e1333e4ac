/**
 * The index's WAL checkpoints in a thread of their own (checkpoint-worker.ts), so that no commit on
 * the main thread stops to run one.
 *
 * Why: SQLite checkpoints at the commit that takes the WAL past `wal_autocheckpoint` pages (1000 by
 * default), on the committing connection: it copies the WAL's pages into the database file and syncs
 * both, on the node's main thread, while every association waits. Forwarding, that was about every
 * 120th confirmation, each 1-16 ms (docs/benchmarks.md); persisting 100,000 pseudonym mappings, 19 ms
 * of the commit (bench/persist --explain).
 *
 * The node's connection keeps a bound, SAFETY_PAGES: a PASSIVE checkpoint in another thread copies
 * what is committed but cannot restart the WAL while writes keep coming (a writer restarts it only
 * when every frame was copied), so under a steady load the WAL would grow without end. At the bound
 * the node's connection checkpoints as before, with little left to copy, and the next writer restarts
 * the WAL. Should the thread fail, the connection goes back to SQLite's default.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Db } from './database.js';
import type { CheckpointMessage, CheckpointWorkerData } from './checkpoint-worker.js';
import { WORKER_EXEC_ARGV } from '../worker-loading.js';

/** SQLite's own default (PRAGMA wal_autocheckpoint). */
export const DEFAULT_AUTOCHECKPOINT_PAGES = 1000;
/** The node's connection's bound while the thread runs: 32 MB of WAL at 4 KiB pages. */
export const SAFETY_PAGES = 8000;
/** The thread's pace: while the WAL grows, and while it does not. */
const BUSY_MS = 100;
const IDLE_MS = 500;
/** How long stop() waits for the thread to close its connection before it is terminated. */
const STOP_GRACE_MS = 2000;
/** The same failure, told again after this long. */
const WARN_AGAIN_MS = 60_000;

export interface WalCheckpoint {
  /** Frames in the WAL. */
  log: number;
  /** Of them, copied into the database file. */
  checkpointed: number;
}

export class BackgroundCheckpoints {
  private readonly worker: Worker;
  private stopping = false;
  private failure: string | undefined;
  private readonly exited: Promise<void>;
  private readonly waiters: Array<{ resolve: (checkpoint: WalCheckpoint) => void; reject: (error: Error) => void }> = [];
  /** The failure told last, and when: a checkpoint failing at every pass is told once a minute. */
  private lastWarning = { message: '', at: 0 };

  /** Starts the thread and raises `db`'s own checkpoint to its bound. */
  constructor(
    private readonly db: Db,
    databaseFile: string,
    private readonly log: Pick<Logger, 'warn' | 'error'>,
    pace: { busyMs?: number; idleMs?: number } = {},
  ) {
    const data: CheckpointWorkerData = { databaseFile, busyMs: pace.busyMs ?? BUSY_MS, idleMs: pace.idleMs ?? IDLE_MS };
    this.worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), {
      workerData: data,
      execArgv: [...WORKER_EXEC_ARGV],
      // A connection and a timer: no more heap than that needs.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 1 },
    });
    // Not a reason for the process to stay up: the owner stops it, and so does the end of the process.
    this.worker.unref();
    this.worker.on('message', (message: CheckpointMessage) => this.received(message));
    this.worker.on('error', (error) => {
      this.failure = error.message;
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    void this.exited.then(() => this.restoreDefault());
    db.pragma(`wal_autocheckpoint = ${SAFETY_PAGES}`);
  }

  /** The thread's next report, sent after each checkpoint that found the WAL changed since the one
   * before: the WAL's frames, and how many of them are in the database file now (all unless a reader
   * still needed some). Rejected if the thread ends first. */
  nextCheckpoint(): Promise<WalCheckpoint> {
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Ends the thread (its connection closed) and gives `db` SQLite's default back, if it is still open. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.worker.postMessage('stop');
    const grace = setTimeout(() => void this.worker.terminate(), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(grace);
  }

  private received(message: CheckpointMessage): void {
    if (message.kind === 'failed') {
      const now = Date.now();
      if (message.message === this.lastWarning.message && now - this.lastWarning.at < WARN_AGAIN_MS) return;
      this.lastWarning = { message: message.message, at: now };
      this.log.warn({ err: message.message, code: message.code }, 'a background checkpoint of the index failed; tried again shortly');
      return;
    }
    for (const waiter of this.waiters.splice(0)) waiter.resolve({ log: message.log, checkpointed: message.checkpointed });
  }

  private restoreDefault(): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error('the index checkpoint thread ended'));
    if (!this.db.open) return;
    if (!this.stopping) this.log.error({ err: this.failure ?? 'it exited' }, 'the index checkpoint thread ended: the node checkpoints at its commits again');
    this.db.pragma(`wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT_PAGES}`);
  }
}
