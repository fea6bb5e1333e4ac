/**
 * Deletes files that every destination has confirmed, after the configured time: originals (PHI)
 * after storage.retainOriginals, de-identified copies after storage.retainDeidentified (0 keeps them).
 * The index rows stay, marked, so the history remains.
 */
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { RetentionWork } from '../index/retention-work.js';
import type { Logger } from '../observability/logger.js';

export interface RetentionOptions {
  work: RetentionWork;
  storagePath: string;
  log: Logger;
  settings(): { retainOriginalsMs: number; retainDeidentifiedMs: number };
}

/** Files deleted per transaction: each page blocks the event loop for a few milliseconds. */
const PAGE = 200;

export class Retention {
  private running = false;

  constructor(private readonly options: RetentionOptions) {}

  /** One pass; returns the files deleted. Overlapping calls do nothing. */
  async sweep(now = Date.now()): Promise<{ originals: number; deidentified: number }> {
    if (this.running) return { originals: 0, deidentified: 0 };
    this.running = true;
    try {
      const { retainOriginalsMs, retainDeidentifiedMs } = this.options.settings();
      const originals = retainOriginalsMs > 0 ? await this.deleteAll('original', now - retainOriginalsMs) : 0;
      const deidentified = retainDeidentifiedMs > 0 ? await this.deleteAll('deidentified', now - retainDeidentifiedMs) : 0;
      if (originals + deidentified > 0) this.options.log.info({ originals, deidentified }, 'retention: deleted forwarded files');
      return { originals, deidentified };
    } finally {
      this.running = false;
    }
  }

  private async deleteAll(kind: 'original' | 'deidentified', before: number): Promise<number> {
    let deleted = 0;
    for (let round = 0; round < 1000; round += 1) {
      const count = this.options.work.deleteExpired(kind, before, PAGE, (filePath) => {
        try {
          unlinkSync(join(this.options.storagePath, filePath));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      });
      deleted += count;
      if (count < PAGE) break;
      // Pages are short, and other work runs between them.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return deleted;
  }
}
