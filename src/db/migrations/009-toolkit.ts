import type { Migration } from '../database.js';

/**
 * The toolkit (gantry import, gantry export): imported files stay where they are, named by the path
 * they were imported from, and are never deleted by Gantry; instances imported without --forward are
 * not routed; an export remembers what it wrote, so that it resumes; pseudonyms given are kept, so an
 * authorised operator can find which original a research pseudonym stands for.
 */
export const migration009Toolkit: Migration = {
  version: 9,
  name: 'toolkit: imported files, held forwarding, export journal, pseudonym ledger',
  up(db) {
    db.exec(`
      ALTER TABLE instances ADD COLUMN source_path TEXT;                          -- gantry import: the file, absolute
      ALTER TABLE instances ADD COLUMN original_external INTEGER NOT NULL DEFAULT 0; -- 1: file_path is that file, in place: never deleted
      ALTER TABLE instances ADD COLUMN forward_held INTEGER NOT NULL DEFAULT 0;     -- 1: imported without --forward: never routed
      CREATE UNIQUE INDEX instances_source_path ON instances (source_path) WHERE source_path IS NOT NULL;
      -- Held instances never wait for routing: they stay out of the index the router scans.
      DROP INDEX instances_to_route;
      CREATE INDEX instances_to_route ON instances (id) WHERE state = 'deidentified' AND routed_at IS NULL AND forward_held = 0;
      CREATE TABLE export_items (
        out_dir TEXT NOT NULL,
        instance_pk INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
        path TEXT NOT NULL,          -- relative to out_dir
        exported_at INTEGER NOT NULL,
        PRIMARY KEY (out_dir, instance_pk)
      );
      CREATE TABLE pseudonym_map (
        kind TEXT NOT NULL,          -- the keyword: PatientID, PatientName, StudyInstanceUID, ...
        original TEXT NOT NULL,
        pseudonym TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        PRIMARY KEY (kind, original)
      ) WITHOUT ROWID;
    `);
  },
};
