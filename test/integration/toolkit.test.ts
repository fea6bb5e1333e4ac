/**
 * The toolkit (issue 8): gantry import indexes a folder tree in place (or --copy), skips what it
 * indexed before, reports what is not DICOM or unreadable, and never deletes an imported file; the
 * node de-identifies imported instances and forwards them only when imported with --forward; gantry
 * export writes the de-identified form in a pseudonymised layout, resumes, and starts afresh in an
 * emptied folder.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { dcmdumpValues, storescu } from '../helpers/dcmtk.js';
import { outboxRows, startStorescp, waitUntil } from '../helpers/destinations.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { writeUltrasound } from '../helpers/pixel-images.js';
import { GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { indexedRows } from '../helpers/stored.js';
import { newUid, renameInstanceInPlace, writeCorpus, writeSyntheticFile, type CorpusInstance } from '../helpers/synthetic-dicom.js';
import { openSession } from '../../src/session/index.js';

const SECRET = 'the secret of the toolkit tests';

function gantry(args: string[]) {
  return run(process.execPath, [GANTRY_CLI, ...args], { timeoutMs: 120_000 });
}

function writeConfig(dir: string, storagePath: string): string {
  const path = join(dir, 'gantry.yaml');
  writeFileSync(path, stringify({ storage: { path: storagePath }, deid: { secret: SECRET, workers: 2 }, log: { level: 'warn' } }));
  return path;
}

interface ImportedRow {
  filePath: string;
  sourcePath: string | null;
  external: number;
  forwardHeld: number;
}

/** A node on the session's storage, forwarding to a storescp that writes under dir/received. */
async function startNodeOnSession(t: TestContext, dir: string, storagePath: string) {
  const scp = await startStorescp(join(dir, 'received'));
  t.after(() => scp.stop());
  const node = await startGantryProcess(join(dir, 'node'), {
    storage: { path: storagePath },
    deid: { secret: SECRET },
    forward: { stableSeconds: 1, destinations: [{ name: 'research', aeTitle: 'STORESCP', host: '127.0.0.1', port: scp.port }] },
  });
  t.after(() => node.stop());
  return { node, scp };
}

function importedRows(storagePath: string): ImportedRow[] {
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT file_path AS filePath, source_path AS sourcePath, original_external AS external, forward_held AS forwardHeld FROM instances ORDER BY id').all() as ImportedRow[];
  } finally {
    db.close();
  }
}

/** A folder tree: a corpus in nested folders, plus a text file and a truncated DICOM file. */
async function writeTree(root: string): Promise<CorpusInstance[]> {
  const flat = join(root, '.corpus');
  mkdirSync(flat, { recursive: true });
  const corpus = await writeCorpus(flat, { patients: 3, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: 3, rows: 8, columns: 8 });
  const moved = corpus.map((instance, index) => {
    const folder = join(root, `patient-${instance.patientId}`, `series-${index % 4}`);
    mkdirSync(folder, { recursive: true });
    const path = join(folder, `${index}.dcm`);
    copyFileSync(instance.path, path);
    return { ...instance, path };
  });
  rmSync(flat, { recursive: true });
  writeFileSync(join(root, 'README.txt'), 'not a DICOM file\n');
  const whole = readFileSync(moved[0]?.path as string);
  writeFileSync(join(root, 'patient-PAT00000', 'truncated.dcm'), whole.subarray(0, 400));
  return moved;
}

/** A scratch folder with a tree to import, and a config whose storage (the session) is beside it. */
async function preparedTree(name: string): Promise<{ dir: string; tree: string; corpus: CorpusInstance[]; storagePath: string; config: string }> {
  const dir = scratchDir(name);
  const tree = join(dir, 'tree');
  const corpus = await writeTree(tree);
  const storagePath = join(dir, 'data');
  return { dir, tree, corpus, storagePath, config: writeConfig(dir, storagePath) };
}

