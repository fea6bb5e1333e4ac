/**
 * The de-identification scheduler's bookkeeping, with a pool whose tasks the test settles by hand:
 * an output is placed only once the index records it, a stale output never touches a newer copy's,
 * and stopping leaves running work waiting rather than failed.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Piscina } from 'piscina';
import { openDatabase, WalSync } from '../../src/db/database.js';
import { EMPTY_AUDIT_TEXT } from '../../src/deid/audit-text.js';
import type { DeidTask, DeidTaskResult } from '../../src/deid/worker.js';
import { DeidWork } from '../../src/index/deid-work.js';
import { stampOf } from '../../src/index/file-stamp.js';
import { IndexWriter, InstanceIndex, type InstanceRecord } from '../../src/index/instance-index.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { Writable } from 'node:stream';
import { DeidScheduler, deidTimeoutMs, type DeidObserver, type DeidOutcome, type DeidSchedulerSettings } from '../../src/pipeline/deidentify.js';
import { ReceiveFirst } from '../../src/pipeline/receive-first.js';
import { SettingsCache } from '../../src/deid/shared-settings.js';
import { DEID_INCOMING_DIR } from '../../src/store/object-store.js';
import { sleep } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';
import { importFolders } from '../../src/toolkit/import.js';

interface PendingTask {
  task: DeidTask;
  resolve(result: DeidTaskResult): void;
  reject(error: Error): void;
}

/** A pool whose tasks wait until the test settles them. */
class ManualPool {
  private readonly queued: PendingTask[] = [];
  private readonly unsettled = new Set<PendingTask>();

  /** As piscina does, a task whose signal aborts is rejected with an AbortError. */
  run(task: DeidTask, options: { signal?: AbortSignal } = {}): Promise<DeidTaskResult> {
    return new Promise((resolve, reject) => {
      const pending: PendingTask = {
        task,
        resolve: (result) => {
          this.unsettled.delete(pending);
          resolve(result);
        },
        reject: (error) => {
          this.unsettled.delete(pending);
          reject(error);
        },
      };
      this.queued.push(pending);
      this.unsettled.add(pending);
      options.signal?.addEventListener('abort', () => pending.reject(Object.assign(new Error('The task has been aborted'), { name: 'AbortError' })));
    });
  }

  /** The next task handed to the pool, begun by a thread now (waits up to `withinMs`). */
  async next(withinMs = 2000): Promise<PendingTask> {
    const deadline = performance.now() + withinMs;
    while (this.queued.length === 0 && performance.now() < deadline) await sleep(10);
    const task = this.queued.shift();
    assert.ok(task, 'a task reached the pool');
    // Taken: a thread begins it, and says when, as the worker does.
    if (task.task.startedAt) Atomics.store(task.task.startedAt, 0, BigInt(Date.now()));
    return task;
  }

  /** Tasks handed to the pool and not taken by next() yet. */
  get handedOver(): number {
    return this.queued.length;
  }

  /** Ends every task not settled yet, as terminating the pool does. */
  terminate(): void {
    for (const pending of [...this.unsettled]) pending.reject(new Error('Terminating worker thread'));
  }
}

function record(filePath: string): InstanceRecord {
  return {
    attributes: { PatientID: 'P1', Modality: 'CT' },
    studyInstanceUid: '1.2.1',
    seriesInstanceUid: '1.2.1.1',
    sopInstanceUid: '1.2.1.1.1',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    filePath,
    fileSize: 10,
    callingAeTitle: 'CT01',
    receivedAt: Date.now(),
  };
}

