/**
 * C-MOVE from Gantry's index with DCMTK movescu, and Orthanc as a C-FIND client of Gantry: research
 * callers move de-identified copies (into Orthanc), source callers move originals only to a source-side
 * destination (storescp) when config allows, and de-identified copies elsewhere; an unknown destination
 * is refused; moves of originals are audited.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { dcmdumpValues, storescu } from '../helpers/dcmtk.js';
import { startStorescp, waitUntil } from '../helpers/destinations.js';
import { startGantryProcess, type GantryProcess } from '../helpers/gantry.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { DCMTK_ENV, freePort, GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { indexedRows } from '../helpers/stored.js';
import { encodeDataset, newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { CommandField, DATASET_PRESENT, NO_DATASET, type DimseCommand } from '../../src/dimse/command.js';

const STUDY_ROOT_MOVE = '1.2.840.10008.5.1.4.1.2.2.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

function movescu(port: number, calling: string, destination: string, keys: string[]) {
  return run('movescu', ['-v', '-S', '-aet', calling, '-aec', 'GANTRY', '-aem', destination, ...keys.flatMap((key) => ['-k', key]), '127.0.0.1', String(port)], {
    env: DCMTK_ENV,
    timeoutMs: 60_000,
  });
}

test('C-MOVE: research callers move de-identified copies, originals only to a source-side destination; Orthanc queries Gantry', async (t) => {
  if (!(await needPeers(t, 'storescu', 'movescu', 'getscu', 'storescp', 'dcmdump', 'Orthanc'))) return;
  const dir = scratchDir('retrieve');
  const corpus = join(dir, 'corpus');
  await mkdir(corpus);
  const study = newUid();
  const series = newUid();
  const files: string[] = [];
  for (let i = 0; i < 3; i += 1) {
    const path = join(corpus, `f${i}.dcm`);
    await writeSyntheticFile(path, { studyInstanceUid: study, seriesInstanceUid: series, patientId: 'MOVE-4711', patientName: 'Moved^Patient', instanceNumber: i + 1, rows: 16, columns: 16 });
    files.push(path);
  }
  const archive = await startStorescp(join(dir, 'archive'));
  t.after(() => archive.stop());
  const orthanc = await startOrthanc(join(dir, 'orthanc'));
  t.after(() => orthanc.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    query: {
      sourceCallers: ['HOSPITAL@127.0.0.1'],
      researchCallers: ['RESEARCH', orthanc.aeTitle],
      sourceRetrievesOriginals: true,
      moveDestinations: [
        { aeTitle: orthanc.aeTitle, host: '127.0.0.1', port: orthanc.dicomPort },
        { aeTitle: 'ARCHIVE', host: '127.0.0.1', port: archive.port, sourceSide: true },
        // The hospital workstation that retrieves with C-GET: originals only because it is listed here,
        // source side, at this address.
        { aeTitle: 'HOSPITAL', host: '127.0.0.1', port: 104, sourceSide: true },
        // Listed, and nothing listens there.
        { aeTitle: 'CLOSED', host: '127.0.0.1', port: await freePort() },
      ],
    },
  });
  t.after(() => gantry.stop());
  assert.equal((await storescu(gantry.port, gantry.aeTitle, files)).acknowledged.length, 3);
  await waitUntil('de-identified', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'deidentified'));
  const db = new Database(join(gantry.storagePath, 'index.sqlite'), { readonly: true });
  const deidStudy = (db.prepare('SELECT DISTINCT deid_study_instance_uid AS uid FROM instances').get() as { uid: string }).uid;
  db.close();

  // A research caller moves the study (by its de-identified UID) into Orthanc.
  const research = await movescu(gantry.port, 'RESEARCH', orthanc.aeTitle, ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${deidStudy}`]);
  assert.match(`${research.stdout}${research.stderr}`, /Received Final Move Response \(Success\)/, research.stderr);
  const inOrthanc = await orthanc.get<Array<{ PatientMainDicomTags: Record<string, string>; MainDicomTags: Record<string, string> }>>('/studies?expand');
  assert.equal(inOrthanc.length, 1);
  assert.equal(inOrthanc[0]?.MainDicomTags['StudyInstanceUID'], deidStudy);
  assert.ok(!/Moved/.test(inOrthanc[0]?.PatientMainDicomTags['PatientName'] ?? '') && inOrthanc[0]?.PatientMainDicomTags['PatientID'] !== 'MOVE-4711', 'no original identity');
  assert.equal((await orthanc.get<{ CountInstances: number }>('/statistics')).CountInstances, 3);
  // By its original UID a research caller moves nothing (the debug log shows the final counts).
  const byOriginal = await run('movescu', ['-d', '-S', '-aet', 'RESEARCH', '-aec', 'GANTRY', '-aem', orthanc.aeTitle, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', String(gantry.port)], {
    env: DCMTK_ENV,
    timeoutMs: 60_000,
  });
  const finalCounts = `${byOriginal.stdout}${byOriginal.stderr}`;
  assert.match(finalCounts, /Received Final Move Response\n[^]*Completed Suboperations *: 0\n[^]*DIMSE Status *: 0x0000/);

  // A source caller moves originals to the source-side archive; to Orthanc it gets the copies.
  const originals = await movescu(gantry.port, 'HOSPITAL', 'ARCHIVE', ['QueryRetrieveLevel=SERIES', `StudyInstanceUID=${study}`, `SeriesInstanceUID=${series}`]);
  assert.match(`${originals.stdout}${originals.stderr}`, /Received Final Move Response \(Success\)/, originals.stderr);
  const archived = readdirSync(join(dir, 'archive'));
  assert.equal(archived.length, 3);
  assert.equal((await dcmdumpValues(join(dir, 'archive', archived[0] as string), ['0010,0010']))['0010,0010'], 'Moved^Patient', 'the original');
  const audit = await run(process.execPath, [GANTRY_CLI, 'audit', '--config', gantry.configPath], { timeoutMs: 30_000 });
  assert.match(audit.stdout, /\tHOSPITAL\t127\.0\.0\.1\tC-MOVE\tstudy\tSERIES\t3\t0x0000/);

  // An unknown destination is refused.
  const unknown = await movescu(gantry.port, 'RESEARCH', 'NOWHERE', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${deidStudy}`]);
  assert.match(`${unknown.stdout}${unknown.stderr}`, /Received Final Move Response \(Refused: MoveDestinationUnknown\)/);
  // A destination that cannot be reached: every sub-operation failed, and the final response lists
  // them (PS3.4 C.4.2.1.4, Failed SOP Instance UID List; found in a review: it was left out).
  const closed = await run('movescu', ['-d', '-S', '-aet', 'RESEARCH', '-aec', 'GANTRY', '-aem', 'CLOSED', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${deidStudy}`, '127.0.0.1', String(gantry.port)], {
    env: DCMTK_ENV,
    timeoutMs: 60_000,
  });
  const closedOutput = `${closed.stdout}${closed.stderr}`;
  assert.match(closedOutput, /DIMSE Status *: 0xa702/, closedOutput.slice(-3000));
  const failedList = /\(0008,0058\) UI \[([^\]]*)\]/.exec(closedOutput)?.[1];
  const index = new Database(join(gantry.storagePath, 'index.sqlite'), { readonly: true });
  const deidUids = (index.prepare('SELECT deid_sop_instance_uid AS uid FROM instances').all() as Array<{ uid: string }>).map((row) => row.uid).sort();
  index.close();
  assert.deepEqual(failedList?.split('\\').sort(), deidUids, 'the research caller is told the UIDs it knows');

  // C-GET: the instances come back on the caller's own association (getscu takes the storage SCP role).
  const getDir = join(dir, 'got-research');
  await mkdir(getDir);
  const got = await run('getscu', ['-v', '-S', '-aet', 'RESEARCH', '-aec', 'GANTRY', '-od', getDir, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${deidStudy}`, '127.0.0.1', String(gantry.port)], {
    env: DCMTK_ENV,
    timeoutMs: 60_000,
  });
  assert.match(`${got.stdout}${got.stderr}`, /Received C-GET Response \(Success\)[^]*Number of Completed Suboperations : 3/, got.stderr);
  const gotFiles = readdirSync(getDir);
  assert.equal(gotFiles.length, 3, `${got.stdout}${got.stderr}`);
  const gotName = (await dcmdumpValues(join(getDir, gotFiles[0] as string), ['0010,0010']))['0010,0010'] ?? '';
  assert.ok(!/Moved/.test(gotName), 'a research C-GET gets the de-identified copy');
  const hospitalDir = join(dir, 'got-hospital');
  await mkdir(hospitalDir);
  await run('getscu', ['-S', '-aet', 'HOSPITAL', '-aec', 'GANTRY', '-od', hospitalDir, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', String(gantry.port)], {
    env: DCMTK_ENV,
    timeoutMs: 60_000,
  });
  const hospitalFiles = readdirSync(hospitalDir);
  assert.equal(hospitalFiles.length, 3);
  assert.equal((await dcmdumpValues(join(hospitalDir, hospitalFiles[0] as string), ['0010,0010']))['0010,0010'], 'Moved^Patient', 'a source C-GET gets the original');
  const auditAfterGet = await run(process.execPath, [GANTRY_CLI, 'audit', '--config', gantry.configPath], { timeoutMs: 30_000 });
  assert.match(auditAfterGet.stdout, /\tHOSPITAL\t127\.0\.0\.1\tC-GET\tstudy\tSTUDY\t3\t0x0000/);

  // Orthanc, a research caller, queries Gantry through its REST API and sees de-identified values only.
  const modality = await fetch(`http://127.0.0.1:${orthanc.httpPort}/modalities/gantry`, {
    method: 'PUT',
    body: JSON.stringify({ AET: 'GANTRY', Host: '127.0.0.1', Port: gantry.port }),
  });
  assert.ok(modality.ok);
  const asked = await fetch(`http://127.0.0.1:${orthanc.httpPort}/modalities/gantry/query`, {
    method: 'POST',
    body: JSON.stringify({ Level: 'Study', Query: { PatientName: '*', StudyInstanceUID: '', PatientID: '' } }),
  });
  const askedText = await asked.text();
  assert.ok(asked.ok, askedText);
  const { ID } = JSON.parse(askedText) as { ID: string };
  const answers = await orthanc.get<Array<Record<string, { Value: string }>>>(`/queries/${ID}/answers?expand`);
  assert.equal(answers.length, 1);
  const answer = JSON.stringify(answers[0]);
  assert.ok(answer.includes(deidStudy) && !answer.includes(study) && !answer.includes('MOVE-4711') && !answer.includes('Moved'), answer);
});

test('C-MOVE and C-GET of an instance received deflated reach peers that take only the uncompressed syntaxes, inflated', async (t) => {
  const deflated = join(PYDICOM_TEST_FILES, 'image_dfl.dcm');
  if (!(await needPeers(t, 'storescu', 'movescu', 'getscu', 'storescp', 'dcmdump', deflated))) return;
  const dir = scratchDir('retrieve-deflated');
  // storescp without +xa, getscu as it comes: explicit and implicit VR little endian and explicit big
  // endian, no Deflated Explicit VR Little Endian (as many PACS are configured).
  const archive = await startStorescp(join(dir, 'archive'));
  t.after(() => archive.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    query: {
      sourceCallers: ['HOSPITAL@127.0.0.1'],
      sourceRetrievesOriginals: true,
      moveDestinations: [
        { aeTitle: 'ARCHIVE', host: '127.0.0.1', port: archive.port, sourceSide: true },
        { aeTitle: 'HOSPITAL', host: '127.0.0.1', port: 104, sourceSide: true },
      ],
    },
  });
  t.after(() => gantry.stop());
  assert.equal((await storescu(gantry.port, gantry.aeTitle, [deflated], ['-xd'])).acknowledged.length, 1);
  const [row] = indexedRows(gantry.storagePath);
  assert.equal(row?.transferSyntaxUid, '1.2.840.10008.1.2.1.99', 'stored as received, deflated');
  const study = `StudyInstanceUID=${row?.studyInstanceUid ?? ''}`;
  const datasetDump = async (path: string) =>
    (await run('dcmdump', ['-q', '+L', path], { timeoutMs: 30_000 })).stdout
      .split('\n')
      .filter((line) => line.startsWith('(') && !line.startsWith('(0002,'))
      .join('\n');
  const expected = await datasetDump(deflated);

  const moved = await movescu(gantry.port, 'HOSPITAL', 'ARCHIVE', ['QueryRetrieveLevel=STUDY', study]);
  assert.match(`${moved.stdout}${moved.stderr}`, /Received Final Move Response \(Success\)/, `${moved.stdout}${moved.stderr}`);
  const archived = readdirSync(join(dir, 'archive'));
  assert.equal(archived.length, 1);
  assert.equal(await datasetDump(join(dir, 'archive', archived[0] as string)), expected, 'the same dataset, inflated');

  const getDir = join(dir, 'got');
  await mkdir(getDir);
  const got = await run('getscu', ['-v', '-S', '-aet', 'HOSPITAL', '-aec', 'GANTRY', '-od', getDir, '-k', 'QueryRetrieveLevel=STUDY', '-k', study, '127.0.0.1', String(gantry.port)], {
    env: DCMTK_ENV,
    timeoutMs: 60_000,
  });
  assert.match(`${got.stdout}${got.stderr}`, /Received C-GET Response \(Success\)[^]*Number of Completed Suboperations : 1/, `${got.stdout}${got.stderr}`);
  const gotFiles = readdirSync(getDir);
  assert.equal(gotFiles.length, 1);
  assert.equal(await datasetDump(join(getDir, gotFiles[0] as string)), expected, 'the same dataset, inflated');
});

test('C-GET of instances received in Explicit VR Big Endian reaches getscu, which Gantry answers in little endian', async (t) => {
  // Retired (PS3.5 A.3), yet still sent by old modalities. getscu proposes explicit little endian
  // first for each storage class and Gantry takes it, so a big-endian object has to be byte-swapped.
  // MR_small_bigendian: SS and 16-bit OW pixels; ExplVR_BigEnd: group lengths, 8-bit OB pixels;
  // liver_expb_1frame: nested sequences, UL, AT, FD.
  const files = ['MR_small_bigendian.dcm', 'ExplVR_BigEnd.dcm', 'liver_expb_1frame.dcm'].map((name) => join(PYDICOM_TEST_FILES, name));
  if (!(await needPeers(t, 'storescu', 'getscu', 'dcmdump', ...files))) return;
  const dir = scratchDir('retrieve-big-endian');
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    query: {
      sourceCallers: ['HOSPITAL@127.0.0.1'],
      sourceRetrievesOriginals: true,
      moveDestinations: [{ aeTitle: 'HOSPITAL', host: '127.0.0.1', port: 104, sourceSide: true }],
    },
  });
  t.after(() => gantry.stop());
  assert.equal((await storescu(gantry.port, gantry.aeTitle, files, ['-R'])).acknowledged.length, files.length);
  const rows = indexedRows(gantry.storagePath);
  assert.deepEqual(rows.map((row) => row.transferSyntaxUid), files.map(() => '1.2.840.10008.1.2.2'), 'stored as received');
  // The values as dcmdump reads them, whatever the byte order: every element but group lengths and
  // item delimiters, long values whole, sequence lengths left out (Gantry writes undefined lengths).
  const values = async (path: string) =>
    (await run('dcmdump', ['-q', '+L', path], { timeoutMs: 30_000 })).stdout
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line.startsWith('(') && !/^\((0002|[0-9a-f]{4},0000|fffe),/.test(line))
      .map((line) => line.replace(/\s*#.*$/, '').replace(/\((Sequence|Item) with .*$/, ''))
      .join('\n');

  for (const [index, row] of rows.entries()) {
    const getDir = join(dir, `got-${index}`);
    await mkdir(getDir);
    const keys = ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${row.studyInstanceUid}`, `SeriesInstanceUID=${row.seriesInstanceUid}`, `SOPInstanceUID=${row.sopInstanceUid}`];
    const got = await run('getscu', ['-v', '-S', '-aet', 'HOSPITAL', '-aec', 'GANTRY', '-od', getDir, ...keys.flatMap((key) => ['-k', key]), '127.0.0.1', String(gantry.port)], {
      env: DCMTK_ENV,
      timeoutMs: 60_000,
    });
    const output = `${got.stdout}${got.stderr}`;
    assert.match(output, /Received C-GET Response \(Success\)[^]*Number of Completed Suboperations : 1/, output);
    const [gotFile] = readdirSync(getDir);
    assert.equal(await values(join(getDir, gotFile as string)), await values(join(gantry.storagePath, row.filePath)), `${row.sopClassUid}: the same values, in little endian`);
  }
});

// Found in the retrieve review: on a C-GET's storage contexts Gantry took the caller's first syntax it
// reads, JPEG Lossless for getscu +xs, big endian for +xb, though it sends only what it holds or its
// little-endian form: every sub-operation failed, with little endian proposed in the same context.
test('C-GET takes a little-endian syntax for the storage contexts it sends on, whatever the caller lists first', async (t) => {
  const file = join(PYDICOM_TEST_FILES, 'CT_small.dcm');
  if (!(await needPeers(t, 'storescu', 'getscu', file))) return;
  const dir = scratchDir('retrieve-get-preference');
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    query: { sourceCallers: ['HOSPITAL@127.0.0.1'], sourceRetrievesOriginals: true, moveDestinations: [] },
  });
  t.after(() => gantry.stop());
  assert.equal((await storescu(gantry.port, gantry.aeTitle, [file], [])).acknowledged.length, 1);
  // An instance still waiting for de-identification is not retrieved (a failed sub-operation).
  await waitUntil('de-identified', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'deidentified'));
  const [row] = indexedRows(gantry.storagePath);
  assert.ok(row);
  for (const preference of ['+xs', '+xb']) {
    const getDir = join(dir, `got${preference}`);
    await mkdir(getDir);
    const got = await run('getscu', ['-v', '-S', preference, '-aet', 'HOSPITAL', '-aec', 'GANTRY', '-od', getDir, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${row.studyInstanceUid}`, '127.0.0.1', String(gantry.port)], {
      env: DCMTK_ENV,
      timeoutMs: 60_000,
    });
    const output = `${got.stdout}${got.stderr}`;
    assert.match(output, /Received C-GET Response \(Success\)[^]*Number of Completed Suboperations : 1/, `${preference}: ${output}`);
    assert.equal(readdirSync(getDir).length, 1, `${preference}: the instance arrives`);
  }
});

test('a sub-operation no presentation context can carry is named in the log and the Error Comment, not only counted', async (t) => {
  if (!(await needPeers(t, 'dcmsend', 'movescu', 'storescp'))) return;
  const dir = scratchDir('retrieve-no-context');
  // Siemens CSA Non-Image: accepted by Gantry (dicom.extraSopClasses), unknown to a storescp as it comes.
  const csaNonImage = '1.3.12.2.1107.5.9.1';
  const file = join(dir, 'csa.dcm');
  await mkdir(dir, { recursive: true });
  const study = newUid();
  await writeSyntheticFile(file, { sopClassUid: csaNonImage, studyInstanceUid: study, seriesInstanceUid: newUid(), patientId: 'CSA-1', patientName: 'Private^Class', rows: 8, columns: 8 });
  const archive = await startStorescp(join(dir, 'archive'));
  t.after(() => archive.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    dicom: { extraSopClasses: [csaNonImage] },
    query: {
      sourceCallers: ['HOSPITAL@127.0.0.1'],
      sourceRetrievesOriginals: true,
      moveDestinations: [{ aeTitle: 'ARCHIVE', host: '127.0.0.1', port: archive.port, sourceSide: true }],
    },
  });
  t.after(() => gantry.stop());
  // storescu refuses a SOP class it does not know; dcmsend sends it.
  const sent = await run('dcmsend', ['-v', '-aec', gantry.aeTitle, '127.0.0.1', String(gantry.port), file], { env: DCMTK_ENV, timeoutMs: 60_000 });
  assert.match(`${sent.stdout}${sent.stderr}`, /Received C-STORE Response \(Success\)/);

  const moved = await run('movescu', ['-d', '-S', '-aet', 'HOSPITAL', '-aec', 'GANTRY', '-aem', 'ARCHIVE', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', String(gantry.port)], {
    env: DCMTK_ENV,
    timeoutMs: 60_000,
  });
  const output = `${moved.stdout}${moved.stderr}`;
  assert.match(output, /DIMSE Status *: 0xa702/, output.slice(-3000));
  assert.match(output, /\(0000,0902\) LO \[1 sub-operation\(s\) failed, 1 with no presentation context\]/, output.slice(-3000));
  await waitUntil('the warning', 10_000, () => gantry.output().includes('no presentation context'));
  const warning = gantry.output().split('\n').find((line) => line.includes('no presentation context')) ?? '';
  assert.ok(warning.includes(`${csaNonImage} in 1.2.840.10008.1.2.1`) && warning.includes('"destination":"ARCHIVE"'), warning);
  assert.ok(!warning.includes('Private') && !warning.includes('CSA-1') && !warning.includes(study), 'no value of the instance');
});

/** The first response other than Pending within `ms`; undefined when the association ends before it. */
async function finalResponse(raw: RawAssociation, ms: number): Promise<DimseCommand | undefined> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const event = await raw.next(deadline - Date.now());
    if (event.kind !== 'command') return undefined;
    if (event.command.status !== 0xff00) return event.command;
  }
  return undefined;
}