test('gantry import indexes a tree in place, resumes, reports what it could not read, and never touches the files', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const { dir, tree, corpus, storagePath, config } = await preparedTree('toolkit-import');
  const before = new Map(corpus.map((instance) => [instance.path, readFileSync(instance.path)]));

  const first = await gantry(['import', '-q', '--config', config, tree]);
  assert.match(first.stdout, new RegExp(`indexed ${corpus.length} instance\\(s\\) .* of ${corpus.length + 2} file\\(s\\), in place; already indexed 0`), first.stdout + first.stderr);
  assert.match(first.stdout, /not DICOM 1; unreadable 1/);
  assert.match(first.stdout, /truncated\.dcm: /, 'the unreadable file is named');
  assert.equal(first.code, 1, 'an unreadable file makes the exit code 1');
  // Found in a review: it said "the running node de-identifies them" with no node running.
  assert.match(first.stdout, /no Gantry node runs on this storage: one started on it \(gantry serve\) de-identifies them/);
  const rows = importedRows(storagePath);
  assert.equal(rows.length, corpus.length);
  for (const row of rows) {
    assert.equal(row.external, 1);
    assert.equal(row.forwardHeld, 1);
    assert.ok(row.sourcePath && before.has(row.sourcePath), 'the source path is the file');
    assert.equal(join(storagePath, row.filePath), row.sourcePath, 'the index names the file where it is');
    assert.ok(row.filePath.startsWith(`..${'/'}`) || !row.filePath.startsWith('/'), 'relative to the storage root');
  }

  const again = await gantry(['import', '-q', '--config', config, tree]);
  assert.match(again.stdout, new RegExp(`indexed 0 instance\\(s\\) .* already indexed ${corpus.length};`), `exit ${again.code}: ${again.stdout}${again.stderr}`);

  // The node de-identifies imported instances, does not forward them (no --forward), and a network
  // copy of an imported instance replaces it in the index, not on disk.
  const { node, scp } = await startNodeOnSession(t, dir, storagePath);
  await waitUntil('imported instances de-identified', 60_000, () => indexedRows(storagePath).every((row) => row.state === 'deidentified'));
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.equal(outboxRows(storagePath).length, 0, 'nothing imported without --forward is routed');
  // Imported again with --forward: the same files are now forwarded.
  const released = await gantry(['import', '-q', '--forward', '--config', config, tree]);
  assert.match(released.stdout, new RegExp(`already indexed ${corpus.length} \\(${corpus.length} now to be forwarded\\)`), released.stdout);
  await waitUntil('released imports forwarded', 60_000, () => outboxRows(storagePath).filter((row) => row.state === 'sent').length === corpus.length);
  // What the node de-identified is exported as it is: copied, not de-identified again.
  const exported = await gantry(['export', '-q', '--config', config, '--out', join(dir, 'export')]);
  assert.match(exported.stdout, new RegExp(`exported ${corpus.length} instance\\(s\\).*: ${corpus.length} copied from the node's de-identified copies, 0 de-identified now`), exported.stdout);
  const sent = await storescu(node.port, node.aeTitle, [corpus[0]?.path as string]);
  assert.equal(sent.acknowledged.length, 1, sent.output.slice(-800));
  await waitUntil('the network copy forwarded again', 30_000, () => outboxRows(storagePath).filter((row) => row.state === 'sent').length === corpus.length && scp.requests() > corpus.length);
  for (const [path, bytes] of before) assert.ok(readFileSync(path).equals(bytes), `${relative(dir, path)} unchanged and still there`);
});

// Found in the toolkit review: the summary names the first 20 files left out; beyond them there were
// counts only, and the operator could not find which of hundreds of files were not imported.
test('gantry import lists every file it left out, with its reason, under storage.path', async () => {
  const dir = scratchDir('toolkit-skipped-list');
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  await writeSyntheticFile(join(tree, 'one.dcm'), { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'P-LIST', patientName: 'List^Lee', rows: 8, columns: 8 });
  for (let n = 0; n < 25; n += 1) writeFileSync(join(tree, `note\t${n}.txt`), `not DICOM ${n}`);
  const storagePath = join(dir, 'data');
  const imported = await gantry(['import', '-q', '--config', writeConfig(dir, storagePath), tree]);
  assert.equal(imported.code, 0, 'files not DICOM are no failure');
  assert.equal(imported.stdout.split('\n').filter((line) => line.startsWith('  e.g. ')).length, 20, 'the summary names 20');
  const list = /every file not imported is listed, with its reason, in (\S+\.tsv)/.exec(imported.stdout)?.[1];
  assert.ok(list?.startsWith(join(storagePath, 'import-reports')), imported.stdout);
  const lines = readFileSync(list as string, 'utf8').trimEnd().split('\n');
  assert.equal(lines.length, 25, 'every one is listed');
  for (const line of lines) assert.match(line, /\/note\\t\d+\.txt\tno DICOM Part 10 preamble and prefix$/, 'path (its tab escaped) and reason');
});

