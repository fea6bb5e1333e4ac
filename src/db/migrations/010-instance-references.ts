import type { Migration } from '../database.js';

/**
 * Under retainUIDs, the instances each de-identified instance references (Referenced SOP Instance UID
 * anywhere in it) and the UID its copy wrote for each: when an instance of the study is renamed by
 * redaction (or stops being), exactly the instances that reference it, and wrote another UID, are
 * de-identified again. Replaces the per-second count of renames (deid_renames_seen, no longer read).
 */
export const migration010InstanceReferences: Migration = {
  version: 10,
  name: 'references between instances of a study, for renames under retainUIDs',
  up(db) {
    db.exec(`
      CREATE TABLE instance_references (
        instance_pk INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
        study_pk INTEGER NOT NULL,
        referenced_uid TEXT NOT NULL,   -- the original UID referenced
        written_uid TEXT NOT NULL,      -- what the de-identified copy says instead (itself, or its rename)
        PRIMARY KEY (instance_pk, referenced_uid)
      ) WITHOUT ROWID;
      CREATE INDEX instance_references_referenced ON instance_references (study_pk, referenced_uid);
    `);
  },
};
