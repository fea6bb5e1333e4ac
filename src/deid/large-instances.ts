/**
 * Instances whose header runs a de-identification thread out of its heap (an RT Structure Set of tens
 * of thousands of contours, a large SR or Segmentation: docs/operations.md, "Large headers") are done
 * once more in a thread of their own with a larger heap (deid.largeInstanceHeapMb), in the node and in
 * gantry export alike; one that does not fit there either fails with what to change.
 */
import type { Piscina } from 'piscina';
import { workerPool } from '../worker-loading.js';

/** The heap (old generation) of a de-identification or export thread: each task holds one header and a
 * 1 MB read window, so small heaps keep the threads' memory flat. About 250,000 data elements fit. */
export const DEID_THREAD_HEAP_MB = 96;

const OUT_OF_MEMORY = 'ERR_WORKER_OUT_OF_MEMORY';

/** A worker thread ended by its heap limit (resourceLimits), which one instance's header can reach alone. */
export function outOfMemory(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === OUT_OF_MEMORY;
}

/** The failure reason of an instance too large for the threads it was tried in, and what to change
 * (`then`: what to do after). Kept under the 200 characters a reason is cut to (withoutValues). */
export function outOfMemoryReason(largeHeapMb: number | undefined, then: string): string {
  if (largeHeapMb === undefined) {
    return `${OUT_OF_MEMORY}: its header needs more than a thread's ${DEID_THREAD_HEAP_MB} MB heap; set deid.largeInstanceHeapMb, ${then}`;
  }
  return `${OUT_OF_MEMORY}: its header needs more than deid.largeInstanceHeapMb (${largeHeapMb} MB) of heap; raise it, ${then}`;
}

/**
 * The pool that does such instances once more, running `filename` (the node's or the export's worker);
 * undefined for a heap of 0. One thread, so that at most one such heap is in use at a time, and none
 * while there is no such instance: it starts when one comes and ends a second after, giving its memory
 * back, so memory in the normal case does not change.
 */
export function largeInstancePool(filename: string, heapMb: number, secret: string, onThreadError: (error: Error) => void): Piscina | undefined {
  if (heapMb === 0) return undefined;
  return workerPool({
    filename,
    workerData: { secret },
    minThreads: 0,
    maxThreads: 1,
    idleTimeout: 1000,
    resourceLimits: { maxOldGenerationSizeMb: heapMb, maxYoungGenerationSizeMb: 16 },
  }, onThreadError);
}
