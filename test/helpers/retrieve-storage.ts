/**
 * A storage folder for retrieve tests: one CT instance received and de-identified, its original and
 * its copy on disk (small synthetic files), indexed with the copy in the research view.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Db } from '../../src/db/database.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { ResearchIndex } from '../../src/index/research-index.js';
import { MoveService, type MoveDestination } from '../../src/query/move-service.js';
import { Transcoder } from '../../src/store/transcoder.js';
import { openScratchIndex } from './scratch-index.js';
import { scratchDir } from './scratch.js';
import { writeSyntheticFile } from './synthetic-dicom.js';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const CT = '1.2.840.10008.5.1.4.1.1.2';

type Uids = { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string };

export async function storageWithOneInstance(t: Parameters<typeof openScratchIndex>[0], name: string): Promise<{ db: Db; storagePath: string; original: Uids; copy: Uids }> {
  const storagePath = scratchDir(name);
  mkdirSync(join(storagePath, 'originals'));
  mkdirSync(join(storagePath, 'deid'));
  const original = { studyInstanceUid: '1.2.826.1.1', seriesInstanceUid: '1.2.826.1.1.1', sopInstanceUid: '1.2.826.1.1.1.1' };
  const copy = { studyInstanceUid: '2.25.11', seriesInstanceUid: '2.25.12', sopInstanceUid: '2.25.13' };
  await writeSyntheticFile(join(storagePath, 'originals', '1.dcm'), { ...original, patientId: 'MRN-1', patientName: 'Real^Name', rows: 4, columns: 4 });
  await writeSyntheticFile(join(storagePath, 'deid', '1.dcm'), { ...copy, patientId: 'PSEUDO', patientName: 'ANON', rows: 4, columns: 4 });
  const db = openScratchIndex(t, `${name}-index`);
  const index = new InstanceIndex(db);
  db.transaction(() => {
    index.upsert({
      attributes: { PatientID: 'MRN-1', PatientName: 'Real^Name', Modality: 'CT' },
      ...original,
      sopClassUid: CT,
      transferSyntaxUid: EXPLICIT_LE,
      filePath: 'originals/1.dcm',
      fileSize: 1,
      callingAeTitle: 'CT01',
      receivedAt: Date.now(),
    });
    const id = db.prepare('SELECT id FROM instances').pluck().get() as number;
    db.prepare(`UPDATE instances SET state = 'deidentified', deid_file_path = 'deid/1.dcm' WHERE id = ?`).run(id);
    new ResearchIndex(db).record(id, { ...copy, sopClassUid: CT, transferSyntaxUid: EXPLICIT_LE, attributes: { PatientID: 'PSEUDO', PatientName: 'ANON', Modality: 'CT' } });
  })();
  return { db, storagePath, original, copy };
}

/** The retrieve settings of these tests: Gantry's SCU side, and the Move Destinations `destinations`. */
export function moveSettings(destinations: MoveDestination[]) {
  return { connectTimeoutMs: 1000, responseTimeoutMs: 1000, maxPduLength: 65536, implementationClassUid: '1.2.3', implementationVersionName: 'TEST', aeTitle: 'GANTRY', destinations, sourceRetrievesOriginals: true };
}

type MoveServiceOptions = ConstructorParameters<typeof MoveService>[0];

/** A MoveService over a storage of these tests, with the Move Destinations `destinations` and a
 * Transcoder the test closes; `more` adds options (an audit). */
export function moveServiceOver(
  t: { after(fn: () => Promise<void> | void): void },
  storage: { db: Db; storagePath: string },
  viewFor: MoveServiceOptions['viewFor'],
  destinations: MoveDestination[],
  more: Partial<MoveServiceOptions> = {},
): MoveService {
  const transcoder = new Transcoder();
  t.after(() => transcoder.close());
  return new MoveService({ db: storage.db, storagePath: storage.storagePath, transcoder, viewFor, settings: () => moveSettings(destinations), ...more });
}
