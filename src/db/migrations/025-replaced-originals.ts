import type { Migration } from '../database.js';

/**
 * Every original a copy received again replaced, until a retention sweep finds it deleted: one row
 * per file, where instances.replaced_path (migrations 016 and 022) held one per instance. An instance
 * received a third time before the sweep overwrote the column, and the first replaced original, when
 * the receiver could not delete it (EACCES, EIO) or a crash came between the commit and the delete,
 * was named nowhere again: PHI kept for good. A trigger records the old path whenever a row's file
 * changes while the row still owns it (not imported in place, not deleted by retention), whoever
 * writes the row; the column is no longer written (kept: dropping it rewrites the whole table).
 */
export const migration025ReplacedOriginals: Migration = {
  version: 25,
  name: 'originals replaced by a copy received again, one row each',
  up(db) {
    db.exec(`
      CREATE TABLE replaced_originals (
        id INTEGER PRIMARY KEY,
        sop_instance_uid TEXT NOT NULL,
        file_path TEXT NOT NULL UNIQUE,
        replaced_at INTEGER NOT NULL,
        -- The replaced file's stamp (migration 019: modification time and inode), when known: a first
        -- copy of the instance received again after its row was deleted takes the same plain name
        -- (and may get the freed inode), and must not be taken for it (retention-work.ts deleteReplaced).
        file_mtime_ns TEXT,
        file_ino TEXT
      );
      INSERT OR IGNORE INTO replaced_originals (sop_instance_uid, file_path, replaced_at)
        SELECT sop_instance_uid, replaced_path, received_at FROM instances INDEXED BY instances_replaced
        WHERE replaced_path IS NOT NULL ORDER BY id;
      UPDATE instances SET replaced_path = NULL WHERE replaced_path IS NOT NULL;
      DROP INDEX instances_replaced;
      CREATE TRIGGER instances_replaced_original AFTER UPDATE OF file_path ON instances
        WHEN old.original_external = 0 AND old.original_deleted_at IS NULL AND old.file_path IS NOT new.file_path BEGIN
        INSERT OR IGNORE INTO replaced_originals (sop_instance_uid, file_path, replaced_at, file_mtime_ns, file_ino)
          VALUES (old.sop_instance_uid, old.file_path, new.received_at, old.file_mtime_ns, old.file_ino);
      END;
    `);
  },
};
