/**
 * DCMTK storescu sends every file of python3-pydicom's test_files, each in its own transfer syntax,
 * to DCMTK storescp +B and to
 * Gantry in the same run: Gantry keeps every instance storescp keeps, each stored dataset is byte for
 * byte what storescp received, and the index holds the right hierarchy (checked with dcmdump).
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from '../helpers/scratch.js';
import { test } from 'node:test';
import { dcmdumpValues, storescu, writeStorescuProfile } from '../helpers/dcmtk.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { DCMTK_ENV, freePort, start, stop, waitForPort } from '../helpers/processes.js';
import { datasetBytes, indexedRows, listFiles, metaValue } from '../helpers/stored.js';

test('every real file that storescp keeps, Gantry keeps too, byte for byte and indexed right', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp', 'dcmdump', PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('real');

  const scpOut = join(dir, 'storescp');
  const scpPort = await freePort();
  await import('node:fs/promises').then((fs) => fs.mkdir(scpOut));
  const scp = start('storescp', ['+B', '+xa', '-od', scpOut, String(scpPort)], { env: DCMTK_ENV });
  t.after(() => stop(scp, 'SIGKILL'));
  await waitForPort(scpPort);
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  t.after(() => gantry.stop());

  // Each file goes in its own transfer syntax (storescu would otherwise convert to uncompressed).
  const profile = join(dir, 'storescu.cfg');
  await writeStorescuProfile(listFiles(PYDICOM_TEST_FILES), profile);
  const args = ['-xf', profile, 'Corpus', '-nh', '+sd', '+r'];
  const toScp = await storescu(scpPort, 'ANY-SCP', [PYDICOM_TEST_FILES], args);
  const toGantry = await storescu(gantry.port, gantry.aeTitle, [PYDICOM_TEST_FILES], args);
  assert.ok(toScp.acknowledged.length >= 90, `storescp acknowledged only ${toScp.acknowledged.length}`);
  assert.deepEqual(toGantry.acknowledged, toScp.acknowledged, 'Gantry acknowledges exactly the files storescp acknowledges');
  assert.deepEqual(toGantry.refused, []);

  const rows = new Map(indexedRows(gantry.storagePath).map((row) => [row.sopInstanceUid, row]));
  // Files that share a SOP Instance UID replace each other, so the syntaxes are counted over what
  // Gantry acknowledged, each file in its own syntax.
  const syntaxes = new Set(toGantry.acknowledged.map((file) => metaValue(file, 0x0010)));
  const expected = {
    'implicit VR LE': '1.2.840.10008.1.2',
    'explicit VR LE': '1.2.840.10008.1.2.1',
    'deflated': '1.2.840.10008.1.2.1.99',
    'explicit VR BE': '1.2.840.10008.1.2.2',
    'JPEG baseline': '1.2.840.10008.1.2.4.50',
    'JPEG extended': '1.2.840.10008.1.2.4.51',
    'JPEG lossless SV1': '1.2.840.10008.1.2.4.70',
    'JPEG-LS lossless': '1.2.840.10008.1.2.4.80',
    'JPEG 2000 lossless': '1.2.840.10008.1.2.4.90',
    'JPEG 2000': '1.2.840.10008.1.2.4.91',
    'RLE': '1.2.840.10008.1.2.5',
  };
  for (const [name, uid] of Object.entries(expected)) assert.ok(syntaxes.has(uid), `no ${name} (${uid}) instance was stored; seen: ${[...syntaxes].join(' ')}`);
  const kept = readdirSync(scpOut);
  assert.equal(rows.size, kept.length, 'one index row per distinct SOP instance storescp kept');
  for (const name of kept) {
    const scpFile = join(scpOut, name);
    const sopInstanceUid = metaValue(scpFile, 0x0003) as string;
    const row = rows.get(sopInstanceUid);
    assert.ok(row, `${name}: not indexed by Gantry`);
    const gantryFile = join(gantry.storagePath, row.filePath);
    assert.ok(datasetBytes(gantryFile).equals(datasetBytes(scpFile)), `${name}: dataset differs from what storescp received`);
    assert.equal(metaValue(gantryFile, 0x0010), metaValue(scpFile, 0x0010), `${name}: transfer syntax`);
    assert.equal(metaValue(gantryFile, 0x0002), metaValue(scpFile, 0x0002), `${name}: SOP class`);
    const dumped = await dcmdumpValues(scpFile, ['0020,000d', '0020,000e', '0010,0020']);
    assert.equal(row.studyInstanceUid, dumped['0020,000d'], `${name}: StudyInstanceUID`);
    assert.equal(row.seriesInstanceUid, dumped['0020,000e'], `${name}: SeriesInstanceUID`);
    assert.equal(row.patientId, dumped['0010,0020'] ?? '', `${name}: PatientID`);
  }
});
