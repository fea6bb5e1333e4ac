/**
 * Instances by state and outbox items by destination and state, kept by triggers (migration 020) so
 * that a Prometheus scrape reads a few rows, not the whole index: the counts start from the rows of an
 * index that had them, and every way of writing keeps them equal to a count of the rows.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDatabase, type Db } from '../../src/db/database.js';
import { MIGRATIONS } from '../../src/db/migrations/index.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { Outbox } from '../../src/queue/outbox.js';
import { instanceRecord, openTestIndex } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

/** What a count of the rows says, in the shapes countsByState and Outbox.counts give. */
function countedRows(db: Db): { byState: Record<string, number>; outbox: unknown[] } {
  const rows = db.prepare('SELECT state, count(*) AS count FROM instances GROUP BY state').all() as Array<{ state: string; count: number }>;
  const outbox = db
    .prepare(
      `SELECT destination, sum(state = 'queued') AS queued, sum(state = 'sent') AS sent, sum(state = 'dead') AS dead,
         min(CASE WHEN state = 'queued' THEN queued_at END) AS oldestQueuedAt
       FROM forward_outbox GROUP BY destination ORDER BY destination`,
    )
    .all();
  return { byState: Object.fromEntries(rows.map((row) => [row.state, row.count])), outbox };
}

function assertCountsMatchRows(db: Db, step: string): void {
  const rows = countedRows(db);
  assert.deepEqual(new InstanceIndex(db).countsByState(), rows.byState, `instances by state, ${step}`);
  assert.deepEqual(new Outbox(db).counts(), rows.outbox, `outbox counts, ${step}`);
  // Their bytes too (migration 027): the originals waiting reserve room for their copies (free-space.ts).
  const bytes = db.prepare('SELECT state, sum(file_size) AS bytes FROM instances GROUP BY state ORDER BY state').all();
  assert.deepEqual(db.prepare('SELECT state, bytes FROM instance_state_counts WHERE count > 0 ORDER BY state').all(), bytes, `bytes by state, ${step}`);
  const waiting = db.prepare(`SELECT coalesce(sum(file_size), 0) FROM instances WHERE state = 'received'`).pluck().get();
  assert.equal(new InstanceIndex(db).waitingBytes(), waiting, `bytes waiting, ${step}`);
}

/** An outbox item of `instancePk` for `destination`, written as Outbox's route writes it (an upsert
 * that puts an item sent or dead back in the queue), one row per statement. */
function enqueue(db: Db, destination: string, instancePk: number, now: number): void {
  db.prepare(
    `INSERT INTO forward_outbox (destination, instance_pk, file_path, sop_class_uid, sop_instance_uid, transfer_syntax_uid, study_pk, routed_at, state, attempts, next_attempt_at, queued_at)
     VALUES (@destination, @instancePk, 'deid/x.dcm', '1.2.840.10008.5.1.4.1.1.2', '2.25.' || @instancePk, '1.2.840.10008.1.2.1', 1, @now, 'queued', 0, @now, @now)
     ON CONFLICT (destination, instance_pk) DO UPDATE SET state = 'queued', queued_at = excluded.queued_at, sent_at = NULL`,
  ).run({ destination, instancePk, now });
}

test('migration 20 counts the instances and outbox items of an index that has them', () => {
  const file = join(scratchDir('state-counts-migration'), 'index.sqlite');
  const before = openDatabase(file, MIGRATIONS.filter((migration) => migration.version <= 17));
  // Written in SQL: InstanceIndex of this version reads the counts, which a version 17 index lacks.
  before.exec(`
    INSERT INTO patients (id, patient_key, patient_id, created_at, updated_at) VALUES (1, '|P1', 'P1', 1, 1);
    INSERT INTO studies (id, study_instance_uid, patient_pk, created_at, last_received_at) VALUES (1, '1.2.1', 1, 1, 1);
    INSERT INTO series (id, series_instance_uid, study_pk, created_at, last_received_at) VALUES (1, '1.2.1.1', 1, 1, 1);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12)
    INSERT INTO instances (id, sop_instance_uid, series_pk, sop_class_uid, transfer_syntax_uid, file_path, file_size, calling_ae_title, received_at, state_changed_at)
      SELECT i, '1.2.1.1.' || i, 1, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', 'originals/' || i || '.dcm', 10, 'CT01', 1, 1 FROM n;
  `);
  before.exec(`UPDATE instances SET state = 'forwarded' WHERE id <= 6; UPDATE instances SET state = 'quarantined' WHERE id = 7;
    UPDATE instances SET state = 'deidentified' WHERE id IN (8, 9)`);
  for (let id = 1; id <= 6; id += 1) enqueue(before, 'archive', id, 1000 + id);
  for (let id = 1; id <= 3; id += 1) enqueue(before, 'research', id, 2000 + id);
  before.exec(`UPDATE forward_outbox SET state = 'sent' WHERE destination = 'archive' AND instance_pk <= 3;
    UPDATE forward_outbox SET state = 'dead' WHERE destination = 'research' AND instance_pk = 1`);
  const rows = countedRows(before);
  before.close();

  const db = openDatabase(file);
  try {
    // Every state has its row, at 0 when no instance has it, so that the triggers only ever update.
    assert.deepEqual(db.prepare('SELECT state, count FROM instance_state_counts ORDER BY state').all(), [
      { state: 'deidentified', count: 2 },
      { state: 'failed', count: 0 },
      { state: 'forwarded', count: 6 },
      { state: 'quarantined', count: 1 },
      { state: 'received', count: 3 },
    ]);
    assert.deepEqual(new InstanceIndex(db).countsByState(), { received: 3, deidentified: 2, quarantined: 1, forwarded: 6 });
    assert.deepEqual(new Outbox(db).counts(), [
      { destination: 'archive', queued: 3, sent: 3, dead: 0, oldestQueuedAt: 1004 },
      { destination: 'research', queued: 2, sent: 0, dead: 1, oldestQueuedAt: 2002 },
    ]);
    assert.deepEqual(countedRows(db), rows, 'the rows themselves are as they were');
  } finally {
    db.close();
  }
});

