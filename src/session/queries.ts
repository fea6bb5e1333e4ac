/**
 * The SQL of the library API over the index (tables patients, studies, series, instances; migrations
 * 001-003). Every listing pages by primary key (`id > ? ORDER BY id LIMIT PAGE_SIZE`) and reads each
 * page whole: memory holds one page, and no read transaction stays open while the caller works on a
 * row, so a running node's writes and WAL checkpoints are never held up by an iteration.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import type { InstanceState } from '../index/instance-index.js';
import { studiesOfItsPatient } from '../index/deid-work.js';

/** Rows per page: big enough that a page costs little per row, small enough to hold. */
export const PAGE_SIZE = 500;

/** The indexed attributes of a patient, as PS3.6 spells their keywords. */
export interface PatientAttributes {
  /** Empty when the instances carried none. */
  PatientID: string;
  IssuerOfPatientID?: string;
  PatientName?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
}

export interface StudyAttributes {
  StudyInstanceUID: string;
  StudyDate?: string;
  StudyTime?: string;
  AccessionNumber?: string;
  StudyID?: string;
  StudyDescription?: string;
  ReferringPhysicianName?: string;
}

export interface SeriesAttributes {
  SeriesInstanceUID: string;
  StudyInstanceUID: string;
  Modality?: string;
  SeriesNumber?: number;
  SeriesDescription?: string;
  SeriesDate?: string;
  SeriesTime?: string;
  BodyPartExamined?: string;
}

export interface InstanceAttributes {
  SOPInstanceUID: string;
  SOPClassUID: string;
  SeriesInstanceUID: string;
  StudyInstanceUID: string;
  /** The series' Modality. */
  Modality?: string;
  InstanceNumber?: number;
  ContentDate?: string;
  ContentTime?: string;
  /** As indexed: absent for single-frame objects that do not say. */
  NumberOfFrames?: number;
  Rows?: number;
  Columns?: number;
  ImageType?: string;
  Manufacturer?: string;
  ManufacturerModelName?: string;
  DeviceSerialNumber?: string;
  StationName?: string;
  InstitutionName?: string;
  BurnedInAnnotation?: string;
  RecognizableVisualFeatures?: string;
  /** The transfer syntax the original is stored in. */
  TransferSyntaxUID: string;
}

export interface PatientRow extends PatientAttributes {
  id: number;
}

export interface StudyRow extends StudyAttributes {
  id: number;
  patientPk: number;
}

export interface SeriesRow extends SeriesAttributes {
  id: number;
  studyPk: number;
}

export interface InstanceRow extends InstanceAttributes {
  id: number;
  seriesPk: number;
  studyPk: number;
  /** Relative to the storage folder (../ for files imported in place). */
  filePath: string;
  fileSize: number;
  /** The file's modification time (ns) and inode when indexed, as decimal text; absent for rows
   * indexed before migration 019. */
  fileMtimeNs?: string;
  fileIno?: string;
  /** Indexed by gantry import (1: in place or --copy), or received (0). */
  imported: 0 | 1;
  callingAeTitle: string;
  receivedAt: number;
  state: InstanceState;
  stateReason?: string;
  deidFilePath?: string;
  deidDeletedAt?: number;
  originalDeletedAt?: number;
  /** JSON of an operator's release (gantry quarantine release): { pass?, ignoreFindings? }. */
  deidOverride?: string;
}

/** Which instances `Session.instances` lists; every key given must hold. */
export interface InstanceFilter {
  StudyInstanceUID?: string;
  SeriesInstanceUID?: string;
  /** Matches PatientID under any IssuerOfPatientID. */
  PatientID?: string;
  Modality?: string;
  state?: InstanceState;
}

const PATIENT_COLUMNS = `p.id AS id, p.patient_id AS PatientID, p.issuer_of_patient_id AS IssuerOfPatientID,
  p.patient_name AS PatientName, p.patient_birth_date AS PatientBirthDate, p.patient_sex AS PatientSex`;

const STUDY_COLUMNS = `st.id AS id, st.patient_pk AS patientPk, st.study_instance_uid AS StudyInstanceUID,
  st.study_date AS StudyDate, st.study_time AS StudyTime, st.accession_number AS AccessionNumber, st.study_id AS StudyID,
  st.study_description AS StudyDescription, st.referring_physician_name AS ReferringPhysicianName`;

const SERIES_FROM = `SELECT se.id AS id, se.study_pk AS studyPk, se.series_instance_uid AS SeriesInstanceUID,
  st.study_instance_uid AS StudyInstanceUID, se.modality AS Modality, se.series_number AS SeriesNumber,
  se.series_description AS SeriesDescription, se.series_date AS SeriesDate, se.series_time AS SeriesTime,
  se.body_part_examined AS BodyPartExamined
  FROM series se JOIN studies st ON st.id = se.study_pk`;

