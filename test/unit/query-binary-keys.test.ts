/**
 * C-FIND keys of a binary VR (Rows, Columns: US) come in the request identifier as 2-byte binary
 * values (PS3.5 6.2); single value matching on them (PS3.4 C.2.2.2.1) must compare the number (found in
 * review: Rows = 512 matched nothing).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeTextDataset, type TextElement } from '../../src/dicom/dataset-encoder.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { silentLogger } from '../../src/observability/logger.js';
import { FindService } from '../../src/query/find-service.js';
import { instanceRecord } from '../helpers/index-records.js';
import { openScratchIndex } from '../helpers/scratch-index.js';

test('an IMAGE query on Rows = 512 (US, binary in the identifier) matches an instance with 512 rows', async (t) => {
  const db = openScratchIndex(t, 'query-binary-keys');
  const index = new InstanceIndex(db);
  db.transaction(() => {
    index.upsert(instanceRecord(1, { attributes: { PatientID: 'P1', Modality: 'CT', Rows: 512, Columns: 512 } }));
    index.upsert(instanceRecord(2, { attributes: { PatientID: 'P1', Modality: 'CT', Rows: 256, Columns: 256 } }));
  })();
  const find = new FindService({ db, aeTitle: () => 'GANTRY', maxResults: () => 100, viewFor: () => 'source' });
  const ask = async (elements: TextElement[]): Promise<number> => {
    let count = 0;
    const request = {
      association: { id: 'a', callingAeTitle: 'HOSPITAL', calledAeTitle: 'GANTRY', remoteAddress: '127.0.0.1', remotePort: 1, log: silentLogger() },
      messageId: 1,
      sopClassUid: '1.2.840.10008.5.1.4.1.2.2.1',
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      identifier: encodeTextDataset(elements, 'explicit-le'),
    };
    for await (const _ of find.find(request, new AbortController().signal)) count += 1;
    return count;
  };
  const image = (rows: string): TextElement[] => [
    { tag: 0x00080052, value: 'IMAGE' },
    { tag: 0x0020000d, value: '1.2.1' },
    { tag: 0x0020000e, value: '1.2.1.1' },
    { tag: 0x00080018, value: '' },
    { tag: 0x00280010, value: rows },
  ];
  assert.equal(await ask(image('')), 2, 'universal matching on Rows');
  assert.equal(await ask(image('512')), 1, 'single value matching on Rows (encoded as US 0x0200)');
});
