/**
 * The quarantine on the index, for operators (gantry quarantine): the instances held back with their
 * reasons, one instance's attributes and findings, a release back to de-identification with an
 * override, and deletion.
 */
import type { Db } from '../db/database.js';
import type { ReleaseOverride } from './deid-work.js';
import { EmptyRows } from './empty-rows.js';
import type { FileStamp } from './file-stamp.js';
import { ResearchIndex } from './research-index.js';

/** A held instance's file moved aside by QuarantineWork.delete's caller: its new name and its stamp. */
export interface SetAsideFile {
  path: string;
  stamp: FileStamp;
}

export interface HeldInstance {
  id: number;
  state: string;
  reason: string | null;
  modality: string | null;
  sopClassUid: string;
  callingAeTitle: string;
  receivedAt: number;
  heldAt: number;
}

export interface HeldDetails extends HeldInstance {
  patientName: string | null;
  patientId: string;
  studyInstanceUid: string;
  studyDate: string | null;
  studyDescription: string | null;
  seriesDescription: string | null;
  manufacturer: string | null;
  manufacturerModelName: string | null;
  burnedInAnnotation: string | null;
  filePath: string;
  findings: unknown[];
}

/**
 * The id operators see: the row's id and its copy (when it was received, base 36), e.g. "3.lx2k9a01".
 * A re-send of the instance keeps the row and makes a new copy, held again for review: an id names
 * the copy that was reviewed, so a release cannot let through one nobody looked at.
 */
export function heldId(held: Pick<HeldInstance, 'id' | 'receivedAt'>): string {
  return `${held.id}.${held.receivedAt.toString(36)}`;
}

/** The row and copy of an id as heldId writes it; the copy is absent from a bare row id. */
export function parseHeldId(text: string): { id: number; receivedAt?: number } | undefined {
  const match = /^(\d+)(?:\.([0-9a-z]+))?$/.exec(text.trim());
  if (!match) return undefined;
  return { id: Number(match[1]), ...(match[2] !== undefined ? { receivedAt: Number.parseInt(match[2], 36) } : {}) };
}

const HELD_COLUMNS = `i.id, i.state, i.state_reason AS reason, se.modality, i.sop_class_uid AS sopClassUid,
  i.calling_ae_title AS callingAeTitle, i.received_at AS receivedAt, i.state_changed_at AS heldAt`;

export class QuarantineWork {
  constructor(private readonly db: Db) {}

  /** Held instances of these states: oldest first (by id), or the latest held first (gantry status). */
  list(states: ReadonlyArray<'quarantined' | 'failed'>, limit: number, order: 'oldest' | 'latestHeld' = 'oldest'): HeldInstance[] {
    const orderBy = order === 'oldest' ? 'i.id' : 'i.state_changed_at DESC, i.id DESC';
    return this.db
      .prepare(
        `SELECT ${HELD_COLUMNS} FROM instances i JOIN series se ON se.id = i.series_pk
         WHERE i.state IN (SELECT value FROM json_each(?)) ORDER BY ${orderBy} LIMIT ?`,
      )
      .all(JSON.stringify(states), limit) as HeldInstance[];
  }

  show(id: number): HeldDetails | undefined {
    const row = this.db
      .prepare(
        `SELECT ${HELD_COLUMNS}, p.patient_name AS patientName, p.patient_id AS patientId, st.study_instance_uid AS studyInstanceUid,
           st.study_date AS studyDate, st.study_description AS studyDescription, se.series_description AS seriesDescription,
           i.manufacturer, i.manufacturer_model_name AS manufacturerModelName, i.burned_in_annotation AS burnedInAnnotation,
           i.file_path AS filePath, f.text AS findings
         FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk JOIN patients p ON p.id = st.patient_pk
           LEFT JOIN deid_audit a ON a.instance_pk = i.id LEFT JOIN audit_texts f ON f.id = a.findings_id
         WHERE i.id = ?`,
      )
      .get(id) as (Omit<HeldDetails, 'findings'> & { findings: string | null }) | undefined;
    if (!row) return undefined;
    return { ...row, findings: row.findings ? (JSON.parse(row.findings) as unknown[]) : [] };
  }

  /** Sends a quarantined or failed instance back to de-identification with the operator's override:
   * the copy received at `receivedAt` (the one reviewed), not one received since. */
  release(id: number, receivedAt: number, override: ReleaseOverride): boolean {
    return (
      this.db
        .prepare(
          `UPDATE instances SET state = 'received', state_reason = NULL, state_changed_at = ?, deid_override = ?
           WHERE id = ? AND received_at = ? AND state IN ('quarantined', 'failed')`,
        )
        .run(Date.now(), JSON.stringify(override), id, receivedAt).changes > 0
    );
  }

  /** Whether the row holds a different copy than the one received at `receivedAt`. */
  receivedAgain(id: number, receivedAt: number): boolean {
    const current = this.db.prepare('SELECT received_at FROM instances WHERE id = ?').pluck().get(id) as number | undefined;
    return current !== undefined && current !== receivedAt;
  }

  /**
   * Deletes a quarantined or failed instance's row (with its audit, outbox and research rows, and its
   * series, study and patient when it leaves them empty) and returns the files to delete, or undefined
   * when it is not held, or holds another copy than the one received at `receivedAt` (checked in the
   * same transaction as the delete). `setAside` moves each file to a name of its own while the write
   * lock is held and before the rows go (returning that name and the file's stamp, or undefined when
   * the file is already gone): once the row is gone, a node serving this storage may place a re-sent
   * copy at the instance's path, which deleting by that path would take with it. The names set aside
   * are listed in replaced_originals in the same transaction: a crash between the commit and the
   * caller's delete left them named by nothing, PHI on disk for good; the retention sweep deletes what
   * is listed there (found in the PHI leftovers review).
   */
  delete(id: number, receivedAt: number, setAside: (path: string) => SetAsideFile | undefined): string[] | undefined {
    return this.db.transaction(() => {
      const row = this.db
        .prepare(`SELECT file_path AS filePath, deid_file_path AS deidFilePath, original_external AS external, sop_instance_uid AS sopInstanceUid, series_pk AS seriesPk
          FROM instances WHERE id = ? AND received_at = ? AND state IN ('quarantined', 'failed')`)
        .get(id, receivedAt) as { filePath: string; deidFilePath: string | null; external: number; sopInstanceUid: string; seriesPk: number } | undefined;
      if (!row) return undefined;
      // An imported file in place is the user's: only its row goes.
      const files = [...(row.external ? [] : [row.filePath]), ...(row.deidFilePath ? [row.deidFilePath] : [])];
      const aside = files.map(setAside).filter((file): file is SetAsideFile => file !== undefined);
      const listed = this.db.prepare(
        'INSERT OR IGNORE INTO replaced_originals (sop_instance_uid, file_path, replaced_at, file_mtime_ns, file_ino) VALUES (?, ?, ?, ?, ?)',
      );
      for (const file of aside) listed.run(row.sopInstanceUid, file.path, Date.now(), file.stamp.mtimeNs, file.stamp.ino);
      new ResearchIndex(this.db).remove(id);
      this.db.prepare('DELETE FROM instances WHERE id = ?').run(id);
      // The patient's and the study's rows (names, IDs, accession numbers) go with their last instance:
      // left, a source C-FIND listed them with no instance (found in the PHI leftovers review).
      new EmptyRows(this.db).dropSeries(row.seriesPk);
      return aside.map((file) => file.path);
    }).immediate();
  }
}
