/**
 * The C-STORE SCP's outcomes: generated corpora and a second sender (dcmjs-dimse) stored byte for
 * byte and indexed; out of resources (0xA700) below storage.minFreeBytes and recovery after a reload;
 * unreadable datasets (0xC000 range) with the association surviving; private SOP classes as
 * configured; re-sent instances.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '../helpers/scratch.js';
import { test } from 'node:test';
import dimse from 'dcmjs-dimse';
import { parse, stringify } from 'yaml';
import { storescu } from '../helpers/dcmtk.js';
import { startGantryProcess, type GantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { sleep } from '../helpers/processes.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { countRows, datasetBytes, indexedRows, leftoverIncoming, listFiles, metaValue, replacedOriginals } from '../helpers/stored.js';
import { elementHeader, encodeDataset, instanceElements, newUid, writeCorpus, writeSyntheticFile, type Element } from '../helpers/synthetic-dicom.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const CSA_NON_IMAGE = '1.3.12.2.1107.5.9.1';
const MR = '1.2.840.10008.5.1.4.1.1.4';

function tempDir(t: { after(fn: () => void): void }, name: string): string {
  const dir = scratchDir(name);
  return dir;
}

async function withGantry(t: { after(fn: () => Promise<unknown>): void }, dir: string, config: Parameters<typeof startGantryProcess>[1] = {}): Promise<GantryProcess> {
  const gantry = await startGantryProcess(join(dir, 'gantry'), config);
  t.after(() => gantry.stop());
  return gantry;
}

/** A small CT dataset (explicit VR little endian) with the given elements changed or added. */
function ctDataset(overrides: Element[] = [], drop: number[] = []): { dataset: Buffer; sopInstanceUid: string } {
  const { elements, sopInstanceUid } = instanceElements({ studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'RAW1', patientName: 'Raw^Test', rows: 4, columns: 4 });
  const byTag = new Map(elements.map((element) => [element[0], element]));
  for (const tag of drop) byTag.delete(tag);
  for (const element of overrides) byTag.set(element[0], element);
  const pixels: Element = [0x7fe00010, 'OW', Buffer.alloc(32)];
  return { dataset: encodeDataset([...byTag.values(), pixels]), sopInstanceUid: (byTag.get(0x00080018)?.[2] as string | undefined) ?? sopInstanceUid };
}

/** The Study and Series Instance UIDs of a dataset made by ctDataset. */
function indexedRowsOf(dataset: Buffer): { study: string; series: string } {
  const text = dataset.toString('latin1');
  const uidAfter = (tag: Buffer) => {
    const at = dataset.indexOf(tag);
    const length = dataset.readUInt16LE(at + 6);
    return text.slice(at + 8, at + 8 + length).replace(/\0+$/, '');
  };
  return { study: uidAfter(Buffer.from([0x20, 0x00, 0x0d, 0x00, 0x55, 0x49])), series: uidAfter(Buffer.from([0x20, 0x00, 0x0e, 0x00, 0x55, 0x49])) };
}

async function openStorage(gantry: GantryProcess, sopClassUid = CT): Promise<RawAssociation> {
  const raw = await RawAssociation.open(gantry.port);
  const answer = await raw.associate({
    called: gantry.aeTitle,
    calling: 'RAW',
    contexts: [
      { id: 1, abstractSyntax: sopClassUid, transferSyntaxes: [EXPLICIT_LE] },
      { id: 3, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: ['1.2.840.10008.1.2'] },
    ],
  });
  assert.equal(answer.kind, 'accept');
  return raw;
}

test('a generated multi-patient corpus is stored byte for byte with the right hierarchy', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = tempDir(t, 'corpus');
  const corpusDir = join(dir, 'corpus');
  await mkdir(corpusDir);
  const corpus = await writeCorpus(corpusDir, { patients: 3, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: 4 });
  const gantry = await withGantry(t, dir);
  const outcome = await storescu(gantry.port, gantry.aeTitle, [corpusDir], ['+sd']);
  assert.equal(outcome.code, 0, outcome.output.slice(-2000));
  assert.equal(outcome.acknowledged.length, corpus.length);
  assert.deepEqual(countRows(gantry.storagePath), { patients: 3, studies: 6, series: 12, instances: 48 });
  const rows = new Map(indexedRows(gantry.storagePath).map((row) => [row.sopInstanceUid, row]));
  for (const instance of corpus) {
    const row = rows.get(instance.sopInstanceUid);
    assert.ok(row);
    assert.equal(row.studyInstanceUid, instance.studyInstanceUid);
    assert.equal(row.seriesInstanceUid, instance.seriesInstanceUid);
    assert.equal(row.patientId, instance.patientId);
    assert.ok(['received', 'deidentified'].includes(row.state), row.state);
    assert.ok(datasetBytes(join(gantry.storagePath, row.filePath)).equals(datasetBytes(instance.path)), 'dataset identical to the source file');
  }
});

