/**
 * What the node and the operator commands write to stdout and stderr, through failures and held
 * instances as well as the happy path: never the patient's name, ID, birth date or accession number.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { storescu } from '../helpers/dcmtk.js';
import { waitUntil } from '../helpers/destinations.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { DCMTK_ENV, GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { indexedRows } from '../helpers/stored.js';
import { newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';

const NAME = 'Zebulonquix^Ambrosine';
const ID = 'PHIID93817';
const BIRTH = '19230417';
const ACCESSION = 'ACCPHI5521';
const PHI = new RegExp(['Zebulonquix', 'ZEBULONQUIX', 'Ambrosine', ID, BIRTH, ACCESSION].join('|'));

test('no patient data on stdout or stderr: stores, held instances, refused queries and retrieves, status', async (t) => {
  if (!(await needPeers(t, 'storescu', 'findscu', 'movescu'))) return;
  const dir = scratchDir('phi-sweep');
  const corpus = join(dir, 'corpus');
  mkdirSync(corpus, { recursive: true });
  const study = newUid();
  const phi = { patientName: NAME, patientId: ID, accessionNumber: ACCESSION, extra: [[0x00100030, 'DA', BIRTH]] as never, rows: 16, columns: 16 };
  const files = [join(corpus, 'ct.dcm'), join(corpus, 'us.dcm')];
  await writeSyntheticFile(files[0] as string, { ...phi, studyInstanceUid: study, seriesInstanceUid: newUid(), modality: 'CT' });
  await writeSyntheticFile(files[1] as string, { ...phi, studyInstanceUid: study, seriesInstanceUid: newUid(), modality: 'US', sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1' });
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    query: { sourceCallers: ['HOSPITAL@127.0.0.1'], researchCallers: ['RESEARCH'], maxResults: 1 },
    log: { level: 'debug' },
  });
  t.after(() => gantry.stop('SIGKILL'));
  const outputs: string[] = [];
  const sent = await storescu(gantry.port, gantry.aeTitle, files, ['-aet', 'MODALITY']);
  assert.equal(sent.acknowledged.length, 2, sent.output);
  await waitUntil('both decided', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state !== 'received'));
  const find = (calling: string, keys: string[]) =>
    run('findscu', ['-S', '-aet', calling, '-aec', gantry.aeTitle, ...keys.flatMap((key) => ['-k', key]), '127.0.0.1', String(gantry.port)], { env: DCMTK_ENV, timeoutMs: 30_000, cwd: dir });
  await find('HOSPITAL', ['QueryRetrieveLevel=STUDY', `PatientName=${NAME}`, `PatientID=${ID}`, 'StudyInstanceUID']);
  await find('HOSPITAL', ['QueryRetrieveLevel=STUDY', `StudyDate=${NAME}`, `PatientID=${ID}`]);
  await find('HOSPITAL', ['QueryRetrieveLevel=STUDY', `AccessionNumber=${ACCESSION}`, `PatientBirthDate=${BIRTH}`, 'StudyInstanceUID']);
  await find('STRANGER', ['QueryRetrieveLevel=STUDY', `PatientID=${ID}`]);
  await find('RESEARCH', ['QueryRetrieveLevel=PATIENT', `PatientID=${ID}`, `PatientName=${NAME}`]);
  await run('movescu', ['-S', '-aet', 'HOSPITAL', '-aec', gantry.aeTitle, '-aem', 'NOWHERE', '-k', 'QueryRetrieveLevel=PATIENT', '-k', `PatientID=${ID}`, '127.0.0.1', String(gantry.port)], { env: DCMTK_ENV, timeoutMs: 30_000 });
  await run('movescu', ['-S', '-aet', 'HOSPITAL', '-aec', gantry.aeTitle, '-aem', 'HOSPITAL', '-k', 'QueryRetrieveLevel=STUDY', '-k', `PatientID=${ID}`, '127.0.0.1', String(gantry.port)], { env: DCMTK_ENV, timeoutMs: 30_000 });
  for (const command of [['status'], ['queue', 'ls'], ['queue', 'studies', '-s', 'quarantined'], ['quarantine', 'ls'], ['audit']]) {
    const result = await run(process.execPath, [GANTRY_CLI, ...command, '--config', gantry.configPath], { timeoutMs: 30_000 });
    outputs.push(`$ gantry ${command.join(' ')}\n${result.stdout}${result.stderr}`);
  }
  await gantry.stop('SIGTERM');
  outputs.push(gantry.output());
  const all = outputs.join('\n');
  const leaks = all.split('\n').filter((line) => PHI.test(line));
  assert.deepEqual(leaks, [], 'patient data written');
});
