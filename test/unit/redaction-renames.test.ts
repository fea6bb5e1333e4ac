/** Renames of redacted instances under retainUIDs (migration 8) follow an instance re-sent into
 * another study, so that the references of its new study follow it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Db } from '../../src/db/database.js';
import { auditText } from '../../src/deid/audit-text.js';
import { DeidWork, type DeidentifiedRecord, type SourceCopy } from '../../src/index/deid-work.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { instanceRecord } from '../helpers/index-records.js';
import { openScratchIndex } from '../helpers/scratch-index.js';

function copyOf(db: Db, id: number): SourceCopy {
  return db.prepare('SELECT file_path AS filePath, received_at AS receivedAt FROM instances WHERE id = ?').get(id) as SourceCopy;
}

function studyPkOf(db: Db, studyInstanceUid: string): number | undefined {
  return db.prepare('SELECT id FROM studies WHERE study_instance_uid = ?').pluck().get(studyInstanceUid) as number | undefined;
}

/** A redacted copy of instance 1 under retainUIDs: a UID of its own, in the study it was sent in. */
function redactedCopy(studyInstanceUid: string, seriesInstanceUid: string): DeidentifiedRecord {
  return {
    filePath: 'deidentified/1.dcm',
    fileSize: 10,
    sopInstanceUid: '2.25.777',
    seriesInstanceUid,
    studyInstanceUid,
    profile: 'basic',
    audit: auditText([]),
    findings: [],
    attributes: { PatientID: 'PSEUDO', Modality: 'CT' },
    renamedFrom: '1.2.1.1.1',
  };
}

test('an instance re-sent into another study takes its rename along, and its old study goes', (t) => {
  const db = openScratchIndex(t, 'redaction-renames');
  const index = new InstanceIndex(db);
  const work = new DeidWork(db);
  const sentAt = Date.now() - 60_000;
  index.upsert(instanceRecord(1, { receivedAt: sentAt }));
  const id = db.prepare('SELECT id FROM instances').pluck().get() as number;
  assert.equal(work.markDeidentified(id, copyOf(db, id), redactedCopy('1.2.1', '1.2.1.1')), true);

  // The modality corrects the study: the instance comes again under another Study Instance UID.
  index.upsert(instanceRecord(1, { studyInstanceUid: '1.2.9', seriesInstanceUid: '1.2.9.1', receivedAt: sentAt + 1000, filePath: 'originals/1b.dcm' }));
  assert.equal(work.markDeidentified(id, copyOf(db, id), redactedCopy('1.2.9', '1.2.9.1')), true);

  const moved = studyPkOf(db, '1.2.9') as number;
  assert.deepEqual(work.renamesForStudy(moved, id + 1), new Map([['1.2.1.1.1', '2.25.777']]), 'the new study knows the rename');
  assert.equal(studyPkOf(db, '1.2.1'), undefined, 'the emptied study is gone');
});

// Found in the UID review: renames were looked up and redone by study, so a later study's reference to
// a redacted prior (a comparison image, a report's evidence) kept the original UID, which no output had.
test("a rename reaches the references of the patient's other studies, not another patient's", (t) => {
  const db = openScratchIndex(t, 'redaction-renames-patient');
  const index = new InstanceIndex(db);
  const work = new DeidWork(db);
  const sentAt = Date.now() - 60_000;
  index.upsert(instanceRecord(1, { receivedAt: sentAt }));
  index.upsert(instanceRecord(2, { studyInstanceUid: '1.2.2', seriesInstanceUid: '1.2.2.1', sopInstanceUid: '1.2.2.1.2', filePath: 'originals/2.dcm', receivedAt: sentAt }));
  index.upsert(instanceRecord(3, { attributes: { PatientID: 'P2', Modality: 'CT' }, studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.1', sopInstanceUid: '1.2.3.1.3', filePath: 'originals/3.dcm', receivedAt: sentAt }));
  const idOf = (sop: string) => db.prepare('SELECT id FROM instances WHERE sop_instance_uid = ?').pluck().get(sop) as number;
  const [prior, later, otherPatient] = [idOf('1.2.1.1.1'), idOf('1.2.2.1.2'), idOf('1.2.3.1.3')];
  // The later study and the other patient's reference the prior under its original UID, before it is redacted.
  const referencing = (study: string, series: string, sop: string): DeidentifiedRecord => ({ ...redactedCopy(study, series), filePath: `deidentified/${sop}.dcm`, sopInstanceUid: sop, references: [['1.2.1.1.1', '1.2.1.1.1']] });
  const { renamedFrom: _none, ...laterCopy } = referencing('1.2.2', '1.2.2.1', '1.2.2.1.2');
  const { renamedFrom: _neither, ...otherCopy } = referencing('1.2.3', '1.2.3.1', '1.2.3.1.3');
  assert.equal(work.markDeidentified(later, copyOf(db, later), laterCopy), true);
  assert.equal(work.markDeidentified(otherPatient, copyOf(db, otherPatient), otherCopy), true);
  assert.equal(work.markDeidentified(prior, copyOf(db, prior), redactedCopy('1.2.1', '1.2.1.1')), true);
  const state = (id: number) => db.prepare('SELECT state FROM instances WHERE id = ?').pluck().get(id);
  assert.equal(state(later), 'received', "the patient's later study is done again");
  assert.equal(state(otherPatient), 'deidentified', "another patient's is not");
  assert.deepEqual(work.renamesForStudy(studyPkOf(db, '1.2.2') as number, later), new Map([['1.2.1.1.1', '2.25.777']]));
  assert.deepEqual(work.renamesForStudy(studyPkOf(db, '1.2.3') as number, otherPatient), new Map());
});
