/**
 * Durability: Gantry killed with SIGKILL in the middle of a burst of stores keeps, after a restart,
 * every instance whose success response the sender received; a SIGTERM lets in-flight stores finish.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '../helpers/scratch.js';
import { test } from 'node:test';
import { parseStorescu, storescu } from '../helpers/dcmtk.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { DCMTK_ENV, sleep, start } from '../helpers/processes.js';
import { datasetBytes, indexedRows, leftoverIncoming } from '../helpers/stored.js';
import { newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';
import { once } from 'node:events';
import Database from 'better-sqlite3';

interface DeidCopy {
  path: string;
  size: number;
}

/** The de-identified copies the index names, of instances in state deidentified. */
function deidentifiedCopies(storagePath: string): DeidCopy[] {
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    return db.prepare(`SELECT deid_file_path AS path, deid_file_size AS size FROM instances WHERE state = 'deidentified' ORDER BY id`).all() as DeidCopy[];
  } finally {
    db.close();
  }
}

async function corpus(dir: string, count: number): Promise<Map<string, string>> {
  await mkdir(dir, { recursive: true });
  const uidByPath = new Map<string, string>();
  const study = newUid();
  let series = newUid();
  for (let i = 0; i < count; i += 1) {
    if (i % 50 === 0) series = newUid();
    const path = join(dir, `c${String(i).padStart(4, '0')}.dcm`);
    const { sopInstanceUid } = await writeSyntheticFile(path, { studyInstanceUid: study, seriesInstanceUid: series, patientId: 'CRASH1', patientName: 'Crash^Test', instanceNumber: i + 1, rows: 256, columns: 256 });
    uidByPath.set(path, sopInstanceUid);
  }
  return uidByPath;
}

for (const killAfter of [25, 140]) {
  test(`SIGKILL after ${killAfter} acknowledged stores: every acknowledged instance is there after a restart`, async (t) => {
    if (!(await needPeers(t, 'storescu'))) return;
    const dir = scratchDir('kill');
    const files = await corpus(join(dir, 'corpus'), 250);
    const gantry = await startGantryProcess(join(dir, 'gantry'));

    const sender = start('storescu', ['-v', '-aec', gantry.aeTitle, '127.0.0.1', String(gantry.port), ...files.keys()], { env: DCMTK_ENV });
    const deadline = Date.now() + 60_000;
    while ((sender.output().match(/Received Store Response \(Success\)/g) ?? []).length < killAfter && Date.now() < deadline) await sleep(2);
    await gantry.stop('SIGKILL');
    if (sender.child.exitCode === null) await once(sender.child, 'exit');
    const { acknowledged } = parseStorescu(sender.child.exitCode, sender.output());
    assert.ok(acknowledged.length >= killAfter && acknowledged.length < files.size, `acknowledged ${acknowledged.length}: the kill must fall inside the burst`);

    const restarted = await startGantryProcess(join(dir, 'gantry'), {}, gantry.port);
    t.after(() => restarted.stop());
    const rows = new Map(indexedRows(restarted.storagePath).map((row) => [row.sopInstanceUid, row]));
    for (const path of acknowledged) {
      const row = rows.get(files.get(path) as string);
      assert.ok(row, `${path} was acknowledged but is not indexed`);
      assert.ok(datasetBytes(join(restarted.storagePath, row.filePath)).equals(datasetBytes(path)), `${path}: stored bytes differ`);
    }
    // Every row left after recovery points at a whole file.
    for (const row of rows.values()) {
      assert.equal(statSync(join(restarted.storagePath, row.filePath)).size, row.fileSize, `${row.filePath} is indexed but not whole`);
    }
    assert.match(restarted.output(), /did not stop cleanly/);
    assert.deepEqual(leftoverIncoming(restarted.storagePath), [], 'half-received files are cleared at start');
  });
}

