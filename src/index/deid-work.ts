/**
 * The de-identification work on the index: which instances wait (state received), and the records of
 * their outcomes (deidentified, quarantined or failed), each a transaction, or a savepoint when the
 * scheduler records several in one (inOneTransaction).
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import { findingsText, type AuditText } from '../deid/audit-text.js';
import type { IndexedAttributes } from './attributes.js';
import { DeidAudit, type EncodedAudit, type StoredAudit } from './deid-audit.js';
import { EmptyRows } from './empty-rows.js';
import { ResearchIndex } from './research-index.js';

/** What an operator decided when releasing an instance from quarantine. */
export interface ReleaseOverride {
  /** Let pixel data that may show identity through (as a `pass` rule would). */
  pass?: boolean;
  /** Do not hold the instance back for the findings scan. */
  ignoreFindings?: boolean;
}

/** A rename under retainUIDs (redaction_renames): the instance whose UID it renames. */
export interface StudyRename {
  instancePk: number;
  original: string;
  renamed: string;
}

/** The renames of a study that a copy of `instancePk` writes into its references (not its own). */
export function renamesExcept(renames: readonly StudyRename[], instancePk: number): Map<string, string> {
  return new Map(renames.filter((rename) => rename.instancePk !== instancePk).map((rename) => [rename.original, rename.renamed]));
}

/**
 * The copy of an instance a de-identification read: its outcome is recorded only while the row still
 * holds that copy. A re-send changes both; a row deleted (a store that failed after its commit) whose
 * id SQLite gives to the next copy keeps the path of the same UID but not the time.
 */
export interface SourceCopy {
  filePath: string;
  receivedAt: number;
}

export interface WaitingInstance extends SourceCopy {
  id: number;
  /** The original's, as indexed: the task checks the file it parses names it. */
  sopInstanceUid: string;
  /** The original's size in bytes (bounds how long de-identifying it may take, and tells a file changed since). */
  fileSize: number;
  /** The original's modification time (ns) and inode when indexed (file-stamp.ts); null for rows
   * indexed before migration 019. */
  fileMtimeNs: string | null;
  fileIno: string | null;
  /** Indexed by gantry import (in place or --copy), not received: how a changed original is recovered. */
  imported: 0 | 1;
  studyPk: number;
  callingAeTitle: string;
  override?: ReleaseOverride;
  /** The de-identified copy of the original this one was received over (migration 14), if any. */
  supersededCopy?: string;
  /** The de-identified copy the row still names, when it was sent back to be done again. */
  currentCopy?: string;
}

export interface DeidentifiedRecord {
  filePath: string;
  fileSize: number;
  sopInstanceUid: string;
  seriesInstanceUid: string;
  studyInstanceUid: string;
  profile: string;
  /** The audit entries, encoded by the worker (off the main thread). */
  audit: AuditText;
  findings: unknown[];
  /** The copy's indexed attributes, for the research view. */
  attributes: IndexedAttributes;
  /** Under retainUIDs, the original SOP Instance UID when the copy has another (its pixels were redacted). */
  renamedFrom?: string;
  /** Under retainUIDs: the instances the copy references (original UID) and the UID it wrote for each. */
  references?: ReadonlyArray<readonly [string, string]>;
}

export class DeidWork {
  private readonly statements: Record<
    | 'waiting'
    | 'oldestWaiting'
    | 'earliestArrivals'
    | 'deidentified'
    | 'held'
    | 'stored'
    | 'renames'
    | 'renameOf'
    | 'currentName'
    | 'recordRename'
    | 'forgetRename'
    | 'forgetReferences'
    | 'recordReference'
    | 'redoReferencing'
    | 'studyOf'
    | 'namedInStudy'
    | 'namedAnywhere'
    | 'redoDeletedCopies',
    Statement
  >;
  private readonly research: ResearchIndex;
  private readonly audit: DeidAudit;
  private readonly emptyRows: EmptyRows;

