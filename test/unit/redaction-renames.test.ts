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
  assert.deepEqual(work.renamesInStudy(moved, id + 1), new Map([['1.2.1.1.1', '2.25.777']]), 'the new study knows the rename');
  assert.equal(studyPkOf(db, '1.2.1'), undefined, 'the emptied study is gone');
});