test('gantry import --copy --forward: copies into storage, and the node forwards them', async (t) => {
  if (!(await needPeers(t, 'storescp'))) return;
  const { dir, tree, corpus, storagePath, config } = await preparedTree('toolkit-import-copy');
  const imported = await gantry(['import', '-q', '--copy', '--forward', '--config', config, tree]);
  assert.match(imported.stdout, new RegExp(`indexed ${corpus.length} instance\\(s\\) .*, copied into storage`), imported.stdout);
  const rows = importedRows(storagePath);
  assert.ok(rows.every((row) => row.external === 0 && row.forwardHeld === 0 && row.filePath.startsWith('originals/') && existsSync(join(storagePath, row.filePath))));
  // Never the instance's plain name, which a node serving this storage may write at any moment.
  for (const row of rows) assert.match(row.filePath, /\.import-[0-9a-f]{12}\.dcm$/);
  rmSync(tree, { recursive: true });
  await startNodeOnSession(t, dir, storagePath);
  await waitUntil('all forwarded from the copies', 60_000, () => readdirSync(join(dir, 'received')).length === corpus.length);
});

test('gantry export: a pseudonymised layout, resumable, afresh in an emptied folder; held instances counted, not written', async (t) => {
  if (!(await needPeers(t, 'dcmdump'))) return;
  const { dir, tree, corpus, storagePath, config } = await preparedTree('toolkit-export');
  writeUltrasound(join(tree, 'burned-in.dcm')); // BurnedInAnnotation YES and no zone: held back
  // Kept free text that quotes the patient's name: held for residual risk (deid.quarantineOnFindings).
  await writeSyntheticFile(join(tree, 'risky.dcm'), { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'RISK1', patientName: 'Smithson^Ann', manufacturer: 'ACME for Smithson', rows: 8, columns: 8 });
  await gantry(['import', '-q', '--config', config, tree]);
  const out = join(dir, 'out');
  const exported = await gantry(['export', '-q', '--config', config, '--out', out]);
  assert.equal(exported.code, 0, exported.stderr);
  assert.match(exported.stdout, new RegExp(`exported ${corpus.length} instance\\(s\\).* ${corpus.length} de-identified now; 0 already exported; 2 held back; 0 failed \\(of ${corpus.length + 2} selected\\)`), exported.stdout);
  assert.match(exported.stdout, /held: pixel data: BurnedInAnnotation is YES/);
  assert.match(exported.stdout, /held: residual risk: Manufacturer quotes/);
  const files = listTree(out).filter((path) => path.endsWith('.dcm'));
  assert.equal(files.length, corpus.length);
  assert.deepEqual(listTree(out).filter((path) => /\.(partial|frames)$/.test(path)), [], 'no temporary file is left beside the exported ones');
  // What an interrupted run would leave half-written goes at the next run on the folder.
  const leftover = join(dirname(files[0] as string), 'interrupted.dcm.partial');
  writeFileSync(leftover, 'half a file');
  const originals = new Set(corpus.flatMap((instance) => [instance.patientId, instance.studyInstanceUid, instance.seriesInstanceUid, instance.sopInstanceUid]));
  for (const path of files) {
    const segments = relative(out, path).split('/');
    assert.equal(segments.length, 4, 'Patient/Study/Series/SOP Instance');
    for (const segment of segments) assert.ok(!originals.has(segment.replace(/\.dcm$/, '')), `${segment}: no original identifier in a name`);
    const values = await dcmdumpValues(path, ['0010,0020', '0008,0018']);
    assert.equal(values['0010,0020'], segments[0], 'the folder is the pseudonymised PatientID');
    assert.equal(`${values['0008,0018']}.dcm`, segments[3], 'the name is the de-identified SOP Instance UID');
  }
  const again = await gantry(['export', '-q', '--config', config, '--out', out]);
  assert.match(again.stdout, new RegExp(`exported 0 instance\\(s\\).* ${corpus.length} already exported`), `exit ${again.code}: ${again.stdout}${again.stderr}`);
  assert.ok(!existsSync(leftover), 'an interrupted run\'s temporary file is removed');
  const onePatient = join(dir, 'one-patient');
  const selected = await gantry(['export', '-q', '--config', config, '--out', onePatient, '--patient', corpus[0]?.patientId as string, '--layout', '{StudyInstanceUID}/{SOPInstanceUID}.dcm']);
  assert.match(selected.stdout, /exported 12 instance\(s\)/, `exit ${selected.code}: ${selected.stdout}${selected.stderr}`);
  assert.equal(listTree(onePatient).filter((path) => path.endsWith('.dcm')).length, 12);
  rmSync(out, { recursive: true });
  const afresh = await gantry(['export', '-q', '--config', config, '--out', out]);
  assert.match(afresh.stdout, new RegExp(`exported ${corpus.length} instance\\(s\\)`), `exit ${afresh.code}: ${afresh.stdout}${afresh.stderr}`);
  const badLayout = await gantry(['export', '-q', '--config', config, '--out', join(dir, 'bad'), '--layout', '{PatientBirthDate}/{SOPInstanceUID}']);
  assert.notEqual(badLayout.code, 0);
  assert.match(badLayout.stderr, /--layout: unknown \{PatientBirthDate\}; allowed: /);

  // The library's export is the same export; and each exported patient's pseudonyms are kept.
  const session = openSession(storagePath, { config });
  try {
    const summary = await session.export({ out: join(dir, 'library'), selection: { modalities: ['CT'] }, layout: '{SOPInstanceUID}.dcm' });
    assert.equal(summary.written, corpus.length);
    assert.equal(readdirSync(join(dir, 'library')).filter((name) => name.endsWith('.dcm')).length, corpus.length);
  } finally {
    session.close();
  }
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    const kept = db.prepare(`SELECT original, pseudonym FROM pseudonym_map WHERE kind = 'PatientID' ORDER BY original`).all() as Array<{ original: string; pseudonym: string }>;
    assert.deepEqual(kept.map((row) => row.original), [...new Set(corpus.map((instance) => instance.patientId))].sort());
    assert.ok(kept.every((row) => row.pseudonym !== row.original && row.pseudonym.length > 0));
  } finally {
    db.close();
  }
});

