/**
 * The research view of the index (tables r_patients, r_studies, r_series, r_instances): what a
 * de-identified copy says of itself, recorded in the transaction that records the copy, and removed
 * when the instance leaves the de-identified states (re-sent, quarantined, failed), so research callers
 * only ever see de-identified instances.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import type { IndexedAttributes } from './attributes.js';

export interface ResearchCopy {
  sopInstanceUid: string;
  seriesInstanceUid: string;
  studyInstanceUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  attributes: IndexedAttributes;
}

export class ResearchIndex {
  private readonly statements: Record<
    | 'patient'
    | 'study'
    | 'series'
    | 'clash'
    | 'instance'
    | 'remove'
    | 'place'
    | 'idOf'
    | 'patientOfStudy'
    | 'studyOfSeries'
    | 'patientOfStudyPk'
    | 'orphanSeries'
    | 'orphanStudy'
    | 'orphanPatient',
    Statement
  >;

  constructor(db: Db) {
    this.statements = {
      patient: db.prepare(`
          INSERT INTO r_patients (patient_key, patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex)
          VALUES (@key, @patientId, @issuer, @name, @birthDate, @sex)
          ON CONFLICT (patient_key) DO UPDATE SET patient_name = excluded.patient_name,
            patient_birth_date = excluded.patient_birth_date, patient_sex = excluded.patient_sex
          RETURNING id`),
      study: db.prepare(`
          INSERT INTO r_studies (study_instance_uid, patient_pk, study_date, study_time, accession_number, study_id, study_description, referring_physician_name)
          VALUES (@uid, @patientPk, @date, @time, @accession, @studyId, @description, @referring)
          ON CONFLICT (study_instance_uid) DO UPDATE SET patient_pk = excluded.patient_pk, study_date = excluded.study_date,
            study_time = excluded.study_time, accession_number = excluded.accession_number, study_id = excluded.study_id,
            study_description = excluded.study_description, referring_physician_name = excluded.referring_physician_name
          RETURNING id`),
      series: db.prepare(`
          INSERT INTO r_series (series_instance_uid, study_pk, modality, series_number, series_description, series_date, series_time, body_part_examined)
          VALUES (@uid, @studyPk, @modality, @number, @description, @date, @time, @bodyPart)
          ON CONFLICT (series_instance_uid) DO UPDATE SET study_pk = excluded.study_pk, modality = excluded.modality,
            series_number = excluded.series_number, series_description = excluded.series_description,
            series_date = excluded.series_date, series_time = excluded.series_time, body_part_examined = excluded.body_part_examined
          RETURNING id`),
      clash: db.prepare(`SELECT id FROM r_instances WHERE sop_instance_uid = @uid AND id != @id`).pluck(),
      instance: db.prepare(`
          INSERT OR REPLACE INTO r_instances (id, sop_instance_uid, series_pk, sop_class_uid, instance_number, content_date, content_time,
            number_of_frames, rows, columns, image_type, transfer_syntax_uid)
          VALUES (@id, @uid, @seriesPk, @sopClassUid, @number, @contentDate, @contentTime, @frames, @rows, @columns, @imageType, @transferSyntaxUid)`),
      remove: db.prepare(`DELETE FROM r_instances WHERE id = ?`),
      idOf: db.prepare(`SELECT id FROM instances WHERE sop_instance_uid = ?`),
      patientOfStudy: db.prepare(`SELECT patient_pk FROM r_studies WHERE study_instance_uid = ?`).pluck(),
      studyOfSeries: db.prepare(`SELECT study_pk FROM r_series WHERE series_instance_uid = ?`).pluck(),
      patientOfStudyPk: db.prepare(`SELECT patient_pk FROM r_studies WHERE id = ?`).pluck(),
      place: db.prepare(`
        SELECT x.id AS seriesPk, s.id AS studyPk, s.patient_pk AS patientPk
        FROM r_instances i JOIN r_series x ON x.id = i.series_pk JOIN r_studies s ON s.id = x.study_pk WHERE i.id = ?`),
      orphanSeries: db.prepare(`DELETE FROM r_series WHERE id = @pk AND NOT EXISTS (SELECT 1 FROM r_instances WHERE series_pk = @pk)`),
      orphanStudy: db.prepare(`DELETE FROM r_studies WHERE id = @pk AND NOT EXISTS (SELECT 1 FROM r_series WHERE study_pk = @pk)`),
      orphanPatient: db.prepare(`DELETE FROM r_patients WHERE id = @pk AND NOT EXISTS (SELECT 1 FROM r_studies WHERE patient_pk = @pk)`),
    };
  }

  /** Records the de-identified copy of instance `id` (call inside the transaction that records it). */
  record(id: number, copy: ResearchCopy): void {
    const a = copy.attributes;
    const { patient, study, series, clash, instance } = this.statements;
    // A copy of another instance with the same de-identified UID (a rule keeping UIDs) replaces it,
    // first, so that the rows written below are not dropped as that instance's orphans.
    const clashing = clash.get({ uid: copy.sopInstanceUid, id }) as number | undefined;
    if (clashing !== undefined) this.remove(clashing);
    const previous = this.placeOf(id);
    // The study and series rows are shared with the study's other copies, and the upserts below may
    // move them (a corrected Patient ID, a series under another study UID): where they were.
    const patientOfStudy = this.statements.patientOfStudy.get(copy.studyInstanceUid) as number | undefined;
    const studyOfSeries = this.statements.studyOfSeries.get(copy.seriesInstanceUid) as number | undefined;
    const patientPk = (patient.get({
      key: `${a.IssuerOfPatientID ?? ''}\\${a.PatientID ?? ''}`,
      patientId: a.PatientID ?? '',
      issuer: a.IssuerOfPatientID ?? '',
      name: a.PatientName ?? null,
      birthDate: a.PatientBirthDate ?? null,
      sex: a.PatientSex ?? null,
    }) as { id: number }).id;
    const studyPk = (study.get({
      uid: copy.studyInstanceUid,
      patientPk,
      date: a.StudyDate ?? null,
      time: a.StudyTime ?? null,
      accession: a.AccessionNumber ?? null,
      studyId: a.StudyID ?? null,
      description: a.StudyDescription ?? null,
      referring: a.ReferringPhysicianName ?? null,
    }) as { id: number }).id;
    const seriesPk = (series.get({
      uid: copy.seriesInstanceUid,
      studyPk,
      modality: a.Modality ?? null,
      number: a.SeriesNumber ?? null,
      description: a.SeriesDescription ?? null,
      date: a.SeriesDate ?? null,
      time: a.SeriesTime ?? null,
      bodyPart: a.BodyPartExamined ?? null,
    }) as { id: number }).id;
    instance.run({
      id,
      uid: copy.sopInstanceUid,
      seriesPk,
      sopClassUid: copy.sopClassUid,
      number: a.InstanceNumber ?? null,
      contentDate: a.ContentDate ?? null,
      contentTime: a.ContentTime ?? null,
      frames: a.NumberOfFrames ?? null,
      rows: a.Rows ?? null,
      columns: a.Columns ?? null,
      imageType: a.ImageType ?? null,
      transferSyntaxUid: copy.transferSyntaxUid,
    });
    // The copy may have moved (another series or patient after a rule change): drop what is left empty.
    if (previous && previous.seriesPk !== seriesPk) this.dropOrphans(previous);
    // So may the study's row and the series' row: the patient or study they left may be empty now.
    if (studyOfSeries !== undefined && studyOfSeries !== studyPk) this.dropEmptyStudy(studyOfSeries);
    if (patientOfStudy !== undefined && patientOfStudy !== patientPk) this.statements.orphanPatient.run({ pk: patientOfStudy });
  }

  /** Deletes a study row with no series left, and its patient's row if that has no study left. */
  private dropEmptyStudy(studyPk: number): void {
    const patientPk = this.statements.patientOfStudyPk.get(studyPk) as number | undefined;
    this.statements.orphanStudy.run({ pk: studyPk });
    if (patientPk !== undefined) this.statements.orphanPatient.run({ pk: patientPk });
  }

  /** Instance `id` has no de-identified copy any more (re-sent, quarantined, failed). */
  remove(id: number): void {
    const previous = this.placeOf(id);
    if (!previous) return;
    this.statements.remove.run(id);
    this.dropOrphans(previous);
  }

  /** The instance with this original SOP Instance UID is being replaced by a new copy. */
  removeByOriginalUid(sopInstanceUid: string): void {
    const row = this.statements.idOf.get(sopInstanceUid) as { id: number } | undefined;
    if (row) this.remove(row.id);
  }

  private placeOf(id: number): Place | undefined {
    return this.statements.place.get(id) as Place | undefined;
  }

  private dropOrphans(place: Place): void {
    this.statements.orphanSeries.run({ pk: place.seriesPk });
    this.statements.orphanStudy.run({ pk: place.studyPk });
    this.statements.orphanPatient.run({ pk: place.patientPk });
  }
}

interface Place {
  seriesPk: number;
  studyPk: number;
  patientPk: number;
}