  constructor(private readonly db: Db) {
    this.research = new ResearchIndex(db);
    this.emptyRows = new EmptyRows(db);
    this.audit = new DeidAudit(db);
    this.statements = {
      stored: db.prepare(`SELECT sop_class_uid AS sopClassUid, transfer_syntax_uid AS transferSyntaxUid FROM instances WHERE id = ?`),
      waiting: db.prepare(`
        SELECT i.id, i.sop_instance_uid AS sopInstanceUid, s.study_pk AS studyPk, i.file_path AS filePath, i.file_size AS fileSize, i.file_mtime_ns AS fileMtimeNs, i.file_ino AS fileIno,
          i.source_path IS NOT NULL AS imported, i.received_at AS receivedAt, i.calling_ae_title AS callingAeTitle,
          i.deid_override AS override, i.deid_superseded_path AS supersededCopy,
          CASE WHEN i.deid_deleted_at IS NULL THEN i.deid_file_path END AS currentCopy
        FROM instances i JOIN series s ON s.id = i.series_pk WHERE i.state = 'received' ORDER BY i.id LIMIT ?`),
      earliestArrivals: db.prepare(`SELECT id, received_at AS receivedAt FROM instances INDEXED BY instances_waiting WHERE state = 'received' ORDER BY received_at, id LIMIT ?`),
      // Since it last became waiting: arrived, or was released, or sent back to be done again.
      // The partial index by waiting time (migration 017), named: without statistics SQLite takes the
      // index on state, and reads the row of every waiting instance at each scrape.
      oldestWaiting: db.prepare(`SELECT min(state_changed_at) FROM instances INDEXED BY instances_waiting_since WHERE state = 'received'`).pluck(),
      deidentified: db.prepare(`
        UPDATE instances SET state = 'deidentified', state_changed_at = @now, state_reason = NULL,
          deid_file_path = @filePath, deid_file_size = @fileSize, deid_sop_instance_uid = @sopInstanceUid,
          deid_series_instance_uid = @seriesInstanceUid, deid_study_instance_uid = @studyInstanceUid,
          deid_profile = @profile, routed_at = NULL, deid_deleted_at = NULL, deid_superseded_path = NULL
        WHERE id = @id AND state = 'received' AND file_path = @sourcePath AND received_at = @receivedAt`),
      namedInStudy: db.prepare(`SELECT 1 FROM instances WHERE deid_study_instance_uid = @study AND deid_file_path = @path AND id != @id LIMIT 1`),
      namedAnywhere: db.prepare(`SELECT 1 FROM instances WHERE deid_file_path = @path AND id != @id LIMIT 1`),
      renames: db.prepare(`SELECT instance_pk AS instancePk, original_uid AS original, renamed_uid AS renamed FROM redaction_renames WHERE study_pk IN (${studiesOfItsPatient('?')})`),
      renameOf: db.prepare(`SELECT study_pk AS studyPk, original_uid AS original, renamed_uid AS renamed FROM redaction_renames WHERE instance_pk = ?`),
      currentName: db.prepare(`
        SELECT r.renamed_uid FROM redaction_renames r
        WHERE r.study_pk IN (${studiesOfItsPatient('(SELECT s.study_pk FROM instances i JOIN series s ON s.id = i.series_pk WHERE i.id = @id)')})
          AND r.original_uid = @original AND r.instance_pk != @id`).pluck(),
      recordRename: db.prepare(`
        INSERT INTO redaction_renames (instance_pk, study_pk, original_uid, renamed_uid)
        VALUES (@id, (SELECT s.study_pk FROM instances i JOIN series s ON s.id = i.series_pk WHERE i.id = @id), @original, @renamed)
        ON CONFLICT (instance_pk) DO UPDATE SET study_pk = excluded.study_pk, original_uid = excluded.original_uid, renamed_uid = excluded.renamed_uid`),
      redoDeletedCopies: db.prepare(`
        UPDATE instances SET state = 'received', state_changed_at = @now, state_reason = NULL, routed_at = NULL
        WHERE series_pk IN (SELECT id FROM series WHERE study_pk = @studyPk) AND state IN ('deidentified', 'forwarded')
          AND deid_deleted_at IS NOT NULL AND original_deleted_at IS NULL
        RETURNING id`),
      studyOf: db.prepare(`SELECT s.study_pk FROM instances i JOIN series s ON s.id = i.series_pk WHERE i.id = ?`).pluck(),
      forgetRename: db.prepare(`DELETE FROM redaction_renames WHERE instance_pk = ?`),
      forgetReferences: db.prepare(`DELETE FROM instance_references WHERE instance_pk = ?`),
      recordReference: db.prepare(`
        INSERT OR REPLACE INTO instance_references (instance_pk, study_pk, referenced_uid, written_uid)
        VALUES (@id, (SELECT s.study_pk FROM instances i JOIN series s ON s.id = i.series_pk WHERE i.id = @id), @original, @written)`),
      // The instances of the patient of a study whose copies reference `original` by another UID than
      // `name`: done again.
      redoReferencing: db.prepare(`
        UPDATE instances SET state = 'received', state_changed_at = @now, state_reason = NULL
        WHERE id IN (SELECT instance_pk FROM instance_references WHERE study_pk IN (${studiesOfItsPatient('@studyPk')}) AND referenced_uid = @original AND written_uid != @name)
          AND id != @id AND state IN ('deidentified', 'forwarded') AND original_deleted_at IS NULL
        RETURNING id`),
      held: db.prepare(`
        UPDATE instances SET state = @state, state_changed_at = @now, state_reason = @reason, deid_superseded_path = NULL
        WHERE id = @id AND state = 'received' AND file_path = @sourcePath AND received_at = @receivedAt`),
    };
  }