async function setUp(t: TestContext, observer?: DeidObserver, pollMs = 50, receiveFirst?: ReceiveFirst, timeoutMs?: (fileBytes: number) => number, largePool?: ManualPool, log = silentLogger()) {
  const storagePath = scratchDir('scheduler');
  mkdirSync(join(storagePath, DEID_INCOMING_DIR), { recursive: true });
  const file = join(storagePath, 'index.sqlite');
  const db = openDatabase(file);
  const wal = new WalSync(file);
  const index = new InstanceIndex(db);
  const writer = new IndexWriter(db, index, wal);
  const work = new DeidWork(db);
  const pool = new ManualPool();
  const settingsOf = (maxAgeYears: number): DeidSchedulerSettings => ({ profiles: [], base: { dateShift: { minDays: 1, maxDays: 2 }, maxAgeYears }, quarantineOnFindings: false });
  let settings = settingsOf(89);
  /** As a reloaded config does: new settings objects. */
  const reload = (maxAgeYears: number) => {
    settings = settingsOf(maxAgeYears);
  };
  const scheduler = new DeidScheduler({
    work,
    pool: pool as unknown as Piscina,
    storagePath,
    log,
    maxInFlight: 2,
    pollMs,
    ...(observer ? { observer } : {}),
    ...(receiveFirst ? { receiveFirst } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
    ...(largePool ? { largeInstances: { pool: largePool as unknown as Piscina, heapMb: LARGE_HEAP_MB } } : {}),
    settings: () => settings,
  });
  t.after(async () => {
    const stopping = scheduler.stop(1000);
    pool.terminate();
    largePool?.terminate();
    await stopping;
    await wal.close();
    db.close();
  });
  const state = () => db.prepare('SELECT state, file_path AS filePath, deid_file_path AS deidPath FROM instances').get() as { state: string; filePath: string; deidPath: string | null };
  return { storagePath, db, writer, work, pool, scheduler, state, reload };
}

function deidentified(filePath: string, sopInstanceUid = '2.25.1'): DeidTaskResult {
  return { kind: 'deidentified', filePath, fileSize: 6, sopInstanceUid, seriesInstanceUid: '2.25.2', studyInstanceUid: '2.25.3', profile: 'default', audit: EMPTY_AUDIT_TEXT, findings: [], attributes: { PatientID: 'PSEUDO-1', PatientName: 'ANONYMOUS^1', Modality: 'CT' } };
}

const TARGET = 'deidentified/2.25.3/2.25.2/2.25.1.dcm';

const LARGE_HEAP_MB = 256;

/** What piscina rejects a task with when its thread reached the heap limit (resourceLimits). */
function outOfMemoryError(): Error {
  return Object.assign(new Error('Worker terminated due to reaching memory limit: JS heap out of memory'), { code: 'ERR_WORKER_OUT_OF_MEMORY' });
}

/** Outcomes reported for metrics; the first call throws, which must change nothing. */
function recordingObserver(): DeidObserver & { outcomes: DeidOutcome[] } {
  const outcomes: DeidOutcome[] = [];
  let calls = 0;
  return {
    outcomes,
    deidDone(outcome, seconds) {
      calls += 1;
      assert.ok(seconds >= 0);
      outcomes.push(outcome);
      if (calls === 1) throw new Error('a metric that fails');
    },
  };
}

test('an output is moved into place when the index records it', async (t) => {
  const observer = recordingObserver();
  const { storagePath, writer, pool, scheduler, state } = await setUp(t, observer);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  const pending = await pool.next();
  writeFileSync(pending.task.temporary, 'OUTPUT');
  pending.resolve(deidentified(TARGET));
  for (let tries = 0; tries < 100 && state().state !== 'deidentified'; tries += 1) await sleep(10);
  assert.equal(state().state, 'deidentified');
  assert.equal(state().deidPath, TARGET);
  assert.equal(readFileSync(join(storagePath, TARGET), 'utf8'), 'OUTPUT');
  assert.equal(existsSync(pending.task.temporary), false);
  assert.deepEqual(observer.outcomes, ['ok'], 'reported once, and an observer that throws changes nothing');
});

test('a stale output (the instance was re-sent meanwhile) is dropped without touching the newer one', async (t) => {
  const observer = recordingObserver();
  const { storagePath, writer, pool, scheduler, state } = await setUp(t, observer);
  await writer.submit(record('originals/first.dcm'));
  scheduler.start();
  const stale = await pool.next();
  // The instance is received again, and its new copy's output is already in place.
  await writer.submit(record('originals/second.dcm'));
  mkdirSync(dirname(join(storagePath, TARGET)), { recursive: true });
  writeFileSync(join(storagePath, TARGET), 'NEWER');
  writeFileSync(stale.task.temporary, 'STALE');
  stale.resolve(deidentified(TARGET));
  const fresh = await pool.next();
  assert.equal(fresh.task.input, join(storagePath, 'originals/second.dcm'), 'the new copy is de-identified');
  assert.equal(readFileSync(join(storagePath, TARGET), 'utf8'), 'NEWER');
  assert.equal(existsSync(stale.task.temporary), false, 'the stale output is removed');
  assert.equal(state().state, 'received');
  assert.equal(state().filePath, 'originals/second.dcm');
  assert.deepEqual(observer.outcomes, [], 'a stale outcome is not counted');
});

/** De-identifies the instance's current copy (the next task) into `target`; waits until it is recorded. */
async function deidentifyInto(setup: Awaited<ReturnType<typeof setUp>>, target: string, sopInstanceUid: string): Promise<void> {
  const pending = await setup.pool.next();
  writeFileSync(pending.task.temporary, `OUTPUT ${target}`);
  pending.resolve(deidentified(target, sopInstanceUid));
  for (let tries = 0; tries < 100 && setup.state().deidPath !== target; tries += 1) await sleep(10);
  assert.equal(setup.state().deidPath, target);
}

// Found on re-reading the index: a new original cleared the row's de-identified copy without deleting
// it, so when the new copy went elsewhere (a corrected Study Instance UID, a rename under retainUIDs)
// the old one stayed on disk for good, out of retention's reach.
test('a copy received again under other UIDs: its old de-identified copy is deleted once the new one is recorded', async (t) => {
  const setup = await setUp(t);
  const { storagePath, writer, scheduler } = setup;
  await writer.submit(record('originals/first.dcm'));
  scheduler.start();
  await deidentifyInto(setup, TARGET, '2.25.1');
  await writer.submit({ ...record('originals/second.dcm'), studyInstanceUid: '1.2.9' });
  assert.equal(existsSync(join(storagePath, TARGET)), true, 'kept while the new original waits');
  const moved = 'deidentified/2.25.8/2.25.2/2.25.1.dcm';
  await deidentifyInto(setup, moved, '2.25.1');
  assert.equal(existsSync(join(storagePath, TARGET)), false, 'the superseded copy is deleted');
  assert.equal(readFileSync(join(storagePath, moved), 'utf8'), `OUTPUT ${moved}`);
  // Received again with the same UIDs: the new copy takes the old one's path and stays.
  await writer.submit({ ...record('originals/third.dcm'), studyInstanceUid: '1.2.9' });
  await deidentifyInto(setup, moved, '2.25.1');
  assert.equal(readFileSync(join(storagePath, moved), 'utf8'), `OUTPUT ${moved}`);
});

test('an instance sent back to be done again: the copy its row named is deleted when the new one goes elsewhere', async (t) => {
  const setup = await setUp(t);
  const { db, storagePath, writer, work, scheduler } = setup;
  await writer.submit(record('originals/first.dcm'));
  scheduler.start();
  await deidentifyInto(setup, TARGET, '2.25.1');
  work.redo(db.prepare('SELECT id FROM instances').pluck().get() as number);
  // Under retainUIDs, redacted this time: a UID of its own, so another path.
  const renamed = 'deidentified/2.25.3/2.25.2/2.25.77.dcm';
  await deidentifyInto(setup, renamed, '2.25.77');
  assert.equal(existsSync(join(storagePath, TARGET)), false);
  assert.equal(existsSync(join(storagePath, renamed)), true);
});

// Suspected in a review: the superseded copy was deleted by its path alone; under a rule keeping UIDs
// two instances can name one de-identified path (research-index.ts: clash), and the other's live copy
// went with it.
test('an earlier copy whose path another instance names now is not deleted', async (t) => {
  const setup = await setUp(t);
  const { db, storagePath, writer, scheduler } = setup;
  await writer.submit(record('originals/first.dcm'));
  scheduler.start();
  await deidentifyInto(setup, TARGET, '2.25.1');
  await writer.submit({ ...record('originals/second.dcm'), studyInstanceUid: '1.2.9' });
  // Another instance now names the same path, as a clash of kept UIDs makes it.
  await writer.submit({ ...record('originals/other.dcm'), sopInstanceUid: '1.2.1.1.2' });
  db.prepare(`UPDATE instances SET state = 'deidentified', deid_file_path = ?, deid_study_instance_uid = '2.25.3' WHERE sop_instance_uid = '1.2.1.1.2'`).run(TARGET);
  const moved = 'deidentified/2.25.8/2.25.2/2.25.1.dcm';
  const pending = await setup.pool.next();
  writeFileSync(pending.task.temporary, 'OUTPUT');
  pending.resolve(deidentified(moved));
  for (let tries = 0; tries < 100 && !existsSync(join(storagePath, moved)); tries += 1) await sleep(10);
  assert.equal(existsSync(join(storagePath, moved)), true);
  assert.equal(existsSync(join(storagePath, TARGET)), true, "the other instance's copy stays");
});

test('a copy received again and held back: its old de-identified copy is deleted too', async (t) => {
  const setup = await setUp(t);
  const { storagePath, writer, pool, scheduler, state } = setup;
  await writer.submit(record('originals/first.dcm'));
  scheduler.start();
  await deidentifyInto(setup, TARGET, '2.25.1');
  await writer.submit(record('originals/second.dcm'));
  (await pool.next()).resolve({ kind: 'quarantined', reason: 'rule: burned-in annotation' });
  for (let tries = 0; tries < 100 && state().state !== 'quarantined'; tries += 1) await sleep(10);
  assert.equal(state().state, 'quarantined');
  assert.equal(existsSync(join(storagePath, TARGET)), false);
});

test('a task that fails is recorded as failed, but one ended by stopping waits for the next start', async (t) => {
  const observer = recordingObserver();
  const { writer, pool, scheduler, state } = await setUp(t, observer);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  const first = await pool.next();
  first.reject(new Error('the dataset ends inside an element header at 1234'));
  for (let tries = 0; tries < 100 && state().state !== 'failed'; tries += 1) await sleep(10);
  assert.equal(state().state, 'failed');

  await writer.submit(record('originals/b.dcm'));
  scheduler.nudge();
  const second = await pool.next();
  const stopped = scheduler.stop(1000);
  second.reject(new Error('Terminating worker thread'));
  await stopped;
  assert.equal(state().state, 'received', 'stopping is no failure of the instance');
  assert.deepEqual(observer.outcomes, ['failed'], 'the stopped task is not counted');
});

// A task caught in a damaged stream held its thread forever: as many such instances as threads
// stopped de-identification, and forwarding with it, while stores were still acknowledged.
test('a task that runs past its time limit is stopped and its instance recorded as failed, with the reason', async (t) => {
  const sizes: number[] = [];
  const { writer, pool, scheduler, db, state } = await setUp(t, undefined, 50, undefined, (fileBytes) => {
    sizes.push(fileBytes);
    return 100;
  });
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  await pool.next();
  for (let tries = 0; tries < 200 && state().state !== 'failed'; tries += 1) await sleep(10);
  assert.equal(state().state, 'failed');
  assert.equal(db.prepare('SELECT state_reason FROM instances').pluck().get(), 'de-identification did not finish within 0 s');
  assert.deepEqual(sizes, [10], 'the limit is asked for the size of the original');
});

// Found in a review: the time limit counted from the hand-over to the pool, which takes up to twice as
// many tasks as it has threads. A task waiting behind one caught in a damaged stream was stopped as it
// waited, and its instance recorded as failed without having been tried.
test('the time limit of a task counts from when a thread begins it, not from its wait in the pool', async (t) => {
  const { writer, pool, scheduler, db } = await setUp(t, undefined, 50, undefined, () => 100);
  await writer.submit(record('originals/a.dcm'));
  await writer.submit({ ...record('originals/b.dcm'), sopInstanceUid: '1.2.1.1.2' });
  scheduler.start();
  await pool.next();
  const states = () => db.prepare('SELECT state FROM instances ORDER BY id').pluck().all();
  for (let tries = 0; tries < 200 && states()[0] !== 'failed'; tries += 1) await sleep(10);
  assert.deepEqual(states(), ['failed', 'received'], 'the task begun is stopped; the one waiting is not');
  await sleep(150);
  assert.deepEqual(states(), ['failed', 'received'], 'nor while it waits on');
  const waiting = await pool.next();
  writeFileSync(waiting.task.temporary, 'output');
  waiting.resolve(deidentified('deidentified/b.dcm'));
  for (let tries = 0; tries < 200 && states()[1] !== 'deidentified'; tries += 1) await sleep(10);
  assert.deepEqual(states(), ['failed', 'deidentified']);
});

// Found in a review: a task stopped at its time limit ends with its thread, so the thread never
// deletes what it was writing: the scheduler deleted the output, but not the scratch file of frames
// beside it (pixel data, burned-in text included), which stayed until the next start.
test('a task stopped at its time limit leaves neither its output nor its scratch file of frames', async (t) => {
  const { writer, pool, scheduler, state } = await setUp(t, undefined, 50, undefined, () => 100);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  const { task } = await pool.next();
  // What the thread had written when it was stopped (deidentify-file.ts: output, output.frames).
  writeFileSync(task.temporary, 'DICM');
  writeFileSync(`${task.temporary}.frames`, 'frames');
  for (let tries = 0; tries < 200 && state().state !== 'failed'; tries += 1) await sleep(10);
  assert.equal(state().state, 'failed');
  assert.equal(existsSync(task.temporary), false, 'the output is deleted');
  assert.equal(existsSync(`${task.temporary}.frames`), false, 'the scratch file of frames is deleted');
});

// Suspected in the toolkit review: a file imported in place is its user's, who may replace it; the
// node de-identified whatever the path held and recorded it, and forwarded it, as the indexed instance.
test('an original whose size is not the size indexed is recorded as failed, and not de-identified', async (t) => {
  const { storagePath, writer, pool, scheduler, db, state } = await setUp(t);
  mkdirSync(join(storagePath, 'originals'), { recursive: true });
  writeFileSync(join(storagePath, 'originals/a.dcm'), 'CHANGED');
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  for (let tries = 0; tries < 200 && state().state !== 'failed'; tries += 1) await sleep(10);
  assert.equal(state().state, 'failed');
  assert.match(db.prepare('SELECT state_reason FROM instances').pluck().get() as string, /^the original changed since it was received \(it ends at byte 7, short of the 10 bytes indexed\): .*delete this row \(gantry quarantine delete\) and have the instance sent again$/);
  assert.equal(pool.handedOver, 0, 'no task reached the pool');
});

/** Imports a tree of two synthetic instances (0.dcm and 1.dcm) in place into the scheduler's index; returns the tree. */
async function importTwoInPlace(setup: Awaited<ReturnType<typeof setUp>>): Promise<string> {
  const tree = scratchDir('scheduler-tree');
  const studyInstanceUid = newUid();
  const seriesInstanceUid = newUid();
  for (let n = 0; n < 2; n += 1) {
    await writeSyntheticFile(join(tree, `${n}.dcm`), { studyInstanceUid, seriesInstanceUid, patientId: 'PAT-STAMP', patientName: 'Stamp^Pat', instanceNumber: n + 1, rows: 8, columns: 8 });
  }
  await importFolders(setup.db, setup.storagePath, { roots: [tree], copy: false, forward: false, workers: 1 });
  return tree;
}

/** The state and reason of the instance whose original is `file` (absolute), once it is no longer waiting. */
async function heldState(setup: Awaited<ReturnType<typeof setUp>>, file: string): Promise<{ state: string; reason: string | null }> {
  const row = () => setup.db.prepare(`SELECT state, state_reason AS reason FROM instances WHERE source_path = ? OR file_path = ?`).get(file, file) as { state: string; reason: string | null };
  for (let tries = 0; tries < 200 && row().state === 'received'; tries += 1) await sleep(10);
  return row();
}

// Found in the file-stamps review: the node told a changed original by its size alone, so a file
// imported in place and rewritten by its user with the same size (an edited copy, or another patient's
// instance) was de-identified, recorded and forwarded as the indexed instance.
test('an original imported in place and rewritten with the same size is recorded as failed, with how to recover, and not de-identified', async (t) => {
  const setup = await setUp(t);
  const tree = await importTwoInPlace(setup);
  const changed = join(tree, '0.dcm');
  await sleep(30); // past the tick of the file clock
  const bytes = readFileSync(changed);
  bytes.write('PAT-OTHER', bytes.indexOf('PAT-STAMP'), 'latin1');
  writeFileSync(changed, bytes);
  setup.scheduler.start();
  const unchanged = await setup.pool.next();
  assert.equal(unchanged.task.input, join(tree, '1.dcm'), 'the unchanged file is de-identified');
  const held = await heldState(setup, changed);
  assert.equal(held.state, 'failed');
  assert.match(held.reason ?? '', /^the original changed since it was imported \(it was modified at [^)]*\): it is not the instance the index describes; /);
  assert.match(held.reason ?? '', /gantry quarantine delete.*import/);
  assert.doesNotMatch(held.reason ?? '', /PAT-|Stamp/, 'no value in the reason');
  assert.ok(!(held.reason ?? '').includes(tree), 'nor the path (a folder may be named after the patient)');
  assert.equal(setup.pool.handedOver, 0, 'the changed file reached no thread');
});

