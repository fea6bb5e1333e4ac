/**
 * Deletes files that every destination has confirmed, after the configured time: originals (PHI)
 * after storage.retainOriginals, de-identified copies after storage.retainDeidentified (0 keeps them).
 * The index rows stay, marked, so the history remains.
 */
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExpiredFile, RetentionWork } from '../index/retention-work.js';
import type { Logger } from '../observability/logger.js';

export interface RetentionOptions {
  work: RetentionWork;
  storagePath: string;
  log: Logger;
  settings(): { retainOriginalsMs: number; retainDeidentifiedMs: number };
}

const PAGE = 1000;

export class Retention {
  private running = false;

  constructor(private readonly options: RetentionOptions) {}

  /** One pass; returns the files deleted. Overlapping calls do nothing. */
  async sweep(now = Date.now()): Promise<{ originals: number; deidentified: number }> {
    if (this.running) return { originals: 0, deidentified: 0 };
    this.running = true;
    try {
      const { retainOriginalsMs, retainDeidentifiedMs } = this.options.settings();
      const { work } = this.options;
      const originals = retainOriginalsMs > 0 ? await this.deleteAll('original', (limit) => work.expiredOriginals(now - retainOriginalsMs, limit)) : 0;
      const deidentified = retainDeidentifiedMs > 0 ? await this.deleteAll('deidentified', (limit) => work.expiredDeidentified(now - retainDeidentifiedMs, limit)) : 0;
      if (originals + deidentified > 0) this.options.log.info({ originals, deidentified }, 'retention: deleted forwarded files');
      return { originals, deidentified };
    } finally {
      this.running = false;
    }
  }

  private async deleteAll(kind: 'original' | 'deidentified', page: (limit: number) => ExpiredFile[]): Promise<number> {
    let deleted = 0;
    for (let round = 0; round < 1000; round += 1) {
      const files = page(PAGE);
      if (files.length === 0) break;
      await Promise.all(
        files.map((file) =>
          unlink(join(this.options.storagePath, file.filePath)).catch((error: NodeJS.ErrnoException) => {
            if (error.code !== 'ENOENT') throw error;
          }),
        ),
      );
      this.options.work.markDeleted(kind, files);
      deleted += files.length;
      if (files.length < PAGE) break;
    }
    return deleted;
  }
}