test('after an unclean stop, a row whose file is short is removed with its file; whole ones stay, and so do those whose originals retention deleted', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('short');
  const files = await corpus(join(dir, 'corpus'), 6);
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  const sent = await storescu(gantry.port, gantry.aeTitle, [...files.keys()]);
  assert.equal(sent.acknowledged.length, 6);
  await gantry.stop('SIGKILL');
  // What a power cut between the file sync and the index commit of a new instance could leave.
  const rows = indexedRows(gantry.storagePath);
  const victim = rows[rows.length - 1] as (typeof rows)[number];
  truncateSync(join(gantry.storagePath, victim.filePath), 100);
  // Two of the newest were forwarded and their originals deleted by retention, as it records them.
  const retained = rows.slice(-3, -1);
  const db = new Database(join(gantry.storagePath, 'index.sqlite'));
  try {
    const mark = db.prepare('UPDATE instances SET original_deleted_at = ? WHERE sop_instance_uid = ?');
    for (const row of retained) {
      rmSync(join(gantry.storagePath, row.filePath));
      mark.run(Date.now(), row.sopInstanceUid);
    }
  } finally {
    db.close();
  }
  const restarted = await startGantryProcess(join(dir, 'gantry'), {}, gantry.port);
  t.after(() => restarted.stop());
  const after = indexedRows(restarted.storagePath);
  assert.equal(after.length, 5);
  assert.ok(!after.some((row) => row.sopInstanceUid === victim.sopInstanceUid));
  for (const row of retained) assert.ok(after.some((kept) => kept.sopInstanceUid === row.sopInstanceUid), 'a row whose original retention deleted stays');
  assert.ok(!existsSync(join(restarted.storagePath, victim.filePath)), 'the short file is deleted');
  assert.match(restarted.output(), /"removed":1/);
});

// Found in the durability review: de-identified copies are written without a sync, and the check of
// the newest ones ran only after an unclean stop. A power cut soon after a clean stop left a copy empty
// (or its first block unwritten); the next start checked nothing, and its items failed as unreadable
// until they went to dead letter.
test('at a start after a clean stop, de-identified copies that did not survive are made again', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('lost-copies');
  await mkdir(join(dir, 'corpus'), { recursive: true });
  const files: string[] = [];
  const [study, series] = [newUid(), newUid()];
  for (let i = 0; i < 3; i += 1) {
    files.push(join(dir, 'corpus', `${i}.dcm`));
    await writeSyntheticFile(files[i] as string, { studyInstanceUid: study, seriesInstanceUid: series, patientId: 'LOST1', patientName: 'Lost^Copy', instanceNumber: i + 1, rows: 64, columns: 64 });
  }
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  t.after(() => gantry.stop());
  assert.equal((await storescu(gantry.port, gantry.aeTitle, files)).acknowledged.length, 3);
  const copies = async () => {
    for (let tries = 0; tries < 300; tries += 1) {
      const rows = deidentifiedCopies(gantry.storagePath);
      if (rows.length === 3) return rows;
      await sleep(100);
    }
    assert.fail(`the three instances were not de-identified within 30 s: ${JSON.stringify(indexedRows(gantry.storagePath).map((row) => row.state))}`);
  };
  const before = await copies();
  assert.equal(await gantry.stop('SIGTERM'), 0);
  // What a power cut after the clean stop may leave of copies never synced: one empty, one of the
  // right size whose first block was never written.
  const [empty, zeroed, whole] = before as [DeidCopy, DeidCopy, DeidCopy];
  truncateSync(join(gantry.storagePath, empty.path), 0);
  const zeroedFile = join(gantry.storagePath, zeroed.path);
  writeFileSync(zeroedFile, Buffer.concat([Buffer.alloc(4096), readFileSync(zeroedFile).subarray(4096)]));
  const untouched = statSync(join(gantry.storagePath, whole.path)).mtimeMs;

  const restarted = await startGantryProcess(join(dir, 'gantry'), {}, gantry.port);
  t.after(() => restarted.stop());
  assert.match(restarted.output(), /"redone":2/);
  const after = await copies();
  for (const copy of after) {
    const bytes = readFileSync(join(restarted.storagePath, copy.path));
    assert.equal(bytes.length, copy.size, `${copy.path}: whole again`);
    assert.equal(bytes.toString('latin1', 128, 132), 'DICM');
  }
  assert.equal(statSync(join(restarted.storagePath, whole.path)).mtimeMs, untouched, 'a whole copy is not made again');
});

