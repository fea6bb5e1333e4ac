/**
 * What of a C-FIND request identifier is a key (src/query/find-service.ts): group length elements
 * (gggg,0000) some requesters still write are not (PS3.5 7.2: they describe the encoding).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { studyRootFind } from '../helpers/study-root-find.js';
import { instanceRecord } from '../helpers/index-records.js';
import { openScratchIndex } from '../helpers/scratch-index.js';
import { encodeDataset } from '../helpers/synthetic-dicom.js';

function ulValue(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(value);
  return out;
}

// Found in a review: a group length was taken for a key Gantry does not match on, so every match was
// answered 0xFF01 ("optional keys not supported"), and each response carried an empty (0008,0000) and
// (0020,0000), group lengths of length 0 that no longer said anything true of the response.
test('group lengths in a C-FIND identifier are neither keys nor returned, and the matches are 0xFF00', async (t) => {
  const db = openScratchIndex(t, 'query-identifier-group-length');
  const index = new InstanceIndex(db);
  db.transaction(() => index.upsert(instanceRecord(1, { attributes: { PatientID: 'P1', Modality: 'CT', StudyDescription: 'HEAD' } })))();
  const identifier = encodeDataset([
    [0x00080000, 'UL', ulValue(32)],
    [0x00080052, 'CS', 'STUDY'],
    [0x00081030, 'LO', 'HEAD'],
    [0x00200000, 'UL', ulValue(10)],
    [0x0020000d, 'UI', ''],
  ]);
  const matches = (await studyRootFind(db, identifier)).map(({ status, elements }) => ({ status, tags: elements.map((element) => element.tag) }));
  assert.deepEqual(matches, [{ status: 0xff00, tags: [0x00080052, 0x00080054, 0x00081030, 0x0020000d] }]);
});

// Found in a review: the patient's counts were computed only at the PATIENT level, which the Study
// Root model does not have, so its STUDY level (whose keys PS3.4 Table C.6-5 lists them among)
// answered them empty.
test("a Study Root STUDY query answers the patient's NumberOfPatientRelated counts", async (t) => {
  const db = openScratchIndex(t, 'query-identifier-patient-counts');
  const index = new InstanceIndex(db);
  db.transaction(() => {
    index.upsert(instanceRecord(1, { attributes: { PatientID: 'P1', Modality: 'CT' } }));
    index.upsert(instanceRecord(2, { attributes: { PatientID: 'P1', Modality: 'CT' } }));
    index.upsert(instanceRecord(3, { studyInstanceUid: '1.2.2', seriesInstanceUid: '1.2.2.1', attributes: { PatientID: 'P1', Modality: 'MR' } }));
  })();
  const identifier = encodeDataset([
    [0x00080052, 'CS', 'STUDY'],
    [0x0020000d, 'UI', '1.2.1'],
    [0x00201200, 'IS', ''],
    [0x00201202, 'IS', ''],
    [0x00201204, 'IS', ''],
  ]);
  const answers = (await studyRootFind(db, identifier)).map(({ status, elements }) => ({
    status,
    counts: [0x00201200, 0x00201202, 0x00201204].map((tag) => elements.find((element) => element.tag === tag)?.value?.toString('latin1').trim() ?? 'absent'),
  }));
  assert.deepEqual(answers, [{ status: 0xff00, counts: ['2', '2', '3'] }]);
});