test('an original imported in place and rewritten with another size is recorded as failed, with how to recover', async (t) => {
  const setup = await setUp(t);
  const tree = await importTwoInPlace(setup);
  const changed = join(tree, '0.dcm');
  await writeSyntheticFile(changed, { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'ANOTHER-PATIENT-ALTOGETHER', patientName: 'Other^Olga', rows: 8, columns: 8 });
  setup.scheduler.start();
  await setup.pool.next();
  const held = await heldState(setup, changed);
  assert.equal(held.state, 'failed');
  assert.match(held.reason ?? '', /^the original changed since it was imported \(its size is \d+ bytes, not \d+/);
  assert.match(held.reason ?? '', /gantry quarantine delete.*import/);
  assert.equal(setup.pool.handedOver, 0);
});

test('an original imported in place and deleted since is recorded as failed with why, without a task', async (t) => {
  const setup = await setUp(t);
  const tree = await importTwoInPlace(setup);
  const gone = join(tree, '0.dcm');
  rmSync(gone);
  setup.scheduler.start();
  await setup.pool.next();
  const held = await heldState(setup, gone);
  assert.equal(held.state, 'failed');
  assert.match(held.reason ?? '', /^the original is gone since it was imported/);
  assert.match(held.reason ?? '', /gantry import/);
  assert.doesNotMatch(held.reason ?? '', /ENOENT/);
  assert.ok(!(held.reason ?? '').includes(tree));
  assert.equal(setup.pool.handedOver, 0, 'no task for a file that is not there');
});

// Found in the final review: a received original whose modification time alone changed (storage.path
// copied or restored without its times) was failed, with the advice to delete it and have it sent
// again. Gantry's own file is compared by size: it is de-identified.
test('a received original with a new modification time and its size (a restore without times) is de-identified', async (t) => {
  const setup = await setUp(t);
  const original = join(setup.storagePath, 'originals/a.dcm');
  mkdirSync(dirname(original), { recursive: true });
  writeFileSync(original, 'TEN BYTES!');
  const received = record('originals/a.dcm');
  received.fileStamp = stampOf(statSync(original, { bigint: true }));
  await sleep(30);
  writeFileSync(original, 'TEN BYTES!');
  assert.notEqual(String(statSync(original, { bigint: true }).mtimeNs), received.fileStamp.mtimeNs, 'a new modification time');
  await setup.writer.submit(received);
  setup.scheduler.start();
  const pending = await setup.pool.next();
  assert.equal(pending.task.input, original);
});

test('an original indexed without a stamp (before migration 019) and rewritten with the same size is de-identified as before', async (t) => {
  const setup = await setUp(t);
  const original = join(setup.storagePath, 'originals/a.dcm');
  mkdirSync(dirname(original), { recursive: true });
  writeFileSync(original, 'TEN BYTES!');
  await setup.writer.submit(record('originals/a.dcm'));
  writeFileSync(original, 'TEN OTHERS');
  setup.scheduler.start();
  const pending = await setup.pool.next();
  assert.equal(pending.task.input, original);
  // The thread compares the file's SOP Instance UID with the row's (deidentify-file.test.ts).
  assert.deepEqual(pending.task.expected, { sopInstanceUid: '1.2.1.1.1', origin: 'received' });
});

test('the time allowed to de-identify an instance: five minutes, and two seconds per MB', () => {
  assert.equal(deidTimeoutMs(0), 300_000);
  assert.equal(deidTimeoutMs(500_000), 302_000);
  assert.equal(deidTimeoutMs(1_000_000_000), 2_300_000);
});

// Suspected in a review: a task still running when the stop's grace ended was ended by the pool's
// destruction, and its outcome recorded afterwards, once the index was closed: every shutdown with
// de-identification running logged "could not record de-identification outcomes".
test("a task ended after the stop's grace is not recorded: the index is left alone, the instance waits for the next start", async (t) => {
  const { writer, work, pool, scheduler, state } = await setUp(t);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  const running = await pool.next();
  // The stop's grace timer does not hold the process open (unref): this does, meanwhile.
  const alive = setInterval(() => undefined, 10);
  t.after(() => clearInterval(alive));
  await scheduler.stop(30);
  let transactions = 0;
  const inOneTransaction = work.inOneTransaction.bind(work);
  work.inOneTransaction = (body) => {
    transactions += 1;
    return inOneTransaction(body);
  };
  running.reject(new Error('Terminating worker thread'));
  await sleep(50);
  assert.equal(transactions, 0, 'nothing is recorded after the stop returned');
  assert.equal(state().state, 'received', 'the instance waits for the next start');
});

test('a task that fails for want of disk space or file descriptors is not recorded as failed: the instance is done again after the poll', async (t) => {
  const observer = recordingObserver();
  const { writer, pool, scheduler, state } = await setUp(t, observer, 300);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  // As an error reaches the main thread from a worker: the message names the code, `code` is gone.
  (await pool.next()).reject(new Error('ENOSPC: no space left on device, write'));
  const again = await pool.next(3000);
  assert.equal(state().state, 'received', 'it still waits');
  const withCode = Object.assign(new Error('too many open files'), { code: 'EMFILE' });
  again.reject(withCode);
  const third = await pool.next(3000);
  third.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  for (let tries = 0; tries < 100 && state().state !== 'quarantined'; tries += 1) await sleep(10);
  assert.equal(state().state, 'quarantined');
  assert.deepEqual(observer.outcomes, ['quarantined'], 'the postponed attempts are no outcomes');
});

// Found in the failure review: on a full disk every instance waiting was postponed at every poll,
// each with a line: 3,155 lines in 2.5 minutes, onto the log's volume, maybe the same full one.
test('postponements for want of disk space are logged once a period, with how many there were', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) }));
  const { writer, pool, scheduler, state } = await setUp(t, undefined, 20, undefined, undefined, undefined, log);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  for (let attempt = 0; attempt < 5; attempt += 1) (await pool.next(3000)).reject(new Error('ENOSPC: no space left on device, write'));
  (await pool.next(3000)).resolve({ kind: 'quarantined', reason: 'the test holds it' });
  for (let tries = 0; tries < 100 && state().state !== 'quarantined'; tries += 1) await sleep(10);
  const postponed = lines.filter((line) => line.msg === 'de-identification postponed: the machine is short of a resource');
  assert.equal(postponed.length, 1, 'five postponements, one line');
  assert.equal(postponed[0]?.postponed, 1, 'the first is logged at once');
});

