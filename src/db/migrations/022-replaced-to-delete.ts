import type { Migration } from '../database.js';

/**
 * The originals replaced by a copy received again that may still be on disk: the receiver deletes
 * one after the commit that replaces it; one it could not delete (EACCES, EIO) stays, and each
 * retention sweep tries every path still named in replaced_path again (retention-work.ts), through
 * this index of the rows that name one, and forgets those it finds gone. Before, such an original
 * (PHI) was kept for good.
 */
export const migration022ReplacedToDelete: Migration = {
  version: 22,
  name: 'replaced originals still to delete',
  up(db) {
    db.exec(`CREATE INDEX instances_replaced ON instances (id) WHERE replaced_path IS NOT NULL;`);
  },
};