test('dcmjs-dimse Client, a second implementation, stores and is indexed', async (t) => {
  const dir = tempDir(t, 'dcmjs');
  const study = newUid();
  const series = newUid();
  const files: string[] = [];
  for (let i = 0; i < 5; i += 1) {
    const path = join(dir, `d${i}.dcm`);
    await writeSyntheticFile(path, { studyInstanceUid: study, seriesInstanceUid: series, patientId: 'DCMJS1', patientName: 'Dimse^Client', instanceNumber: i + 1, rows: 32, columns: 32 });
    files.push(path);
  }
  const gantry = await withGantry(t, dir);
  const statuses: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const client = new dimse.Client();
    for (const file of files) {
      const request = new dimse.requests.CStoreRequest(file);
      request.on('response', (response: InstanceType<typeof dimse.responses.CStoreResponse>) => statuses.push(response.getStatus()));
      client.addRequest(request);
    }
    client.on('closed', () => resolve());
    client.on('networkError', (error: Error) => reject(error));
    client.on('associationRejected', (reason: unknown) => reject(new Error(`rejected: ${JSON.stringify(reason)}`)));
    client.send('127.0.0.1', gantry.port, 'DCMJSDIMSE', gantry.aeTitle);
  });
  assert.deepEqual(statuses, [0, 0, 0, 0, 0]);
  const rows = indexedRows(gantry.storagePath);
  assert.equal(rows.length, 5);
  assert.ok(rows.every((row) => row.studyInstanceUid === study && row.patientId === 'DCMJS1'));
  // The stamp a reader compares (migration 019) is the placed file's, taken after its last write.
  for (const row of rows) {
    const stats = statSync(join(gantry.storagePath, row.filePath), { bigint: true });
    assert.deepEqual([row.fileMtimeNs, row.fileIno], [String(stats.mtimeNs), String(stats.ino)], row.filePath);
  }
});

test('below storage.minFreeBytes a store answers 0xA700; after the floor is lowered (SIGHUP) the next succeeds', async (t) => {
  const dir = tempDir(t, 'disk');
  const gantry = await withGantry(t, dir, { storage: { minFreeBytes: Number.MAX_SAFE_INTEGER } });
  const raw = await openStorage(gantry);
  t.after(() => raw.destroy());
  const first = ctDataset();
  const refused = await raw.store(1, CT, first.sopInstanceUid, first.dataset);
  assert.equal(refused?.status, 0xa700);
  assert.match(refused?.errorComment ?? '', /minFreeBytes/);
  assert.equal(countRows(gantry.storagePath).instances, 0);

  const config = parse(readFileSync(gantry.configPath, 'utf8')) as { storage: { minFreeBytes: number } };
  config.storage.minFreeBytes = 0;
  writeFileSync(gantry.configPath, stringify(config));
  process.kill(gantry.pid, 'SIGHUP');
  const deadline = Date.now() + 5000;
  while (!gantry.output().includes('configuration reloaded') && Date.now() < deadline) await sleep(20);

  const second = ctDataset();
  assert.equal((await raw.store(1, CT, second.sopInstanceUid, second.dataset, 2))?.status, 0x0000, 'the same association goes on');
  assert.equal(countRows(gantry.storagePath).instances, 1);
});

test('a write that fails (the file system refuses it) answers 0xA700; the next store succeeds', async (t) => {
  const dir = tempDir(t, 'efbig');
  const gantry = await startGantryProcess(join(dir, 'gantry'), {}, undefined, { fileSizeLimitKiB: 2048 });
  t.after(() => gantry.stop());
  const raw = await openStorage(gantry);
  t.after(() => raw.destroy());
  const { elements, sopInstanceUid } = instanceElements({ studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'BIG1', patientName: 'Too^Big', rows: 1024, columns: 1536 });
  const big = encodeDataset([...elements, [0x7fe00010, 'OW', Buffer.alloc(1024 * 1536 * 2)]]);
  const refused = await raw.store(1, CT, sopInstanceUid, big, 1);
  assert.equal(refused?.status, 0xa700);
  assert.match(refused?.errorComment ?? '', /out of resources/);
  assert.deepEqual(listFiles(join(gantry.storagePath, 'originals')), []);
  assert.deepEqual(leftoverIncoming(gantry.storagePath), []);
  const small = ctDataset();
  assert.equal((await raw.store(1, CT, small.sopInstanceUid, small.dataset, 2))?.status, 0);
  assert.equal(countRows(gantry.storagePath).instances, 1);
});

