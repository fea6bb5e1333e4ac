/** The de-identification audit on the index: bulk and per-instance writes, each distinct text stored
 * once, and ids of texts that a rolled-back transaction added never named later. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyMigrations, openDatabase, type Db } from '../../src/db/database.js';
import { MIGRATIONS } from '../../src/db/migrations/index.js';
import { auditText } from '../../src/deid/audit-text.js';
import { DeidAudit, type EncodedAudit } from '../../src/index/deid-audit.js';
import { DeidWork, type DeidentifiedRecord, type SourceCopy } from '../../src/index/deid-work.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { QuarantineWork } from '../../src/index/quarantine-work.js';
import { instanceRecord } from '../helpers/index-records.js';
import { countRows, openScratchIndex } from '../helpers/scratch-index.js';
import { scratchDir } from '../helpers/scratch.js';

/** Indexes instances n = 1..count and returns their row ids. */
function indexInstances(db: Db, count: number): number[] {
  const index = new InstanceIndex(db);
  const ids: number[] = [];
  for (let n = 1; n <= count; n += 1) {
    index.upsert(instanceRecord(n, { attributes: { PatientName: 'Doe^Jane', PatientID: 'MRN-1', Modality: 'CT' } }));
    ids.push(db.prepare('SELECT id FROM instances WHERE sop_instance_uid = ?').pluck().get(`1.2.1.1.${n}`) as number);
  }
  return ids;
}

const FINDING = { code: 'identifier-in-text', message: "StudyDescription quotes the patient's name or an identifier", path: '(0008,1030)' };
const NAME_ENTRY = { path: '(0010,0010)', keyword: 'PatientName', action: 'dummy' };
const UID_ENTRY = { path: '(0008,0018)', keyword: 'SOPInstanceUID', action: 'uid' };

/**
 * Instances n = 1..count written in SQL, for a schema older than the code: InstanceIndex's statements
 * name the newest columns. Returns their row ids.
 */
function insertInstanceRows(db: Db, count: number): number[] {
  db.exec(`INSERT INTO patients (id, patient_key, patient_id, created_at, updated_at) VALUES (1, 'MRN-1', 'MRN-1', 0, 0);
    INSERT INTO studies (id, study_instance_uid, patient_pk, created_at, last_received_at) VALUES (1, '1.2.1', 1, 0, 0);
    INSERT INTO series (id, series_instance_uid, study_pk, created_at, last_received_at) VALUES (1, '1.2.1.1', 1, 0, 0);`);
  const insert = db.prepare(`INSERT INTO instances (sop_instance_uid, series_pk, sop_class_uid, transfer_syntax_uid, file_path, file_size,
    calling_ae_title, received_at, state_changed_at) VALUES (?, 1, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', ?, 10, 'CT01', 0, 0)`);
  return Array.from({ length: count }, (_, n) => Number(insert.run(`1.2.1.1.${n + 1}`, `originals/${n + 1}.dcm`).lastInsertRowid));
}

/** Audit rows whose entries or findings name no text (rows name texts without a foreign key). */
/** The copy an instance's row holds, as a de-identification that read it names it. */
function copyOf(db: Db, id: number): SourceCopy {
  return db.prepare('SELECT file_path AS filePath, received_at AS receivedAt FROM instances WHERE id = ?').get(id) as SourceCopy;
}

function danglingTextIds(db: Db): number {
  return db
    .prepare(`SELECT count(*) FROM deid_audit a WHERE a.entries_id NOT IN (SELECT id FROM audit_texts) OR a.findings_id NOT IN (SELECT id FROM audit_texts)`)
    .pluck()
    .get() as number;
}

function encoded(instancePk: number, entries: unknown[], findings: unknown[]): EncodedAudit {
  return { instancePk, entries: auditText(entries), findings: auditText(findings) };
}

test('recordAudits writes every instance’s audit, seen by the quarantine’s reader', (t) => {
  const db = openScratchIndex(t, 'deid-audit');
  const [first, second] = indexInstances(db, 2) as [number, number];
  const work = new DeidWork(db);
  work.recordAudits([encoded(first, [NAME_ENTRY], [FINDING]), encoded(second, [UID_ENTRY], [])], 1234);
  assert.equal(countRows(db, 'deid_audit'), 2);
  assert.deepEqual(work.auditOf(first), { entries: [NAME_ENTRY], findings: [FINDING], createdAt: 1234 });
  assert.deepEqual(work.auditOf(second), { entries: [UID_ENTRY], findings: [], createdAt: 1234 });
  assert.deepEqual(new QuarantineWork(db).show(first)?.findings, [FINDING]);
});