test('settings go to the workers shared once, and again only after a reload changed them', async (t) => {
  const { writer, pool, scheduler, reload } = await setUp(t);
  await writer.submit(record('originals/a.dcm'));
  await writer.submit({ ...record('originals/b.dcm'), sopInstanceUid: '1.2.1.1.2' });
  scheduler.start();
  const [first, second] = [await pool.next(), await pool.next()];
  assert.equal(first.task.settings, second.task.settings, 'one shared copy for both tasks');
  reload(70);
  await writer.submit({ ...record('originals/c.dcm'), sopInstanceUid: '1.2.1.1.3' });
  first.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  const third = await pool.next();
  assert.notEqual(third.task.settings.version, first.task.settings.version);
  assert.equal(new SettingsCache().get(third.task.settings).base.maxAgeYears, 70, 'the reloaded settings reach the workers');
  second.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  third.resolve({ kind: 'quarantined', reason: 'the test holds it' });
});

test('outcomes finishing together are recorded together, and one that cannot be placed fails alone', async (t) => {
  const observer = recordingObserver();
  const { storagePath, writer, pool, scheduler } = await setUp(t, observer);
  const db = openDatabase(join(storagePath, 'index.sqlite'));
  t.after(() => db.close());
  const stateOf = (filePath: string) => (db.prepare('SELECT state FROM instances WHERE file_path = ?').pluck().get(filePath) as string | undefined) ?? 'missing';
  await writer.submit(record('originals/a.dcm'));
  await writer.submit({ ...record('originals/b.dcm'), sopInstanceUid: '1.2.1.1.2' });
  scheduler.start();
  const [first, second] = [await pool.next(), await pool.next()];
  // The first task's output never reached its temporary file: placing it fails.
  writeFileSync(second.task.temporary, 'OUTPUT');
  first.resolve(deidentified(TARGET));
  second.resolve(deidentified('deidentified/2.25.3/2.25.2/2.25.9.dcm', '2.25.9'));
  for (let tries = 0; tries < 100 && stateOf('originals/b.dcm') === 'received'; tries += 1) await sleep(10);
  assert.equal(stateOf('originals/a.dcm'), 'failed');
  assert.equal(stateOf('originals/b.dcm'), 'deidentified');
  assert.equal(readFileSync(join(storagePath, 'deidentified/2.25.3/2.25.2/2.25.9.dcm'), 'utf8'), 'OUTPUT');
  assert.deepEqual(observer.outcomes.sort(), ['failed', 'ok']);
  assert.equal(scheduler.running, 0);
});