test('no patient name, ID, birth date or accession number reaches the log, whatever the outcome', async (t) => {
  const dir = tempDir(t, 'phi');
  const gantry = await withGantry(t, dir, { log: { level: 'trace' } });
  const raw = await openStorage(gantry);
  t.after(() => raw.destroy());
  const phi: Element[] = [
    [0x00100010, 'PN', 'Zyxwvut^Qwertyu'],
    [0x00100020, 'LO', 'PHIID918273'],
    [0x00100030, 'DA', '19330303'],
    [0x00080050, 'SH', 'ACCPHI5551'],
  ];
  const stored = ctDataset(phi);
  assert.equal((await raw.store(1, CT, stored.sopInstanceUid, stored.dataset, 1))?.status, 0);
  assert.equal((await raw.store(1, CT, stored.sopInstanceUid, stored.dataset, 2))?.status, 0, 're-sent');
  const noStudy = ctDataset(phi, [0x0020000d]);
  assert.equal((await raw.store(1, CT, noStudy.sopInstanceUid, noStudy.dataset, 3))?.status, 0xc001);
  const mismatch = ctDataset(phi);
  assert.equal((await raw.store(1, CT, newUid(), mismatch.dataset, 4))?.status, 0xc002);
  await raw.release();
  await sleep(200);
  const log = gantry.output();
  assert.match(log, /"msg":"association released"/, 'the log was captured');
  for (const value of ['Zyxwvut', 'Qwertyu', 'PHIID918273', '19330303', 'ACCPHI5551']) assert.ok(!log.includes(value), `${value} appears in the log`);
  assert.ok(!log.includes(stored.sopInstanceUid), 'nor do instance UIDs');
});

test('an unreadable dataset answers in the 0xC000 range with a comment, and the association goes on', async (t) => {
  const dir = tempDir(t, 'bad');
  const gantry = await withGantry(t, dir);
  const raw = await openStorage(gantry);
  t.after(() => raw.destroy());

  const garbage = Buffer.concat([ctDataset().dataset.subarray(0, 40), Buffer.from([0x10, 0x00, 0x10, 0x00, 0x01, 0x02, 0x04, 0x00, 1, 2, 3, 4])]);
  const unreadable = await raw.store(1, CT, newUid(), garbage, 1);
  assert.equal(unreadable?.status, 0xc000);
  assert.match(unreadable?.errorComment ?? '', /cannot be read/);

  const noStudy = ctDataset([], [0x0020000d]);
  const missing = await raw.store(1, CT, noStudy.sopInstanceUid, noStudy.dataset, 2);
  assert.equal(missing?.status, 0xc001);
  assert.match(missing?.errorComment ?? '', /StudyInstanceUID/);

  const mismatch = ctDataset();
  const wrongUid = await raw.store(1, CT, newUid(), mismatch.dataset, 3);
  assert.equal(wrongUid?.status, 0xc002);

  // Megabytes of private data, so the file written again behind its new header takes many chunks.
  const otherClass = ctDataset([[0x00080016, 'UI', MR], [0x00090010, 'LO', 'GANTRY TEST'], [0x00091010, 'OB', Buffer.alloc(3 * 1024 * 1024 + 2, 0x5a)]]);
  const warned = await raw.store(1, CT, otherClass.sopInstanceUid, otherClass.dataset, 4);
  assert.equal(warned?.status, 0xb007, 'stored, with the warning of PS3.4 B.2.3');
  // PS3.10 7.1: the Media Storage SOP Class UID is the data set's; the index follows the file.
  const relabelled = indexedRows(gantry.storagePath).find((row) => row.sopInstanceUid === otherClass.sopInstanceUid);
  assert.equal(relabelled?.sopClassUid, MR, 'indexed as the class its dataset says');
  const relabelledPath = join(gantry.storagePath, relabelled?.filePath ?? '');
  assert.equal(metaValue(relabelledPath, 0x0002), MR, 'the meta header names the dataset\'s class');
  assert.equal(metaValue(relabelledPath, 0x0003), otherClass.sopInstanceUid);
  assert.ok(datasetBytes(relabelledPath).equals(otherClass.dataset), 'the dataset stored byte for byte');
  assert.equal(statSync(relabelledPath).size, relabelled?.fileSize, 'the index has the size of the file written again');

  // Found in the quirks review: what follows Pixel Data was never read, and a dataset cut short inside
  // it, or with bytes after it that are no element, was acknowledged, then failed de-identification
  // for good (the dataset reader refuses it), the sender never told.
  const whole = ctDataset();
  const cutShort = [
    whole.dataset.subarray(0, whole.dataset.length - 8),
    Buffer.concat([whole.dataset, Buffer.from([1, 2, 3])]),
    Buffer.concat([whole.dataset, elementHeader(0xfffcfffc, 'OB', 1000), Buffer.alloc(10)]),
  ];
  for (const [index, dataset] of cutShort.entries()) {
    const answer = await raw.store(1, CT, whole.sopInstanceUid, dataset, 10 + index);
    assert.equal(answer?.status, 0xc000, `case ${index}: refused as unreadable`);
    assert.match(answer?.errorComment ?? '', /cannot be read: dataset ends inside an element/);
  }

  assert.equal(await raw.echo(3, 5), 0x0000, 'the association still serves');
  const good = ctDataset();
  assert.equal((await raw.store(1, CT, good.sopInstanceUid, good.dataset, 6))?.status, 0x0000);
  assert.equal(countRows(gantry.storagePath).instances, 2);
  assert.deepEqual(leftoverIncoming(gantry.storagePath), [], 'the first copy of the relabelled file is gone');
});

