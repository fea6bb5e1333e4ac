/**
 * bench/fsync-floor: what durability costs on this machine, per object of a given size, without any
 * DICOM: a fresh page-cache write, the same plus fdatasync, plus the rename and directory sync that
 * put the file in place. It is the floor under Gantry's per-instance latency when a sender waits for
 * each C-STORE response (no asynchronous window), next to which storescp's whole per-instance time
 * can be set (storescp does not sync). The last two lines are the receive path's own shape: the
 * file's, the directory's and the index WAL's syncs issued together from the thread pool, with and
 * without the directory's (what a landing zone of names made durable ahead would save).
 *
 *   node dist/bench/fsync-floor.js [--size 524288] [--count 400] [--dir .bench-data/fsync]
 */
import { closeSync, fdatasync, fdatasyncSync, fsync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { median } from './stats.js';

const fdatasyncAsync = promisify(fdatasync);
const fsyncAsync = promisify(fsync);

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

async function measure(name: string, step: (i: number, data: Buffer) => void | Promise<void>): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'in'), { recursive: true });
  mkdirSync(join(dir, 'out'), { recursive: true });
  const times: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const data = Buffer.alloc(size, i & 0xff); // fresh memory each time, as received data is
    const began = performance.now();
    await step(i, data);
    times.push(performance.now() - began);
  }
  console.log(`${name.padEnd(48)} median ${median(times).toFixed(3)} ms  (${(size / 1e6 / (median(times) / 1000)).toFixed(0)} MB/s)`);
}

console.log(`${count} objects of ${size} bytes in ${dir}`);
await measure('create + write (page cache only)', (i, data) => {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, data);
  closeSync(fd);
});
await measure('create + write + fdatasync', (i, data) => {
  const fd = openSync(join(dir, 'in', `${i}`), 'wx');
  writeSync(fd, data);
  fdatasyncSync(fd);
  closeSync(fd);
});
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
const together = async (name: string, withDirectory: boolean) => {
  const wal = openSync(join(dir, 'wal'), 'w');
  const directory = openSync(join(dir, 'out'), 'r');
  try {
    await measure(name, async (i, data) => {
      const fd = openSync(join(dir, 'in', `${i}`), 'wx');
      writeSync(fd, data);
      if (withDirectory) renameSync(join(dir, 'in', `${i}`), join(dir, 'out', `${i}`));
      writeSync(wal, walPage, 0, walPage.length, (i % 1024) * walPage.length);
      await Promise.all([fdatasyncAsync(fd), fdatasyncAsync(wal), ...(withDirectory ? [fsyncAsync(directory)] : [])]);
      closeSync(fd);
    });
  } finally {
    closeSync(directory);
    closeSync(wal);
  }
};
await together('rename; file || dir || WAL syncs together', true);
await together('no rename; file || WAL syncs together', false);
rmSync(dir, { recursive: true, force: true });