test('outcomes whose transaction cannot commit are not recorded, and the outputs they placed are deleted again', async (t) => {
  const observer = recordingObserver();
  const { storagePath, writer, work, pool, scheduler, state } = await setUp(t, observer);
  // The transaction fails at its end, as a COMMIT that meets a full disk does.
  const inOneTransaction = work.inOneTransaction.bind(work);
  let failures = 1;
  work.inOneTransaction = <T>(fn: () => T): T =>
    inOneTransaction(() => {
      const result = fn();
      if (failures-- > 0) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      return result;
    });
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  const first = await pool.next();
  writeFileSync(first.task.temporary, 'OUTPUT');
  first.resolve(deidentified(TARGET));
  // Done again at the next poll (the scheduler backs off until then): then recorded.
  const again = await pool.next();
  assert.equal(state().state, 'received');
  assert.equal(existsSync(join(storagePath, TARGET)), false, 'no output without its record');
  assert.deepEqual(observer.outcomes, [], 'nothing counted');
  writeFileSync(again.task.temporary, 'OUTPUT');
  again.resolve(deidentified(TARGET));
  for (let tries = 0; tries < 100 && state().state !== 'deidentified'; tries += 1) await sleep(10);
  assert.equal(state().state, 'deidentified');
  assert.equal(readFileSync(join(storagePath, TARGET), 'utf8'), 'OUTPUT');
});

test('outcomes whose transaction SQLite rolled back whole are not recorded one by one outside it', async (t) => {
  const { db, writer, work, pool, scheduler } = await setUp(t);
  const states = () => (db.prepare('SELECT state FROM instances ORDER BY id').pluck().all() as string[]).join(' ');
  // What SQLite does on an I/O error inside a savepoint: it rolls back the whole transaction.
  const markDeidentified = work.markDeidentified.bind(work);
  let failures = 1;
  work.markDeidentified = (...args) => {
    if (failures-- <= 0) return markDeidentified(...args);
    db.exec('ROLLBACK');
    throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
  };
  await writer.submit(record('originals/a.dcm'));
  await writer.submit({ ...record('originals/b.dcm'), sopInstanceUid: '1.2.1.1.2' });
  scheduler.start();
  const [first, second] = [await pool.next(), await pool.next()];
  writeFileSync(first.task.temporary, 'OUTPUT');
  writeFileSync(second.task.temporary, 'OUTPUT');
  first.resolve(deidentified(TARGET));
  second.resolve(deidentified('deidentified/2.25.3/2.25.2/2.25.9.dcm', '2.25.9'));
  // Neither is recorded, the first not as failed: both are done again.
  const [again, againToo] = [await pool.next(), await pool.next()];
  assert.equal(states(), 'received received');
  assert.equal(db.inTransaction, false);
  again.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  againToo.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  for (let tries = 0; tries < 100 && states() !== 'quarantined quarantined'; tries += 1) await sleep(10);
  assert.equal(states(), 'quarantined quarantined');
});

