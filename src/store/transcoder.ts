/**
 * Sends a stored object in a transfer syntax other than its own, for a destination (forwarding, C-MOVE,
 * C-GET) that accepted only another: the conversion runs on a thread of its own
 * (src/store/transcode-worker.ts), started on first use and stopped when idle, so that decoding a large
 * compressed object never holds up the event loop that receives.
 */
import { PixelRedactionError } from '../pixels/native.js';
import type { DatasetBody, StoredDataset } from './stored-dataset.js';
import type { TranscodeResult, TranscodeTask } from './transcode-worker.js';
import { workerPool } from '../worker-loading.js';

/** A thread that has not converted anything for this long is stopped: most nodes never convert. */
const IDLE_MS = 60_000;

/**
 * The longest a conversion may take before its thread is stopped: a minute, and a second more per MB
 * stored (decoding runs at tens of MB/s here, so this is many times what a sound object needs). A
 * codec caught in a damaged stream would otherwise hold the one conversion thread, and with it every
 * later conversion, forever.
 */
export function conversionTimeoutMs(storedBytes: number): number {
  return 60_000 + Math.ceil(storedBytes / 1_000_000) * 1000;
}

export interface TranscoderOptions {
  /** How long a conversion of a stored object of this size may take (default conversionTimeoutMs). */
  timeoutMs?: (storedBytes: number) => number;
  /** A failure of the thread that no conversion was waiting for (piscina's 'error' event). */
  onThreadError?: (error: Error) => void;
}

export class Transcoder {
  constructor(private readonly options: TranscoderOptions = {}) {}

  /** The conversion asked for last: each waits for the one before it, as the one thread would. */
  private previous: Promise<unknown> = Promise.resolve();

  // A failure of the thread that no conversion waits for is told (a running conversion gets its own).
  private readonly pool = workerPool(
    { filename: new URL('./transcode-worker.js', import.meta.url).href, minThreads: 0, maxThreads: 1, idleTimeout: IDLE_MS },
    (error) => this.options.onThreadError?.(error),
  );

  /**
   * What to send of the stored file at `path` on a context of `transferSyntaxUid`: the stored dataset
   * itself, or the dataset converted (in memory: a fallback, up to 1 GB decompressed). Frames that
   * cannot be decoded, or not within the time allowed, throw a PixelRedactionError.
   */
  async datasetInSyntax(path: string, stored: StoredDataset, transferSyntaxUid: string): Promise<DatasetBody> {
    if (transferSyntaxUid === stored.transferSyntaxUid) return stored;
    const task: TranscodeTask = { path, storedTransferSyntaxUid: stored.transferSyntaxUid, transferSyntaxUid };
    const timeoutMs = (this.options.timeoutMs ?? conversionTimeoutMs)(stored.length);
    // The time limit counts from the conversion's start, not from its turn's request: the conversions
    // waiting for the one thread behind one caught in a damaged stream were stopped with it, and went
    // to dead letter without having been tried (found in a review).
    const converted = this.previous.then(() => this.convert(task, timeoutMs));
    this.previous = converted.catch(() => undefined);
    const result = await converted;
    if ('undecodable' in result) throw new PixelRedactionError(result.undecodable);
    if ('systemError' in result) throw Object.assign(new Error(result.message), { code: result.systemError });
    return piecesBody(result.map((piece) => Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength)));
  }

  /** Runs one conversion on the thread, stopped after `timeoutMs`. */
  private async convert(task: TranscodeTask, timeoutMs: number): Promise<TranscodeResult> {
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      // Aborting a running task stops its thread (piscina): the next conversion gets a fresh one.
      return (await this.pool.run(task, { signal })) as TranscodeResult;
    } catch (error) {
      if (!signal.aborted) throw error;
      throw new PixelRedactionError(`the conversion did not finish within ${(timeoutMs / 1000).toFixed(0)} s`);
    }
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}

/** A dataset sent from its pieces in order, never joined into one Buffer. */
export function piecesBody(pieces: readonly Buffer[]): DatasetBody {
  const starts: number[] = [];
  let length = 0;
  for (const piece of pieces) {
    starts.push(length);
    length += piece.length;
  }
  if (pieces.length === 1) return { length, bytes: pieces[0], read: async (target, position) => (pieces[0] as Buffer).copy(target, 0, position) };
  return {
    length,
    read: async (target, position) => {
      let filled = 0;
      // The piece holding `position`: the last that starts at or before it.
      let index = starts.findLastIndex((start) => start <= position);
      while (index >= 0 && index < pieces.length && filled < target.length) {
        const piece = pieces[index] as Buffer;
        const from = position + filled - (starts[index] as number);
        filled += piece.copy(target, filled, from);
        index += 1;
      }
      return filled;
    },
  };
}
