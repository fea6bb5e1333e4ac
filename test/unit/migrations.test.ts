/** Schema migrations on an index with data in it, opened by the commands while a node may run. */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openIndex } from '../../src/cli/queue.js';
import { parseConfigText } from '../../src/config/load.js';
import { openDatabase } from '../../src/db/database.js';
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
