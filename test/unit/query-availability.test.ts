/**
 * InstanceAvailability (0008,0056) in C-FIND answers (src/query/keys.ts, PS3.4 C.4.1.1.3.2): ONLINE
 * while the file the caller's retrieve would send is there, UNAVAILABLE once retention deleted it; above
 * IMAGE level the least available of the instances below; in each view its own file (the research view
 * the de-identified copy; the source view the original where its retrieves get originals).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Db } from '../../src/db/database.js';
import { BufferSource, parseDataset } from '../../src/dicom/dataset-tree.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { ResearchIndex } from '../../src/index/research-index.js';
import { RetentionWork } from '../../src/index/retention-work.js';
import { silentLogger } from '../../src/observability/logger.js';
import { FindService } from '../../src/query/find-service.js';
import type { RetrievedFile, View } from '../../src/query/keys.js';
import { instanceRecord } from '../helpers/index-records.js';
import { openScratchIndex } from '../helpers/scratch-index.js';
import { encodeDataset, type Element } from '../helpers/synthetic-dicom.js';

const INSTANCE_AVAILABILITY = 0x00080056;
const CT = '1.2.840.10008.5.1.4.1.1.2';

/**
 * Patient P1, study 1.2.1 (series 1.2.1.1: instances 1 and 2; series 1.2.1.2: instance 3) and study
 * 1.2.2 (series 1.2.2.1: instance 4), all forwarded; the copy of instance 2 and the original of
 * instance 3 deleted by retention. De-identified UIDs are the original ones with 2.25 for 1.2.
 */
function indexWithDeletedFiles(t: Parameters<typeof openScratchIndex>[0]): Db {
  const db = openScratchIndex(t, 'query-availability');
  const index = new InstanceIndex(db);
  const research = new ResearchIndex(db);
  const places = [
    [1, '1.2.1', '1.2.1.1'],
    [2, '1.2.1', '1.2.1.1'],
    [3, '1.2.1', '1.2.1.2'],
    [4, '1.2.2', '1.2.2.1'],
  ] as const;
  db.transaction(() => {
    for (const [n, studyInstanceUid, seriesInstanceUid] of places) {
      index.upsert(instanceRecord(n, { studyInstanceUid, seriesInstanceUid, sopInstanceUid: `${seriesInstanceUid}.${n}` }));
      const id = db.prepare('SELECT id FROM instances WHERE sop_instance_uid = ?').pluck().get(`${seriesInstanceUid}.${n}`) as number;
      db.prepare(`UPDATE instances SET state = 'forwarded', state_changed_at = 1, deid_file_path = ? WHERE id = ?`).run(`deid/${n}.dcm`, id);
      const pseudonym = (uid: string) => uid.replace(/^1\.2\./, '2.25.');
      research.record(id, {
        studyInstanceUid: pseudonym(studyInstanceUid),
        seriesInstanceUid: pseudonym(seriesInstanceUid),
        sopInstanceUid: pseudonym(`${seriesInstanceUid}.${n}`),
        sopClassUid: CT,
        transferSyntaxUid: '1.2.840.10008.1.2.1',
        attributes: { PatientID: 'PSEUDO-1', Modality: 'CT' },
      });
    }
  })();
  // The retention sweep itself, its `remove` deleting only the files this test names.
  const retention = new RetentionWork(db);
  assert.equal(retention.deleteExpired('deidentified', Date.now(), 100, (path) => path === 'deid/2.dcm'), 1);
  assert.equal(retention.deleteExpired('original', Date.now(), 100, (path) => path === 'originals/3.dcm'), 1);
  return db;
}

/** The InstanceAvailability of each match of a Study Root query, by the unique key of its level. */
async function availability(db: Db, view: View, sourceRetrieves: RetrievedFile, keys: Element[]): Promise<Record<string, string>> {
  const find = new FindService({ db, aeTitle: () => 'GANTRY', maxResults: () => 100, viewFor: () => view, sourceRetrieves: () => sourceRetrieves });
  const request = {
    association: { id: 'a', callingAeTitle: 'CALLER', calledAeTitle: 'GANTRY', remoteAddress: '127.0.0.1', remotePort: 1, log: silentLogger() },
    messageId: 1,
    sopClassUid: '1.2.840.10008.5.1.4.1.2.2.1',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    identifier: encodeDataset(keys),
  };
  const level = String(keys.find(([tag]) => tag === 0x00080052)?.[2]);
  const unique = { STUDY: 0x0020000d, SERIES: 0x0020000e, IMAGE: 0x00080018 }[level] as number;
  const out: Record<string, string> = {};
  for await (const match of find.find(request, new AbortController().signal)) {
    const elements = parseDataset(new BufferSource(match.identifier), 'explicit-le');
    const text = (tag: number) => elements.find((element) => element.tag === tag)?.value?.toString('latin1').replace(/[\0 ]+$/, '') ?? '(absent)';
    out[text(unique)] = text(INSTANCE_AVAILABILITY);
  }
  return out;
}

