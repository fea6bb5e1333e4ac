import type { Migration } from '../database.js';

/** De-identification results on the index (owned by src/index/deid-work.ts). */
export const migration002Deid: Migration = {
  version: 2,
  name: 'de-identification: outputs, reasons, audit',
  up(db) {
    db.exec(`
      ALTER TABLE instances ADD COLUMN state_reason TEXT;          -- why quarantined or failed; never PHI
      ALTER TABLE instances ADD COLUMN deid_file_path TEXT;        -- relative to storage.path
      ALTER TABLE instances ADD COLUMN deid_file_size INTEGER;
      ALTER TABLE instances ADD COLUMN deid_sop_instance_uid TEXT;
      ALTER TABLE instances ADD COLUMN deid_series_instance_uid TEXT;
      ALTER TABLE instances ADD COLUMN deid_study_instance_uid TEXT;
      ALTER TABLE instances ADD COLUMN deid_profile TEXT;          -- profile, options and edition used
      CREATE INDEX instances_deid_study ON instances (deid_study_instance_uid);

      -- What the de-identifier did to each instance: attribute paths, keywords and actions, as JSON.
      -- Never the original values.
      CREATE TABLE deid_audit (
        instance_pk INTEGER PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
        entries TEXT NOT NULL,
        findings TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
    `);
  },
};
