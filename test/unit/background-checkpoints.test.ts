/**
 * The index's checkpoints off the main thread (src/db/background-checkpoints.ts, checkpoint-task.ts in
 * a worker thread): a commit on the node's connection copies nothing into the database file, the
 * thread does, the WAL stays bounded under a steady load, and failing tasks are told once.
 */
import assert from 'node:assert/strict';
import { copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { BackgroundCheckpoints, DEFAULT_AUTOCHECKPOINT_PAGES, SAFETY_PAGES } from '../../src/db/background-checkpoints.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import type { WalCheckpoint } from '../../src/db/checkpoint-task.js';
import { silentLogger } from '../../src/observability/logger.js';
import { workerPool } from '../../src/worker-loading.js';
import { scratchDir } from '../helpers/scratch.js';

/** A pace at which the thread checkpoints once, as it starts, and not again within a test. */
const NEVER_AGAIN = { busyMs: 600_000, idleMs: 600_000 };
/** The checkpoint's thread, as the node's de-identification pool gives it one. */
const pool = workerPool({ filename: new URL('../../src/db/checkpoint-task.js', import.meta.url).href, minThreads: 1, maxThreads: 1 }, () => undefined);
after(() => pool.destroy());
const inThread = (file: string) => (signal: AbortSignal) => pool.run({ databaseFile: file }, { signal }) as Promise<WalCheckpoint>;
const PAGE = 4096;

function freshIndex(name: string): { db: Db; file: string; dir: string } {
  const dir = scratchDir(name);
  const file = join(dir, 'index.sqlite');
  const db = openDatabase(file);
  db.exec('CREATE TABLE filler (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL)');
  db.pragma('wal_checkpoint(TRUNCATE)');
  return { db, file, dir };
}

/** Commits `pages` pages of rows, `perCommit` rows a commit. */
function fill(db: Db, pages: number, perCommit = 50): void {
  const insert = db.prepare('INSERT INTO filler (bytes) VALUES (?)');
  const row = Buffer.alloc(PAGE - 200, 7); // about a page a row
  for (let done = 0; done < pages; done += perCommit) db.transaction(() => {
    for (let i = 0; i < perCommit; i += 1) insert.run(row);
  })();
}

/** The rows the database file holds without its WAL: what checkpoints copied there. */
function rowsInDatabaseFile(dir: string, file: string): number {
  const alone = join(dir, `alone-${Date.now()}-${Math.random()}.sqlite`);
  copyFileSync(file, alone);
  const db = new Database(alone);
  try {
    return (db.prepare(`SELECT count(*) FROM sqlite_schema WHERE name = 'filler'`).pluck().get() as number) === 0 ? 0 : (db.prepare('SELECT count(*) FROM filler').pluck().get() as number);
  } finally {
    db.close();
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it holds, for at most 30 s. */
async function until(check: () => boolean, failure: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    assert.ok(Date.now() < deadline, failure);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('with the thread running, a commit past 1000 pages copies nothing into the database file; the thread copies it', async () => {
  const { db, file, dir } = freshIndex('ckpt-commit');
  const idle = new BackgroundCheckpoints(db, inThread(file), silentLogger(), NEVER_AGAIN);
  try {
    // Past its one look: a first pass after the commit below would copy it.
    await withTimeout(idle.nextCheckpoint(), 30_000, 'the thread\'s first pass');
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), SAFETY_PAGES);
    fill(db, 1500, 1500);
    assert.equal(rowsInDatabaseFile(dir, file), 0, 'the commit ran a checkpoint on the committing connection');
  } finally {
    await idle.stop();
  }
  assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), DEFAULT_AUTOCHECKPOINT_PAGES, 'stopped: SQLite checkpoints at commits again');

  const busy = new BackgroundCheckpoints(db, inThread(file), silentLogger(), { busyMs: 20, idleMs: 20 });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { log, checkpointed } = await withTimeout(busy.nextCheckpoint(), 30_000, 'a checkpoint by the thread');
      if (log > 0 && checkpointed === log) break;
      assert.ok(Date.now() < deadline, 'the thread did not copy the WAL within 30 s');
    }
    assert.equal(rowsInDatabaseFile(dir, file), 1500);
  } finally {
    await busy.stop();
    db.close();
  }
});

