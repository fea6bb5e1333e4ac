import type { Migration } from '../database.js';

/**
 * Under retainUIDs a redacted instance gets a UID of its own (PS3.15 E.3.1: its pixels differ from the
 * original's). The renames of each study, so that references to such an instance in the study's other
 * instances follow it; and, per instance, how many renames of its study it was de-identified with, so
 * that one de-identified before a rename is done again.
 */
export const migration008RedactionRenames: Migration = {
  version: 8,
  name: 'renames of redacted instances under retainUIDs',
  up(db) {
    db.exec(`
      CREATE TABLE redaction_renames (
        instance_pk INTEGER PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
        study_pk INTEGER NOT NULL REFERENCES studies (id),
        original_uid TEXT NOT NULL,
        renamed_uid TEXT NOT NULL
      );
      CREATE INDEX redaction_renames_study ON redaction_renames (study_pk);
      ALTER TABLE instances ADD COLUMN deid_renames_seen INTEGER;  -- renames of other instances of its study known to its de-identification
    `);
  },
};
