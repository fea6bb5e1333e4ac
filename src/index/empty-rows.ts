/**
 * Series, studies and patients of the source index left without children when an instance moves (a
 * study or series corrected by the modality and sent again): they go, so that a source C-FIND neither
 * lists them empty nor files the instance under its old place. The one owner of these deletes.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';

export class EmptyRows {
  private readonly statements: Record<'series' | 'study' | 'patient', Statement>;

  constructor(db: Db) {
    this.statements = {
      series: db.prepare(`DELETE FROM series WHERE id = @id AND NOT EXISTS (SELECT 1 FROM instances WHERE series_pk = @id) RETURNING study_pk`).pluck(),
      // A study still named by a rename under retainUIDs stays until the rename moves with its instance.
      study: db
        .prepare(
          `DELETE FROM studies WHERE id = @id AND NOT EXISTS (SELECT 1 FROM series WHERE study_pk = @id)
           AND NOT EXISTS (SELECT 1 FROM redaction_renames WHERE study_pk = @id) RETURNING patient_pk`,
        )
        .pluck(),
      patient: db.prepare('DELETE FROM patients WHERE id = @id AND NOT EXISTS (SELECT 1 FROM studies WHERE patient_pk = @id)'),
    };
  }

  /** Deletes a series left without instances, then its study and patient if left empty; whether the
   * series was deleted (its id may then be reused: SQLite gives the next row the largest id plus one). */
  dropSeries(seriesPk: number): boolean {
    const studyPk = this.statements.series.get({ id: seriesPk }) as number | undefined;
    if (studyPk === undefined) return false;
    this.dropStudy(studyPk);
    return true;
  }

  /** Deletes a study left without series, then its patient if left without studies. */
  dropStudy(studyPk: number): void {
    const patientPk = this.statements.study.get({ id: studyPk }) as number | undefined;
    if (patientPk !== undefined) this.dropPatient(patientPk);
  }

  /** Deletes a patient left without studies. */
  dropPatient(patientPk: number): void {
    this.statements.patient.run({ id: patientPk });
  }
}