test('SIGTERM stops accepting, finishes in-flight stores and exits 0', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('term');
  const files = await corpus(join(dir, 'corpus'), 120);
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  const sender = start('storescu', ['-v', '-aec', gantry.aeTitle, '127.0.0.1', String(gantry.port), ...files.keys()], { env: DCMTK_ENV });
  const deadline = Date.now() + 60_000;
  while ((sender.output().match(/Received Store Response \(Success\)/g) ?? []).length < 20 && Date.now() < deadline) await sleep(2);
  assert.equal(await gantry.stop('SIGTERM'), 0);
  if (sender.child.exitCode === null) await once(sender.child, 'exit');
  const { acknowledged } = parseStorescu(sender.child.exitCode, sender.output());
  const rows = new Set(indexedRows(gantry.storagePath).map((row) => row.sopInstanceUid));
  for (const path of acknowledged) assert.ok(rows.has(files.get(path) as string), `${path} acknowledged but not indexed`);
  assert.match(gantry.output(), /"msg":"stopped"/);
  // The store in flight finished: the association was ended between operations, each answered, not
  // cut in the middle of one (an association destroyed at once passed the assertions above: review of
  // the test suite).
  const ended = /"operations":(\d+),"failures":(\d+)[^\n]*"msg":"association aborted for shutdown"/.exec(gantry.output());
  assert.ok(ended, `the association is ended between operations: ${gantry.output().slice(-2000)}`);
  assert.equal(Number(ended[1]), acknowledged.length, 'every operation it began was answered success');
  assert.equal(Number(ended[2]), 0);

  const again = await startGantryProcess(join(dir, 'gantry'), {}, gantry.port);
  t.after(() => again.stop());
  assert.doesNotMatch(again.output(), /did not stop cleanly/, 'a clean stop needs no recovery');
});

// Suspected in the operations review: a second SIGTERM or SIGINT while stopping was ignored, and a stop
// waits up to 10 s for each of its grace periods; only SIGKILL cut it short.
test('a second signal while stopping exits at once', async (t) => {
  const dir = scratchDir('second-signal');
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  t.after(() => gantry.stop('SIGKILL'));
  // An association held open: the stop waits for it (dicom listener's grace).
  const raw = await RawAssociation.open(gantry.port);
  t.after(() => raw.destroy());
  assert.equal((await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: [{ id: 1, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: ['1.2.840.10008.1.2'] }] })).kind, 'accept');
  const exited = once(gantry.child, 'exit') as Promise<[number | null]>;
  gantry.child.kill('SIGTERM');
  const deadline = Date.now() + 10_000;
  while (!/shutting down/.test(gantry.output()) && Date.now() < deadline) await sleep(10);
  const began = performance.now();
  gantry.child.kill('SIGINT');
  const [code] = await exited;
  assert.ok(performance.now() - began < 3000, `exited ${(performance.now() - began).toFixed(0)} ms after the second signal`);
  assert.equal(code, 1);
  assert.match(gantry.output(), /a second signal while stopping: exiting now/);
});

test('a second Gantry on the same storage.path refuses to start and says why', async () => {
  const dir = scratchDir('twice');
  const first = await startGantryProcess(join(dir, 'one'));
  try {
    await assert.rejects(
      startGantryProcess(join(dir, 'two'), { storage: { path: first.storagePath } }),
      /storage\.path .* is in use by another Gantry \(PID \d+\)/,
    );
  } finally {
    await first.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
