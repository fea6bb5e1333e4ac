/**
 * Streams a dataset as P-DATA-TF PDUs (PS3.8 9.3.5, E.2): fragments no longer than the peer's maximum
 * PDU length (and 1 MiB), the last one flagged, read from its body a chunk at a time and written as
 * the socket takes them. Shared by the requestor (C-STORE SCU) and the acceptor (C-GET sub-operations).
 */
import { encodePDataHeader } from './pdu.js';

/** The dataset of a request: `length` bytes read from `read` in order. */
export interface DatasetBody {
  length: number;
  /** Fills `target` from the dataset at `position`; resolves with the bytes read. */
  read(target: Buffer, position: number): Promise<number>;
  /** The whole dataset, when it is in memory already: sent from directly, without copies. */
  bytes?: Buffer;
}

export interface PduWriter {
  /** Writes PDUs in one go; false when the socket is full. */
  write(buffers: Buffer[]): boolean;
  /** Resolves when the socket takes more (rejects when the peer stopped reading for too long). */
  drained(): Promise<void>;
  /** Throws when the association can no longer carry the dataset. */
  checkUsable(): void;
}

/** The most read from a body at once: bounded memory for any object size. */
export const READ_CHUNK = 1024 * 1024;

export async function sendDatasetPdus(out: PduWriter, contextId: number, body: DatasetBody, peerMaxPduLength: number): Promise<void> {
  // PDUs may be shorter than the peer's maximum (PS3.8 9.3.1): no more than READ_CHUNK at a time.
  const maxFragment = peerMaxPduLength === 0 ? READ_CHUNK : Math.min(READ_CHUNK, peerMaxPduLength - 6);
  // Whole PDUs per read: every PDU but the last of the dataset is full.
  const chunkSize = maxFragment * Math.max(1, Math.floor(READ_CHUNK / maxFragment));
  if (body.length === 0) {
    out.write([encodePDataHeader(contextId, false, true, 0)]);
    return;
  }
  let position = 0;
  while (position < body.length) {
    const size = Math.min(chunkSize, body.length - position);
    const chunk = body.bytes ? body.bytes.subarray(position, position + size) : Buffer.allocUnsafe(size);
    let filled = body.bytes ? size : 0;
    while (filled < chunk.length) {
      const read = await body.read(chunk.subarray(filled), position + filled);
      if (read <= 0) throw new Error(`the dataset ended after ${position + filled} of ${body.length} bytes`);
      filled += read;
    }
    out.checkUsable();
    const pdus: Buffer[] = [];
    for (let offset = 0; offset < chunk.length; offset += maxFragment) {
      const fragment = chunk.subarray(offset, Math.min(chunk.length, offset + maxFragment));
      const isLast = position + offset + fragment.length >= body.length;
      pdus.push(encodePDataHeader(contextId, false, isLast, fragment.length), fragment);
    }
    position += chunk.length;
    if (!out.write(pdus)) await out.drained();
  }
}
