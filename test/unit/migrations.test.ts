/** Schema migrations on an index with data in it, opened by the commands while a node may run. */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openIndex } from '../../src/cli/queue.js';
import { parseConfigText } from '../../src/config/load.js';
import { openDatabase, type Migration } from '../../src/db/database.js';
import { MIGRATIONS } from '../../src/db/migrations/index.js';
import { openSession } from '../../src/session/session.js';
import { scratchDir } from '../helpers/scratch.js';

const NEWEST = Math.max(...MIGRATIONS.map((migration) => migration.version));

/** An index left at schema version 10 by an older Gantry, with an instance and its audit in it. */
function indexAtVersion10(storagePath: string): void {
  const db = openDatabase(join(storagePath, 'index.sqlite'), MIGRATIONS.filter((migration) => migration.version <= 10));
  db.exec(`
    INSERT INTO patients (id, patient_key, patient_id, created_at, updated_at) VALUES (1, '|P1', 'P1', 1, 1);
    INSERT INTO studies (id, study_instance_uid, patient_pk, created_at, last_received_at) VALUES (1, '1.2.1', 1, 1, 1);
    INSERT INTO series (id, series_instance_uid, study_pk, created_at, last_received_at) VALUES (1, '1.2.1.1', 1, 1, 1);
    INSERT INTO instances (id, sop_instance_uid, series_pk, sop_class_uid, transfer_syntax_uid, file_path, file_size, calling_ae_title, received_at, state, state_changed_at)
      VALUES (1, '1.2.1.1.1', 1, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', 'originals/1.dcm', 10, 'CT01', 1, 'deidentified', 1);
    INSERT INTO deid_audit (instance_pk, entries, findings, created_at) VALUES (1, '[]', '[]', 1);
  `);
  db.close();
}

function versionOf(storagePath: string): number {
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT max(version) FROM schema_migrations').pluck().get() as number;
  } finally {
    db.close();
  }
}

async function started(t: TestContext, child: ChildProcess): Promise<void> {
  t.after(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('running') && resolve());
    child.once('exit', (code) => reject(new Error(`the node stand-in exited (${code})`)));
  });
}

function commandConfig(storagePath: string) {
  return { config: parseConfigText(JSON.stringify({ storage: { path: storagePath } }), 'test.yaml', {}), source: 'test.yaml', embedded: false };
}

