/**
 * Retention on the index: which files of forwarded instances are due for deletion
 * (storage.retainOriginals, storage.retainDeidentified), and the record that they are gone.
 */
import type { Db } from '../db/database.js';
import { stampFromColumns, type FileStamp } from './file-stamp.js';

export interface ExpiredFile {
  id: number;
  filePath: string;
}

/** Where a sweep is in the expired files (their state_changed_at and id): files it could not delete
 * are passed, not selected again by every page after them. */
export interface ExpiryCursor {
  changedAt: number;
  id: number;
}

export class RetentionWork {
  constructor(private readonly db: Db) {}

  /**
   * Deletes up to `limit` files of instances every destination confirmed before `before`, and marks
   * them deleted, in one transaction on the thread that also places and re-routes files: no copy can
   * be re-sent, re-queued or replaced between the check and the deletion (nor, under the write lock
   * taken before the check, by another process). `remove` deletes one file
   * (relative path) synchronously; false: it could not, and the file stays recorded as present (a
   * throw would undo the records of the files of the page already deleted). Returns how many were deleted.
   */
  deleteExpired(
    kind: 'original' | 'deidentified',
    before: number,
    limit: number,
    remove: (filePath: string) => unknown,
    now = Date.now(),
    cursor: ExpiryCursor = { changedAt: Number.MIN_SAFE_INTEGER, id: 0 },
  ): number {
    // In (state_changed_at, id) order after `cursor`, which moves past every file selected: a page
    // whose files all failed (a folder the node may not write) would otherwise be selected again by
    // every page, and nothing after it ever deleted. Two reads, each an index range: the rest of the
    // cursor's instant (rowid after its id), then the instants after it. As one row-value comparison
    // SQLite ranged on the instant alone, and each page read again every row of an instant many rows
    // share (a purge stamps them all at once) (found in a review).
    const [path, present] = kind === 'original' ? ['file_path', 'original_deleted_at IS NULL AND original_external = 0'] : ['deid_file_path', 'deid_deleted_at IS NULL AND deid_file_path IS NOT NULL'];
    const columns = `id, ${path} AS filePath, state_changed_at AS changedAt FROM instances INDEXED BY instances_forwarded WHERE state = 'forwarded'`;
    const sameInstant = this.db.prepare(`SELECT ${columns} AND state_changed_at = ? AND id > ? AND ${present} ORDER BY id LIMIT ?`);
    const later = this.db.prepare(`SELECT ${columns} AND state_changed_at > ? AND state_changed_at <= ? AND ${present} ORDER BY state_changed_at, id LIMIT ?`);
    const mark = this.db.prepare(`UPDATE instances SET ${kind === 'original' ? 'original_deleted_at' : 'deid_deleted_at'} = ? WHERE id = ?`);
    // IMMEDIATE: the write lock before the choice. Commands share the index from other processes
    // (gantry forward, import, quarantine release); in a deferred transaction one of them could commit
    // between this choice and its record, after the files were deleted: the record then fails
    // (SQLITE_BUSY_SNAPSHOT) and a copy the command just queued again is gone though recorded present.
    return this.db.transaction(() => {
      const files = sameInstant.all(cursor.changedAt, cursor.id, limit) as Array<ExpiredFile & { changedAt: number }>;
      if (files.length < limit) files.push(...(later.all(cursor.changedAt, before, limit - files.length) as Array<ExpiredFile & { changedAt: number }>));
      let deleted = 0;
      for (const file of files) {
        cursor.changedAt = file.changedAt;
        cursor.id = file.id;
        if (remove(file.filePath) === false) continue;
        mark.run(now, file.id);
        deleted += 1;
      }
      return deleted;
    }).immediate();
  }

  /**
   * Deletes up to `limit` originals that a copy received again replaced (replaced_originals, migration
   * 025: the receiver deletes each after its commit, and one it could not delete, or a crash between
   * the two, leaves it there), after `afterId`, and forgets each deleted (or already gone) one. A file
   * its instance's row names again is forgotten, never deleted. `remove` deletes one file, given the
   * stamp it must have (when recorded: another file now at that path, a first copy of the instance
   * received again after its row was deleted, is not it, even with the freed inode), and says false
   * when the file stays. Without a recorded stamp, a path is deleted only while the instance has a row
   * (the receiver then gives a copy a name of its own). Returns how many were looked at and the last
   * id, for the next page.
   */
  deleteReplaced(limit: number, remove: (filePath: string, stamp: FileStamp | undefined) => boolean, afterId = 0): { selected: number; deleted: number; lastId: number } {
    const rows = this.db
      .prepare(
        `SELECT id, sop_instance_uid AS sopInstanceUid, file_path AS filePath, file_mtime_ns AS fileMtimeNs, file_ino AS fileIno
         FROM replaced_originals WHERE id > ? ORDER BY id LIMIT ?`,
      )
      .all(afterId, limit) as Array<ExpiredFile & { sopInstanceUid: string; fileMtimeNs: string | null; fileIno: string | null }>;
    const stillListed = this.db.prepare(`SELECT 1 FROM replaced_originals WHERE id = ? AND file_path = ?`).pluck();
    const named = this.db.prepare(`SELECT file_path FROM instances WHERE sop_instance_uid = ?`).pluck();
    const forget = this.db.prepare(`DELETE FROM replaced_originals WHERE id = ?`);
    let deleted = 0;
    // IMMEDIATE, checked again inside: the instance may have been received again since, under this name.
    this.db.transaction(() => {
      for (const row of rows) {
        if (stillListed.get(row.id, row.filePath) === undefined) continue;
        const current = named.get(row.sopInstanceUid) as string | undefined;
        if (current !== row.filePath) {
          const stamp = stampFromColumns(row.fileMtimeNs, row.fileIno);
          if (stamp === undefined && current === undefined) continue;
          if (!remove(row.filePath, stamp)) continue;
        }
        forget.run(row.id);
        deleted += 1;
      }
    }).immediate();
    return { selected: rows.length, deleted, lastId: rows.at(-1)?.id ?? afterId };
  }
}