  /**
   * The de-identified copies that the next outcome of a waiting instance makes obsolete (paths under
   * storage.path), as `waiting` read them: `superseded`, the copy of the original it was received again
   * over, which a recorded outcome forgets; and `current`, the copy its row still names when it was sent
   * back to be done again, which a new copy replaces. The caller deletes them once the outcome is
   * recorded (the row then still holds the copy `waiting` read), unless the new copy took the same path.
   */
  earlierCopies(instance: WaitingInstance): { superseded?: string; current?: string } {
    // Under a rule keeping UIDs two instances can name one path (research-index.ts: clash): a path
    // another row names now is that row's copy, not an earlier one.
    const own = (path: string | undefined): path is string => path !== undefined && !this.namedByAnother(instance.id, path);
    return { ...(own(instance.supersededCopy) ? { superseded: instance.supersededCopy } : {}), ...(own(instance.currentCopy) ? { current: instance.currentCopy } : {}) };
  }

  /** Whether another instance's row names this de-identified copy; looked up through the index of
   * de-identified studies when the path's study folder is a plain UID (deidentifiedPath), as it is but
   * for UIDs that are not. */
  private namedByAnother(id: number, path: string): boolean {
    const study = path.split('/')[1] ?? '';
    const named = /^[0-9][0-9.]*$/.test(study) ? this.statements.namedInStudy.get({ id, path, study }) : this.statements.namedAnywhere.get({ id, path });
    return named !== undefined;
  }

  /** Instances waiting for de-identification, oldest row first. */
  waiting(limit: number): WaitingInstance[] {
    type Row = Omit<WaitingInstance, 'override' | 'supersededCopy' | 'currentCopy'> & { override: string | null; supersededCopy: string | null; currentCopy: string | null };
    return (this.statements.waiting.all(limit) as Row[]).map(({ override, supersededCopy, currentCopy, ...row }) => ({
      ...row,
      ...(override ? { override: JSON.parse(override) as ReleaseOverride } : {}),
      ...(supersededCopy ? { supersededCopy } : {}),
      ...(currentCopy ? { currentCopy } : {}),
    }));
  }

  /** Under retainUIDs: the other instances of the patient of a study that got a UID of their own when
   * their pixels were redacted, original UID → new UID (patientRenames). */
  renamesForStudy(studyPk: number, exceptInstancePk: number): Map<string, string> {
    return renamesExcept(this.patientRenames(studyPk), exceptInstancePk);
  }

