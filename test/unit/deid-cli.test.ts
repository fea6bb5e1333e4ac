/** gantry deid --out DIR (src/cli/deid.ts): what it leaves in DIR besides its outputs. */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { runDeid } from '../../src/cli/deid.js';
import { ConfigError, parseConfigText, type LoadedConfig } from '../../src/config/load.js';
import { secretDigest } from '../../src/config/secret.js';
import { openDatabase } from '../../src/db/database.js';
import { recordSecretDigest } from '../../src/index/secret-record.js';
import { silentLogger } from '../../src/observability/logger.js';
import { scratchDir } from '../helpers/scratch.js';
import { encodeElement, newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';
import { writeUltrasound } from '../helpers/pixel-images.js';
import { parseFile } from '../../src/dicom/dataset-tree.js';
import { elementText } from '../../src/dicom/element-value.js';

// Found in a review: the outputs were staged in DIR/.staging, deleted with everything in it at the
// end: a folder of that name the user already had in DIR went with the run.
test('gantry deid stages its outputs in a folder of its own, and leaves the folders it finds in DIR', () => {
  const dir = scratchDir('deid-cli');
  const storagePath = join(dir, 'data');
  const loaded: LoadedConfig = { config: parseConfigText(`storage:\n  path: ${storagePath}\ndeid:\n  secret: a secret of this test\n`, 'test'), source: 'test', embedded: false };
  const out = join(dir, 'out');
  mkdirSync(join(out, '.staging'), { recursive: true });
  writeFileSync(join(out, '.staging', 'notes.txt'), 'the user\'s');
  const summary = runDeid(loaded, [], out, silentLogger());
  assert.equal(summary.done, 0);
  assert.ok(existsSync(join(out, '.staging', 'notes.txt')), "the user's folder and file stay");
  assert.deepEqual(readdirSync(out), ['.staging'], 'the run leaves no staging folder of its own');
});

// Suspected in the deletion review: under retainUIDs an output is named by the input's own UIDs, so
// `gantry deid --out ./archive ./archive` over a tree laid out by UID replaced the user's originals
// with their de-identified copies, though "originals are never modified".
test('gantry deid never replaces an input file with an output, even under retainUIDs', async () => {
  const dir = scratchDir('deid-cli-in-place');
  const storagePath = join(dir, 'data');
  const loaded: LoadedConfig = {
    config: parseConfigText(`storage:\n  path: ${storagePath}\ndeid:\n  secret: a secret of this test\n  options: [retainUIDs]\n`, 'test'),
    source: 'test',
    embedded: false,
  };
  const archive = join(dir, 'archive');
  const study = '1.2.826.0.1.3680043.2.1125.7';
  const series = `${study}.1`;
  const sop = `${series}.1`;
  const original = join(archive, study, series, `${sop}.dcm`);
  mkdirSync(join(archive, study, series), { recursive: true });
  await writeSyntheticFile(original, { studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop, patientId: 'KEEP-ME', patientName: 'Doe^John' });
  const before = readFileSync(original);
  const summary = runDeid(loaded, [archive], archive, silentLogger());
  assert.equal(summary.done, 0);
  assert.match(summary.failed[0]?.reason ?? '', /would replace an input file/);
  assert.deepEqual(readFileSync(original), before, 'the original is as it was');
  // Into another folder, the same input is de-identified under its own UIDs.
  const elsewhere = runDeid(loaded, [archive], join(dir, 'out'), silentLogger());
  assert.equal(elsewhere.done, 1, JSON.stringify(elsewhere.failed));
  assert.ok(existsSync(join(dir, 'out', study, series, `${sop}.dcm`)));
});

// Found in the robustness review: every entry of a folder was taken as a file, and a named pipe among
// them was opened for reading, which waits for a writer: the run hung there for ever.
test('gantry deid reads the regular files of a folder and passes over a named pipe', async (t) => {
  const dir = scratchDir('deid-cli-fifo');
  const storagePath = join(dir, 'data');
  const loaded: LoadedConfig = { config: parseConfigText(`storage:\n  path: ${storagePath}\ndeid:\n  secret: a secret of this test\n`, 'test'), source: 'test', embedded: false };
  const inputs = join(dir, 'in');
  mkdirSync(inputs, { recursive: true });
  await writeSyntheticFile(join(inputs, 'a.dcm'), { studyInstanceUid: '1.2.3.1', seriesInstanceUid: '1.2.3.1.1', patientId: 'P1', patientName: 'Doe^Jane', rows: 4, columns: 4 });
  const fifo = join(inputs, 'b.dcm');
  execFileSync('mkfifo', [fifo]);
  // A writer, so that a run that opens the pipe reads a few bytes and goes on (it would wait for ever).
  const writer = spawn('sh', ['-c', 'echo not DICOM > "$0"', fifo], { stdio: 'ignore' });
  t.after(() => writer.kill());
  const summary = runDeid(loaded, [inputs], join(dir, 'out'), silentLogger());
  assert.deepEqual([summary.done, summary.failed.length], [1, 0]);
});

// Found in the seventh session's review of known leads: a link back to a folder above it was followed
// until the path was too long, and that error failed the whole input; a folder linked twice was
// de-identified twice; a subfolder that cannot be read failed every file beside it.
test('gantry deid walks each folder once, through links too, and a folder it cannot read fails alone', async () => {
  const dir = scratchDir('deid-cli-links');
  const storagePath = join(dir, 'data');
  const loaded: LoadedConfig = { config: parseConfigText(`storage:\n  path: ${storagePath}\ndeid:\n  secret: a secret of this test\n`, 'test'), source: 'test', embedded: false };
  const inputs = join(dir, 'in');
  mkdirSync(join(inputs, 'series'), { recursive: true });
  await writeSyntheticFile(join(inputs, 'series', 'a.dcm'), { studyInstanceUid: '1.2.3.2', seriesInstanceUid: '1.2.3.2.1', patientId: 'P2', patientName: 'Doe^Jane', rows: 4, columns: 4 });
  symlinkSync('..', join(inputs, 'series', 'loop'));
  symlinkSync('series', join(inputs, 'again'));
  symlinkSync('self', join(inputs, 'self'));
  const locked = join(inputs, 'locked');
  mkdirSync(locked);
  chmodSync(locked, 0);
  const summary = runDeid(loaded, [inputs], join(dir, 'out'), silentLogger());
  chmodSync(locked, 0o755);
  assert.equal(summary.done, 1, JSON.stringify(summary));
  assert.deepEqual(summary.replaced, [], 'the file is de-identified once');
  // root reads every folder: the locked one fails only where permissions hold.
  if (process.getuid?.() !== 0) assert.deepEqual(summary.failed.map((failure) => failure.path), [locked]);
  else assert.deepEqual(summary.failed, []);
});

// Found in the UID review: under retainUIDs a redacted input gets a UID of its own, and gantry deid
// never made the references to it follow (the node does): an image that references it, done first,
// named a UID that no output had.
test('gantry deid under retainUIDs: references to a redacted input follow its new UID, whichever is done first', async () => {
  const dir = scratchDir('deid-cli-renames');
  const inputs = join(dir, 'in');
  mkdirSync(inputs, { recursive: true });
  const ultrasound = join(inputs, 'b-us.dcm');
  writeUltrasound(ultrasound);
  const original = parseFile(ultrasound);
  const text = (elements: typeof original.elements, tag: number, source = original.source) => elementText(elements.find((element) => element.tag === tag), source, false)?.replace(/[\0 ]+$/, '');
  const originalUid = text(original.elements, 0x00080018) ?? '';
  const study = text(original.elements, 0x0020000d) ?? '';
  original.close();
  const itemBody = Buffer.concat([encodeElement(0x00081150, 'UI', '1.2.840.10008.5.1.4.1.1.3.1'), encodeElement(0x00081155, 'UI', originalUid)]);
  const item = Buffer.concat([Buffer.from([0xfe, 0xff, 0x00, 0xe0]), Buffer.alloc(4), itemBody]);
  item.writeUInt32LE(itemBody.length, 4);
  const { sopInstanceUid: referencingUid } = await writeSyntheticFile(join(inputs, 'a-referencing.dcm'), {
    studyInstanceUid: study,
    seriesInstanceUid: `${study}.77`,
    patientId: 'PIX-0001',
    patientName: 'Burned^In',
    rows: 16,
    columns: 16,
    extra: [[0x00081140, 'SQ', item]],
  });
  const zones = join(dir, 'zones.yaml');
  writeFileSync(zones, 'zones:\n  - { name: acme band, match: { Manufacturer: ACME }, rects: [[0, 0, 80, 8]] }\n');
  const loaded: LoadedConfig = {
    config: parseConfigText(`storage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: a secret of this test\n  options: [retainUIDs, cleanPixelData]\n  pixelZones: ${zones}\n`, 'test'),
    source: 'test',
    embedded: false,
  };
  // A later input of the same SOP Instance UID, referencing nothing, replaces the referencing one's
  // output: it stays (found in the review of this change: the second pass wrote the first back).
  await writeSyntheticFile(join(inputs, 'c-again.dcm'), { studyInstanceUid: study, seriesInstanceUid: `${study}.77`, sopInstanceUid: referencingUid, patientId: 'PIX-0001', patientName: 'Burned^In', rows: 16, columns: 16 });
  const out = join(dir, 'out');
  const summary = runDeid(loaded, [inputs], out, silentLogger());
  assert.equal(summary.done, 3, JSON.stringify(summary));
  assert.deepEqual(summary.replaced.map((replaced) => [basename(replaced.path), basename(replaced.earlier)]), [['c-again.dcm', 'a-referencing.dcm']]);
  const again = readdirSync(out, { recursive: true }).map(String).filter((name) => name.endsWith('.dcm')).map((name) => parseFile(join(out, name)));
  const replacedOutput = again.find((parsed) => text(parsed.elements, 0x00080018, parsed.source) === referencingUid);
  assert.equal(replacedOutput?.elements.some((element) => element.tag === 0x00081140), false, 'the later input, which references nothing, is what stays');
  for (const parsed of again) parsed.close();
  // Without it, the references follow as above.
  rmSync(join(inputs, 'c-again.dcm'));
  rmSync(out, { recursive: true });
  const followed = runDeid(loaded, [inputs], out, silentLogger());
  assert.equal(followed.done, 2, JSON.stringify(followed));
  const outputs = readdirSync(out, { recursive: true }).map(String).filter((name) => name.endsWith('.dcm')).map((name) => parseFile(join(out, name)));
  const uids = outputs.map((parsed) => text(parsed.elements, 0x00080018, parsed.source));
  const renamed = uids.find((uid) => uid !== referencingUid);
  assert.ok(renamed && renamed !== originalUid, 'the redacted ultrasound got a UID of its own');
  const referencing = outputs[uids.indexOf(referencingUid)];
  assert.ok(referencing);
  const reference = referencing.elements.find((element) => element.tag === 0x00081140)?.items?.[0];
  assert.equal(reference && text(reference.elements, 0x00081155, referencing.source), renamed, 'the reference names it');
  for (const parsed of outputs) parsed.close();
});

// Found in the secrets review: gantry deid with the node's storage.path and another secret (a stale
// variable in the operator's shell) wrote other pseudonyms than the node's, silently.
test("gantry deid refuses a secret other than the one the node de-identifies its storage with", async () => {
  const dir = scratchDir('deid-cli-secret');
  const storagePath = join(dir, 'data');
  mkdirSync(storagePath, { recursive: true });
  const db = openDatabase(join(storagePath, 'index.sqlite'));
  recordSecretDigest(db, secretDigest('the node secret of this test'));
  db.close();
  const inputs = join(dir, 'in');
  mkdirSync(inputs);
  await writeSyntheticFile(join(inputs, 'a.dcm'), { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'P1', patientName: 'Doe^Jane' });
  const configWith = (secret: string): LoadedConfig => ({ config: parseConfigText(`storage:\n  path: ${storagePath}\ndeid:\n  secret: ${secret}\n`, 'test'), source: 'test.yaml', embedded: false });
  assert.throws(() => runDeid(configWith('another secret of this test'), [inputs], join(dir, 'out'), silentLogger()), (error: Error) => error instanceof ConfigError && /not the one the node de-identifies this storage with/.test(error.message));
  assert.equal(runDeid(configWith('the node secret of this test'), [inputs], join(dir, 'out'), silentLogger()).done, 1);
});
