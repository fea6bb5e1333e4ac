/** The quarantine workflow of operators: gantry quarantine ls, show, release (with an override), delete. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { storescu } from '../helpers/dcmtk.js';
import { waitUntil } from '../helpers/destinations.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { indexedRows } from '../helpers/stored.js';
import { newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';

const ULTRASOUND = '1.2.840.10008.5.1.4.1.1.6.1';

test('held instances are listed without patient data, shown, released with an override, or deleted', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('quarantine');
  const corpus = join(dir, 'corpus');
  await mkdir(corpus);
  const files: string[] = [];
  for (let i = 0; i < 2; i += 1) {
    const path = join(corpus, `us${i}.dcm`);
    await writeSyntheticFile(path, { sopClassUid: ULTRASOUND, modality: 'US', studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: `HELD-${i}`, patientName: 'Held^Patient', rows: 16, columns: 16 });
    files.push(path);
  }
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  t.after(() => gantry.stop());
  assert.equal((await storescu(gantry.port, gantry.aeTitle, files)).acknowledged.length, 2);
  await waitUntil('quarantined', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'quarantined'));
  const cli = (...args: string[]) => run(process.execPath, [GANTRY_CLI, 'quarantine', ...args, '--config', gantry.configPath], { timeoutMs: 30_000 });

  const listed = await cli('ls');
  assert.equal(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trim().split('\n').slice(1);
  assert.equal(lines.length, 2);
  assert.ok(lines.every((line) => /^\d+\tquarantined\t.*\tSTORESCU\tUS\t.*burned-in|^\d+\tquarantined\t.*\tSTORESCU\tUS\t.*pixel/i.test(line)), listed.stdout);
  assert.ok(!/Held|HELD-/.test(listed.stdout), 'the list shows no patient data');
  const [first, second] = lines.map((line) => line.split('\t')[0] as string);
  const studies = await run(process.execPath, [GANTRY_CLI, 'queue', 'studies', '--state', 'quarantined', '--config', gantry.configPath], { timeoutMs: 30_000 });
  assert.equal(studies.code, 0, studies.stderr);
  assert.equal(studies.stdout.trim().split('\n').length, 3, `two studies with quarantined instances: ${studies.stdout}`);

  const shown = await cli('show', first as string);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /patientName: Held\^Patient/);
  assert.match(shown.stdout, /reason: .+/);

  const refused = await cli('release', first as string);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /--pass and\/or --ignore-findings/);
  const released = await cli('release', first as string, '--pass');
  assert.equal(released.code, 0, released.stderr);
  await waitUntil('released and de-identified', 30_000, () => indexedRows(gantry.storagePath).filter((row) => row.state === 'deidentified').length === 1);

  const held = indexedRows(gantry.storagePath).find((row) => row.state === 'quarantined');
  assert.ok(held);
  const deleted = await cli('delete', second as string);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal(indexedRows(gantry.storagePath).length, 1, 'its row is gone');
  assert.ok(!existsSync(join(gantry.storagePath, held.filePath)), 'its file is gone');
  assert.notEqual((await cli('delete', second as string)).code, 0, 'deleting twice is refused');
});