test('the Siemens CSA Non-Image class is refused by default and accepted when configured', async (t) => {
  // storescu 3.6.7 will not send a SOP class it does not know, so the bare requester proposes it.
  const dir = tempDir(t, 'csa');
  const contexts = [
    { id: 1, abstractSyntax: CSA_NON_IMAGE, transferSyntaxes: [EXPLICIT_LE] },
    { id: 3, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: ['1.2.840.10008.1.2'] },
  ];
  const csa = ctDataset([[0x00080016, 'UI', CSA_NON_IMAGE], [0x00080060, 'CS', 'MR']]);
  const configs = [
    { name: 'default', config: {}, accepted: false },
    { name: 'extraSopClasses', config: { dicom: { extraSopClasses: [CSA_NON_IMAGE] } }, accepted: true },
    { name: 'acceptUnknownSopClasses', config: { dicom: { acceptUnknownSopClasses: true } }, accepted: true },
  ];
  for (const { name, config, accepted } of configs) {
    const gantry = await startGantryProcess(join(dir, name), config);
    t.after(() => gantry.stop());
    const raw = await RawAssociation.open(gantry.port);
    t.after(() => raw.destroy());
    const answer = await raw.associate({ called: gantry.aeTitle, calling: 'SIEMENS', contexts });
    assert.equal(answer.kind, 'accept', name);
    if (answer.kind !== 'accept') continue;
    const result = answer.accept.presentationContexts.find((context) => context.id === 1)?.result;
    assert.equal(result, accepted ? 0 : 3, `${name}: presentation context result (3: abstract syntax not supported)`);
    if (!accepted) continue;
    assert.equal((await raw.store(1, CSA_NON_IMAGE, csa.sopInstanceUid, csa.dataset))?.status, 0, name);
    assert.equal(indexedRows(gantry.storagePath)[0]?.sopClassUid, CSA_NON_IMAGE, name);
  }
});