test('a bulk write of more rows than one statement holds stores each distinct text once', (t) => {
  const db = openScratchIndex(t, 'deid-audit');
  // 50 rows per statement: two full statements and a remainder of 23 written one by one.
  const ids = indexInstances(db, 123);
  const work = new DeidWork(db);
  work.recordAudits(ids.map((id, n) => encoded(id, n % 2 === 0 ? [NAME_ENTRY, UID_ENTRY] : [UID_ENTRY], n === 122 ? [FINDING] : [])), 99);
  assert.equal(countRows(db, 'deid_audit'), 123);
  assert.equal(countRows(db, 'audit_texts'), 4, 'two entry lists and two findings lists');
  ids.forEach((id, n) =>
    assert.deepEqual(work.auditOf(id), { entries: n % 2 === 0 ? [NAME_ENTRY, UID_ENTRY] : [UID_ENTRY], findings: n === 122 ? [FINDING] : [], createdAt: 99 }),
  );
});

test('recordAudits replaces the audit the quarantine path wrote', (t) => {
  const db = openScratchIndex(t, 'deid-audit');
  const [id] = indexInstances(db, 1) as [number];
  const work = new DeidWork(db);
  assert.equal(work.markQuarantinedWithFindings(id, copyOf(db, id), 'identifier in text', auditText([NAME_ENTRY]), [FINDING]), true);
  assert.deepEqual(work.auditOf(id)?.findings, [FINDING]);
  work.recordAudits([encoded(id, [], [])], 5678);
  assert.equal(countRows(db, 'deid_audit'), 1);
  assert.deepEqual(work.auditOf(id), { entries: [], findings: [], createdAt: 5678 });
  assert.deepEqual(new QuarantineWork(db).show(id)?.findings, []);
});

test('recordAudits for an instance that is not indexed records nothing of the batch (foreign key, one transaction)', (t) => {
  const db = openScratchIndex(t, 'deid-audit');
  const [id] = indexInstances(db, 1) as [number];
  const work = new DeidWork(db);
  assert.throws(() => work.recordAudits([encoded(id, [], [FINDING]), encoded(id + 1000, [], [FINDING])]), /FOREIGN KEY/);
  assert.equal(countRows(db, 'deid_audit'), 0);
  assert.equal(countRows(db, 'audit_texts'), 0);
});

test('a text added by a rolled-back write is not named later, when its id has gone to another text', (t) => {
  const db = openScratchIndex(t, 'deid-audit');
  const [id, other] = indexInstances(db, 2) as [number, number];
  const work = new DeidWork(db);
  // Its own transaction rolls back (foreign key) after adding [NAME_ENTRY]'s text.
  assert.throws(() => work.recordAudits([encoded(id, [NAME_ENTRY], []), encoded(id + 1000, [NAME_ENTRY], [])]), /FOREIGN KEY/);
  // A caller's transaction rolls back after the write added [UID_ENTRY]'s text.
  assert.throws(() =>
    db.transaction(() => {
      work.recordAudits([encoded(other, [UID_ENTRY], [])]);
      throw new Error('the caller changed its mind');
    })(),
  );
  // The rolled-back ids are free again: other texts take them.
  work.recordAudits([encoded(id, [{ path: '(0008,0020)', keyword: 'StudyDate', action: 'clean' }], [FINDING])]);
  work.recordAudits([encoded(id, [NAME_ENTRY], []), encoded(other, [UID_ENTRY], [])], 7);
  assert.deepEqual(work.auditOf(id), { entries: [NAME_ENTRY], findings: [], createdAt: 7 });
  assert.deepEqual(work.auditOf(other)?.entries, [UID_ENTRY]);
  assert.deepEqual(work.auditOf(other)?.findings, []);
  assert.equal(danglingTextIds(db), 0);
});