/**
 * `file` stored into `gantry` and de-identified; a source caller (HOSPITAL) associated for C-MOVE, and
 * `move` sending a C-MOVE of its study to a Move Destination.
 */
async function studyToMove(t: TestContext, gantry: GantryProcess, file: string): Promise<{ raw: RawAssociation; move: (messageId: number, destination: string) => void }> {
  assert.equal((await storescu(gantry.port, gantry.aeTitle, [file], [])).acknowledged.length, 1);
  await waitUntil('de-identified', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'deidentified'));
  const [row] = indexedRows(gantry.storagePath);
  assert.ok(row);
  const raw = await RawAssociation.open(gantry.port);
  t.after(() => raw.destroy());
  assert.equal((await raw.associate({ called: gantry.aeTitle, calling: 'HOSPITAL', contexts: [{ id: 1, abstractSyntax: STUDY_ROOT_MOVE, transferSyntaxes: [EXPLICIT_LE] }] })).kind, 'accept');
  const move = (messageId: number, destination: string) => {
    raw.sendCommand(1, { commandField: CommandField.CMoveRq, messageId, priority: 0, affectedSopClassUid: STUDY_ROOT_MOVE, moveDestination: destination, commandDataSetType: DATASET_PRESENT });
    raw.sendDataset(1, encodeDataset([[0x00080052, 'CS', 'STUDY'], [0x0020000d, 'UI', row.studyInstanceUid]]));
  };
  return { raw, move };
}

