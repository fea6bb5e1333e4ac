/** A Study Root C-FIND run on an index through Gantry's find service, as a source caller sends it. */
import type { Db } from '../../src/db/database.js';
import { BufferSource, parseDataset, type ElementNode } from '../../src/dicom/dataset-tree.js';
import { silentLogger } from '../../src/observability/logger.js';
import { FindService } from '../../src/query/find-service.js';

/** The responses to `identifier` (explicit VR little endian): each one's status and elements. */
export async function studyRootFind(db: Db, identifier: Buffer): Promise<Array<{ status: number; elements: ElementNode[] }>> {
  const find = new FindService({ db, aeTitle: () => 'GANTRY', maxResults: () => 100, viewFor: () => 'source' });
  const request = {
    association: { id: 'a', callingAeTitle: 'HOSPITAL', calledAeTitle: 'GANTRY', remoteAddress: '127.0.0.1', remotePort: 1, log: silentLogger() },
    messageId: 1,
    sopClassUid: '1.2.840.10008.5.1.4.1.2.2.1',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    identifier,
  };
  const responses: Array<{ status: number; elements: ElementNode[] }> = [];
  for await (const match of find.find(request, new AbortController().signal)) {
    const { identifier: response, status } = Buffer.isBuffer(match) ? { identifier: match, status: 0xff00 } : match;
    responses.push({ status, elements: parseDataset(new BufferSource(response), 'explicit-le') });
  }
  return responses;
}
