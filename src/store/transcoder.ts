/**
 * Sends a stored object in a transfer syntax other than its own, for a destination (forwarding, C-MOVE,
 * C-GET) that accepted only another: the conversion runs on a thread of its own
 * (src/store/transcode-worker.ts), started on first use and stopped when idle, so that decoding a large
 * compressed object never holds up the event loop that receives.
 */
import { Piscina } from 'piscina';
import { PixelRedactionError } from '../pixels/native.js';
import type { DatasetBody, StoredDataset } from './stored-dataset.js';
import type { TranscodeResult, TranscodeTask } from './transcode-worker.js';

/** A thread that has not converted anything for this long is stopped: most nodes never convert. */
const IDLE_MS = 60_000;

export class Transcoder {
  private readonly pool = new Piscina({
    filename: new URL('./transcode-worker.js', import.meta.url).href,
    minThreads: 0,
    maxThreads: 1,
    idleTimeout: IDLE_MS,
  });

  /**
   * What to send of the stored file at `path` on a context of `transferSyntaxUid`: the stored dataset
   * itself, or the dataset converted (in memory: a fallback, up to 1 GB decompressed). Frames that
   * cannot be decoded throw a PixelRedactionError.
   */
  async datasetInSyntax(path: string, stored: StoredDataset, transferSyntaxUid: string): Promise<DatasetBody> {
    if (transferSyntaxUid === stored.transferSyntaxUid) return stored;
    const task: TranscodeTask = { path, storedTransferSyntaxUid: stored.transferSyntaxUid, transferSyntaxUid };
    const result = (await this.pool.run(task)) as TranscodeResult;
    if (!(result instanceof Uint8Array)) throw new PixelRedactionError(result.undecodable);
    const bytes = Buffer.from(result.buffer, result.byteOffset, result.byteLength);
    return {
      length: bytes.length,
      bytes,
      read: async (target, position) => bytes.copy(target, 0, position, Math.min(bytes.length, position + target.length)),
    };
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}
