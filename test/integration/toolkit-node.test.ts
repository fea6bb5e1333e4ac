/**
 * The toolkit with a node on the session (found in review): what the node logs about files imported in
 * place, and what gantry export keeps of the pseudonyms of the node's copies.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { waitUntil } from '../helpers/destinations.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { indexedRows } from '../helpers/stored.js';
import { newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';

const SECRET = 'the secret of the toolkit review';

function gantry(args: string[]) {
  return run(process.execPath, [GANTRY_CLI, ...args], { timeoutMs: 120_000 });
}

function writeConfig(dir: string, storagePath: string): string {
  const path = join(dir, 'gantry.yaml');
  writeFileSync(path, stringify({ storage: { path: storagePath }, deid: { secret: SECRET, workers: 2 }, log: { level: 'warn' } }));
  return path;
}

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
