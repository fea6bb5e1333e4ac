/** Index records for tests that need rows in the index but no files: instance `n` of one CT series. */
import type { InstanceRecord } from '../../src/index/instance-index.js';

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
