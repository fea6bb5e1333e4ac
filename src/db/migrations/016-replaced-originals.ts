import type { Migration } from '../database.js';

/**
 * The original that an instance received again replaced, named in the commit that replaces it: the
 * receiver deletes that file after the commit, and the check after an unclean stop (recovery.ts)
 * deletes it when a crash came first. It looked only in the folders of the newest rows, and a copy
 * received again under a corrected Study or Series Instance UID lands in another folder: the original
 * it replaced (PHI) stayed on disk for good, where retention never reaches.
 */
export const migration016ReplacedOriginals: Migration = {
  version: 16,
  name: 'originals replaced by a copy received again',
  up(db) {
    db.exec(`ALTER TABLE instances ADD COLUMN replaced_path TEXT;`);
  },
};
