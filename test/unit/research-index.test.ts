/** The research view's rows follow the de-identified copies: recorded, moved, removed with orphans. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDatabase } from '../../src/db/database.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { ResearchIndex } from '../../src/index/research-index.js';
import { instanceRecord } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

test('a copy is recorded under its de-identified hierarchy; removing it drops what is left empty', () => {
  const db = openDatabase(join(scratchDir('research-index'), 'index.sqlite'));
  const index = new InstanceIndex(db);
  const research = new ResearchIndex(db);
  const ids: number[] = [];
  for (const n of [1, 2]) {
    index.upsert({
      attributes: { PatientName: 'Real^Name', PatientID: 'MRN' },
      studyInstanceUid: '1.2.3',
      seriesInstanceUid: `1.2.3.${n}`,
      sopInstanceUid: `1.2.3.9.${n}`,
      sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      filePath: `f${n}`,
      fileSize: 1,
      callingAeTitle: 'X',
      receivedAt: Date.now(),
    });
    const id = (db.prepare('SELECT id FROM instances WHERE sop_instance_uid = ?').get(`1.2.3.9.${n}`) as { id: number }).id;
    ids.push(id);
    research.record(id, {
      sopInstanceUid: `2.25.9${n}`,
      seriesInstanceUid: `2.25.8${n}`,
      studyInstanceUid: '2.25.7',
      sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      attributes: { PatientName: 'ANON^1', PatientID: 'PSEUDO', Modality: 'CT' },
    });
  }
  const count = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  assert.deepEqual([count('r_patients'), count('r_studies'), count('r_series'), count('r_instances')], [1, 1, 2, 2]);
  assert.equal((db.prepare('SELECT patient_name AS name FROM r_patients').get() as { name: string }).name, 'ANON^1');
  research.remove(ids[0] as number);
  assert.deepEqual([count('r_patients'), count('r_studies'), count('r_series'), count('r_instances')], [1, 1, 1, 1], 'its series went');
  // A re-sent original leaves the research view until its new copy is recorded.
  index.upsert({
    attributes: { PatientName: 'Real^Name', PatientID: 'MRN' },
    studyInstanceUid: '1.2.3',
    seriesInstanceUid: '1.2.3.2',
    sopInstanceUid: '1.2.3.9.2',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    filePath: 'f2b',
    fileSize: 1,
    callingAeTitle: 'X',
    receivedAt: Date.now(),
  });
  assert.deepEqual([count('r_patients'), count('r_studies'), count('r_series'), count('r_instances')], [0, 0, 0, 0], 'nothing left');
  db.close();
});

test('deleting an instance (the unclean-stop check, a store taken back) leaves no empty research study behind', () => {
  // Found in a review: the cascade removed the research instance row only.
  const db = openDatabase(join(scratchDir('research-index'), 'index.sqlite'));
  const index = new InstanceIndex(db);
  index.upsert({
    attributes: { PatientName: 'Real^Name', PatientID: 'MRN' },
    studyInstanceUid: '1.2.4',
    seriesInstanceUid: '1.2.4.1',
    sopInstanceUid: '1.2.4.9.1',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    filePath: 'f1',
    fileSize: 1,
    callingAeTitle: 'X',
    receivedAt: Date.now(),
  });
  const id = (db.prepare('SELECT id FROM instances WHERE sop_instance_uid = ?').get('1.2.4.9.1') as { id: number }).id;
  new ResearchIndex(db).record(id, {
    sopInstanceUid: '2.25.91',
    seriesInstanceUid: '2.25.81',
    studyInstanceUid: '2.25.71',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    attributes: { PatientName: 'ANON^1', PatientID: 'PSEUDO', Modality: 'CT' },
  });
  index.deleteInstance('1.2.4.9.1');
  const count = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  assert.deepEqual([count('instances'), count('r_patients'), count('r_studies'), count('r_series'), count('r_instances')], [0, 0, 0, 0, 0]);
  db.close();
});

/** Instance `n` of original study 1.2.5 (series 1.2.5.1), indexed; returns its row id. */
function indexedInstance(index: InstanceIndex, db: ReturnType<typeof openDatabase>, n: number): number {
  index.upsert(instanceRecord(n, { attributes: { PatientName: 'Real^Name', PatientID: 'MRN' }, studyInstanceUid: '1.2.5', seriesInstanceUid: '1.2.5.1', sopInstanceUid: `1.2.5.9.${n}` }));
  return (db.prepare('SELECT id FROM instances WHERE sop_instance_uid = ?').get(`1.2.5.9.${n}`) as { id: number }).id;
}

