import type { Db, Migration } from '../database.js';

/**
 * Indexes made by the Gantry of a few commits whose migrations were changed afterwards, repaired:
 * such an index recorded the migration as applied and never ran its later form (found in the upgrade
 * review). Nothing here changes an index made by the migrations as they are now.
 * - Migration 7 as 4ce9754 had it made neither the index of queued items per routing nor the
 *   backfill of failure times: the node stopped at start ("no such index:
 *   forward_outbox_routing_queued"), and so did `gantry queue` and `gantry forward`.
 * - Migration 25 as d962002 to b55eda1 had it listed replaced originals without their file stamp,
 *   and its trigger recorded none: every retention sweep failed on the missing columns, and replaced
 *   originals (PHI) were never deleted.
 * Released migrations are not changed again (test/unit/migrations.test.ts holds their digests).
 */
export const migration028RepairChangedMigrations: Migration = {
  version: 28,
  name: 'repair indexes made while migrations 7 and 25 had an earlier form',
  up(db) {
    if (!hasIndex(db, 'forward_outbox_routing_queued')) {
      db.exec(`
        UPDATE forward_outbox SET failed_at = queued_at WHERE failed_at IS NULL AND state != 'sent' AND last_error IS NOT NULL;
        CREATE INDEX forward_outbox_routing_queued ON forward_outbox (study_pk, destination, routed_at) WHERE state = 'queued';
      `);
    }
    const columns = new Set(db.prepare(`SELECT name FROM pragma_table_info('replaced_originals')`).pluck().all() as string[]);
    if (columns.has('file_mtime_ns') && columns.has('file_ino')) return;
    if (!columns.has('file_mtime_ns')) db.exec('ALTER TABLE replaced_originals ADD COLUMN file_mtime_ns TEXT');
    if (!columns.has('file_ino')) db.exec('ALTER TABLE replaced_originals ADD COLUMN file_ino TEXT');
    // The trigger as migration 25 makes it now: the replaced file's stamp goes with its path.
    db.exec(`
      DROP TRIGGER IF EXISTS instances_replaced_original;
      CREATE TRIGGER instances_replaced_original AFTER UPDATE OF file_path ON instances
        WHEN old.original_external = 0 AND old.original_deleted_at IS NULL AND old.file_path IS NOT new.file_path BEGIN
        INSERT OR IGNORE INTO replaced_originals (sop_instance_uid, file_path, replaced_at, file_mtime_ns, file_ino)
          VALUES (old.sop_instance_uid, old.file_path, new.received_at, old.file_mtime_ns, old.file_ino);
      END;
    `);
  },
};

function hasIndex(db: Db, name: string): boolean {
  return db.prepare(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`).pluck().get(name) === 1;
}
