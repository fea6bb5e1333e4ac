/**
 * A PACS pushing to Gantry: Orthanc (DCMTK's network layer, with its own choice of presentation
 * contexts) sends what it stores as a C-STORE SCU, here every file of pydicom's test set that Orthanc
 * itself accepts, one instance per request, to DCMTK storescp (accepting every transfer syntax, writing
 * what it receives bit for bit) and to Gantry. Every instance Orthanc delivers to storescp it delivers
 * to Gantry too, which indexes it once and keeps its dataset byte for byte as it came.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startStorescp } from '../helpers/destinations.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { datasetBytes, indexedRows } from '../helpers/stored.js';
import { scratchDir } from '../helpers/scratch.js';

test('Orthanc as a sender: what it delivers to storescp it delivers to Gantry, stored and indexed once, its dataset as sent', async (t) => {
  if (!(await needPeers(t, 'Orthanc', 'storescp', PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('orthanc-sender');
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  t.after(() => gantry.stop());
  const storescp = await startStorescp(join(dir, 'storescp'), ['+xa', '+B']);
  t.after(() => storescp.stop());
  const orthanc = await startOrthanc(join(dir, 'orthanc'));
  t.after(() => orthanc.stop());
  const base = `http://127.0.0.1:${orthanc.httpPort}`;
  const accepted: string[] = [];
  for (const entry of readdirSync(PYDICOM_TEST_FILES, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isFile()) continue;
    const response = await fetch(`${base}/instances`, { method: 'POST', body: readFileSync(join(PYDICOM_TEST_FILES, entry.name)) });
    if (!response.ok) continue;
    const body = (await response.json()) as { ID?: string } | Array<{ ID: string }>;
    for (const stored of Array.isArray(body) ? body : [body]) if (stored.ID && !accepted.includes(stored.ID)) accepted.push(stored.ID);
  }
  assert.ok(accepted.length >= 30, `Orthanc took ${accepted.length} of pydicom's files`);
  for (const [name, port, aeTitle] of [['gantry', gantry.port, gantry.aeTitle], ['storescp', storescp.port, 'ANY-SCP']] as const) {
    assert.ok((await fetch(`${base}/modalities/${name}`, { method: 'PUT', body: JSON.stringify({ AET: aeTitle, Host: '127.0.0.1', Port: port }) })).ok);
  }
  const deliver = async (modality: string, id: string) =>
    (await fetch(`${base}/modalities/${modality}/store`, { method: 'POST', body: JSON.stringify({ Resources: [id], Synchronous: true }) })).ok;
  let delivered = 0;
  for (const id of accepted) {
    if (!(await deliver('storescp', id))) continue;
    delivered += 1;
    assert.ok(await deliver('gantry', id), `${id}: Orthanc delivered it to storescp, not to Gantry`);
  }
  assert.ok(delivered >= 30, `Orthanc delivered ${delivered} to storescp`);
  const rows = indexedRows(gantry.storagePath);
  const bySop = new Map(rows.map((row) => [row.sopInstanceUid, row]));
  assert.equal(rows.length, delivered, 'one row per instance delivered');
  assert.equal(bySop.size, rows.length, 'one row per SOP Instance UID');
  // What Orthanc puts on the wire is not the file it holds (its DCMTK layer writes sequences with
  // explicit lengths and group lengths anew): the reference is what storescp +B wrote as it came.
  const storescpFiles = readdirSync(join(dir, 'storescp'));
  for (const row of rows) {
    const reference = storescpFiles.find((name) => name.endsWith(`.${row.sopInstanceUid}`));
    assert.ok(reference, `${row.sopInstanceUid}: storescp has it too`);
    assert.ok(datasetBytes(join(gantry.storagePath, row.filePath)).equals(datasetBytes(join(dir, 'storescp', reference))), `${row.sopInstanceUid}: the dataset as sent`);
  }
});
