import type { Migration } from '../database.js';

/**
 * The originals replaced by a copy received again that are still to be deleted: the receiver deletes
 * one after the commit that replaces it and then forgets its path; one it could not delete (EACCES,
 * EIO) stays named in replaced_path, and each retention sweep tries it again (retention-work.ts),
 * through this index of the few rows that still name one. Before, such an original (PHI) was kept for
 * good. Rows of earlier versions still name the copies already deleted: the first sweep finds them
 * gone and forgets them.
 */
export const migration022ReplacedToDelete: Migration = {
  version: 22,
  name: 'replaced originals still to delete',
  up(db) {
    db.exec(`CREATE INDEX instances_replaced ON instances (id) WHERE replaced_path IS NOT NULL;`);
  },
};
