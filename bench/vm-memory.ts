/**
 * What a bench must know about this VM's memory: the host backs a page of the guest's memory only
 * once the guest first touches it. Until every page has been used once since boot, the page cache
 * grows into pages the host has not given yet, and filling each new one costs a fault on the host,
 * charged to whatever writes the file.
 *
 * Measured on 2026-12-01 on a machine up for three hours, most of its 24 GB never touched: `dd`
 * writing 1 GB into a new file took 2.15 s of system time; once a sparse file as large as the memory
 * had been read through the page cache, 0.26-0.85 s. Gantry's end-to-end rate (bench/forward --only
 * e2e, 2,000 instances) went from 94-141 to 195-220 instances/s, its system time from 8.1 to 3.3-5.0 s,
 * whether the page cache was then full or emptied. The reference tools pay the same per byte, but a
 * node writes each instance twice (the original and its de-identified copy): a fresh machine timed it
 * at a disadvantage that a server whose memory is in use does not have, and made runs of the same code
 * on two machines, or two hours, differ for reasons that were not the code's.
 *
 * So every bench touches the whole memory once per boot before it times anything.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Reads a sparse file as large as the memory through the page cache, once per boot (a marker under
 * `dataRoot` holds the boot's id). The file takes no disk space; reading its holes fills cache pages. */
export function touchMemoryOncePerBoot(dataRoot: string): void {
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  mkdirSync(dataRoot, { recursive: true });
  const marker = join(dataRoot, 'memory-touched');
  if (existsSync(marker) && readFileSync(marker, 'utf8').trim() === bootId) return;
  const bytes = memoryBytes();
  const file = join(dataRoot, 'memory-toucher.sparse');
  process.stdout.write(`touching the machine's ${(bytes / 2 ** 30).toFixed(1)} GiB of memory once since boot (bench/vm-memory.ts)\n`);
  const started = Date.now();
  closeSync(openSync(file, 'w'));
  try {
    truncateSync(file, bytes);
    execFileSync('sh', ['-c', 'cat "$1" > /dev/null', 'sh', file], { stdio: 'inherit' });
  } finally {
    rmSync(file, { force: true });
  }
  writeFileSync(marker, `${bootId}\n`);
  process.stdout.write(`  done in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
}

function memoryBytes(): number {
  const match = /^MemTotal:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  if (!match) throw new Error('cannot read MemTotal from /proc/meminfo');
  return Number(match[1]) * 1024;
}
