/**
 * bench/fsync-floor: what durability costs on this machine, per object of a given size, without any
 * DICOM: a fresh page-cache write, the same plus fdatasync, plus the rename and directory sync that
 * put the file in place. It is the floor under Gantry's per-instance latency when a sender waits for
 * each C-STORE response (no asynchronous window), next to which storescp's whole per-instance time
 * can be set (storescp does not sync).
 *
 *   node dist/bench/fsync-floor.js [--size 524288] [--count 400] [--dir .bench-data/fsync]
 */
import { closeSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: String(512 * 1024) },
    count: { type: 'string', default: '400' },
    dir: { type: 'string', default: '.bench-data/fsync' },
  },
});
const size = Number(values.size);
const count = Number(values.count);
const dir = resolve(values.dir);

function median(numbers: number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function measure(name: string, step: (i: number, data: Buffer) => void): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'in'), { recursive: true });
  mkdirSync(join(dir, 'out'), { recursive: true });
  const times: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const data = Buffer.alloc(size, i & 0xff); // fresh memory each time, as received data is
    const began = performance.now();
    step(i, data);
    times.push(performance.now() - began);
  }
  console.log(`${name.padEnd(48)} median ${median(times).toFixed(3)} ms  (${(size / 1e6 / (median(times) / 1000)).toFixed(0)} MB/s)`);
}

console.log(`${count} objects of ${size} bytes in ${dir}`);
measure('create + write (page cache only)', (i, data) => {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, data);
  closeSync(fd);
});
measure('create + write + fdatasync', (i, data) => {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, data);
  fdatasyncSync(fd);
  closeSync(fd);
});
measure('create + write + rename + fdatasync + dir fsync', (i, data) => {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, data);
  renameSync(join(dir, 'in', `${i}`), join(dir, 'out', `${i}`));
  fdatasyncSync(fd);
  const directory = openSync(join(dir, 'out'), 'r');
  fsyncSync(directory);
  closeSync(directory);
  closeSync(fd);
});
rmSync(dir, { recursive: true, force: true });
