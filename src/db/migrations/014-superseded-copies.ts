import type { Migration } from '../database.js';

/**
 * The de-identified copy that an instance received again had before (its row's copy is cleared when a
 * new original arrives): kept here until the new original's outcome is recorded, and then deleted,
 * unless the new copy took the same path. A corrected Study or Series Instance UID, or a rename under
 * retainUIDs, puts the new copy elsewhere, and the old one was left on disk for good.
 */
export const migration014SupersededCopies: Migration = {
  version: 14,
  name: 'de-identified copies superseded by a new original',
  up(db) {
    db.exec(`ALTER TABLE instances ADD COLUMN deid_superseded_path TEXT;`);
  },
};
