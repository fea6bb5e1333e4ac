/**
 * Deletes files that every destination has confirmed, after the configured time: originals (PHI)
 * after storage.retainOriginals, de-identified copies after storage.retainDeidentified (0 keeps them).
 * The index rows stay, marked, so the history remains.
 */
import { lstatSync, rmdirSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stampOf, type FileStamp } from '../index/file-stamp.js';
import type { ExpiryCursor, RetentionWork } from '../index/retention-work.js';
import type { Logger } from '../observability/logger.js';

export interface RetentionOptions {
  work: RetentionWork;
  storagePath: string;
  log: Logger;
  settings(): { retainOriginalsMs: number; retainDeidentifiedMs: number };
  /** A series or study folder (relative to storagePath) removed because retention emptied it. */
  folderRemoved?(relativeFolder: string): void;
}

/** A series folder of stored files, relative to storage.path: originals/<Study>/<Series> or
 * deidentified/<Study>/<Series> (files imported in place are never deleted). */
const SERIES_FOLDER = /^(originals|deidentified)\/[^/]+\/[^/]+$/;

/** Files deleted per transaction: each page blocks the event loop for a few milliseconds. */
const PAGE = 200;

export class Retention {
  private running = false;
  /** The series folders of the files deleted this sweep: removed at its end if empty. */
  private emptied = new Set<string>();

  constructor(private readonly options: RetentionOptions) {}

  /** One pass; returns the files deleted. Overlapping calls do nothing. */
  async sweep(now = Date.now()): Promise<{ originals: number; deidentified: number }> {
    if (this.running) return { originals: 0, deidentified: 0 };
    this.running = true;
    try {
      const { retainOriginalsMs, retainDeidentifiedMs } = this.options.settings();
      // Its failure (the index locked past the busy timeout) must not cost the sweep its expiries.
      await this.deleteReplaced().catch((error: Error) => this.options.log.warn({ err: error.message }, 'retention: replaced originals not looked at this sweep'));
      const originals = retainOriginalsMs > 0 ? await this.deleteAll('original', now - retainOriginalsMs) : 0;
      const deidentified = retainDeidentifiedMs > 0 ? await this.deleteAll('deidentified', now - retainDeidentifiedMs) : 0;
      if (originals + deidentified > 0) this.options.log.info({ originals, deidentified }, 'retention: deleted forwarded files');
      this.removeEmptiedFolders();
      return { originals, deidentified };
    } finally {
      this.emptied.clear();
      this.running = false;
    }
  }

  /**
   * The series folders this sweep emptied, and then their study folders, are removed: kept, they
   * grew by two a series for good, named by the original Study and Series Instance UIDs (found in a
   * review). One not empty (a file received since) stays. The receiver makes a folder removed under
   * it again (ObjectStore.moveIntoPlace); de-identified copies are placed by this thread, never
   * between a removal and its check.
   */
  private removeEmptiedFolders(): void {
    const studies = new Set<string>();
    for (const series of this.emptied) {
      if (this.removeFolder(series)) studies.add(dirname(series));
    }
    for (const study of studies) this.removeFolder(study);
  }

  private removeFolder(relativeFolder: string): boolean {
    try {
      rmdirSync(join(this.options.storagePath, relativeFolder));
    } catch {
      // Not empty (ENOTEMPTY, EEXIST), gone already, or not ours to remove: left as it is.
      return false;
    }
    this.options.folderRemoved?.(relativeFolder);
    return true;
  }

  /** The originals a copy received again replaced, which the receiver could not delete then (PHI
   * no row names as the instance's file): tried again every sweep, whatever the retention settings. */
  private async deleteReplaced(): Promise<void> {
    const failures = new Map<string, number>();
    const remove = this.unlinkReporting(failures);
    let afterId = 0;
    await inPages(() => {
      const page = this.options.work.deleteReplaced(PAGE, remove, afterId);
      afterId = page.lastId;
      return page.selected;
    });
    if (failures.size > 0) this.options.log.warn({ failures: Object.fromEntries(failures) }, 'retention: replaced originals that could not be deleted are kept, and tried again');
  }

  /** Deletes a file (relative to storage.path): true when it is gone (ENOENT too), false when it could
   * not be deleted, counted by error code in `failures` (its path holds original UIDs: never logged).
   * Given a stamp, a file of another modification time or inode at that path is another file: kept (false). */
  private unlinkReporting(failures: Map<string, number>): (filePath: string, stamp?: FileStamp) => boolean {
    return (filePath, stamp) => {
      const path = join(this.options.storagePath, filePath);
      const series = dirname(filePath);
      if (SERIES_FOLDER.test(series)) this.emptied.add(series);
      try {
        if (stamp !== undefined) {
          const found = lstatSync(path, { bigint: true, throwIfNoEntry: false });
          if (found === undefined) return true;
          const now = stampOf(found);
          if (now.ino !== stamp.ino || now.mtimeNs !== stamp.mtimeNs) {
            failures.set('another file at its path', (failures.get('another file at its path') ?? 0) + 1);
            return false;
          }
        }
        unlinkSync(path);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? 'error';
        if (code === 'ENOENT') return true;
        failures.set(code, (failures.get(code) ?? 0) + 1);
        return false;
      }
      return true;
    };
  }

  private async deleteAll(kind: 'original' | 'deidentified', before: number): Promise<number> {
    let deleted = 0;
    // A file that cannot be deleted is skipped (it stays recorded as present and is tried again next
    // sweep): throwing would stop retention at it for good, and undo the records of the files of its
    // page already deleted. Its path holds original UIDs: only the error code is logged.
    const failures = new Map<string, number>();
    const cursor: ExpiryCursor = { changedAt: Number.MIN_SAFE_INTEGER, id: 0 };
    const unlink = this.unlinkReporting(failures);
    // Each page starts after the last (the files skipped are tried again next sweep).
    await inPages(() => {
      let failed = 0;
      const count = this.options.work.deleteExpired(kind, before, PAGE, (filePath) => {
        const gone = unlink(filePath);
        if (!gone) failed += 1;
        return gone;
      }, Date.now(), cursor);
      deleted += count;
      return count + failed;
    });
    if (failures.size > 0) this.options.log.warn({ kind, failures: Object.fromEntries(failures) }, 'retention: files that could not be deleted are kept');
    return deleted;
  }
}

/** Runs `page` (which answers how many rows it looked at) until a page is short, at most 1,000 times;
 * pages are short, and other work runs between them. */
async function inPages(page: () => number): Promise<void> {
  for (let round = 0; round < 1000; round += 1) {
    if (page() < PAGE) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
}
