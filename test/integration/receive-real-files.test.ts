/**
 * DCMTK storescu -R sends every file of python3-pydicom's test_files to DCMTK storescp +B and to
 * Gantry in the same run: Gantry keeps every instance storescp keeps, each stored dataset is byte for
 * byte what storescp received, and the index holds the right hierarchy (checked with dcmdump).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { dcmdumpValues, storescu } from '../helpers/dcmtk.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { DCMTK_ENV, freePort, start, stop, waitForPort } from '../helpers/processes.js';
import { datasetBytes, indexedRows, metaValue } from '../helpers/stored.js';

test('every real file that storescp keeps, Gantry keeps too, byte for byte and indexed right', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp', 'dcmdump', PYDICOM_TEST_FILES))) return;
  const dir = mkdtempSync(join(tmpdir(), 'gantry-real-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  const scpOut = join(dir, 'storescp');
  const scpPort = await freePort();
  await import('node:fs/promises').then((fs) => fs.mkdir(scpOut));
  const scp = start('storescp', ['+B', '-od', scpOut, String(scpPort)], { env: DCMTK_ENV });
  t.after(() => stop(scp, 'SIGKILL'));
  await waitForPort(scpPort);
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  t.after(() => gantry.stop());

  const args = ['-R', '-nh', '+sd', '+r'];
  const toScp = await storescu(scpPort, 'ANY-SCP', [PYDICOM_TEST_FILES], args);
  const toGantry = await storescu(gantry.port, gantry.aeTitle, [PYDICOM_TEST_FILES], args);
  assert.ok(toScp.acknowledged.length >= 90, `storescp acknowledged only ${toScp.acknowledged.length}`);
  assert.deepEqual(toGantry.acknowledged, toScp.acknowledged, 'Gantry acknowledges exactly the files storescp acknowledges');
  assert.deepEqual(toGantry.refused, []);

  const rows = new Map(indexedRows(gantry.storagePath).map((row) => [row.sopInstanceUid, row]));
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
