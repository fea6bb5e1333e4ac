/**
 * How a C-FIND ends (src/query/find-service.ts): Success says that a response was sent for every match
 * (PS3.4 C.4.1.3.1), so a query cut at query.maxResults must not end with it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferSource, parseDataset } from '../../src/dicom/dataset-tree.js';
import { DimseStatusError } from '../../src/dimse/status.js';
import { AccessAudit } from '../../src/index/access-audit.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { silentLogger } from '../../src/observability/logger.js';
import { FindService } from '../../src/query/find-service.js';
import { instanceRecord } from '../helpers/index-records.js';
import { openScratchIndex } from '../helpers/scratch-index.js';
import { encodeDataset } from '../helpers/synthetic-dicom.js';

// Found in the query review: the matches past query.maxResults were left out and the query still
// ended with 0x0000, which tells the caller it has every match: a researcher's cohort was cut short
// without a word on the wire. Orthanc, whose LimitFindResults cuts the same way, ends such a query
// with 0xFE00 (matching terminated); so does Gantry now.
test('a C-FIND cut at query.maxResults sends the first matches, then ends with 0xFE00, not Success', async (t) => {
  const db = openScratchIndex(t, 'query-results-limit');
  const index = new InstanceIndex(db);
  db.transaction(() => {
    for (const n of [1, 2, 3]) index.upsert(instanceRecord(n, { studyInstanceUid: `1.2.${n}`, seriesInstanceUid: `1.2.${n}.1`, sopInstanceUid: `1.2.${n}.1.1` }));
  })();
  const audit = new AccessAudit(db);
  const request = (studyInstanceUid: string) => ({
    association: { id: 'a', callingAeTitle: 'HOSPITAL', calledAeTitle: 'GANTRY', remoteAddress: '127.0.0.1', remotePort: 1, log: silentLogger() },
    messageId: 1,
    sopClassUid: '1.2.840.10008.5.1.4.1.2.2.1',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    identifier: encodeDataset([
      [0x00080052, 'CS', 'STUDY'],
      [0x0020000d, 'UI', studyInstanceUid],
    ]),
  });
  const find = new FindService({ db, aeTitle: () => 'GANTRY', maxResults: () => 2, viewFor: () => 'source', audit });
  const studies = async (studyInstanceUid: string): Promise<{ found: string[]; ending: unknown }> => {
    const found: string[] = [];
    try {
      for await (const match of find.find(request(studyInstanceUid), new AbortController().signal)) {
        const response = Buffer.isBuffer(match) ? match : match.identifier;
        found.push(parseDataset(new BufferSource(response), 'explicit-le').find((element) => element.tag === 0x0020000d)?.value?.toString('latin1').replace(/\0$/, '') ?? '');
      }
    } catch (error) {
      return { found, ending: error instanceof DimseStatusError ? error.status : error };
    }
    return { found, ending: 'success' };
  };
  assert.deepEqual(await studies(''), { found: ['1.2.1', '1.2.2'], ending: 0xfe00 }, 'three matches, two sent');
  assert.deepEqual(await studies('1.2.1\\1.2.3'), { found: ['1.2.1', '1.2.3'], ending: 'success' }, 'as many matches as the limit: all sent');
  assert.deepEqual(
    audit.list(10).map((entry) => [entry.results, entry.status]).sort(),
    [[2, '0x0000'], [2, '0xFE00']],
    'the audit says how the query ended',
  );
});
