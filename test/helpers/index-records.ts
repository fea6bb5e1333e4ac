/** Index records for tests that need rows in the index but no files: instance `n` of one CT series. */
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { openDatabase, WalSync, type Db } from '../../src/db/database.js';
import { IndexWriter, InstanceIndex, type InstanceRecord } from '../../src/index/instance-index.js';

export function instanceRecord(n: number, overrides: Partial<InstanceRecord> = {}): InstanceRecord {
  return {
    attributes: { PatientID: 'P1', Modality: 'CT' },
    studyInstanceUid: '1.2.1',
    seriesInstanceUid: '1.2.1.1',
    sopInstanceUid: `1.2.1.1.${n}`,
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    filePath: `originals/${n}.dcm`,
    fileSize: 10,
    callingAeTitle: 'CT01',
    receivedAt: Date.now() - 60_000,
    ...overrides,
  };
}

/** A fresh index in `dir` with its writer, closed after the test. */
export function openTestIndex(t: TestContext, dir: string): { db: Db; index: InstanceIndex; writer: IndexWriter } {
  const file = join(dir, 'index.sqlite');
  const db = openDatabase(file);
  const wal = new WalSync(file);
  t.after(async () => {
    await wal.close();
    db.close();
  });
  const index = new InstanceIndex(db);
  return { db, index, writer: new IndexWriter(db, index, wal) };
}
