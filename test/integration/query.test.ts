/**
 * C-FIND over the index with DCMTK findscu, on studies sent by storescu: every matching type of PS3.4
 * C.2.2.2 at the STUDY level, the lower levels of a hierarchical search, the Patient Root model, the
 * character set of answers, and the callers that get no query service.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { storescu, dcmdumpValues } from '../helpers/dcmtk.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { DCMTK_ENV, GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { waitUntil } from '../helpers/destinations.js';
import { indexedRows } from '../helpers/stored.js';
import { newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';

interface Study {
  uid: string;
  patientId: string;
  patientName: string;
  date: string;
  modality: string;
  series: string[];
}

const STUDIES: Study[] = [
  { uid: newUid(), patientId: 'Q-001', patientName: 'Doe^John', date: '20240110', modality: 'CT', series: [newUid(), newUid()] },
  { uid: newUid(), patientId: 'Q-001', patientName: 'Doe^John', date: '20240220', modality: 'MR', series: [newUid()] },
  { uid: newUid(), patientId: 'Q-002', patientName: 'DOE^JANE', date: '20240305', modality: 'CT', series: [newUid()] },
  { uid: newUid(), patientId: 'Q-003', patientName: 'Müller^Jörg', date: '20231231', modality: 'MR', series: [newUid()] },
];

async function query(port: number, dir: string, keys: string[], options: { calling?: string; model?: '-S' | '-P' } = {}): Promise<{ output: string; answers: Array<Record<string, string>> }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const result = await run(
    'findscu',
    ['-v', options.model ?? '-S', '-aet', options.calling ?? 'HOSPITAL', '-aec', 'GANTRY', '-X', '-od', dir, ...keys.flatMap((key) => ['-k', key]), '127.0.0.1', String(port)],
    { env: DCMTK_ENV, timeoutMs: 30_000 },
  );
  const files = readdirSync(dir).filter((file) => file.startsWith('rsp')).sort();
  const tags = ['0008,0005', '0008,0052', '0008,0054', '0008,0061', '0010,0010', '0010,0020', '0020,000d', '0020,000e', '0008,0018', '0020,1208', '0020,1209', '0008,0020', '0008,0060'];
  const answers = await Promise.all(files.map((file) => dcmdumpValues(join(dir, file), tags)));
  return { output: `${result.stdout}${result.stderr}`, answers };
}

test('C-FIND on the index: matching types, levels, models, charset and callers', async (t) => {
  if (!(await needPeers(t, 'storescu', 'findscu', 'dcmdump'))) return;
  const dir = scratchDir('query');
  const corpus = join(dir, 'corpus');
  await mkdir(corpus);
  const files: string[] = [];
  let n = 0;
  for (const study of STUDIES) {
    for (const [s, series] of study.series.entries()) {
      for (let i = 0; i < 2; i += 1) {
        n += 1;
        const path = join(corpus, `f${n}.dcm`);
        await writeSyntheticFile(path, {
          studyInstanceUid: study.uid,
          seriesInstanceUid: series,
          patientId: study.patientId,
          patientName: study.patientName,
          studyDate: study.date,
          modality: study.modality,
          seriesNumber: s + 1,
          instanceNumber: i + 1,
          rows: 16,
          columns: 16,
        });
        files.push(path);
      }
    }
  }
  // An ultrasound instance of the first study: quarantined (burned-in text), never in the research view.
  const ultrasound = join(corpus, 'us.dcm');
  await writeSyntheticFile(ultrasound, {
    sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1',
    modality: 'US',
    studyInstanceUid: STUDIES[0]?.uid as string,
    seriesInstanceUid: newUid(),
    patientId: 'Q-001',
    patientName: 'Doe^John',
    studyDate: '20240110',
    rows: 16,
    columns: 16,
  });
  files.push(ultrasound);
  const gantry = await startGantryProcess(join(dir, 'gantry'), { query: { sourceCallers: ['HOSPITAL@127.0.0.1'], researchCallers: ['RESEARCH'] } });
  t.after(() => gantry.stop());
  const sent = await storescu(gantry.port, gantry.aeTitle, files);
  assert.equal(sent.acknowledged.length, files.length);
  const out = join(dir, 'answers');
  const study = (keys: string[]) => query(gantry.port, out, ['QueryRetrieveLevel=STUDY', 'StudyInstanceUID', 'PatientName', 'PatientID', ...keys]);
  const uids = (answers: Array<Record<string, string>>) => answers.map((answer) => answer['0020,000d']).sort();

  const wildcard = await study(['PatientName=doe*']);
  assert.match(wildcard.output, /Received Final Find Response \(Success\)/);
  assert.deepEqual(uids(wildcard.answers), [STUDIES[0], STUDIES[1], STUDIES[2]].map((s) => s?.uid).sort(), 'PN wild card, without case');
  assert.ok(wildcard.answers.every((answer) => answer['0008,0054'] === 'GANTRY' && answer['0008,0052'] === 'STUDY'));

  assert.deepEqual(uids((await study(['PatientID=Q-002'])).answers), [STUDIES[2]?.uid], 'single value');
  assert.deepEqual(uids((await study([`StudyInstanceUID=${STUDIES[0]?.uid}\\${STUDIES[3]?.uid}`])).answers), [STUDIES[0]?.uid, STUDIES[3]?.uid].sort(), 'UID list');
  assert.deepEqual(uids((await study(['StudyDate=20240101-20240301'])).answers), [STUDIES[0]?.uid, STUDIES[1]?.uid].sort(), 'date range');
  assert.deepEqual(uids((await study(['StudyDate=-20231231'])).answers), [STUDIES[3]?.uid], 'open date range');
  assert.equal((await study(['StudyDate'])).answers.length, 4, 'universal matching');
  // Keys Gantry does not match on say so (PS3.4 C.4.1.1.4, 0xFF01): before, the answers said 0xFF00
  // and the caller took a superset for its filter (found in a review).
  const unindexed = await study(['PatientAge=045Y']);
  assert.equal(unindexed.answers.length, 4, 'an attribute outside the index is not matched');
  assert.match(unindexed.output, /Pending: WarningUnsupportedOptionalKeys/);
  const sequence = await study(['ProcedureCodeSequence[0].CodeValue=XYZ']);
  assert.match(sequence.output, /Pending: WarningUnsupportedOptionalKeys/, 'sequence matching is not supported');
  const returnOnly = await study(['PatientAge', 'ProcedureCodeSequence[0].CodeValue']);
  assert.doesNotMatch(returnOnly.output, /WarningUnsupportedOptionalKeys/, 'keys asked without a value are only returned');
  assert.match(returnOnly.output, /Find Response 1 \(Pending\)/);
  const mr = await study(['ModalitiesInStudy=MR', 'NumberOfStudyRelatedInstances']);
  assert.deepEqual(uids(mr.answers), [STUDIES[1]?.uid, STUDIES[3]?.uid].sort(), 'ModalitiesInStudy');
  assert.ok(mr.answers.every((answer) => answer['0008,0061'] === 'MR' && answer['0020,1208'] === '2'));

  const muller = (await study(['SpecificCharacterSet=ISO_IR 192', 'PatientName=Müller*'])).answers;
  assert.equal(muller.length, 1, 'a non-ASCII key matches');
  assert.equal(muller[0]?.['0010,0010'], 'Müller^Jörg');
  assert.equal(muller[0]?.['0008,0005'], 'ISO_IR 192', 'answers with non-ASCII text say UTF-8');

  const series = await query(gantry.port, out, ['QueryRetrieveLevel=SERIES', `StudyInstanceUID=${STUDIES[0]?.uid}`, 'SeriesInstanceUID', 'Modality=CT', 'NumberOfSeriesRelatedInstances']);
  assert.deepEqual(series.answers.map((answer) => answer['0020,000e']).sort(), [...(STUDIES[0]?.series ?? [])].sort());
  assert.ok(series.answers.every((answer) => answer['0008,0060'] === 'CT' && answer['0020,1209'] === '2'));

  const images = await query(gantry.port, out, ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${STUDIES[0]?.uid}`, `SeriesInstanceUID=${STUDIES[0]?.series[1]}`, 'SOPInstanceUID']);
  assert.equal(images.answers.length, 2);

  const noStudy = await query(gantry.port, out, ['QueryRetrieveLevel=SERIES', 'SeriesInstanceUID']);
  assert.match(noStudy.output, /Received Final Find Response \(Error: DataSetDoesNotMatchSOPClass\)/, 'a hierarchical search needs the study');

  const patients = await query(gantry.port, out, ['QueryRetrieveLevel=PATIENT', 'PatientID', 'PatientName=Doe^John'], { model: '-P' });
  assert.deepEqual(patients.answers.map((answer) => answer['0010,0020']), ['Q-001'], 'Patient Root, PATIENT level');
  const patientStudies = await query(gantry.port, out, ['QueryRetrieveLevel=STUDY', 'PatientID=Q-001', 'StudyInstanceUID'], { model: '-P' });
  assert.equal(patientStudies.answers.length, 2, 'Patient Root, STUDY level under a patient');

  // The research view: de-identified values only, and only de-identified instances.
  await waitUntil('de-identified', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state !== 'received'));
  const research = (keys: string[], level = 'STUDY') =>
    query(gantry.port, out, [`QueryRetrieveLevel=${level}`, 'StudyInstanceUID', 'PatientName', 'PatientID', ...keys], { calling: 'RESEARCH' });
  const everything = await research(['PatientName=*', 'NumberOfStudyRelatedInstances']);
  assert.match(everything.output, /Received Final Find Response \(Success\)/);
  assert.equal(everything.answers.length, 4);
  const originals = new Set(STUDIES.flatMap((s) => [s.uid, s.patientId, s.patientName, ...s.series]));
  for (const answer of everything.answers) {
    for (const value of Object.values(answer)) assert.ok(!originals.has(value) && !/Doe|DOE|Müller/.test(value), `no original value in a research answer: ${value}`);
  }
  const counts = everything.answers.map((answer) => Number(answer['0020,1208'])).sort();
  assert.deepEqual(counts, [2, 2, 2, 4], 'the quarantined ultrasound instance is not counted');
  assert.equal((await research(['PatientName=Doe*'])).answers.length, 0, 'an original name finds nothing');
  assert.equal((await research([`StudyInstanceUID=${STUDIES[0]?.uid}`])).answers.length, 0, 'an original UID finds nothing');
  const pseudonym = everything.answers[0]?.['0010,0020'] as string;
  assert.ok((await research([`PatientID=${pseudonym}`])).answers.length >= 1, 'a pseudonym finds its studies');

  // Operators find studies by Gantry's state through Study Status ID (source view only).
  const held = await study(['(0032,000a)=QUARANTINED']);
  assert.deepEqual(uids(held.answers), [STUDIES[0]?.uid], 'the study with a quarantined instance');
  const heldStates = (await dcmdumpValues(join(out, readdirSync(out).filter((file) => file.startsWith('rsp'))[0] as string), ['0032,000a']))['0032,000a'] ?? '';
  assert.deepEqual(heldStates.split('\\').sort(), ['DEIDENTIFIED', 'QUARANTINED']);
  assert.equal((await research(['(0032,000a)=QUARANTINED'])).answers.length, 4, 'no state key in the research view: it matches nothing away');

  // Every source-view query is in the access audit; research queries are not (they see no identity).
  const audit = await run(process.execPath, [GANTRY_CLI, 'audit', '--config', gantry.configPath, '--limit', '1000'], { timeoutMs: 30_000 });
  assert.equal(audit.code, 0, audit.stderr);
  const entries = audit.stdout.trim().split('\n').slice(1);
  assert.ok(entries.length >= 12, `${entries.length} audited queries`);
  assert.ok(entries.every((entry) => /\tHOSPITAL\t127\.0\.0\.1\tC-FIND\t(study|patient)\t(PATIENT|STUDY|SERIES|IMAGE|\?)\t\d+\t0x[0-9A-F]{4}$/.test(entry)), entries.join('\n'));
  assert.ok(entries.some((entry) => /\tC-FIND\tstudy\tSTUDY\t3\t0x0000$/.test(entry)), 'the wild card query with its 3 results');
  assert.ok(!/Doe|Q-00/.test(audit.stdout), 'the audit keeps no key values');

  const stranger = await query(gantry.port, out, ['QueryRetrieveLevel=STUDY', 'StudyInstanceUID'], { calling: 'STRANGER' });
  assert.match(stranger.output, /No Acceptable Presentation Contexts|Association Rejected/i, 'no query service for callers not listed');
  assert.equal(stranger.answers.length, 0);
});