  /**
   * Every rename recorded for the patient of a study, with its instance (callers that ask per
   * instance of a study many times ask once: gantry export once per study of a page). The patient's,
   * not the study's: a later study references its priors (a comparison image, a report's evidence),
   * and such a reference to a redacted prior kept the original UID, which no output had (found in the
   * UID review). A study without PatientID is its own patient (pseudonyms.ts).
   */
  patientRenames(studyPk: number): StudyRename[] {
    return this.statements.renames.all(studyPk) as StudyRename[];
  }

  /**
   * Records a de-identified copy, if the instance still waits for it from this original (a newer
   * copy of the instance may have replaced it meanwhile), and runs `place` (which puts the file
   * where the record says) inside the transaction: if placing fails, nothing is recorded. False when
   * the copy is stale (the caller deletes it).
   */
  markDeidentified(id: number, source: SourceCopy, record: DeidentifiedRecord, place: () => void = () => undefined): boolean {
    return this.audit.transaction(() => {
      // An instance it references was renamed (or stopped being) while this copy was made: stale.
      if (record.references?.some(([original, written]) => this.currentName(id, original) !== written)) return false;
      const changed = this.statements.deidentified.run({ ...record, id, sourcePath: source.filePath, receivedAt: source.receivedAt, now: Date.now() }).changes;
      if (changed === 0) return false;
      this.statements.forgetReferences.run(id);
      for (const [original, written] of record.references ?? []) this.statements.recordReference.run({ id, original, written });
      this.setRename(id, record.renamedFrom === undefined ? undefined : { original: record.renamedFrom, renamed: record.sopInstanceUid });
      this.audit.write([{ instancePk: id, entries: record.audit, findings: findingsText(record.findings) }], Date.now());
      // The copy keeps the original's SOP class and transfer syntax.
      const stored = this.statements.stored.get(id) as { sopClassUid: string; transferSyntaxUid: string };
      this.research.record(id, { ...record, ...stored });
      place();
      return true;
    });
  }

  /** Runs `work` in one transaction, inside which the mark* calls become savepoints: many outcomes,
   * one commit. */
  inOneTransaction<T>(work: () => T): T {
    return this.audit.transaction(work);
  }

  /** False once SQLite has rolled back the transaction whole (an I/O error, a full disk). */
  inTransaction(): boolean {
    return this.db.inTransaction;
  }

  /** Quarantines an instance whose de-identified form still shows residual risk, keeping the audit
   * and the findings (paths and keywords, never values) for the operator. */
  markQuarantinedWithFindings(id: number, source: SourceCopy, reason: string, audit: AuditText, findings: unknown[]): boolean {
    return this.audit.transaction(() => {
      if (!this.markHeld(id, source, 'quarantined', reason)) return false;
      this.audit.write([{ instancePk: id, entries: audit, findings: findingsText(findings) }], Date.now());
      return true;
    });
  }

  /**
   * Records many instances' encoded audits (an instance's earlier audit is replaced), in one
   * transaction (bench/persist; the node records each instance's with its outcome): one commit, and one WAL
   * write, instead of one per instance. The instances must be indexed (foreign key).
   */
  recordAudits(audits: readonly EncodedAudit[], now = Date.now()): void {
    this.audit.write(audits, now);
  }

  /** An instance's recorded audit entries and findings. */
  auditOf(instancePk: number): StoredAudit | undefined {
    return this.audit.read(instancePk);
  }

  /** Holds an instance back (quarantined) or records that it could not be de-identified (failed). */
  markHeld(id: number, source: SourceCopy, state: 'quarantined' | 'failed', reason: string): boolean {
    return this.db.transaction(() => {
      if (this.statements.held.run({ id, sourcePath: source.filePath, receivedAt: source.receivedAt, state, reason, now: Date.now() }).changes === 0) return false;
      this.research.remove(id);
      // Held back, it is not forwarded: references to it keep the UID it had.
      this.setRename(id, undefined);
      return true;
    })();
  }

