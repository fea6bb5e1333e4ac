/**
 * bench/fsync-floor: what durability costs on this machine, per object of a given size, without any
 * DICOM: a fresh page-cache write, the same plus fdatasync, plus the rename and directory sync that
 * put the file in place. It is the floor under Gantry's per-instance latency when a sender waits for
 * each C-STORE response (no asynchronous window), next to which storescp's whole per-instance time
 * can be set (storescp does not sync). The next lines are the receive path's own shape: the
 * file's, the directory's and the index WAL's syncs issued together from the thread pool, with and
 * without the directory's (what a landing zone of names made durable ahead would save), and with the
 * file's blocks written and synced ahead (zeros of the object's size, before the clock: what spare
 * files written ahead would save at best).
 *
 * The in-place lines are the floor under any design that keeps the rule "answer only once the data is
 * on the disk": an object written as its PDUs arrive into a file prepared ahead (no allocation, no
 * metadata) still has its last PDU to write and the device to flush after the last byte. With the
 * storescp rate of the same hour (--storescp-rate, instances/s), the bench prints the ratio that such a
 * receiver, costing nothing else, could reach: T / (T + floor), T being storescp's time per instance.
 *
 *   node dist/bench/fsync-floor.js [--size 524288] [--count 400] [--dir .bench-data/fsync] [--storescp-rate 839]
 */
import { closeSync, fdatasync, fdatasyncSync, fsync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { boundOverStorescp, inPlaceSyncMs, LAST_PDU_BYTES } from './durable-floor.js';
import { median } from './stats.js';
import { fillFreeMemory } from './vm-memory.js';

const fdatasyncAsync = promisify(fdatasync);
const fsyncAsync = promisify(fsync);

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: String(512 * 1024) },
    count: { type: 'string', default: '400' },
    dir: { type: 'string', default: '.bench-data/fsync' },
    'storescp-rate': { type: 'string' },
  },
});
const size = Number(values.size);
const count = Number(values.count);
const dir = resolve(values.dir);
// Before anything is timed (bench/vm-memory.ts), under the folder that holds the bench's.
fillFreeMemory(resolve(dir, '..'));

/** Times `step` for each object; `prepare`, if given, runs before the clock starts (what a receiver
 * would do ahead of the object's arrival). */
/** Empties the bench's folder: before each measurement, and before anything of it is opened. */
function resetFolder(): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'in'), { recursive: true });
  mkdirSync(join(dir, 'out'), { recursive: true });
}

async function measure(name: string, step: (i: number, data: Buffer) => void | Promise<void>, prepare?: (i: number) => void): Promise<void> {
  const times: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const data = Buffer.alloc(size, i & 0xff); // fresh memory each time, as received data is
    prepare?.(i);
    const began = performance.now();
    await step(i, data);
    times.push(performance.now() - began);
  }
  console.log(`${name.padEnd(48)} median ${median(times).toFixed(3)} ms  (${(size / 1e6 / (median(times) / 1000)).toFixed(0)} MB/s)`);
}

/** The device's write cache as Linux sees it ("write back": a flush empties a volatile cache;
 * "write through": every write already waits for the medium), for the disk that holds `path`. */
function writeCacheOf(path: string): string {
  const { dev } = statSync(path);
  const device = `${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & 0xfff00)}`;
  for (const file of [`/sys/dev/block/${device}/queue/write_cache`, `/sys/dev/block/${device}/../queue/write_cache`]) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch {
      // a partition has no queue of its own: its disk's is one level up
    }
  }
  return 'unknown';
}

console.log(`${count} objects of ${size} bytes in ${dir}`);
resetFolder();
await measure('create + write (page cache only)', (i, data) => {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, data);
  closeSync(fd);
});
resetFolder();
await measure('create + write + fdatasync', (i, data) => {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, data);
  fdatasyncSync(fd);
  closeSync(fd);
});
resetFolder();
await measure('create + write + rename + fdatasync + dir fsync', (i, data) => {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, data);
  renameSync(join(dir, 'in', `${i}`), join(dir, 'out', `${i}`));
  fdatasyncSync(fd);
  const directory = openSync(join(dir, 'out'), 'r');
  fsyncSync(directory);
  closeSync(directory);
  closeSync(fd);
});

/** A WAL-like file: a 4 kB page written and synced with each object, as an index commit is. */
const walPage = Buffer.alloc(4096, 1);
const together = async (name: string, withDirectory: boolean, writtenAhead = false) => {
  resetFolder();
  const wal = openSync(join(dir, 'wal'), 'w');
  const directory = openSync(join(dir, 'out'), 'r');
  try {
    await measure(name, async (i, data) => {
      const fd = openSync(join(dir, 'in', `${i}`), writtenAhead ? 'r+' : 'wx');
      writeSync(fd, data, 0, data.length, 0);
      if (withDirectory) renameSync(join(dir, 'in', `${i}`), join(dir, 'out', `${i}`));
      writeSync(wal, walPage, 0, walPage.length, (i % 1024) * walPage.length);
      await Promise.all([fdatasyncAsync(fd), fdatasyncAsync(wal), ...(withDirectory ? [fsyncAsync(directory)] : [])]);
      closeSync(fd);
    }, writtenAhead ? writeAhead : undefined);
  } finally {
    closeSync(directory);
    closeSync(wal);
  }
};

/** A file made ahead with its blocks written and synced (zeros, the object's size: the best case for
 * the idea, as a receiver does not know the size ahead): the object then overwrites pages and blocks
 * that exist, and its sync has nothing but data to write. */
function writeAhead(i: number): void {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, Buffer.alloc(size));
  fdatasyncSync(fd);
  closeSync(fd);
  const directory = openSync(join(dir, 'in'), 'r');
  fsyncSync(directory);
  closeSync(directory);
}
await together('rename; file || dir || WAL syncs together', true);
await together('no rename; file || WAL syncs together', false);
await together('written ahead; rename; file || dir || WAL syncs', true, true);

const inPlace = (name: string, bytes: number): number => {
  const ms = inPlaceSyncMs(dir, size, bytes, count);
  // MB/s of what each step writes (the last PDU's bytes, or the whole object's).
  console.log(`${name.padEnd(48)} median ${ms.toFixed(3)} ms  (${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s)`);
  return ms;
};
const lastPdu = inPlace('in place: last 16 kB PDU + fdatasync', LAST_PDU_BYTES);
inPlace('in place: whole object + fdatasync', size);
console.log(`device write cache: ${writeCacheOf(dir)}`);
rmSync(dir, { recursive: true, force: true });

const storescpRate = values['storescp-rate'] ? Number(values['storescp-rate']) : undefined;
if (storescpRate) {
  const perInstance = 1000 / storescpRate;
  console.log(
    `storescp at ${storescpRate} instances/s is ${perInstance.toFixed(3)} ms per instance: a receiver that costs nothing but ` +
      `the in-place floor (${lastPdu.toFixed(3)} ms) after each last byte reaches at most ${boundOverStorescp(perInstance, lastPdu).toFixed(2)}x storescp`,
  );
}