test('a re-sent SOP Instance UID replaces the stored copy, or keeps the first, never a second row', async (t) => {
  for (const duplicates of ['replace', 'keepFirst'] as const) {
    for (const sameSeries of [true, false]) {
      const name = `${duplicates}, ${sameSeries ? 'same series' : 'moved to another study'}`;
      const dir = tempDir(t, duplicates);
      const gantry = await withGantry(t, dir, { storage: { duplicates } });
      const raw = await openStorage(gantry);
      const first = ctDataset([[0x00081030, 'LO', 'FIRST COPY']]);
      const sopInstanceUid = first.sopInstanceUid;
      const hierarchy: Element[] = sameSeries
        ? [[0x0020000d, 'UI', indexedRowsOf(first.dataset).study], [0x0020000e, 'UI', indexedRowsOf(first.dataset).series]]
        : [];
      const second = ctDataset([[0x00080018, 'UI', sopInstanceUid], [0x00081030, 'LO', 'SECOND COPY'], ...hierarchy]);
      assert.equal((await raw.store(1, CT, sopInstanceUid, first.dataset, 1))?.status, 0);
      assert.equal((await raw.store(1, CT, sopInstanceUid, second.dataset, 2))?.status, 0);
      raw.destroy();
      const rows = indexedRows(gantry.storagePath);
      assert.equal(rows.length, 1, name);
      const stored = datasetBytes(join(gantry.storagePath, rows[0]?.filePath ?? ''));
      assert.ok(stored.equals(duplicates === 'replace' ? second.dataset : first.dataset), `${name}: the right copy is kept`);
      assert.equal(listFiles(join(gantry.storagePath, 'originals')).length, 1, `${name}: one file`);
      // Listed until a retention sweep finds it deleted (the node's first sweep ran at its start).
      const replaced = replacedOriginals(gantry.storagePath);
      assert.equal(replaced.length, duplicates === 'replace' ? 1 : 0, `${name}: the replaced copy is listed to delete`);
      for (const path of replaced) assert.equal(existsSync(join(gantry.storagePath, path)), false, `${name}: the replaced copy is deleted`);
    }
  }
});

test('the same SOP Instance UID stored on two associations at once: one row, one whole file', async (t) => {
  const dir = tempDir(t, 'race');
  const gantry = await withGantry(t, dir);
  const first = ctDataset([[0x00081030, 'LO', 'ONE']]);
  const uids = indexedRowsOf(first.dataset);
  const twin = ctDataset([[0x00080018, 'UI', first.sopInstanceUid], [0x0020000d, 'UI', uids.study], [0x0020000e, 'UI', uids.series], [0x00081030, 'LO', 'TWO']]);
  for (let round = 0; round < 5; round += 1) {
    const [a, b] = await Promise.all([openStorage(gantry), openStorage(gantry)]);
    const statuses = await Promise.all([a.store(1, CT, first.sopInstanceUid, first.dataset, 1), b.store(1, CT, first.sopInstanceUid, twin.dataset, 1)]);
    a.destroy();
    b.destroy();
    assert.deepEqual(statuses.map((response) => response?.status), [0, 0]);
    const rows = indexedRows(gantry.storagePath);
    assert.equal(rows.length, 1);
    const stored = datasetBytes(join(gantry.storagePath, rows[0]?.filePath ?? ''));
    assert.ok(stored.equals(first.dataset) || stored.equals(twin.dataset), 'the file is one of the two copies, whole');
    assert.equal(listFiles(join(gantry.storagePath, 'originals')).length, 1);
  }
});

test('with an asynchronous operations window, several stores are outstanding at once and all answered', async (t) => {
  const dir = tempDir(t, 'async');
  const gantry = await withGantry(t, dir);
  const raw = await RawAssociation.open(gantry.port);
  t.after(() => raw.destroy());
  const answer = await raw.associate({
    called: gantry.aeTitle,
    calling: 'ASYNC',
    contexts: [{ id: 1, abstractSyntax: CT, transferSyntaxes: [EXPLICIT_LE] }],
    asyncOperations: { maxOperationsInvoked: 8, maxOperationsPerformed: 1 },
  });
  assert.equal(answer.kind, 'accept');
  if (answer.kind !== 'accept') return;
  assert.deepEqual(answer.accept.userInformation.asyncOperations, { maxOperationsInvoked: 8, maxOperationsPerformed: 1 });
  const datasets = Array.from({ length: 6 }, () => ctDataset());
  datasets.forEach(({ dataset, sopInstanceUid }, i) => {
    raw.sendCommand(1, { commandField: 0x0001, messageId: i + 1, priority: 0, affectedSopClassUid: CT, affectedSopInstanceUid: sopInstanceUid, commandDataSetType: 0 });
    raw.sendDataset(1, dataset);
  });
  const answered = new Map<number, number | undefined>();
  for (let i = 0; i < datasets.length; i += 1) {
    const response = await raw.next();
    assert.equal(response.kind, 'command');
    if (response.kind === 'command') answered.set(response.command.messageIdBeingRespondedTo ?? -1, response.command.status);
  }
  assert.deepEqual([...answered.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6]);
  assert.ok([...answered.values()].every((status) => status === 0));
  assert.equal(countRows(gantry.storagePath).instances, 6);
});