test('the counts follow every write: receive, receive again, state changes, deletes and their cascade, re-queue, purge', (t) => {
  const { db, index } = openTestIndex(t, scratchDir('state-counts-writes'));
  const upsert = db.transaction((n: number, fileSize?: number) => index.upsert(instanceRecord(n, fileSize === undefined ? {} : { fileSize })));
  assertCountsMatchRows(db, 'empty');
  for (let n = 1; n <= 8; n += 1) upsert(n, 1000 + n);
  assertCountsMatchRows(db, 'received');
  // Received again while it waits, in a copy of another size: its state stays, its bytes change.
  upsert(5, 4321);
  assertCountsMatchRows(db, 'received again, another size');
  db.exec(`UPDATE instances SET state = 'deidentified' WHERE id <= 6; UPDATE instances SET state = 'failed' WHERE id = 7`);
  // A write that leaves the state as it was: no count moves.
  db.exec(`UPDATE instances SET state = 'deidentified', state_changed_at = 5 WHERE id = 1`);
  assertCountsMatchRows(db, 'de-identified');
  for (let id = 1; id <= 6; id += 1) enqueue(db, 'archive', id, 100 + id);
  for (let id = 1; id <= 2; id += 1) enqueue(db, 'research', id, 200 + id);
  db.exec(`UPDATE instances SET state = 'forwarded' WHERE id <= 2; UPDATE forward_outbox SET state = 'sent', sent_at = 1 WHERE instance_pk <= 2`);
  db.exec(`UPDATE forward_outbox SET state = 'dead' WHERE destination = 'archive' AND instance_pk = 3`);
  assertCountsMatchRows(db, 'routed and partly sent');
  // Received again: the upsert's update of a forwarded row, which fires no insert trigger.
  upsert(1);
  enqueue(db, 'archive', 3, 300);
  assertCountsMatchRows(db, 'received again and re-queued');
  // A quarantined instance deleted takes its outbox items with it (ON DELETE CASCADE).
  db.exec(`DELETE FROM instances WHERE id = 2`);
  index.deleteInstance(instanceRecord(8).sopInstanceUid);
  assertCountsMatchRows(db, 'deleted');
  // gantry queue purge: a destination whose items are all gone leaves the counts.
  db.exec(`DELETE FROM forward_outbox WHERE destination = 'research'`);
  assertCountsMatchRows(db, 'purged');
  assert.deepEqual(
    new Outbox(db).counts().map((row) => row.destination),
    ['archive'],
  );
});

test('a scrape reads the kept counts, not the rows (a count of the rows took 164 ms with 2,000,000 instances)', (t) => {
  const { db, index } = openTestIndex(t, scratchDir('state-counts-read'));
  db.transaction(() => index.upsert(instanceRecord(1)))();
  enqueue(db, 'archive', 1, 100);
  // Counts that no row backs: only a reader of the kept counts reports them.
  db.exec(`UPDATE instance_state_counts SET count = 2000000 WHERE state = 'forwarded';
    UPDATE forward_outbox_counts SET count = 2850000 WHERE destination = 'archive' AND state = 'queued'`);
  assert.equal(index.countsByState()['forwarded'], 2_000_000);
  assert.equal(new Outbox(db).counts()[0]?.queued, 2_850_000);
  assert.equal(new Outbox(db).counts()[0]?.oldestQueuedAt, 100, 'the oldest queued item is read from the queued items themselves');
});