const studies: Element[] = [
  [0x00080052, 'CS', 'STUDY'],
  [0x0020000d, 'UI', ''],
  [INSTANCE_AVAILABILITY, 'CS', ''],
];

test('InstanceAvailability: UNAVAILABLE for an instance whose file retention deleted, at every level, in each view', async (t) => {
  const db = indexWithDeletedFiles(t);
  const series = (study: string): Element[] => [[0x00080052, 'CS', 'SERIES'], [0x0020000d, 'UI', study], [0x0020000e, 'UI', ''], [INSTANCE_AVAILABILITY, 'CS', '']];
  const images = (study: string, seriesUid: string): Element[] => [
    [0x00080052, 'CS', 'IMAGE'],
    [0x0020000d, 'UI', study],
    [0x0020000e, 'UI', seriesUid],
    [0x00080018, 'UI', ''],
    [INSTANCE_AVAILABILITY, 'CS', ''],
  ];

  // Research callers retrieve the de-identified copies: instance 2's is gone.
  assert.deepEqual(await availability(db, 'research', 'copy', studies), { '2.25.1': 'UNAVAILABLE', '2.25.2': 'ONLINE' });
  assert.deepEqual(await availability(db, 'research', 'copy', series('2.25.1')), { '2.25.1.1': 'UNAVAILABLE', '2.25.1.2': 'ONLINE' });
  assert.deepEqual(await availability(db, 'research', 'copy', images('2.25.1', '2.25.1.1')), { '2.25.1.1.1': 'ONLINE', '2.25.1.1.2': 'UNAVAILABLE' });
  // A research caller is never told about originals, whatever the source rule says.
  assert.deepEqual(await availability(db, 'research', 'original', images('2.25.1', '2.25.1.1')), { '2.25.1.1.1': 'ONLINE', '2.25.1.1.2': 'UNAVAILABLE' });

  // Source callers whose retrieves get originals: instance 3's original is gone, instance 2's is there.
  assert.deepEqual(await availability(db, 'source', 'original', studies), { '1.2.1': 'UNAVAILABLE', '1.2.2': 'ONLINE' });
  assert.deepEqual(await availability(db, 'source', 'original', series('1.2.1')), { '1.2.1.1': 'ONLINE', '1.2.1.2': 'UNAVAILABLE' });
  assert.deepEqual(await availability(db, 'source', 'original', images('1.2.1', '1.2.1.2')), { '1.2.1.2.3': 'UNAVAILABLE' });
  // Source callers whose retrieves get the copies: as the research view, under original UIDs.
  assert.deepEqual(await availability(db, 'source', 'copy', series('1.2.1')), { '1.2.1.1': 'UNAVAILABLE', '1.2.1.2': 'ONLINE' });
});

test('InstanceAvailability at PATIENT level, and matched when a caller gives it a value', async (t) => {
  const db = indexWithDeletedFiles(t);
  const find = new FindService({ db, aeTitle: () => 'GANTRY', maxResults: () => 100, viewFor: () => 'source', sourceRetrieves: () => 'original' });
  const request = (keys: Element[]) => ({
    association: { id: 'a', callingAeTitle: 'CALLER', calledAeTitle: 'GANTRY', remoteAddress: '127.0.0.1', remotePort: 1, log: silentLogger() },
    messageId: 1,
    sopClassUid: '1.2.840.10008.5.1.4.1.2.1.1',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    identifier: encodeDataset(keys),
  });
  const answers = async (keys: Element[]) => {
    const out: Array<{ status: number; value: string }> = [];
    for await (const match of find.find(request(keys), new AbortController().signal)) {
      const value = parseDataset(new BufferSource(match.identifier), 'explicit-le').find((element) => element.tag === INSTANCE_AVAILABILITY)?.value;
      out.push({ status: match.status ?? 0xff00, value: value?.toString('latin1').trim() ?? '(absent)' });
    }
    return out;
  };
  assert.deepEqual(await answers([[0x00080052, 'CS', 'PATIENT'], [0x00100020, 'LO', ''], [INSTANCE_AVAILABILITY, 'CS', '']]), [{ status: 0xff00, value: 'UNAVAILABLE' }]);
  // PS3.4 C.4.1.1.3.2 says a request does not carry it; one that does is matched, not answered 0xFF01.
  assert.deepEqual(await answers([[0x00080052, 'CS', 'STUDY'], [0x00100020, 'LO', 'P1'], [0x0020000d, 'UI', ''], [INSTANCE_AVAILABILITY, 'CS', 'ONLINE']]), [
    { status: 0xff00, value: 'ONLINE' },
  ]);
});
