import type { Migration } from '../database.js';

/**
 * The research view of the index (owned by src/index/research-index.ts): the de-identified patients,
 * studies, series and instances, with the columns of their originals' tables, so that C-FIND runs the
 * same queries on either view. Only de-identified (and forwarded) instances are here: quarantined or
 * failed ones, and originals, never are.
 */
export const migration004Research: Migration = {
  version: 4,
  name: 'research view: de-identified patients, studies, series, instances',
  up(db) {
    db.exec(`
      CREATE TABLE r_patients (
        id INTEGER PRIMARY KEY,
        patient_key TEXT NOT NULL UNIQUE,
        patient_id TEXT NOT NULL DEFAULT '',
        issuer_of_patient_id TEXT NOT NULL DEFAULT '',
        patient_name TEXT,
        patient_birth_date TEXT,
        patient_sex TEXT
      );
      CREATE INDEX r_patients_name ON r_patients (patient_name COLLATE NOCASE);
      CREATE INDEX r_patients_patient_id ON r_patients (patient_id);

      CREATE TABLE r_studies (
        id INTEGER PRIMARY KEY,
        study_instance_uid TEXT NOT NULL UNIQUE,
        patient_pk INTEGER NOT NULL REFERENCES r_patients (id),
        study_date TEXT,
        study_time TEXT,
        accession_number TEXT,
        study_id TEXT,
        study_description TEXT,
        referring_physician_name TEXT
      );
      CREATE INDEX r_studies_patient ON r_studies (patient_pk);
      CREATE INDEX r_studies_date ON r_studies (study_date);

      CREATE TABLE r_series (
        id INTEGER PRIMARY KEY,
        series_instance_uid TEXT NOT NULL UNIQUE,
        study_pk INTEGER NOT NULL REFERENCES r_studies (id),
        modality TEXT,
        series_number INTEGER,
        series_description TEXT,
        series_date TEXT,
        series_time TEXT,
        body_part_examined TEXT
      );
      CREATE INDEX r_series_study ON r_series (study_pk);

      -- id is the instance's id in instances.
      CREATE TABLE r_instances (
        id INTEGER PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL UNIQUE,
        series_pk INTEGER NOT NULL REFERENCES r_series (id),
        sop_class_uid TEXT NOT NULL,
        instance_number INTEGER,
        content_date TEXT,
        content_time TEXT,
        number_of_frames INTEGER,
        rows INTEGER,
        columns INTEGER,
        image_type TEXT,
        transfer_syntax_uid TEXT NOT NULL
      );
      CREATE INDEX r_instances_series ON r_instances (series_pk);
    `);
  },
};