// Left undone by the twentieth session: a C-CANCEL while the association to the Move Destination was
// being opened waited for it, up to forward.connectTimeoutSeconds for a destination that does not answer.
test('a C-CANCEL ends a C-MOVE at once while the association to its destination is being opened', async (t) => {
  const file = join(PYDICOM_TEST_FILES, 'CT_small.dcm');
  if (!(await needPeers(t, 'storescu', file))) return;
  const dir = scratchDir('retrieve-cancel-opening');
  // A destination that takes the connection and never answers the A-ASSOCIATE-RQ.
  const sockets: Socket[] = [];
  const silent = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    forward: { connectTimeoutSeconds: 120 },
    query: {
      sourceCallers: ['HOSPITAL@127.0.0.1'],
      sourceRetrievesOriginals: true,
      moveDestinations: [{ aeTitle: 'SILENT', host: '127.0.0.1', port: (silent.address() as { port: number }).port, sourceSide: true }],
    },
  });
  t.after(() => gantry.stop());
  const { raw, move } = await studyToMove(t, gantry, file);
  move(1, 'SILENT');
  await waitUntil('Gantry is opening the association to the destination', 15_000, () => sockets.length === 1);
  const cancelledAt = Date.now();
  raw.sendCommand(1, { commandField: CommandField.CCancelRq, messageIdBeingRespondedTo: 1, commandDataSetType: NO_DATASET });
  const final = await finalResponse(raw, 20_000);
  assert.ok(Date.now() - cancelledAt < 5_000, `the Cancel response came ${Date.now() - cancelledAt} ms after the C-CANCEL`);
  assert.equal(final?.status, 0xfe00);
  assert.equal(final?.numberOfFailedSuboperations, 1);
});