function listTree(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name));
}

// Found in review: what the node logs about files imported in place, and what gantry export keeps of
// the pseudonyms of the node's copies.
test('the node never logs the path of a file imported in place (archives name folders after patients)', async (t) => {
  const dir = scratchDir('review-imported-path-log');
  const folder = join(dir, 'archive', 'SMITHSON^ANN 19700101');
  mkdirSync(folder, { recursive: true });
  const file = join(folder, 'CT1.dcm');
  await writeSyntheticFile(file, { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'MRN-77', patientName: 'Smithson^Ann', rows: 8, columns: 8 });
  const storagePath = join(dir, 'data');
  const imported = await gantry(['import', '-q', '--config', writeConfig(dir, storagePath), join(dir, 'archive')]);
  assert.equal(imported.code, 0, imported.stdout + imported.stderr);
  // The user moves the archive away before the node gets to it (a file imported in place is the user's).
  rmSync(file);
  const node = await startGantryProcess(join(dir, 'node'), { storage: { path: storagePath }, deid: { secret: SECRET } });
  t.after(() => node.stop());
  await waitUntil('the instance failed', 30_000, () => indexedRows(storagePath).some((row) => row.state === 'failed'));
  await new Promise((resolve) => setTimeout(resolve, 500));
  const logged = node.output().split('\n').filter((line) => line.includes('de-identification failed'));
  assert.ok(logged.length > 0, node.output());
  assert.doesNotMatch(logged.join('\n'), /SMITHSON|19700101/, 'the log names the patient through the path');
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    const { reason } = db.prepare('SELECT state_reason AS reason FROM instances').get() as { reason: string };
    assert.doesNotMatch(reason, /SMITHSON|19700101/, `the stored reason (gantry quarantine ls) names the patient: ${reason}`);
  } finally {
    db.close();
  }
});

