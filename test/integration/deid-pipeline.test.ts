/**
 * The node de-identifies what it receives: instances leave state `received` for `deidentified`
 * (a new file, no identity, consistent UIDs, an audit), `quarantined` (pixels that may show identity)
 * or `failed` (with its reason), without holding up the stores.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { storescu } from '../helpers/dcmtk.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { sleep } from '../helpers/processes.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { scratchDir } from '../helpers/scratch.js';
import { elementHeader, encodeDataset, instanceElements, newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';
import { ELEMENTS_PER_CONTOUR, writeLargeStructureSet } from '../helpers/large-header.js';

interface Row {
  sop: string;
  study: string;
  state: string;
  reason: string | null;
  deidPath: string | null;
  deidStudy: string | null;
  audit: string | null;
}

function rows(storagePath: string): Row[] {
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    return db
      .prepare(
        `SELECT i.sop_instance_uid AS sop, st.study_instance_uid AS study, i.state, i.state_reason AS reason,
           i.deid_file_path AS deidPath, i.deid_study_instance_uid AS deidStudy, a.entries AS audit
         FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk
           LEFT JOIN deid_audit_json a ON a.instance_pk = i.id`,
      )
      .all() as Row[];
  } finally {
    db.close();
  }
}

test('received instances are de-identified, quarantined or failed, each with its record', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('pipeline');
  const corpus = join(dir, 'corpus');
  await mkdir(corpus);
  const study = newUid();
  const files: string[] = [];
  for (let i = 0; i < 6; i += 1) {
    const path = join(corpus, `ct${i}.dcm`);
    await writeSyntheticFile(path, { studyInstanceUid: study, seriesInstanceUid: i < 3 ? `${study}.1` : `${study}.2`, patientId: 'PIPE-ID-4711', patientName: 'Pipeline^Patient', instanceNumber: i + 1, rows: 64, columns: 64 });
    files.push(path);
  }
  const ultrasound = join(corpus, 'us.dcm');
  await writeSyntheticFile(ultrasound, { sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', modality: 'US', studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'PIPE-ID-4711', patientName: 'Pipeline^Patient', rows: 16, columns: 16 });
  files.push(ultrasound);

  const gantry = await startGantryProcess(join(dir, 'gantry'));
  t.after(() => gantry.stop());
  const sent = await storescu(gantry.port, gantry.aeTitle, files);
  assert.equal(sent.acknowledged.length, 7, sent.output.slice(-2000));

  // A dataset whose header reads but whose Pixel Data runs past its end. Sent as it is, the receive
  // path reads it to its end and refuses it (0xC000); deflated, it is read up to Pixel Data only
  // (inflating all of it would cost what its header does not): stored, then fails alone.
  const raw = await RawAssociation.open(gantry.port);
  const contexts = [
    { id: 1, abstractSyntax: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxes: ['1.2.840.10008.1.2.1'] },
    { id: 3, abstractSyntax: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxes: ['1.2.840.10008.1.2.1.99'] },
  ];
  await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts });
  const broken = instanceElements({ studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'BROKEN1', patientName: 'Broken^Pixels', rows: 8, columns: 8 });
  const brokenDataset = Buffer.concat([encodeDataset(broken.elements), elementHeader(0x7fe00010, 'OW', 1000), Buffer.alloc(10)]);
  assert.equal((await raw.store(1, broken.sopClassUid, broken.sopInstanceUid, brokenDataset))?.status, 0xc000, 'refused, not acknowledged');
  assert.equal((await raw.store(3, broken.sopClassUid, broken.sopInstanceUid, deflateRawSync(brokenDataset), 2))?.status, 0);
  raw.destroy();

  const deadline = Date.now() + 30_000;
  while (rows(gantry.storagePath).some((row) => row.state === 'received') && Date.now() < deadline) await sleep(100);
  const all = rows(gantry.storagePath);
  assert.equal(all.length, 8);
  const cts = all.filter((row) => row.study === study);
  assert.equal(cts.length, 6);
  for (const row of cts) {
    assert.equal(row.state, 'deidentified');
    assert.ok(row.deidPath && existsSync(join(gantry.storagePath, row.deidPath)), 'the de-identified file exists');
    const bytes = readFileSync(join(gantry.storagePath, row.deidPath as string)).toString('latin1');
    for (const value of ['PIPE-ID-4711', 'Pipeline', study]) assert.ok(!bytes.includes(value), `${value} left in the output`);
    assert.ok(row.audit && JSON.parse(row.audit).length > 5, 'an audit of what was done');
    assert.ok(!(row.audit ?? '').includes('Pipeline') && !(row.audit ?? '').includes('PIPE-ID'), 'the audit holds no original value');
  }
  assert.equal(new Set(cts.map((row) => row.deidStudy)).size, 1, 'one de-identified Study Instance UID for the study');
  const us = all.find((row) => row.sop !== broken.sopInstanceUid && row.study !== study);
  assert.equal(us?.state, 'quarantined');
  assert.match(us?.reason ?? '', /US usually carries burned-in text/);
  const failed = all.find((row) => row.sop === broken.sopInstanceUid);
  assert.equal(failed?.state, 'failed');
  assert.match(failed?.reason ?? '', /past the end|ends early/);
  assert.doesNotMatch(gantry.output(), /Pipeline|PIPE-ID-4711|Broken\^Pixels/, 'no PHI in the log');
});

/** Contours enough to run a 96 MB de-identification thread out of heap: 540,000 data elements, 13 MB
 * (the threads ran out at 292,500 elements of this structure set in explicit VR, and at 405,000 in
 * implicit VR, as storescu sends it, 2026-12-01). */
