/**
 * What a bench must know about this VM's file system to time commands and not ext4.
 *
 * The file system has no journal, and then ext4 keeps skipping a freed inode when it allocates one
 * (fs/ext4/ialloc.c, recently_deleted(): 5 s, 305 s while the inode table block is dirty, which
 * creating files beside it keeps it). Each file created meanwhile walks past all of them: perf put
 * 60% of a `cp -r` of 10,000 files there (5.7 s, against 0.4 s on a settled file system), and
 * creating 2,000 files right after 6,000 were deleted costs 341 µs a file against 46 µs.
 * So a bench deletes nothing while it times, keeps each run's output until it ends, and starts this
 * long after its last deletion.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const SETTLE_AFTER_DELETING_MS = 370_000;

/** The benches' deletions of many files, noted in a marker under the data folder they share. */
export class Deletions {
  private readonly marker: string;

  constructor(dataRoot: string) {
    mkdirSync(dataRoot, { recursive: true });
    this.marker = join(dataRoot, 'deleted-at');
  }

  /** Deletes a folder of many files and notes when, for the next run's settle(). */
  delete(dir: string): void {
    if (!existsSync(dir)) return;
    rmSync(dir, { recursive: true, force: true });
    writeFileSync(this.marker, '');
  }

  /** Waits until the last deletion no longer slows creating files (SETTLE_AFTER_DELETING_MS). */
  async settle(): Promise<void> {
    if (!existsSync(this.marker)) return;
    const wait = statSync(this.marker).mtimeMs + SETTLE_AFTER_DELETING_MS - Date.now();
    if (wait <= 0) return;
    process.stdout.write(`waiting ${Math.ceil(wait / 1000)} s after the last deletion of many files (ext4 skips freed inodes for minutes; bench/ext4.ts)\n`);
    execFileSync('sync');
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** Stops a bench that would fill the disk with the outputs it keeps, saying how much it needs. */
export function checkFreeDisk(dir: string, needed: number, bench: string): void {
  mkdirSync(dir, { recursive: true });
  const stats = statfsSync(dir);
  const free = stats.bavail * stats.bsize;
  if (free < needed * 1.2) throw new Error(`${bench} needs about ${(needed / 1e9).toFixed(1)} GB free under ${dir}; ${(free / 1e9).toFixed(1)} GB are`);
}

/** Writes back what the last run left dirty, untimed, so that the next run does not pay for it. */
export function writeBack(): void {
  execFileSync('sync');
}
