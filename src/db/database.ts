/**
 * Opens Gantry's SQLite database (better-sqlite3 12, WAL) and applies the numbered schema migrations
 * that have not been applied yet, each in its own transaction.
 */
import Database from 'better-sqlite3';
import { chmodSync, existsSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { MIGRATIONS } from './migrations/index.js';
import { STORED_FILE_MODE } from '../store/object-store.js';

export type Db = Database.Database;

export interface Migration {
  version: number;
  name: string;
  up(db: Db): void;
}

/** The index's file under storage.path. */
export const DATABASE_FILE = 'index.sqlite';

export interface OpenOptions {
  /**
   * Called when the index needs migrating, before anything is applied, with its schema version and
   * the one it would be migrated to: throws to refuse. The commands refuse while a node runs on the
   * index (src/pipeline/recovery.ts, refuseMigrationUnderNode).
   */
  beforeMigrating?: (from: number, to: number) => void;
}

/** How long a write waits for another connection's write lock before it fails (SQLITE_BUSY). */
export const BUSY_TIMEOUT_MS = 5000;

export function openDatabase(file: string, migrations: readonly Migration[] = MIGRATIONS, options: OpenOptions = {}): Db {
  const created = !existsSync(file);
  const db = new Database(file);
  try {
    // The index holds every patient's name and ID: a new one is not readable by other accounts (its
    // WAL and shared memory take the database file's mode). With the usual umask it was 0644 (found in
    // the PHI leftovers review). An existing one keeps the mode its operator gave it.
    if (created) chmodSync(file, STORED_FILE_MODE);
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    switchToWal(db);
    // NORMAL: a commit writes the WAL without syncing it on the main thread. Writers that promise
    // durability sync the WAL themselves off the main thread (WalSync), after their commit and
    // before they answer; that is what FULL would do, without blocking the event loop.
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    applyMigrations(db, migrations, options.beforeMigrating);
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

/**
 * journal_mode = WAL, retried: switching a fresh file takes an exclusive lock, and when another process
 * opens the same file at that moment SQLite answers "database is locked" at once, without waiting the
 * busy timeout (2 failures in 40 races of two processes opening a fresh index). Up to about 2 s.
 */
function switchToWal(db: Db): void {
  for (let attempt = 1; ; attempt += 1) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY' || attempt >= 100) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

export function applyMigrations(db: Db, migrations: readonly Migration[], beforeMigrating?: OpenOptions['beforeMigrating']): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
  )`);
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as Array<{ version: number }>).map((row) => row.version),
  );
  const newest = Math.max(0, ...applied);
  const known = Math.max(0, ...migrations.map((migration) => migration.version));
  if (newest > known) {
    throw new Error(`the database has schema version ${newest}, newer than this Gantry knows (${known}); use a newer Gantry`);
  }
  if (beforeMigrating && migrations.some((migration) => !applied.has(migration.version))) beforeMigrating(newest, known);
  const isApplied = db.prepare('SELECT 1 FROM schema_migrations WHERE version = ?');
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  // IMMEDIATE: the write lock from the start, and the version checked again under it. A node and a
  // command (gantry status, import) opening the same index at once both read the versions above;
  // without this the second applied a migration the first had just applied ("table already exists").
  const apply = db.transaction((migration: Migration): boolean => {
    if (isApplied.get(migration.version)) return false;
    migration.up(db);
    record.run(migration.version, migration.name, new Date().toISOString());
    return true;
  });
  const done: number[] = [];
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    if (applied.has(migration.version)) continue;
    if (apply.immediate(migration)) done.push(migration.version);
  }
  return done;
}

/**
 * Makes the commits made so far durable by syncing the database's WAL file from the libuv thread
 * pool. Concurrent calls share one sync.
 */
export class WalSync {
  private handle: Promise<FileHandle> | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private lost: Error | undefined;

  constructor(private readonly databaseFile: string) {}

  /**
   * Set once a sync of the WAL failed; every later sync fails with it. Linux marks the pages whose
   * write-back failed clean and reports the error once: a later sync that succeeds does not bring them
   * to the disk, and after a crash SQLite's recovery of the WAL stops at the first page missing, with
   * every commit after it. Only a restart (SQLite reading the WAL afresh) is safe, as PostgreSQL does.
   * A failed open (EMFILE) is not this: it is tried again at the next sync.
   */
  get failure(): Error | undefined {
    return this.lost;
  }

  async sync(): Promise<void> {
    if (this.lost) throw this.lost;
    if (this.running) {
      // A sync is under way, but it may have started before this caller's commit: run one more.
      this.again = true;
      while (this.running) await this.running;
      return;
    }
    this.running = this.syncLoop();
    try {
      await this.running;
    } finally {
      this.running = undefined;
    }
  }

  private async syncLoop(): Promise<void> {
    do {
      this.again = false;
      this.handle ??= open(`${this.databaseFile}-wal`, 'r');
      let handle: FileHandle;
      try {
        handle = await this.handle;
      } catch (error) {
        // Open afresh next time: a failed open (EMFILE) must not fail every later commit.
        this.handle = undefined;
        throw error;
      }
      try {
        await handle.datasync();
      } catch (error) {
        this.lost ??= walLost(error as NodeJS.ErrnoException);
        throw this.lost;
      }
    } while (this.again);
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await (await handle)?.close();
  }
}

/** The sticky failure of WalSync, with the failed sync's code (stores answer it as out of resources). */
function walLost(error: NodeJS.ErrnoException): Error {
  const code = error.code ?? 'EIO';
  const lost = new Error(
    `the index's write-ahead log could not be synced (${code}): commits since then may not be on the disk, so Gantry takes no more instances until it is restarted (check the disk under storage.path first)`,
  ) as NodeJS.ErrnoException;
  lost.code = code;
  return lost;
}

/** The index's size on disk: the database file and its write-ahead log. */
export function indexSizeBytes(databaseFile: string): number {
  const sizeOf = (path: string) => {
    try {
      return statSync(path).size;
    } catch {
      return 0;
    }
  };
  return sizeOf(databaseFile) + sizeOf(`${databaseFile}-wal`);
}