test('a text that a caught savepoint rolled back, inside a transaction that commits, is not named later', (t) => {
  const db = openScratchIndex(t, 'deid-audit');
  const [id, other] = indexInstances(db, 2) as [number, number];
  const audit = new DeidAudit(db);
  audit.transaction(() => {
    assert.throws(() =>
      db.transaction(() => {
        audit.write([encoded(id, [NAME_ENTRY], [])], 1);
        throw new Error('this part is given up');
      })(),
    );
    // The id [NAME_ENTRY]'s text had is free again: this text takes it.
    audit.write([encoded(other, [UID_ENTRY], [FINDING])], 2);
  });
  audit.write([encoded(id, [NAME_ENTRY], [])], 3);
  assert.deepEqual(audit.read(id), { entries: [NAME_ENTRY], findings: [], createdAt: 3 });
  assert.deepEqual(audit.read(other), { entries: [UID_ENTRY], findings: [FINDING], createdAt: 2 });
  assert.equal(danglingTextIds(db), 0);
});

test('markDeidentified whose placing fails records no audit, and its text is not named later', (t) => {
  const db = openScratchIndex(t, 'deid-audit');
  const [id, other] = indexInstances(db, 2) as [number, number];
  const work = new DeidWork(db);
  const record = (n: number, entries: unknown[]): DeidentifiedRecord => ({
    filePath: `deidentified/${n}.dcm`,
    fileSize: 10,
    sopInstanceUid: `2.25.${n}`,
    seriesInstanceUid: '2.25.100',
    studyInstanceUid: '2.25.200',
    profile: 'basic',
    audit: auditText(entries),
    findings: [],
    attributes: { PatientID: 'PSEUDO', Modality: 'CT' },
  });
  assert.throws(
    () =>
      work.markDeidentified(id, copyOf(db, id), record(1, [NAME_ENTRY]), () => {
        throw new Error('the disk is full');
      }),
    /the disk is full/,
  );
  assert.equal(work.auditOf(id), undefined);
  assert.equal(work.markDeidentified(other, copyOf(db, other), record(2, [UID_ENTRY])), true);
  assert.equal(work.markDeidentified(id, copyOf(db, id), record(1, [NAME_ENTRY])), true);
  assert.deepEqual(work.auditOf(id)?.entries, [NAME_ENTRY]);
  assert.deepEqual(work.auditOf(other)?.entries, [UID_ENTRY]);
  assert.equal(danglingTextIds(db), 0);
});

test('migration 11 keeps every audit written before it, page after page, each distinct text once, under its digest', (t) => {
  const file = join(scratchDir('deid-audit-migration'), 'index.sqlite');
  const db = openDatabase(file, MIGRATIONS.filter((migration) => migration.version < 11));
  t.after(() => db.close());
  // More rows than the migration's page of 512, with three entries texts and two findings texts.
  const ids = insertInstanceRows(db, 600);
  const entriesOf = (n: number) => [[NAME_ENTRY], [UID_ENTRY], [NAME_ENTRY, UID_ENTRY]][n % 3] as unknown[];
  const findingsOf = (n: number) => (n % 2 === 0 ? [FINDING] : []);
  const insert = db.prepare('INSERT INTO deid_audit (instance_pk, entries, findings, created_at) VALUES (?, ?, ?, ?)');
  ids.forEach((id, n) => insert.run(id, JSON.stringify(entriesOf(n)), JSON.stringify(findingsOf(n)), n));
  assert.deepEqual(applyMigrations(db, MIGRATIONS), MIGRATIONS.filter((migration) => migration.version >= 11).map((migration) => migration.version));
  const work = new DeidWork(db);
  assert.equal(countRows(db, 'deid_audit'), 600);
  ids.forEach((id, n) => assert.deepEqual(work.auditOf(id), { entries: entriesOf(n), findings: findingsOf(n), createdAt: n }));
  assert.equal(countRows(db, 'audit_texts'), 5);
  // A text written after it is found under the same digest.
  work.recordAudits([encoded(ids[0] as number, [UID_ENTRY], [FINDING])]);
  assert.equal(countRows(db, 'audit_texts'), 5);
  // Deleting an instance still takes its audit row with it.
  db.prepare('DELETE FROM instances WHERE id = ?').run(ids[1]);
  assert.equal(countRows(db, 'deid_audit'), 599);
});