// Found in the retrieve review: a C-CANCEL was looked at only between sub-operations, so one a
// destination did not answer held the Cancel response up to forward.responseTimeoutSeconds (300 s).
test('a C-CANCEL ends a C-MOVE at once while its destination holds a sub-operation, that instance counted as failed', async (t) => {
  const file = join(PYDICOM_TEST_FILES, 'CT_small.dcm');
  if (!(await needPeers(t, 'storescu', 'storescp', file))) return;
  const dir = scratchDir('retrieve-cancel');
  // Two destinations that hold every store 60 s (one association at a time each).
  const slow = await startStorescp(join(dir, 'slow'), ['-aet', 'SLOW', '--sleep-during', '60']);
  t.after(() => slow.stop());
  const slower = await startStorescp(join(dir, 'slower'), ['-aet', 'SLOWER', '--sleep-during', '60']);
  t.after(() => slower.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    query: {
      sourceCallers: ['HOSPITAL@127.0.0.1'],
      sourceRetrievesOriginals: true,
      moveDestinations: [
        { aeTitle: 'SLOW', host: '127.0.0.1', port: slow.port, sourceSide: true },
        { aeTitle: 'SLOWER', host: '127.0.0.1', port: slower.port, sourceSide: true },
      ],
    },
  });
  t.after(() => gantry.stop());
  const { raw, move } = await studyToMove(t, gantry, file);
  move(1, 'SLOW');
  await waitUntil('the destination holds the sub-operation', 15_000, () => slow.requests() === 1);
  const cancelledAt = Date.now();
  raw.sendCommand(1, { commandField: CommandField.CCancelRq, messageIdBeingRespondedTo: 1, commandDataSetType: NO_DATASET });
  const final = await finalResponse(raw, 20_000);
  assert.ok(Date.now() - cancelledAt < 10_000, `the Cancel response came ${Date.now() - cancelledAt} ms after the C-CANCEL`);
  assert.equal(final?.status, 0xfe00);
  assert.equal(final?.numberOfFailedSuboperations, 1);

  // Found in the same review: a stop let a C-MOVE run through its grace period, then aborted its
  // caller without a final response. It ends as a C-CANCEL ends it.
  move(2, 'SLOWER');
  await waitUntil('the other destination holds its sub-operation', 15_000, () => slower.requests() === 1);
  const stopping = gantry.stop('SIGTERM');
  const last = await finalResponse(raw, 20_000);
  await stopping;
  assert.equal(last?.status, 0xfe00, 'a final response before the association ended');
  assert.equal(last?.messageIdBeingRespondedTo, 2);
});
