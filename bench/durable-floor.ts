/**
 * The least a receiver that answers only once an object is on the disk must pay after the object's
 * last byte: the last PDU written into a file prepared ahead (allocated, written and synced, so no
 * metadata changes) and the device flushed (fdatasync). Any design that keeps PS3.4's success after
 * durable storage pays at least this per instance when the sender waits for each response. Used by
 * bench/fsync-floor and, per round, by bench/receive to bound the ratio to storescp.
 */
import { closeSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { median } from './stats.js';

/** The size of the last PDU: DCMTK's default maximum PDU, which storescu sends in. */
export const LAST_PDU_BYTES = 16 * 1024;

/** Median milliseconds of `count` rewrites of the last `tailBytes` of an `objectBytes` file, each synced. */
export function inPlaceSyncMs(dir: string, objectBytes: number, tailBytes: number, count: number): number {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'in-place');
  const fd = openSync(file, 'w+');
  try {
    writeSync(fd, Buffer.alloc(objectBytes, 1), 0, objectBytes, 0);
    fsyncSync(fd);
    const times: number[] = [];
    for (let i = 0; i < count; i += 1) {
      const data = Buffer.alloc(tailBytes, i & 0xff);
      const began = performance.now();
      writeSync(fd, data, 0, tailBytes, objectBytes - tailBytes);
      fdatasyncSync(fd);
      times.push(performance.now() - began);
    }
    return median(times);
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}

/** The best ratio to storescp that a receiver costing nothing but `floorMs` per instance could reach,
 * storescp taking `storescpMs` per instance. */
export function boundOverStorescp(storescpMs: number, floorMs: number): number {
  return storescpMs / (storescpMs + floorMs);
}
