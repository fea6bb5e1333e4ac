import type { Migration } from '../database.js';

/** The index of received instances: Patient → Study → Series → Instance (owned by src/index/). */
export const migration001Index: Migration = {
  version: 1,
  name: 'index: patients, studies, series, instances',
  up(db) {
    db.exec(`
      CREATE TABLE patients (
        id INTEGER PRIMARY KEY,
        patient_key TEXT NOT NULL UNIQUE,            -- IssuerOfPatientID and PatientID
        patient_id TEXT NOT NULL DEFAULT '',
        issuer_of_patient_id TEXT NOT NULL DEFAULT '',
        patient_name TEXT,
        patient_birth_date TEXT,
        patient_sex TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE INDEX patients_name ON patients (patient_name);
      CREATE INDEX patients_patient_id ON patients (patient_id);

      CREATE TABLE studies (
        id INTEGER PRIMARY KEY,
        study_instance_uid TEXT NOT NULL UNIQUE,
        patient_pk INTEGER NOT NULL REFERENCES patients (id),
        study_date TEXT,
        study_time TEXT,
        accession_number TEXT,
        study_id TEXT,
        study_description TEXT,
        referring_physician_name TEXT,
        specific_character_set TEXT,
        created_at INTEGER NOT NULL,
        last_received_at INTEGER NOT NULL
      );
      CREATE INDEX studies_patient ON studies (patient_pk);
      CREATE INDEX studies_date ON studies (study_date);
      CREATE INDEX studies_accession ON studies (accession_number);
      CREATE INDEX studies_last_received ON studies (last_received_at);

      CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        series_instance_uid TEXT NOT NULL UNIQUE,
        study_pk INTEGER NOT NULL REFERENCES studies (id),
        modality TEXT,
        series_number INTEGER,
        series_description TEXT,
        series_date TEXT,
        series_time TEXT,
        body_part_examined TEXT,
        created_at INTEGER NOT NULL,
        last_received_at INTEGER NOT NULL
      );
      CREATE INDEX series_study ON series (study_pk);
      CREATE INDEX series_modality ON series (modality);

      CREATE TABLE instances (
        id INTEGER PRIMARY KEY,
        sop_instance_uid TEXT NOT NULL UNIQUE,
        series_pk INTEGER NOT NULL REFERENCES series (id),
        sop_class_uid TEXT NOT NULL,
        instance_number INTEGER,
        content_date TEXT,
        content_time TEXT,
        number_of_frames INTEGER,
        rows INTEGER,
        columns INTEGER,
        image_type TEXT,
        manufacturer TEXT,
        manufacturer_model_name TEXT,
        device_serial_number TEXT,
        station_name TEXT,
        institution_name TEXT,
        burned_in_annotation TEXT,
        recognizable_visual_features TEXT,
        transfer_syntax_uid TEXT NOT NULL,
        file_path TEXT NOT NULL,                     -- relative to storage.path
        file_size INTEGER NOT NULL,
        calling_ae_title TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'received'
          CHECK (state IN ('received', 'deidentified', 'quarantined', 'failed', 'forwarded')),
        state_changed_at INTEGER NOT NULL
      );
      CREATE INDEX instances_series ON instances (series_pk);
      CREATE INDEX instances_state ON instances (state);
      CREATE INDEX instances_received_at ON instances (received_at);
    `);
  },
};
