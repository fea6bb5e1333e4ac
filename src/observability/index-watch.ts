/**
 * Readiness of the index (/readyz): whether another process holds its write lock, and whether
 * index.sqlite is still the file the node opened.
 */
import { statSync } from 'node:fs';
import { BUSY_TIMEOUT_MS, type Db, type WalSync } from '../db/database.js';
import type { ReadinessCheck } from './http-server.js';

/**
 * The index as /readyz sees it. A query tells little: every page the node reads is in its cache, and
 * `SELECT 1` reads none and takes no lock. What stops the node taking instances is checked instead:
 * the write lock held by another process (every C-STORE waits out the busy timeout, then answers
 * 0xA700), and index.sqlite no longer being the file the node opened (removed or replaced under it:
 * the node writes on into a file the next start does not find).
 */
export class IndexWatch {
  private readonly opened: { dev: number; ino: number } | undefined;
  /** Since when every probe found the write lock taken by another process (undefined: free at the last). */
  private lockedSince: number | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly file: string,
    /** The node's connection; undefined once it is closed (a stop). */
    private readonly db: () => Db | undefined,
    private readonly wal: WalSync,
  ) {
    this.opened = fileIdentity(file);
  }

  /** Probes the write lock every second: a lock is a failure once held through every probe for
   * INDEX_LOCK_UNREADY_MS, not when a probe meets a command's brief write. */
  start(): void {
    this.timer = setInterval(() => this.probeLock(), INDEX_LOCK_PROBE_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private probeLock(now = Date.now()): void {
    const db = this.db();
    if (!db?.open) return;
    try {
      if (writeLockFree(db)) this.lockedSince = undefined;
      else this.lockedSince ??= now;
    } catch {
      // An index that fails otherwise is what check() reports.
    }
  }

  check(now = Date.now()): ReadinessCheck {
    const db = this.db();
    try {
      if (!db?.open) return { name: 'index', ok: false, detail: 'the index database is closed: Gantry is stopping' };
      if (this.wal.failure) return { name: 'index', ok: false, detail: this.wal.failure.message };
      const current = fileIdentity(this.file);
      if (this.opened && (current?.dev !== this.opened.dev || current.ino !== this.opened.ino)) {
        return {
          name: 'index',
          ok: false,
          detail: `${this.file} was removed or replaced while Gantry runs: Gantry records into the file it opened, which the next start would not find. Put that file back where it was; to restore a backup, stop Gantry first`,
        };
      }
      if (this.lockedSince !== undefined && now - this.lockedSince >= INDEX_LOCK_UNREADY_MS) {
        return {
          name: 'index',
          ok: false,
          detail: `another process has held the write lock of ${this.file} for ${Math.round((now - this.lockedSince) / 1000)} s: every C-STORE waits ${INDEX_LOCK_UNREADY_MS / 1000} s for it, then answers 0xA700. End that process's transaction (an sqlite3 shell left in BEGIN, a stuck gantry command: fuser ${this.file})`,
        };
      }
      db.prepare('SELECT 1').get();
      return { name: 'index', ok: true };
    } catch (error) {
      return { name: 'index', ok: false, detail: `the index database does not answer: ${(error as Error).message}` };
    }
  }
}

const INDEX_LOCK_PROBE_MS = 1000;
/** A write lock held longer than the index's busy timeout fails the stores. */
const INDEX_LOCK_UNREADY_MS = BUSY_TIMEOUT_MS;

function fileIdentity(file: string): { dev: number; ino: number } | undefined {
  try {
    const { dev, ino } = statSync(file);
    return { dev, ino };
  } catch {
    return undefined;
  }
}

/** Whether the node can take the index's write lock now, without waiting for it. */
function writeLockFree(db: Db): boolean {
  // The node's own transactions are synchronous: none is open while /readyz runs.
  if (db.inTransaction) return true;
  const timeout = db.pragma('busy_timeout', { simple: true }) as number;
  db.pragma('busy_timeout = 0');
  try {
    db.exec('BEGIN IMMEDIATE');
    db.exec('ROLLBACK');
    return true;
  } catch (error) {
    if ((error as { code?: string }).code === 'SQLITE_BUSY') return false;
    throw error;
  } finally {
    db.pragma(`busy_timeout = ${timeout}`);
  }
}