// docs/operations.md section 9 warned not to run a command of the new version while the old node
// still runs, but nothing stopped it: `gantry status` after installing, before the restart, migrated
// the index under the running node. Past migration 11 that node's writes of audits name columns
// that are gone, so every de-identification it then records fails. The node of before the lock on
// gantry.lock is known by its marker (gantry.running) and a live process of that PID.
test('a command refuses to migrate an index under a running node of an older version (known by its marker)', async (t) => {
  const storagePath = scratchDir('migrate-under-old-node');
  indexAtVersion10(storagePath);
  const node = spawn(process.execPath, ['-e', `process.stdout.write('running\\n'); setInterval(() => {}, 1000)`, 'gantry', 'serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await started(t, node);
  writeFileSync(join(storagePath, 'gantry.running'), `${node.pid}\n`);
  assert.throws(() => openIndex(commandConfig(storagePath)), /a Gantry node \(PID \d+\) runs on .*: stop it/);
  assert.throws(() => openSession(storagePath), /a Gantry node \(PID \d+\) runs on .*: stop it/);
  assert.equal(versionOf(storagePath), 10, 'the index is left as the running node knows it');
  node.kill('SIGKILL');
  await once(node, 'exit');
  // Stopped, it no longer holds anything back: the command migrates, and the audit is kept.
  const { db } = openIndex(commandConfig(storagePath));
  try {
    assert.equal(db.prepare('SELECT entries FROM deid_audit_json WHERE instance_pk = 1').pluck().get(), '[]');
  } finally {
    db.close();
  }
  assert.equal(versionOf(storagePath), NEWEST);
});

test('a command refuses to migrate an index under a running node that holds gantry.lock', async (t) => {
  const storagePath = scratchDir('migrate-under-node');
  indexAtVersion10(storagePath);
  const recovery = new URL('../../src/pipeline/recovery.js', import.meta.url).href;
  // The marker names this process, as it does for a node in another container (PID 1 in both).
  const node = spawn(process.execPath, ['--input-type=module', '-e', `
    const { claimStorage } = await import(${JSON.stringify(recovery)});
    await claimStorage(${JSON.stringify(storagePath)});
    process.stdout.write('running\\n');
    setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await started(t, node);
  writeFileSync(join(storagePath, 'gantry.running'), `${process.pid}\n`);
  assert.throws(() => openIndex(commandConfig(storagePath)), /a Gantry node runs on .*: stop it/);
  assert.equal(versionOf(storagePath), 10);
});

test('a command on an index that needs no migration opens it while the node runs', async (t) => {
  const storagePath = scratchDir('open-under-node');
  openDatabase(join(storagePath, 'index.sqlite')).close();
  const node = spawn(process.execPath, ['-e', `process.stdout.write('running\\n'); setInterval(() => {}, 1000)`, 'gantry', 'serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await started(t, node);
  writeFileSync(join(storagePath, 'gantry.running'), `${node.pid}\n`);
  openIndex(commandConfig(storagePath)).db.close();
  openSession(storagePath).close();
});

// Migration 25 moves the originals still to delete from instances.replaced_path (one per row) to a
// table of their own: a path left in the column would be named nowhere once the code stopped reading it.
test('migration 25 lists the replaced originals the rows named, and a copy received again lists what it replaced', (t) => {
  const storagePath = scratchDir('migrate-replaced');
  const file = join(storagePath, 'index.sqlite');
  const before = openDatabase(file, MIGRATIONS.filter((migration) => migration.version <= 24));
  before.exec(`
    INSERT INTO patients (id, patient_key, patient_id, created_at, updated_at) VALUES (1, '|P1', 'P1', 1, 1);
    INSERT INTO studies (id, study_instance_uid, patient_pk, created_at, last_received_at) VALUES (1, '1.2.1', 1, 1, 1);
    INSERT INTO series (id, series_instance_uid, study_pk, created_at, last_received_at) VALUES (1, '1.2.1.1', 1, 1, 1);
    INSERT INTO instances (id, sop_instance_uid, series_pk, sop_class_uid, transfer_syntax_uid, file_path, file_size, calling_ae_title, received_at, state, state_changed_at, replaced_path)
      VALUES (1, '1.2.1.1.1', 1, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', 'originals/1.2.1/1.2.1.1/1.2.1.1.1.k7.dcm', 10, 'CT01', 5, 'received', 5,
              'originals/1.2.1/1.2.1.1/1.2.1.1.1.dcm'),
             (2, '1.2.1.1.2', 1, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', 'originals/1.2.1/1.2.1.1/1.2.1.1.2.dcm', 10, 'CT01', 6, 'received', 6, NULL);
  `);
  before.close();
  const db = openDatabase(file);
  t.after(() => db.close());
  const listed = () => db.prepare('SELECT sop_instance_uid || \' \' || file_path FROM replaced_originals ORDER BY id').pluck().all();
  assert.deepEqual(listed(), ['1.2.1.1.1 originals/1.2.1/1.2.1.1/1.2.1.1.1.dcm']);
  assert.equal(db.prepare('SELECT count(*) FROM instances WHERE replaced_path IS NOT NULL').pluck().get(), 0);
  db.prepare(`UPDATE instances SET file_path = 'originals/1.2.1/1.2.1.1/1.2.1.1.1.m2.dcm', received_at = 7 WHERE id = 1`).run();
  // Once imported in place (external), the row names the user's file: its changes are never listed.
  db.prepare(`UPDATE instances SET original_external = 1, file_path = '/archive/2.dcm' WHERE id = 2`).run();
  db.prepare(`UPDATE instances SET file_path = '/archive/2b.dcm' WHERE id = 2`).run();
  assert.deepEqual(listed(), [
    '1.2.1.1.1 originals/1.2.1/1.2.1.1/1.2.1.1.1.dcm',
    '1.2.1.1.1 originals/1.2.1/1.2.1.1/1.2.1.1.1.k7.dcm',
    '1.2.1.1.2 originals/1.2.1/1.2.1.1/1.2.1.1.2.dcm',
  ]);
});

// Found in the upgrade review: migrations 7 and 25 were changed after commits on main had applied them.
// An index made at 4ce9754 lacked the index of queued items per routing (the node stopped at start:
// "no such index: forward_outbox_routing_queued"); one made at d962002 listed replaced originals without
// their stamp, every retention sweep failed, and replaced originals (PHI) were never deleted.
test('migration 28 repairs an index made by the earlier forms of migrations 7 and 25', (t) => {
  const earlier7: Migration = {
    version: 7,
    name: 'outbox: time of the last failure (as 4ce9754 had it)',
    up: (db) => db.exec(`
      ALTER TABLE forward_outbox ADD COLUMN failed_at INTEGER;
      CREATE INDEX forward_outbox_failed ON forward_outbox (failed_at) WHERE failed_at IS NOT NULL;
    `),
  };
  const earlier25: Migration = {
    version: 25,
    name: 'replaced originals (as d962002 had it)',
    up: (db) => db.exec(`
      CREATE TABLE replaced_originals (id INTEGER PRIMARY KEY, sop_instance_uid TEXT NOT NULL, file_path TEXT NOT NULL UNIQUE, replaced_at INTEGER NOT NULL);
      DROP INDEX instances_replaced;
      CREATE TRIGGER instances_replaced_original AFTER UPDATE OF file_path ON instances
        WHEN old.original_external = 0 AND old.original_deleted_at IS NULL AND old.file_path IS NOT new.file_path BEGIN
        INSERT OR IGNORE INTO replaced_originals (sop_instance_uid, file_path, replaced_at) VALUES (old.sop_instance_uid, old.file_path, new.received_at);
      END;
    `),
  };
  const storagePath = scratchDir('migrate-repair');
  const file = join(storagePath, 'index.sqlite');
  const earlier = MIGRATIONS.filter((migration) => migration.version <= 27).map((migration) => (migration.version === 7 ? earlier7 : migration.version === 25 ? earlier25 : migration));
  const before = openDatabase(file, earlier);
  before.exec(`
    INSERT INTO patients (id, patient_key, patient_id, created_at, updated_at) VALUES (1, '|P1', 'P1', 1, 1);
    INSERT INTO studies (id, study_instance_uid, patient_pk, created_at, last_received_at) VALUES (1, '1.2.1', 1, 1, 1);
    INSERT INTO series (id, series_instance_uid, study_pk, created_at, last_received_at) VALUES (1, '1.2.1.1', 1, 1, 1);
    INSERT INTO instances (id, sop_instance_uid, series_pk, sop_class_uid, transfer_syntax_uid, file_path, file_size, file_mtime_ns, file_ino, calling_ae_title, received_at, state, state_changed_at)
      VALUES (1, '1.2.1.1.1', 1, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', 'originals/1.dcm', 10, '1700000000000000000', '42', 'CT01', 5, 'received', 5);
    INSERT INTO forward_outbox (destination, instance_pk, file_path, sop_class_uid, sop_instance_uid, transfer_syntax_uid, study_pk, routed_at, state, next_attempt_at, last_error, queued_at)
      VALUES ('research', 1, 'deidentified/1.dcm', '1.2.840.10008.5.1.4.1.1.2', '2.25.1', '1.2.840.10008.1.2.1', 1, 3, 'queued', 0, 'association rejected', 4);
  `);
  before.close();
  const db = openDatabase(file);
  t.after(() => db.close());
  assert.equal(db.prepare(`SELECT count(*) FROM sqlite_master WHERE name = 'forward_outbox_routing_queued'`).pluck().get(), 1);
  assert.equal(db.prepare('SELECT failed_at FROM forward_outbox').pluck().get(), 4, 'the failure dated by its queueing, as migration 7 does');
  db.prepare(`UPDATE instances SET file_path = 'originals/1.k2.dcm', received_at = 7 WHERE id = 1`).run();
  assert.deepEqual(db.prepare('SELECT file_path, file_mtime_ns, file_ino FROM replaced_originals').all(), [{ file_path: 'originals/1.dcm', file_mtime_ns: '1700000000000000000', file_ino: '42' }]);
  // On an index made by the migrations as they are, 28 changes nothing.
  const fresh = openDatabase(join(scratchDir('migrate-repair-fresh'), 'index.sqlite'));
  t.after(() => fresh.close());
  // Compared without comments and spaces: the repaired table was made in two steps.
  const schema = (of: typeof db) => (of.prepare(`SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name`).pluck().all() as string[]).map((sql) => sql.replace(/--[^\n]*/g, '').replace(/\s+/g, ''));
  assert.deepEqual(schema(db), schema(fresh));
});

/** Each migration file's digest (SHA-256, first 16 hex digits): an index records a migration as
 * applied and never runs it again, so a change to a released migration reaches only new indexes. */
const MIGRATION_DIGESTS: ReadonlyArray<readonly [string, string]> = [
  ['001-index.ts', '2b8430ff2aeba2c2'],
  ['002-deid.ts', '9e4c58205e0529f0'],
  ['003-forward.ts', '7b845bc1248e203a'],
  ['004-research.ts', 'd0752f3d6b56654a'],
  ['005-access-audit.ts', '3ac07e7d130f2925'],
  ['006-release.ts', 'af337a24d0ed61e9'],
  ['007-outbox-failed-at.ts', 'b0e047920d443ee7'],
  ['008-redaction-renames.ts', '4b6414af839151a9'],
  ['009-toolkit.ts', '623a318861877285'],
  ['010-instance-references.ts', '890a0563a0345358'],
  ['011-audit-texts.ts', '4e580e1899848290'],
  ['012-waiting-by-arrival.ts', '424531689e05d290'],
  ['013-waiting-by-series.ts', '443f990a8e6b40f2'],
  ['014-superseded-copies.ts', '652357ef1cb52e8d'],
  ['015-export-item-sizes.ts', '717656018233e8a7'],
  ['016-replaced-originals.ts', 'a1f4d90e7abfc0b3'],
  ['017-waiting-since.ts', 'fa2c8e9a20452388'],
  ['018-routing-record.ts', '8a850a6f6f1547d2'],
  ['019-file-stamps.ts', '6adcf5e06911c9f8'],
  ['020-state-counts.ts', '6c599b2293be4dfb'],
  ['021-forward-confirmations.ts', 'e8124b9ccaf9e3c3'],
  ['022-replaced-to-delete.ts', '9909b8dfadbc9e66'],
  ['023-deid-secret.ts', '9ef92776ee30db8d'],
  ['024-confirmation-items.ts', '2dd01cae4946ff0c'],
  ['025-replaced-originals.ts', 'f810868d507a9f9d'],
  ['026-pseudonyms-per-original.ts', 'b634f6d91b2029bf'],
  ['027-waiting-bytes.ts', '26c38bfe46df3fbd'],
  ['028-repair-changed-migrations.ts', '837d89e01af32e86'],
];

test('released migrations are not changed: a change goes into a new migration', () => {
  const folder = new URL('../../../src/db/migrations/', import.meta.url);
  const files = readdirSync(folder).filter((name) => /^\d{3}-.*\.ts$/.test(name)).sort();
  assert.deepEqual(files, MIGRATION_DIGESTS.map(([name]) => name), 'every migration file has its digest here (add the new one)');
  for (const [name, digest] of MIGRATION_DIGESTS) {
    const text = readFileSync(new URL(name, folder), 'utf8').replace(/\r\n/g, '\n');
    assert.equal(createHash('sha256').update(text).digest('hex').slice(0, 16), digest, `${name} changed after it was released: write a new migration instead (a change of comments only: update its digest here)`);
  }
});
