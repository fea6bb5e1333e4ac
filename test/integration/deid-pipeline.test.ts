/**
 * The node de-identifies what it receives: instances leave state `received` for `deidentified`
 * (a new file, no identity, consistent UIDs, an audit), `quarantined` (pixels that may show identity)
 * or `failed` (with its reason), without holding up the stores.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { storescu } from '../helpers/dcmtk.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { sleep } from '../helpers/processes.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { scratchDir } from '../helpers/scratch.js';
import { elementHeader, encodeDataset, instanceElements, newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';

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

  // A dataset whose header reads but whose Pixel Data runs past its end: stored, then fails alone.
  const raw = await RawAssociation.open(gantry.port);
  await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: [{ id: 1, abstractSyntax: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxes: ['1.2.840.10008.1.2.1'] }] });
  const broken = instanceElements({ studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'BROKEN1', patientName: 'Broken^Pixels', rows: 8, columns: 8 });
  const brokenDataset = Buffer.concat([encodeDataset(broken.elements), elementHeader(0x7fe00010, 'OW', 1000), Buffer.alloc(10)]);
  assert.equal((await raw.store(1, broken.sopClassUid, broken.sopInstanceUid, brokenDataset))?.status, 0);
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