test('a study whose copies move to another patient, or a series to another study, leaves no empty research patient or study behind', () => {
  // Found in a review: only the recorded instance's own series was checked for being left empty, so
  // the patient a corrected Patient ID moved the study from (or the study a series moved from) stayed
  // in research C-FIND with nothing under it.
  const db = openDatabase(join(scratchDir('research-index'), 'index.sqlite'));
  const index = new InstanceIndex(db);
  const research = new ResearchIndex(db);
  const ids = [indexedInstance(index, db, 1), indexedInstance(index, db, 2)];
  const copy = (n: number, patientId: string, studyUid: string) => ({
    sopInstanceUid: `2.25.9${n}`,
    seriesInstanceUid: '2.25.81',
    studyInstanceUid: studyUid,
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    attributes: { PatientName: 'ANON', PatientID: patientId, Modality: 'CT' },
  });
  for (const [i, id] of ids.entries()) research.record(id, copy(i + 1, 'PSEUDO-OLD', '2.25.71'));
  const patients = () => db.prepare('SELECT patient_id FROM r_patients ORDER BY patient_id').pluck().all();
  const studies = () => db.prepare('SELECT study_instance_uid FROM r_studies ORDER BY study_instance_uid').pluck().all();
  // The study's copies are made again under a corrected Patient ID: its study row moves to the new patient.
  research.record(ids[0] as number, copy(1, 'PSEUDO-NEW', '2.25.71'));
  assert.deepEqual(patients(), ['PSEUDO-NEW'], 'the patient left without studies is gone');
  // The series' copies are made again under another study UID: its series row moves to that study.
  research.record(ids[1] as number, copy(2, 'PSEUDO-NEW', '2.25.72'));
  assert.deepEqual(studies(), ['2.25.72'], 'the study left without series is gone');
  db.close();
});

// Suspected on re-reading: a copy that took over another instance's de-identified SOP Instance UID (a
// rule keeping UIDs) deleted that instance's research row but left its series, study and patient rows,
// listed empty by a research C-FIND.
test('a copy that takes over another instance’s de-identified UID leaves no empty research rows of the other behind', () => {
  const db = openDatabase(join(scratchDir('research-index'), 'index.sqlite'));
  const index = new InstanceIndex(db);
  const research = new ResearchIndex(db);
  const [first, second] = [indexedInstance(index, db, 1), indexedInstance(index, db, 2)] as [number, number];
  const copy = (patientId: string, studyUid: string, seriesUid: string) => ({
    sopInstanceUid: '2.25.90',
    seriesInstanceUid: seriesUid,
    studyInstanceUid: studyUid,
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    attributes: { PatientName: 'ANON', PatientID: patientId, Modality: 'CT' },
  });
  research.record(first, copy('PSEUDO-A', '2.25.71', '2.25.81'));
  research.record(second, copy('PSEUDO-B', '2.25.72', '2.25.82'));
  const uids = (table: string, column: string) => db.prepare(`SELECT ${column} FROM ${table}`).pluck().all();
  assert.deepEqual(uids('r_instances', 'id'), [second]);
  assert.deepEqual(uids('r_series', 'series_instance_uid'), ['2.25.82']);
  assert.deepEqual(uids('r_studies', 'study_instance_uid'), ['2.25.72']);
  assert.deepEqual(uids('r_patients', 'patient_id'), ['PSEUDO-B']);
  db.close();
});

test('a copy that takes over another instance’s de-identified UID in the same series keeps that series', () => {
  const db = openDatabase(join(scratchDir('research-index'), 'index.sqlite'));
  const index = new InstanceIndex(db);
  const research = new ResearchIndex(db);
  const [first, second] = [indexedInstance(index, db, 1), indexedInstance(index, db, 2)] as [number, number];
  const copy = {
    sopInstanceUid: '2.25.90',
    seriesInstanceUid: '2.25.81',
    studyInstanceUid: '2.25.71',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    attributes: { PatientName: 'ANON', PatientID: 'PSEUDO-A', Modality: 'CT' },
  };
  research.record(first, copy);
  research.record(second, copy);
  const row = db.prepare('SELECT i.id, se.series_instance_uid AS series FROM r_instances i JOIN r_series se ON se.id = i.series_pk').all();
  assert.deepEqual(row, [{ id: second, series: '2.25.81' }]);
  db.close();
});