// Found in the ninth session's review, mended in the tenth: a row indexed before file stamps (migration
// 019) is checked by size alone, so the node de-identified another instance of the same size under its
// name as the indexed one. Its thread now compares the file's SOP Instance UID with the row's.
test('the node holds as failed a file of another instance, of the same size, under the name of a row without a stamp', async (t) => {
  const dir = scratchDir('review-node-another-instance');
  const tree = join(dir, 'tree');
  const file = join(tree, 'CT1.dcm');
  mkdirSync(tree, { recursive: true });
  const { sopInstanceUid } = await writeSyntheticFile(file, { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'MRN-78', patientName: 'Other^Olga', rows: 8, columns: 8 });
  const storagePath = join(dir, 'data');
  const imported = await gantry(['import', '-q', '--config', writeConfig(dir, storagePath), tree]);
  assert.equal(imported.code, 0, imported.stdout + imported.stderr);
  const db = new Database(join(storagePath, 'index.sqlite'));
  try {
    db.prepare('UPDATE instances SET file_mtime_ns = NULL, file_ino = NULL').run();
  } finally {
    db.close();
  }
  renameInstanceInPlace(file, sopInstanceUid);
  const node = await startGantryProcess(join(dir, 'node'), { storage: { path: storagePath }, deid: { secret: SECRET } });
  t.after(() => node.stop());
  await waitUntil('the instance held', 30_000, () => indexedRows(storagePath).some((row) => row.state !== 'received'));
  const reader = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    const row = reader.prepare('SELECT state, state_reason AS reason, deid_file_path AS copy FROM instances').get() as { state: string; reason: string; copy: string | null };
    assert.equal(row.state, 'failed', row.reason);
    assert.equal(row.reason, 'the original is another instance than the one imported (its SOP Instance UID differs): delete this row (gantry quarantine delete) and import the file again');
    assert.equal(row.copy, null, 'no de-identified copy');
  } finally {
    reader.close();
  }
});

test("gantry export keeps the pseudonyms of the patients it exports from the node's copies too", async (t) => {
  const dir = scratchDir('review-export-ledger');
  const tree = join(dir, 'tree');
  mkdirSync(tree, { recursive: true });
  const studyInstanceUid = newUid();
  const seriesInstanceUid = newUid();
  for (let n = 0; n < 2; n += 1) {
    await writeSyntheticFile(join(tree, `${n}.dcm`), { studyInstanceUid, seriesInstanceUid, patientId: 'MRN-LEDGER', patientName: 'Ledger^Lou', instanceNumber: n + 1, rows: 8, columns: 8 });
  }
  const storagePath = join(dir, 'data');
  const config = writeConfig(dir, storagePath);
  const imported = await gantry(['import', '-q', '--config', config, tree]);
  assert.equal(imported.code, 0, imported.stdout + imported.stderr);
  const node = await startGantryProcess(join(dir, 'node'), { storage: { path: storagePath }, deid: { secret: SECRET } });
  t.after(() => node.stop());
  await waitUntil('the node de-identified them', 30_000, () => indexedRows(storagePath).every((row) => row.state === 'deidentified'));
  const exported = await gantry(['export', '-q', '--config', config, '--out', join(dir, 'out')]);
  assert.match(exported.stdout, /exported 2 instance\(s\).*: 2 copied from the node's de-identified copies/, exported.stdout + exported.stderr);
  // README: "each exported patient's pseudonyms are kept in the index (pseudonym_map) for authorised look-up".
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    const kept = db.prepare(`SELECT kind, original FROM pseudonym_map WHERE original IN ('MRN-LEDGER', 'Ledger^Lou') ORDER BY kind`).all();
    assert.deepEqual(kept, [
      { kind: 'PatientID', original: 'MRN-LEDGER' },
      { kind: 'PatientName', original: 'Ledger^Lou' },
    ]);
  } finally {
    db.close();
  }
});