const CONTOURS_OVER_THREAD_HEAP = 60_000;

/** Waits until no row is `received` (30 s at most), and returns the rows. */
async function settledRows(storagePath: string): Promise<Row[]> {
  const deadline = Date.now() + 30_000;
  while (rows(storagePath).some((row) => row.state === 'received') && Date.now() < deadline) await sleep(100);
  return rows(storagePath);
}

// Such an instance ran its thread out of memory and was recorded as failed for good, with piscina's
// message only; the PHI was held, but a legitimate object could never be de-identified.
test('an instance whose header runs a thread out of memory is de-identified in the large-instance thread, beside normal ones', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('pipeline-large');
  const corpus = join(dir, 'corpus');
  await mkdir(corpus);
  const large = join(corpus, 'rtstruct.dcm');
  const study = newUid();
  const patient = { patientId: 'LARGE-ID-5150', patientName: 'Contour^Patient' };
  const { sopInstanceUid } = await writeLargeStructureSet(large, { contours: CONTOURS_OVER_THREAD_HEAP, studyInstanceUid: study, seriesInstanceUid: newUid(), ...patient });
  assert.ok(CONTOURS_OVER_THREAD_HEAP * ELEMENTS_PER_CONTOUR > 405_000);
  const normal = [0, 1, 2].map((i) => join(corpus, `ct${i}.dcm`));
  for (const [i, path] of normal.entries()) await writeSyntheticFile(path, { studyInstanceUid: study, seriesInstanceUid: `${study}.1`, ...patient, instanceNumber: i + 1, rows: 64, columns: 64 });

  const gantry = await startGantryProcess(join(dir, 'gantry'), { deid: { largeInstanceHeapMb: 512 } });
  t.after(() => gantry.stop());
  const sent = await storescu(gantry.port, gantry.aeTitle, [large, ...normal]);
  assert.equal(sent.acknowledged.length, 4, sent.output.slice(-2000));

  const all = await settledRows(gantry.storagePath);
  assert.deepEqual(all.map((row) => row.state), ['deidentified', 'deidentified', 'deidentified', 'deidentified'], JSON.stringify(all.map((row) => row.reason)));
  const structureSet = all.find((row) => row.sop === sopInstanceUid);
  const bytes = readFileSync(join(gantry.storagePath, structureSet?.deidPath as string)).toString('latin1');
  for (const value of [patient.patientId, 'Contour^Patient', study]) assert.ok(!bytes.includes(value), `${value} left in the output`);
  const output = gantry.output();
  assert.equal(output.match(/done again in the large-instance thread/g)?.length, 1, 'done again once');
  assert.doesNotMatch(output, /de-identification failed/);
  assert.doesNotMatch(output, /LARGE-ID-5150|Contour\^Patient/, 'no PHI in the log');
});

test('an instance too large for the large-instance thread too is recorded as failed once, saying what to change, and one beside it succeeds', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('pipeline-too-large');
  const corpus = join(dir, 'corpus');
  await mkdir(corpus);
  const large = join(corpus, 'rtstruct.dcm');
  const normal = join(corpus, 'ct.dcm');
  const patient = { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'LARGE-ID-5151', patientName: 'Contour^Patient' };
  const { sopInstanceUid } = await writeLargeStructureSet(large, { contours: CONTOURS_OVER_THREAD_HEAP, ...patient });
  await writeSyntheticFile(normal, { ...patient, rows: 64, columns: 64 });

  // A heap smaller than the threads' own: the second try fails as the first did.
  const gantry = await startGantryProcess(join(dir, 'gantry'), { deid: { largeInstanceHeapMb: 48 } });
  t.after(() => gantry.stop());
  const sent = await storescu(gantry.port, gantry.aeTitle, [large, normal]);
  assert.equal(sent.acknowledged.length, 2, sent.output.slice(-2000));

  const all = await settledRows(gantry.storagePath);
  const structureSet = all.find((row) => row.sop === sopInstanceUid);
  assert.equal(structureSet?.state, 'failed');
  assert.match(structureSet?.reason ?? '', /^ERR_WORKER_OUT_OF_MEMORY: its header needs more than deid\.largeInstanceHeapMb \(48 MB\) of heap; raise it/);
  assert.equal(all.find((row) => row.sop !== sopInstanceUid)?.state, 'deidentified');
  // Recorded once: later polls do not try it again.
  await sleep(1500);
  const output = gantry.output();
  assert.equal(output.match(/done again in the large-instance thread/g)?.length, 1);
  assert.equal(output.match(/"msg":"de-identification failed"/g)?.length, 1);
  assert.doesNotMatch(output, /LARGE-ID-5151|Contour\^Patient/, 'no PHI in the log');
});