test('under a steady load the WAL stays within the bound: the connection checkpoints at SAFETY_PAGES and the WAL restarts', async () => {
  const { db, file } = freshIndex('ckpt-bound');
  // A thread that never copies anything after its first look: the connection's bound alone holds the WAL.
  const checkpoints = new BackgroundCheckpoints(db, inThread(file), silentLogger(), NEVER_AGAIN);
  try {
    // Past its one look, which would otherwise hold the checkpoint lock while the bound is reached:
    // the WAL then overshoots by what is committed during one background checkpoint.
    await withTimeout(checkpoints.nextCheckpoint(), 30_000, 'the thread\'s first pass');
    fill(db, SAFETY_PAGES * 1.5);
    const walBytes = statSync(`${file}-wal`).size;
    // A WAL frame is a page and its 24-byte header; the commit that passes the bound adds its own 50.
    assert.ok(walBytes <= (SAFETY_PAGES + 200) * (PAGE + 24) + 32, `the WAL grew to ${walBytes} bytes`);
    assert.ok(walBytes >= SAFETY_PAGES * PAGE, `the WAL (${walBytes} bytes) never reached the bound: the test did not load it`);
  } finally {
    await checkpoints.stop();
    db.close();
  }
});

test('checkpoints that fail are told once a minute, not at every pass, and the bound stays', async () => {
  const dir = scratchDir('ckpt-failed');
  const db = openDatabase(join(dir, 'index.sqlite'));
  const warnings: string[] = [];
  const log = { warn: (_: unknown, message: string) => void warnings.push(message) } as unknown as Pick<ReturnType<typeof silentLogger>, 'warn'>;
  let calls = 0;
  const failing = async (): Promise<WalCheckpoint> => {
    calls += 1;
    throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
  };
  const checkpoints = new BackgroundCheckpoints(db, failing, log, { busyMs: 5, idleMs: 5 });
  try {
    await until(() => calls >= 5, 'the checkpoints were not tried again after failing');
    assert.equal(warnings.length, 1, `told ${warnings.length} times`);
    assert.match(warnings[0] ?? '', /background checkpoint of the index failed/);
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), SAFETY_PAGES);
  } finally {
    await checkpoints.stop();
  }
  assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), DEFAULT_AUTOCHECKPOINT_PAGES);
  db.close();
});

test('the node\'s de-identification threads take the checkpoint task (the node runs it as the named task checkpoint)', async () => {
  const { db, file } = freshIndex('ckpt-deid-thread');
  const deidPool = workerPool({ filename: new URL('../../src/deid/worker.js', import.meta.url).href, workerData: { secret: 'a test secret of sixteen bytes or more' }, minThreads: 1, maxThreads: 1 }, () => undefined);
  try {
    db.pragma('wal_autocheckpoint = 0');
    fill(db, 100);
    const result = (await deidPool.run({ databaseFile: file }, { name: 'checkpoint' })) as WalCheckpoint;
    assert.ok(result.log >= 100, `the WAL held ${result.log} frames`);
    assert.equal(result.checkpointed, result.log);
  } finally {
    await deidPool.destroy();
    db.close();
  }
});

test('stop() does not wait for a checkpoint stuck behind other work: the task is aborted, waiters are told', async () => {
  const { db } = freshIndex('ckpt-stop');
  let started = false;
  let aborted = false;
  // As a checkpoint queued behind de-identification tasks that run for minutes: it settles only when aborted.
  const stuck = (signal: AbortSignal) =>
    new Promise<WalCheckpoint>((_, reject) => {
      started = true;
      signal.addEventListener('abort', () => {
        aborted = true;
        reject(new Error('aborted'));
      });
    });
  const checkpoints = new BackgroundCheckpoints(db, stuck, silentLogger(), { busyMs: 5, idleMs: 5 });
  await until(() => started, 'the first pass never started');
  const waiter = checkpoints.nextCheckpoint();
  await withTimeout(checkpoints.stop(), 5_000, 'stop() with a checkpoint under way');
  assert.equal(aborted, true);
  await assert.rejects(waiter, /stopped/);
  await assert.rejects(checkpoints.nextCheckpoint(), /stopped/);
  assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), DEFAULT_AUTOCHECKPOINT_PAGES);
  db.close();
});
