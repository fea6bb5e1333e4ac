/**
 * Retention on the index: which files of forwarded instances are due for deletion
 * (storage.retainOriginals, storage.retainDeidentified), and the record that they are gone.
 */
import type { Db } from '../db/database.js';

export interface ExpiredFile {
  id: number;
  filePath: string;
}

export class RetentionWork {
  constructor(private readonly db: Db) {}

  /** Originals of instances every destination confirmed before `before`. */
  expiredOriginals(before: number, limit: number): ExpiredFile[] {
    return this.db
      .prepare(
        `SELECT id, file_path AS filePath FROM instances INDEXED BY instances_forwarded
         WHERE state = 'forwarded' AND state_changed_at <= ? AND original_deleted_at IS NULL LIMIT ?`,
      )
      .all(before, limit) as ExpiredFile[];
  }

  expiredDeidentified(before: number, limit: number): ExpiredFile[] {
    return this.db
      .prepare(
        `SELECT id, deid_file_path AS filePath FROM instances INDEXED BY instances_forwarded
         WHERE state = 'forwarded' AND state_changed_at <= ? AND deid_deleted_at IS NULL AND deid_file_path IS NOT NULL LIMIT ?`,
      )
      .all(before, limit) as ExpiredFile[];
  }

  /** Records deletions, only where the row still names that file (a re-sent copy may have replaced it). */
  markDeleted(kind: 'original' | 'deidentified', files: readonly ExpiredFile[], now = Date.now()): void {
    const statement =
      kind === 'original'
        ? this.db.prepare(`UPDATE instances SET original_deleted_at = ? WHERE id = ? AND file_path = ?`)
        : this.db.prepare(`UPDATE instances SET deid_deleted_at = ? WHERE id = ? AND deid_file_path = ?`);
    this.db.transaction(() => {
      for (const file of files) statement.run(now, file.id, file.filePath);
    })();
  }
}
