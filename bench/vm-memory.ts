/**
 * What a bench must know about this VM's memory: its free memory is not really there.
 *
 * The VM (a Firecracker guest, kernel 6.18 "fc") has a virtio balloon with free page reporting
 * (feature bit 5, VIRTIO_BALLOON_F_REPORTING): the guest tells the host which of its pages are free,
 * and the host takes them back (/sys/module/page_reporting/parameters/reported_kib counts what was
 * handed back: 209 GB in the first 5.5 hours of 2026-12-01's boot). The next time the guest uses such
 * a page, the host has to back it again, and that fault is charged to whatever touched the page: for
 * a bench, the process that writes a new file into the page cache.
 *
 * Measured on 2026-12-01: `dd` writing 1 GB into a new file took 2.15 s of system time on pages given
 * back, 0.26-0.85 s on pages in use. In a `perf record` of Gantry's end-to-end run (bench/forward
 * --only e2e, 2,000 instances) with 15 GB of the memory free, filling written pages
 * (`copy_folio_from_iter_atomic`) took 25.6% of Gantry's samples, and the run made 157 instances/s;
 * with the free memory first filled with page cache, 3.2% and 209 instances/s. A node writes each
 * instance twice (the original and its de-identified copy), so it paid twice what storescp paid, and
 * two runs of the same code differed with how much had been freed since (a deleted bench output, a
 * process that ended).
 *
 * A server that has run for a while has its memory full of page cache, and a new file takes pages the
 * kernel reclaims from older files, pages in use, never given back. So a bench fills the free memory
 * with page cache before it times anything, and the benches that write many files top it up before
 * each round (what ended processes and deleted outputs freed): reading a sparse file takes no disk
 * space, and its pages are the first the kernel reclaims. The files stay while the bench runs
 * (deleting one frees its pages) and go when it ends or is interrupted.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { processRunning } from '../src/pipeline/recovery.js';

/** What a fill aims to leave free. */
const LEAVE_FREE_BYTES = 512 * 2 ** 20;
/** Below this much free memory nothing is filled: the kernel keeps about 2.5 GB free on this VM
 * whatever is read (measured: a fill of 20 GB ends there, and a second pass only reads). */
const FILL_ABOVE_BYTES = 3 * 2 ** 30;
/** A pass that brings free memory down by less than this ends the fill. */
const MIN_PASS_GAIN_BYTES = 256 * 2 ** 20;
/** The kernel frees memory while a pass reads (reclaim runs ahead of it): a second pass may get closer. */
const MAX_PASSES = 4;
const FILE_PATTERN = /^memory-fill-(\d+)-\d+\.sparse$/;

let files = 0;

/** Fills the free memory with page cache (sparse files under `dataRoot`, read through), when more
 * than FILL_ABOVE_BYTES are free. Fast when there is nothing to fill: call it before each round. */
export function fillFreeMemory(dataRoot: string): void {
  mkdirSync(dataRoot, { recursive: true });
  if (files === 0) {
    removeFillsOfEndedBenches(dataRoot);
    removeFillsAtExit(dataRoot);
  }
  const started = Date.now();
  let filled = 0;
  let free = freeBytes();
  for (let pass = 0; pass < MAX_PASSES && free > FILL_ABOVE_BYTES; pass += 1) {
    if (pass === 0) process.stdout.write(`filling ${((free - LEAVE_FREE_BYTES) / 2 ** 30).toFixed(1)} GiB of free memory with page cache (bench/vm-memory.ts)\n`);
    filled += readSparseFile(join(dataRoot, `memory-fill-${process.pid}-${files}.sparse`), free - LEAVE_FREE_BYTES);
    files += 1;
    const after = freeBytes();
    if (free - after < MIN_PASS_GAIN_BYTES) break;
    free = after;
  }
  if (filled > 0) process.stdout.write(`  done in ${((Date.now() - started) / 1000).toFixed(0)} s; ${(freeBytes() / 2 ** 20).toFixed(0)} MiB free\n`);
}

/** Creates a sparse file of `bytes` and reads it through the page cache; returns `bytes`. */
function readSparseFile(file: string, bytes: number): number {
  closeSync(openSync(file, 'w'));
  truncateSync(file, bytes);
  execFileSync('sh', ['-c', 'cat "$1" > /dev/null', 'sh', file], { stdio: 'inherit' });
  return bytes;
}

/** At exit, and on SIGINT or SIGTERM (then ended by the same signal). */
function removeFillsAtExit(dataRoot: string): void {
  const removeOwn = () => removeFills(dataRoot, (pid) => pid === process.pid);
  process.on('exit', removeOwn);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      removeOwn();
      process.kill(process.pid, signal);
    });
  }
}

/** A bench stopped by a signal leaves its files: their pages would be freed at some later deletion. */
function removeFillsOfEndedBenches(dataRoot: string): void {
  removeFills(dataRoot, (pid) => pid !== process.pid && !processRunning(pid));
}

function removeFills(dataRoot: string, whose: (pid: number) => boolean): void {
  for (const name of readdirSync(dataRoot)) {
    const match = FILE_PATTERN.exec(name);
    if (match && whose(Number(match[1]))) rmSync(join(dataRoot, name), { force: true });
  }
}


function freeBytes(): number {
  const match = /^MemFree:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  if (!match) throw new Error('cannot read MemFree from /proc/meminfo');
  return Number(match[1]) * 1024;
}
