import type { Migration } from '../database.js';

/**
 * The pseudonym ledger keeps every pseudonym given out, one row per (kind, original, pseudonym), with
 * the patient's IssuerOfPatientID. Keyed by (kind, original), it kept one pseudonym per original: two
 * patients with the same PatientID from two issuers, or two patients with the same name, get
 * pseudonyms of their own (pseudonyms.ts derives them from the issuer and the ID), and the ledger kept
 * the last one only: the other patient's exported pseudonyms led back to nothing (found in a review).
 * So did the pseudonyms given under a secret used before. The rows are copied as they are (their
 * issuer unknown: NULL).
 */
export const migration026PseudonymsPerOriginal: Migration = {
  version: 26,
  name: 'every pseudonym given out in the ledger, with the issuer of its patient',
  up(db) {
    db.exec(`
      CREATE TABLE pseudonym_map_new (
        kind TEXT NOT NULL,          -- the keyword: PatientID, PatientName, StudyInstanceUID, ...
        original TEXT NOT NULL,
        pseudonym TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        issuer_of_patient_id TEXT,   -- the patient's IssuerOfPatientID, for PatientID and PatientName
        PRIMARY KEY (kind, original, pseudonym)
      ) WITHOUT ROWID;
      INSERT INTO pseudonym_map_new (kind, original, pseudonym, recorded_at)
        SELECT kind, original, pseudonym, recorded_at FROM pseudonym_map;
      DROP TABLE pseudonym_map;
      ALTER TABLE pseudonym_map_new RENAME TO pseudonym_map;
    `);
  },
};