  /** What a copy should write for a reference to `original` now: its rename, or itself. */
  private currentName(id: number, original: string): string {
    return (this.statements.currentName.get({ id, original }) as string | undefined) ?? original;
  }

  /**
   * Records (or forgets) an instance's rename under retainUIDs, and sends back to de-identification
   * the instances of its study whose copies reference it by another UID: exactly those, once per
   * change, so that their references follow and the study is forwarded again with them. Call inside a
   * transaction.
   */
  private setRename(id: number, rename: { original: string; renamed: string } | undefined): void {
    const before = this.statements.renameOf.get(id) as { studyPk: number; original: string; renamed: string } | undefined;
    // Sent again into another study (a corrected Study Instance UID), the rename moves with it.
    const moved = before !== undefined && rename !== undefined && before.studyPk !== this.statements.studyOf.get(id);
    if (!moved && before?.original === rename?.original && before?.renamed === rename?.renamed) return;
    if (rename) this.statements.recordRename.run({ id, ...rename });
    else this.statements.forgetRename.run(id);
    const now = Date.now();
    const redo = (studyPk: number, original: string, name: string) => {
      const redone = this.statements.redoReferencing.all({ studyPk, original, name, id, now }) as Array<{ id: number }>;
      for (const row of redone) this.research.remove(row.id);
    };
    if (before && (moved || before.original !== rename?.original)) redo(before.studyPk, before.original, before.original);
    // The study it left may be empty now that no rename names it.
    if (before && (moved || !rename)) this.emptyRows.dropStudy(before.studyPk);
    if (rename) {
      const after = this.statements.renameOf.get(id) as { studyPk: number };
      redo(after.studyPk, rename.original, rename.renamed);
    }
  }

  /** De-identified instances recorded within `windowMs` of the newest such record. */
  recentlyDeidentified(windowMs: number): Array<{ id: number; deidFilePath: string; deidFileSize: number }> {
    return this.db
      .prepare(
        `SELECT id, deid_file_path AS deidFilePath, deid_file_size AS deidFileSize FROM instances
         WHERE state = 'deidentified' AND state_changed_at >= (SELECT max(state_changed_at) FROM instances WHERE state = 'deidentified') - ?`,
      )
      .all(windowMs) as Array<{ id: number; deidFilePath: string; deidFileSize: number }>;
  }

  /**
   * Sends back to de-identification the instances of a study whose de-identified copy retention deleted
   * while their original is still kept (gantry forward of a whole study: without a copy they could not
   * be sent, and the study would go out in part). Answers how many.
   */
  redoDeletedCopies(studyPk: number, now = Date.now()): number {
    return this.db.transaction(() => {
      const redone = this.statements.redoDeletedCopies.all({ studyPk, now }) as Array<{ id: number }>;
      for (const row of redone) this.research.remove(row.id);
      return redone.length;
    })();
  }

  /** Sends an instance back to de-identification (its copy was lost). */
  redo(id: number): void {
    this.db.transaction(() => {
      this.db.prepare(`UPDATE instances SET state = 'received', state_changed_at = ?, state_reason = NULL WHERE id = ? AND state = 'deidentified'`).run(Date.now(), id);
      this.research.remove(id);
    })();
  }

  /** The `limit` instances waiting for de-identification that arrived first (a re-sent one arrived
   * anew), with when (ms since the epoch). */
  earliestArrivals(limit: number): Array<{ id: number; receivedAt: number }> {
    return this.statements.earliestArrivals.all(limit) as Array<{ id: number; receivedAt: number }>;
  }

  /** Since when the instance waiting longest for de-identification has waited (ms since the epoch:
   * its arrival, release or redo), if any waits. */
  oldestWaitingSince(): number | undefined {
    return (this.statements.oldestWaiting.get() as number | null) ?? undefined;
  }
}

/** The studies of the patient of study `studyPk` (an SQL expression): those a reference may name. */
export function studiesOfItsPatient(studyPk: string): string {
  return `SELECT id FROM studies WHERE patient_pk = (SELECT patient_pk FROM studies WHERE id = ${studyPk})`;
}