test('instances waiting are looked up a batch at a time, not once per task', async (t) => {
  // No poll during the test: only the scheduler's own looks are counted.
  const { db, writer, work, pool, scheduler } = await setUp(t, undefined, 60_000);
  const waiting = work.waiting.bind(work);
  let looks = 0;
  work.waiting = (limit) => {
    looks += 1;
    return waiting(limit);
  };
  const count = 40;
  for (let n = 1; n <= count; n += 1) await writer.submit({ ...record(`originals/${n}.dcm`), sopInstanceUid: `1.2.1.1.${n}` });
  scheduler.start();
  for (let n = 1; n <= count; n += 1) (await pool.next()).resolve({ kind: 'quarantined', reason: 'the test holds it' });
  const held = () => db.prepare("SELECT count(*) FROM instances WHERE state = 'quarantined'").pluck().get() as number;
  for (let tries = 0; tries < 100 && held() < count; tries += 1) await sleep(10);
  assert.equal(held(), count);
  // A look finds the free slots' instances and 16 more (three looks for 40), and at the end each
  // finished task looks once more and finds none: 4-5 here, against one per task before (21-22).
  assert.ok(looks <= 8, `${looks} looks at the index for ${count} instances`);
});

test('the outcome of a copy whose row was deleted is not recorded against the next copy given its id and path', async (t) => {
  const { db, writer, pool, scheduler } = await setUp(t, undefined, 60_000);
  const row = () => db.prepare('SELECT id, state, received_at AS receivedAt FROM instances').get() as { id: number; state: string; receivedAt: number };
  const firstAt = Date.now();
  await writer.submit({ ...record('originals/a.dcm'), receivedAt: firstAt });
  scheduler.start();
  const stale = await pool.next();
  // The store failed after its commit: its row is taken back, and the sender's retry, from another
  // AE, gets the same id (the newest row's) and the same path (the same UID).
  const id = row().id;
  writer.takeBack('1.2.1.1.1');
  await writer.submit({ ...record('originals/a.dcm'), callingAeTitle: 'US_SCANNER_3', receivedAt: firstAt + 5000 });
  assert.equal(row().id, id);
  stale.resolve({ kind: 'quarantined', reason: 'decided for the first copy and its caller' });
  scheduler.nudge();
  const fresh = await pool.next();
  assert.equal(fresh.task.callingAeTitle, 'US_SCANNER_3');
  assert.equal(row().state, 'received', 'the first copy\'s outcome is not the second\'s');
  fresh.resolve({ kind: 'quarantined', reason: 'decided for the second copy' });
  for (let tries = 0; tries < 100 && row().state !== 'quarantined'; tries += 1) await sleep(10);
  assert.equal(row().state, 'quarantined');
});

/** Calls `stored` every 50 ms for `ms`, as a sender's stores do; resolves with the most tasks the pool held meanwhile. */
async function storesFor(scheduler: DeidScheduler, ms: number, pool: ManualPool): Promise<{ handedOverDuring: number }> {
  const until = performance.now() + ms;
  let handedOverDuring = 0;
  for (let n = 0; n < 1000 && performance.now() < until; n += 1) {
    scheduler.stored();
    await sleep(50);
    handedOverDuring = Math.max(handedOverDuring, pool.handedOver);
  }
  return { handedOverDuring };
}

test('receiving first: an instance waits while stores keep arriving, and starts once they pause', async (t) => {
  // A pause of a second ends the wait here, so that a slow machine's hiccup between stores does not.
  const quietMs = 1000;
  const receiveFirst = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 60_000 }), quietMs);
  // No poll during the test: only the scheduler's own timer may start it after the pause.
  const { writer, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  const { handedOverDuring } = await storesFor(scheduler, 1500, pool);
  assert.equal(handedOverDuring, 0, 'nothing was de-identified while stores arrived every 50 ms');
  const pausedAt = performance.now();
  const pending = await pool.next(quietMs + 2000);
  const waited = performance.now() - pausedAt;
  assert.ok(waited < quietMs + 1000, `started ${waited.toFixed(0)} ms after the last store`);
  pending.resolve({ kind: 'quarantined', reason: 'the test holds it' });
});

test('receiving first: stores that arrive while de-identification is held back do not each look at the index again', async (t) => {
  const quietMs = 1000;
  const receiveFirst = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 60_000 }), quietMs);
  const { writer, work, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  let looks = 0;
  const earliestArrivals = work.earliestArrivals.bind(work);
  work.earliestArrivals = (limit) => {
    looks += 1;
    return earliestArrivals(limit);
  };
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  await storesFor(scheduler, 1500, pool);
  // About 30 stores: the first holds back, the hold's timer looks again about once a second.
  assert.ok(looks <= 5, `${looks} looks at the first arrival during 1.5 s of stores`);
  const pending = await pool.next(quietMs + 2000);
  pending.resolve({ kind: 'quarantined', reason: 'the test holds it' });
});

// Measured in bench/forward's e2e (CPU profile, 2026-11-30): once the first arrival had waited its
// longest, every slot filled while stores still arrived looked the first arrival up again, 3,437
// looks for 2,000 instances and 0.65 s of the event loop (each about 0.2 ms in the node's index).
test('receiving first: instances past their longest wait while stores keep arriving are handed out without a look at the index each', async (t) => {
  const receiveFirst = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 400 }));
  const { db, writer, work, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  let looks = 0;
  const earliestArrivals = work.earliestArrivals.bind(work);
  work.earliestArrivals = (limit) => {
    looks += 1;
    return earliestArrivals(limit);
  };
  const count = 40;
  // All received a minute ago: due, each of them.
  for (let n = 1; n <= count; n += 1) await writer.submit({ ...record(`originals/${n}.dcm`), sopInstanceUid: `1.2.1.1.${n}`, receivedAt: Date.now() - 60_000 });
  scheduler.start();
  const storing = storesFor(scheduler, 1500, pool);
  for (let n = 1; n <= count; n += 1) (await pool.next()).resolve({ kind: 'quarantined', reason: 'the test holds it' });
  const held = () => db.prepare("SELECT count(*) FROM instances WHERE state = 'quarantined'").pluck().get() as number;
  for (let tries = 0; tries < 100 && held() < count; tries += 1) await sleep(10);
  assert.equal(held(), count);
  assert.ok(looks <= 8, `${looks} looks at the first arrival for ${count} instances due`);
  await storing;
});

