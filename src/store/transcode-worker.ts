/**
 * The transcoding worker: a stored object in the transfer syntax a destination accepted instead of the
 * stored one (decompressed, or re-encoded into explicit or implicit VR little endian). Decoding the
 * frames of a large JPEG 2000 object takes seconds of CPU: run on the main thread it stalled every
 * association the node serves, receiving included. Owned by src/store/transcoder.ts.
 */
import { Piscina } from 'piscina';
import { decompressedDataset } from '../pixels/decompress.js';
import { loadCodecs } from '../pixels/codecs.js';
import { PixelRedactionError } from '../pixels/native.js';
import { ByteOrderError } from '../dicom/reencode.js';
import { needsDecompression, reencodedDataset } from './stored-dataset.js';

export interface TranscodeTask {
  path: string;
  storedTransferSyntaxUid: string;
  transferSyntaxUid: string;
}

/** The dataset's pieces, in order (moved, not copied, to the main thread), why the frames cannot be
 * decoded, or a system error's code and message: an error's class and code do not cross threads. */
export type TranscodeResult = Uint8Array[] | { undecodable: string } | { systemError: string; message: string };

export default async function transcode(task: TranscodeTask): Promise<TranscodeResult> {
  try {
    let pieces: Buffer[];
    if (needsDecompression({ transferSyntaxUid: task.storedTransferSyntaxUid }, task.transferSyntaxUid)) {
      await loadCodecs();
      pieces = decompressedDataset(task.path, task.transferSyntaxUid);
    } else {
      pieces = [reencodedDataset(task.path, task.transferSyntaxUid)];
    }
    return Piscina.move(new MovedPieces(pieces.map(ownMemory)) as unknown as ArrayBuffer) as unknown as Uint8Array[];
  } catch (error) {
    if (error instanceof PixelRedactionError || error instanceof ByteOrderError) return { undecodable: error.message };
    const code = (error as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return { systemError: code, message: (error as Error).message };
    throw error;
  }
}

/** Pieces whose memory moves to the main thread with the answer (piscina's transferable protocol:
 * Piscina.move marks it to be moved). */
class MovedPieces {
  constructor(private readonly pieces: Uint8Array[]) {}

  get [Piscina.transferableSymbol](): ArrayBufferLike[] {
    return this.pieces.map((piece) => piece.buffer);
  }

  get [Piscina.valueSymbol](): Uint8Array[] {
    return this.pieces;
  }
}

/** `bytes` in an ArrayBuffer of its own, which can be moved without a copy (a small Buffer can be a
 * slice of Node's shared pool, and two pieces must not share one ArrayBuffer). */
function ownMemory(bytes: Buffer): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length) return bytes;
  const own = new Uint8Array(bytes.length);
  own.set(bytes);
  return own;
}
