/**
 * The indexed attributes of a stored Part 10 file, read with the same header scanner as the receive
 * path (up to Pixel Data): what the research view of the index records for a de-identified copy.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createHeaderScanner } from '../dicom/header-scanner.js';
import { readFileMeta } from '../dicom/part10.js';
import { findTransferSyntax } from '../dicom/transfer-syntaxes.js';
import { decodeIndexedAttributes, INDEXED_TAGS, type IndexedAttributes } from './attributes.js';

const CHUNK = 64 * 1024;

export async function scanIndexedAttributes(path: string): Promise<IndexedAttributes> {
  const fd = openSync(path, 'r');
  try {
    const first = Buffer.allocUnsafe(CHUNK);
    const length = readSync(fd, first, 0, CHUNK, 0);
    const head = first.subarray(0, length);
    const { elements, datasetOffset } = readFileMeta(head, fstatSync(fd).size);
    const syntaxUid = (elements.get(0x0010)?.toString('latin1') ?? '').replace(/[\0 ]+$/, '');
    const syntax = findTransferSyntax(syntaxUid);
    if (!syntax) throw new Error(`transfer syntax ${syntaxUid} is not supported`);
    const scanner = createHeaderScanner(syntax.encoding, INDEXED_TAGS);
    // A File Meta Information longer than the first chunk: the dataset is read from where it starts.
    if (datasetOffset < head.length) scanner.push(head.subarray(datasetOffset));
    let position = Math.max(length, datasetOffset);
    while (!scanner.done) {
      const chunk = Buffer.allocUnsafe(CHUNK);
      const read = readSync(fd, chunk, 0, CHUNK, position);
      if (read === 0) break;
      scanner.push(chunk.subarray(0, read));
      position += read;
      await scanner.ready();
    }
    return decodeIndexedAttributes((await scanner.finish()).values);
  } finally {
    closeSync(fd);
  }
}