test('receiving first: an instance waits no longer than its longest wait, however busy the senders stay', async (t) => {
  const receiveFirst = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 400 }));
  const { writer, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  const a = record('originals/a.dcm');
  await writer.submit(a);
  scheduler.start();
  const storing = storesFor(scheduler, 3000, pool);
  const pending = await pool.next();
  const waited = Date.now() - a.receivedAt;
  // Timers never fire early: not before its longest wait; and well before the stores end.
  assert.ok(waited >= 395 && waited < 2000, `started ${waited} ms after it was received, while stores still arrived`);
  pending.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  await storing;
});

test('receiving first: the instance that arrived first decides, so a re-sent one (an old row arriving anew) holds back none that arrived before it', async (t) => {
  const receiveFirst = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 2000 }));
  const { writer, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  // A has the lower id and was just sent again; B arrived 1900 ms before that and is due in 100 ms.
  await writer.submit({ ...record('originals/a.dcm'), sopInstanceUid: '1.2.1.1.1' });
  await writer.submit({ ...record('originals/b.dcm'), sopInstanceUid: '1.2.1.1.2', receivedAt: Date.now() - 1900 });
  await writer.submit({ ...record('originals/a-again.dcm'), sopInstanceUid: '1.2.1.1.1' });
  const began = Date.now();
  scheduler.start();
  const storing = storesFor(scheduler, 3000, pool);
  const first = await pool.next();
  const second = await pool.next();
  const waited = Date.now() - began;
  assert.deepEqual([first.task.input, second.task.input].map((input) => input.replace(/.*\//, '')).sort(), ['a-again.dcm', 'b.dcm']);
  // Held by A's arrival instead, both would start about 2000 ms in.
  assert.ok(waited < 1000, `B started ${waited} ms later, past its longest wait`);
  first.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  second.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  await storing;
});

test('receiving first: an instance already being de-identified does not end the wait of those after it', async (t) => {
  const receiveFirst = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 1500 }));
  const { writer, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  // A waited its longest already; B and C have just arrived.
  await writer.submit({ ...record('originals/a.dcm'), sopInstanceUid: '1.2.1.1.1', receivedAt: Date.now() - 60_000 });
  const b = { ...record('originals/b.dcm'), sopInstanceUid: '1.2.1.1.2' };
  await writer.submit(b);
  await writer.submit({ ...record('originals/c.dcm'), sopInstanceUid: '1.2.1.1.3' });
  scheduler.start();
  const storing = storesFor(scheduler, 4000, pool);
  const first = await pool.next();
  assert.match(first.task.input, /a\.dcm$/, 'A goes at once');
  // A stays in flight (the pool holds it): B and C still wait for the senders.
  await sleep(600);
  assert.equal(pool.handedOver, 0, 'nothing else started while A was being de-identified');
  const second = await pool.next(3000);
  const waited = Date.now() - b.receivedAt;
  assert.match(second.task.input, /b\.dcm$/);
  assert.ok(waited >= 1495, `B started ${waited} ms after it arrived`);
  first.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  second.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  await storing;
});

test('receiving first: an instance de-identified before the stores began, recorded while they go on, does not end the wait of those after it', async (t) => {
  const receiveFirst = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 1500 }));
  const { writer, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  // A arrived long ago and goes at once, while no stores arrive.
  await writer.submit({ ...record('originals/a.dcm'), sopInstanceUid: '1.2.1.1.1', receivedAt: Date.now() - 60_000 });
  scheduler.start();
  const first = await pool.next();
  assert.match(first.task.input, /a\.dcm$/);
  // Then a burst: B arrives, and waits for the senders while A is still being de-identified.
  const b = { ...record('originals/b.dcm'), sopInstanceUid: '1.2.1.1.2' };
  await writer.submit(b);
  const storing = storesFor(scheduler, 4000, pool);
  await sleep(300);
  // A's outcome is recorded: it waits no longer, and its arrival no longer decides.
  first.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  const second = await pool.next(3000);
  const waited = Date.now() - b.receivedAt;
  assert.match(second.task.input, /b\.dcm$/);
  assert.ok(waited >= 1495, `B started ${waited} ms after it arrived, while stores still arrived`);
  second.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  await storing;
});

test('receiving first: a wall clock set back does not stretch the wait of what arrived before', async (t) => {
  const receiveFirst = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 400 }));
  const { writer, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  // A arrived before the clock was set back a minute: its received_at is a minute ahead of now.
  await writer.submit({ ...record('originals/a.dcm'), sopInstanceUid: '1.2.1.1.1', receivedAt: Date.now() + 60_000 });
  scheduler.start();
  const storing = storesFor(scheduler, 3000, pool);
  await sleep(100);
  // The senders keep storing: B arrives after the step.
  const b = { ...record('originals/b.dcm'), sopInstanceUid: '1.2.1.1.2' };
  await writer.submit(b);
  const first = await pool.next();
  const waited = Date.now() - b.receivedAt;
  assert.match(first.task.input, /a\.dcm$/, 'the older row goes first');
  assert.ok(waited >= 395 && waited < 2000, `started ${waited} ms after B arrived, while stores still arrived`);
  first.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  (await pool.next()).resolve({ kind: 'quarantined', reason: 'the test holds it' });
  await storing;
});

test('receiving first, switched off: an instance starts at once while stores arrive', async (t) => {
  const receiveFirst = new ReceiveFirst(() => ({ enabled: false, maxWaitMs: 60_000 }));
  const { writer, pool, scheduler } = await setUp(t, undefined, 60_000, receiveFirst);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  const storing = storesFor(scheduler, 600, pool);
  const began = performance.now();
  const pending = await pool.next();
  assert.ok(performance.now() - began < 200, 'handed over at once');
  pending.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  await storing;
});

test('ReceiveFirst: the wait ends at the pause or at the longest wait, whichever comes first', () => {
  let enabled = true;
  const first = new ReceiveFirst(() => ({ enabled, maxWaitMs: 1000 }), 250);
  const at = (wall: number, monotonic: number) => ({ wall, monotonic });
  const arrived = (receivedAt: number | undefined) => () => receivedAt;
  assert.equal(first.waitMs(arrived(0), at(10_000, 500)), 0, 'no store seen yet: no wait');
  first.stored(500);
  assert.equal(first.waitMs(arrived(9_900), at(10_000, 500)), 250, 'the pause ends it first');
  assert.equal(first.waitMs(arrived(9_000), at(10_100, 600)), 0, 'received 1100 ms ago: waited its longest');
  assert.equal(first.waitMs(arrived(9_200), at(10_100, 600)), 100, 'due before the pause');
  assert.equal(first.waitMs(arrived(undefined), at(10_100, 600)), 0, 'nothing waits');
  assert.equal(first.waitMs(arrived(10_000), at(10_300, 800)), 0, 'the senders paused');
  let asked = false;
  first.waitMs(() => {
    asked = true;
    return 0;
  }, at(10_300, 800));
  assert.equal(asked, false, 'the index is not asked once the senders paused');
  first.stored(800);
  assert.equal(first.waitMs(arrived(10_000), at(7_000, 800)), 250, 'the wall clock set back 3 s: the pause is timed on the monotonic clock');
  const longWait = new ReceiveFirst(() => ({ enabled: true, maxWaitMs: 1000 }), 60_000);
  longWait.stored(0);
  assert.equal(longWait.waitMs(arrived(10_000), at(4_000, 0)), 1000, 'never more than the longest wait at one time');
  enabled = false;
  first.stored(800);
  assert.equal(first.waitMs(arrived(10_000), at(10_000, 800)), 0, 'switched off');
});