const INSTANCE_FROM = `SELECT i.id AS id, i.series_pk AS seriesPk, se.study_pk AS studyPk, i.sop_instance_uid AS SOPInstanceUID,
  i.sop_class_uid AS SOPClassUID, se.series_instance_uid AS SeriesInstanceUID, st.study_instance_uid AS StudyInstanceUID,
  se.modality AS Modality, i.instance_number AS InstanceNumber, i.content_date AS ContentDate,
  i.content_time AS ContentTime, i.number_of_frames AS NumberOfFrames, i.rows AS Rows, i.columns AS Columns,
  i.image_type AS ImageType, i.manufacturer AS Manufacturer, i.manufacturer_model_name AS ManufacturerModelName,
  i.device_serial_number AS DeviceSerialNumber, i.station_name AS StationName, i.institution_name AS InstitutionName,
  i.burned_in_annotation AS BurnedInAnnotation, i.recognizable_visual_features AS RecognizableVisualFeatures,
  i.transfer_syntax_uid AS TransferSyntaxUID, i.file_path AS filePath, i.file_size AS fileSize,
  i.file_mtime_ns AS fileMtimeNs, i.file_ino AS fileIno, i.calling_ae_title AS callingAeTitle, i.received_at AS receivedAt, i.state AS state, i.state_reason AS stateReason,
  i.deid_file_path AS deidFilePath, i.deid_deleted_at AS deidDeletedAt, i.original_deleted_at AS originalDeletedAt,
  i.deid_override AS deidOverride, i.source_path IS NOT NULL AS imported
  FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk`;

const PAGE = `ORDER BY id LIMIT ${PAGE_SIZE}`;

/** Rows of a listing, page after page; `page(afterId)` answers the rows with a greater id, in order. */
export function* pagedRows<Row extends { id: number }>(page: (afterId: number) => Row[]): Generator<Row> {
  // Rowids that SQLite assigns start at 1; a smaller start also covers rows given ids by hand.
  let afterId = Number.MIN_SAFE_INTEGER;
  for (;;) {
    const rows = page(afterId);
    yield* rows;
    const last = rows[rows.length - 1];
    if (rows.length < PAGE_SIZE || last === undefined) return;
    afterId = last.id;
  }
}

/** Columns that are NULL in the index become absent properties, as optional keys in TypeScript are. */
function present<Row>(row: unknown): Row {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row as Record<string, unknown>)) if (value !== null) out[key] = value;
  return out as Row;
}

function presentRows<Row>(rows: unknown[]): Row[] {
  return rows.map((row) => present<Row>(row));
}

export class IndexQueries {
  private readonly prepared = new Map<string, Statement>();

  constructor(private readonly db: Db) {}

  /** Statements are prepared once per SQL text: a filter's shape gives one text. */
  private statement(sql: string): Statement {
    let statement = this.prepared.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.prepared.set(sql, statement);
    }
    return statement;
  }

  patientsAfter(afterId: number): PatientRow[] {
    return presentRows(this.statement(`SELECT ${PATIENT_COLUMNS} FROM patients p WHERE p.id > ? ${PAGE}`).all(afterId));
  }

  studiesOfPatientAfter(patientPk: number, afterId: number): StudyRow[] {
    return presentRows(this.statement(`SELECT ${STUDY_COLUMNS} FROM studies st WHERE st.patient_pk = ? AND st.id > ? ${PAGE}`).all(patientPk, afterId));
  }

  seriesOfStudyAfter(studyPk: number, afterId: number): SeriesRow[] {
    return presentRows(this.statement(`${SERIES_FROM} WHERE se.study_pk = ? AND se.id > ? ${PAGE}`).all(studyPk, afterId));
  }

  /** The series whose study, patient and modality match the filter (state is an instance's). */
  seriesMatchingAfter(filter: InstanceFilter, afterId: number): SeriesRow[] {
    const conditions = ['se.id > @afterId'];
    if (filter.SeriesInstanceUID !== undefined) conditions.push('se.series_instance_uid = @SeriesInstanceUID');
    if (filter.StudyInstanceUID !== undefined) conditions.push('st.study_instance_uid = @StudyInstanceUID');
    if (filter.Modality !== undefined) conditions.push('se.modality = @Modality');
    if (filter.PatientID !== undefined) conditions.push('st.patient_pk IN (SELECT id FROM patients WHERE patient_id = @PatientID)');
    const sql = `${SERIES_FROM} WHERE ${conditions.join(' AND ')} ${PAGE}`;
    return presentRows(this.statement(sql).all({ ...hierarchyParameters(filter), afterId }));
  }

  instancesOfSeriesAfter(seriesPk: number, state: InstanceState | undefined, afterId: number): InstanceRow[] {
    if (state === undefined) return presentRows(this.statement(`${INSTANCE_FROM} WHERE i.series_pk = ? AND i.id > ? ${PAGE}`).all(seriesPk, afterId));
    return presentRows(this.statement(`${INSTANCE_FROM} WHERE i.series_pk = ? AND i.state = ? AND i.id > ? ${PAGE}`).all(seriesPk, state, afterId));
  }

  /** All instances, or those in one state (the index on state holds them in id order). */
  instancesAfter(state: InstanceState | undefined, afterId: number): InstanceRow[] {
    if (state === undefined) return presentRows(this.statement(`${INSTANCE_FROM} WHERE i.id > ? ${PAGE}`).all(afterId));
    return presentRows(this.statement(`${INSTANCE_FROM} WHERE i.state = ? AND i.id > ? ${PAGE}`).all(state, afterId));
  }

  patientByPk(id: number): PatientRow | undefined {
    return optional(this.statement(`SELECT ${PATIENT_COLUMNS} FROM patients p WHERE p.id = ?`).get(id));
  }

  patientById(patientId: string, issuerOfPatientId: string): PatientRow | undefined {
    return optional(this.statement(`SELECT ${PATIENT_COLUMNS} FROM patients p WHERE p.patient_id = ? AND p.issuer_of_patient_id = ?`).get(patientId, issuerOfPatientId));
  }

  studyByPk(id: number): StudyRow | undefined {
    return optional(this.statement(`SELECT ${STUDY_COLUMNS} FROM studies st WHERE st.id = ?`).get(id));
  }

  studyByUid(uid: string): StudyRow | undefined {
    return optional(this.statement(`SELECT ${STUDY_COLUMNS} FROM studies st WHERE st.study_instance_uid = ?`).get(uid));
  }

  seriesByPk(id: number): SeriesRow | undefined {
    return optional(this.statement(`${SERIES_FROM} WHERE se.id = ?`).get(id));
  }

  seriesByUid(uid: string): SeriesRow | undefined {
    return optional(this.statement(`${SERIES_FROM} WHERE se.series_instance_uid = ?`).get(uid));
  }

  instanceByUid(uid: string): InstanceRow | undefined {
    return optional(this.statement(`${INSTANCE_FROM} WHERE i.sop_instance_uid = ?`).get(uid));
  }

  /** The current row of an instance (its state and files change while the node runs). */
  instanceByPk(id: number): InstanceRow | undefined {
    return optional(this.statement(`${INSTANCE_FROM} WHERE i.id = ?`).get(id));
  }

  /**
   * Under retainUIDs, the other instances of the study's patient that redaction gave a UID of their
   * own (migration 008), original → new: the node hands these to each de-identification so that
   * references follow (src/pipeline/deidentify.ts, DeidWork.patientRenames).
   */
  renamesForStudy(studyPk: number, exceptInstancePk: number): Map<string, string> {
    const rows = this.statement(`SELECT original_uid AS original, renamed_uid AS renamed FROM redaction_renames WHERE study_pk IN (${studiesOfItsPatient('?')}) AND instance_pk != ?`).all(studyPk, exceptInstancePk) as Array<{
      original: string;
      renamed: string;
    }>;
    return new Map(rows.map((row) => [row.original, row.renamed]));
  }

  /** Whether `path` (absolute) is a file `gantry import` indexed in place. */
  isImportedInPlace(path: string): boolean {
    return this.statement('SELECT 1 FROM instances WHERE source_path = ? LIMIT 1').get(path) !== undefined;
  }

  counts(): { patients: number; studies: number; series: number; instances: number } {
    return this.statement(`SELECT (SELECT count(*) FROM patients) AS patients, (SELECT count(*) FROM studies) AS studies,
      (SELECT count(*) FROM series) AS series, (SELECT count(*) FROM instances) AS instances`).get() as {
      patients: number;
      studies: number;
      series: number;
      instances: number;
    };
  }
}

function optional<Row>(row: unknown): Row | undefined {
  return row === undefined ? undefined : present<Row>(row);
}

/** Named parameters of the filter keys given (the SQL names only those; undefined cannot be bound). */
function hierarchyParameters(filter: InstanceFilter): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['SeriesInstanceUID', 'StudyInstanceUID', 'Modality', 'PatientID'] as const) {
    const value = filter[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