// An instance with a very large header (an RT Structure Set of tens of thousands of contours) ran a
// thread out of its 96 MB heap and was recorded as failed for good, with piscina's message only.
test('an instance that runs a thread out of memory is done again in the large-instance thread, and one beside it is not held up', async (t) => {
  const observer = recordingObserver();
  const large = new ManualPool();
  const { storagePath, writer, pool, scheduler, db } = await setUp(t, observer, 50, undefined, undefined, large);
  const stateOf = (filePath: string) => db.prepare('SELECT state FROM instances WHERE file_path = ?').pluck().get(filePath) as string;
  await writer.submit(record('originals/large.dcm'));
  await writer.submit({ ...record('originals/normal.dcm'), sopInstanceUid: '1.2.1.1.2' });
  scheduler.start();
  const [huge, normal] = [await pool.next(), await pool.next()];
  huge.reject(outOfMemoryError());
  const again = await large.next();
  assert.equal(again.task.input, huge.task.input, 'the same instance, in the large-instance thread');
  writeFileSync(normal.task.temporary, 'NORMAL');
  normal.resolve(deidentified('deidentified/2.25.3/2.25.2/2.25.9.dcm', '2.25.9'));
  for (let tries = 0; tries < 100 && stateOf('originals/normal.dcm') === 'received'; tries += 1) await sleep(10);
  assert.equal(stateOf('originals/normal.dcm'), 'deidentified', 'the instance beside it is recorded while the large one runs');
  assert.equal(stateOf('originals/large.dcm'), 'received', 'not failed while it is done again');
  writeFileSync(again.task.temporary, 'LARGE');
  again.resolve(deidentified(TARGET));
  for (let tries = 0; tries < 100 && stateOf('originals/large.dcm') === 'received'; tries += 1) await sleep(10);
  assert.equal(stateOf('originals/large.dcm'), 'deidentified');
  assert.equal(readFileSync(join(storagePath, TARGET), 'utf8'), 'LARGE');
  assert.deepEqual(observer.outcomes.sort(), ['ok', 'ok'], 'each outcome recorded once');
  assert.equal(pool.handedOver + large.handedOver, 0, 'no task handed out again');
});

test('instances waiting for the large-instance thread leave their slots to the next instances', async (t) => {
  const large = new ManualPool();
  const { writer, pool, scheduler, db } = await setUp(t, undefined, 50, undefined, undefined, large);
  const stateOf = (filePath: string) => db.prepare('SELECT state FROM instances WHERE file_path = ?').pluck().get(filePath) as string;
  await writer.submit(record('originals/large-1.dcm'));
  await writer.submit({ ...record('originals/large-2.dcm'), sopInstanceUid: '1.2.1.1.2' });
  await writer.submit({ ...record('originals/normal.dcm'), sopInstanceUid: '1.2.1.1.3' });
  scheduler.start();
  // Two slots (maxInFlight): both large instances, which run their threads out of memory.
  (await pool.next()).reject(outOfMemoryError());
  (await pool.next()).reject(outOfMemoryError());
  const first = await large.next();
  // The second waits behind the first in the large-instance thread; the normal one runs meanwhile.
  const normal = await pool.next();
  assert.equal(normal.task.input.endsWith('normal.dcm'), true);
  writeFileSync(normal.task.temporary, 'NORMAL');
  normal.resolve(deidentified('deidentified/2.25.3/2.25.2/2.25.9.dcm', '2.25.9'));
  for (let tries = 0; tries < 100 && stateOf('originals/normal.dcm') === 'received'; tries += 1) await sleep(10);
  assert.equal(stateOf('originals/normal.dcm'), 'deidentified');
  first.resolve({ kind: 'quarantined', reason: 'the test holds it' });
  (await large.next()).resolve({ kind: 'quarantined', reason: 'the test holds it' });
  for (let tries = 0; tries < 100 && stateOf('originals/large-2.dcm') === 'received'; tries += 1) await sleep(10);
  assert.deepEqual([stateOf('originals/large-1.dcm'), stateOf('originals/large-2.dcm')], ['quarantined', 'quarantined']);
  assert.equal(scheduler.running, 0);
});

test('an instance that runs the large-instance thread out of memory too is recorded as failed once, saying what to change', async (t) => {
  const observer = recordingObserver();
  const large = new ManualPool();
  const { writer, pool, scheduler, db, state } = await setUp(t, observer, 50, undefined, undefined, large);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  (await pool.next()).reject(outOfMemoryError());
  (await large.next()).reject(outOfMemoryError());
  for (let tries = 0; tries < 100 && state().state !== 'failed'; tries += 1) await sleep(10);
  assert.equal(state().state, 'failed');
  const reason = db.prepare('SELECT state_reason FROM instances').pluck().get() as string;
  assert.match(reason, /^ERR_WORKER_OUT_OF_MEMORY: .*deid\.largeInstanceHeapMb \(256 MB\).*raise it/);
  // Polls pass: the failed instance is not tried again on its own.
  await sleep(200);
  assert.equal(pool.handedOver + large.handedOver, 0, 'tried once in each thread, not again');
  assert.deepEqual(observer.outcomes, ['failed']);
});

test('without a large-instance thread (deid.largeInstanceHeapMb: 0), an instance out of memory fails at once, saying which key to set', async (t) => {
  const { writer, pool, scheduler, db, state } = await setUp(t);
  await writer.submit(record('originals/a.dcm'));
  scheduler.start();
  (await pool.next()).reject(outOfMemoryError());
  for (let tries = 0; tries < 100 && state().state !== 'failed'; tries += 1) await sleep(10);
  assert.equal(state().state, 'failed');
  assert.match(db.prepare('SELECT state_reason FROM instances').pluck().get() as string, /96 MB heap; set deid\.largeInstanceHeapMb/);
});
