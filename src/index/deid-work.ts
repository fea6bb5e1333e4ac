/**
 * The de-identification work on the index: which instances wait (state received), and the one
 * transaction per instance that records its outcome (deidentified, quarantined or failed).
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import type { IndexedAttributes } from './attributes.js';
import { ResearchIndex } from './research-index.js';

/** What an operator decided when releasing an instance from quarantine. */
export interface ReleaseOverride {
  /** Let pixel data that may show identity through (as a `pass` rule would). */
  pass?: boolean;
  /** Do not hold the instance back for the findings scan. */
  ignoreFindings?: boolean;
}

export interface WaitingInstance {
  id: number;
  studyPk: number;
  filePath: string;
  callingAeTitle: string;
  override?: ReleaseOverride;
}

export interface DeidentifiedRecord {
  filePath: string;
  fileSize: number;
  sopInstanceUid: string;
  seriesInstanceUid: string;
  studyInstanceUid: string;
  profile: string;
  audit: unknown[];
  findings: unknown[];
  /** The copy's indexed attributes, for the research view. */
  attributes: IndexedAttributes;
  /** Under retainUIDs, the original SOP Instance UID when the copy has another (its pixels were redacted). */
  renamedFrom?: string;
  /** How many renames of other instances of the study the de-identification followed. */
  renamesSeen: number;
}

export class DeidWork {
  private readonly statements: Record<
    'waiting' | 'deidentified' | 'audit' | 'held' | 'countByState' | 'stored' | 'renames' | 'recordRename' | 'forgetRename' | 'staleReferences' | 'redoStale',
    Statement
  >;
  private readonly research: ResearchIndex;

  constructor(private readonly db: Db) {
    this.research = new ResearchIndex(db);
    this.statements = {
      stored: db.prepare(`SELECT sop_class_uid AS sopClassUid, transfer_syntax_uid AS transferSyntaxUid FROM instances WHERE id = ?`),
      waiting: db.prepare(`
        SELECT i.id, s.study_pk AS studyPk, i.file_path AS filePath, i.calling_ae_title AS callingAeTitle, i.deid_override AS override
        FROM instances i JOIN series s ON s.id = i.series_pk WHERE i.state = 'received' AND i.id > ? ORDER BY i.id LIMIT ?`),
      deidentified: db.prepare(`
        UPDATE instances SET state = 'deidentified', state_changed_at = @now, state_reason = NULL,
          deid_file_path = @filePath, deid_file_size = @fileSize, deid_sop_instance_uid = @sopInstanceUid,
          deid_series_instance_uid = @seriesInstanceUid, deid_study_instance_uid = @studyInstanceUid,
          deid_profile = @profile, routed_at = NULL, deid_deleted_at = NULL, deid_renames_seen = @renamesSeen
        WHERE id = @id AND state = 'received' AND file_path = @sourcePath`),
      renames: db.prepare(`SELECT original_uid AS original, renamed_uid AS renamed FROM redaction_renames WHERE study_pk = ? AND instance_pk != ?`),
      recordRename: db.prepare(`
        INSERT INTO redaction_renames (instance_pk, study_pk, original_uid, renamed_uid)
        VALUES (@id, (SELECT s.study_pk FROM instances i JOIN series s ON s.id = i.series_pk WHERE i.id = @id), @original, @renamed)
        ON CONFLICT (instance_pk) DO UPDATE SET original_uid = excluded.original_uid, renamed_uid = excluded.renamed_uid`),
      forgetRename: db.prepare(`DELETE FROM redaction_renames WHERE instance_pk = ?`),
      // Only studies with renames are looked at: without retainUIDs and redaction, this costs nothing.
      staleReferences: db.prepare(`
        SELECT i.id FROM instances i JOIN series s ON s.id = i.series_pk
        WHERE s.study_pk IN (SELECT DISTINCT study_pk FROM redaction_renames)
          AND i.state IN ('deidentified', 'forwarded') AND i.original_deleted_at IS NULL
          AND coalesce(i.deid_renames_seen, 0) != (SELECT count(*) FROM redaction_renames r WHERE r.study_pk = s.study_pk AND r.instance_pk != i.id)`),
      redoStale: db.prepare(`UPDATE instances SET state = 'received', state_changed_at = ?, state_reason = NULL WHERE id = ? AND state IN ('deidentified', 'forwarded')`),
      audit: db.prepare(`
        INSERT INTO deid_audit (instance_pk, entries, findings, created_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (instance_pk) DO UPDATE SET entries = excluded.entries, findings = excluded.findings, created_at = excluded.created_at`),
      held: db.prepare(`
        UPDATE instances SET state = @state, state_changed_at = @now, state_reason = @reason
        WHERE id = @id AND state = 'received' AND file_path = @sourcePath`),
      countByState: db.prepare('SELECT state, count(*) AS count FROM instances GROUP BY state'),
    };
  }

  /** Instances waiting for de-identification after `afterId`, oldest first. */
  waiting(afterId: number, limit: number): WaitingInstance[] {
    const rows = this.statements.waiting.all(afterId, limit) as Array<Omit<WaitingInstance, 'override'> & { override: string | null }>;
    return rows.map(({ override, ...row }) => (override ? { ...row, override: JSON.parse(override) as ReleaseOverride } : row));
  }

  /** Under retainUIDs: the other instances of a study that got a UID of their own when their pixels
   * were redacted, original UID → new UID. */
  renamesInStudy(studyPk: number, exceptInstancePk: number): Map<string, string> {
    const rows = this.statements.renames.all(studyPk, exceptInstancePk) as Array<{ original: string; renamed: string }>;
    return new Map(rows.map((row) => [row.original, row.renamed]));
  }

  /**
   * De-identified instances whose study has gained or lost a rename since (an instance redacted after
   * them): sent back to de-identification, and so to forwarding, so that their references follow.
   * The study is not stable until they are done again. Returns how many.
   */
  redoStaleReferences(now = Date.now()): number {
    const stale = this.statements.staleReferences.all() as Array<{ id: number }>;
    if (stale.length === 0) return 0;
    this.db.transaction(() => {
      for (const { id } of stale) {
        this.statements.redoStale.run(now, id);
        this.research.remove(id);
      }
    })();
    return stale.length;
  }

  /**
   * Records a de-identified copy. False when the instance changed meanwhile (a re-sent copy replaced
   * it): the output is then stale and the caller deletes it.
   */
  /**
   * Records a de-identified copy, if the instance still waits for it from this original (a newer
   * copy of the instance may have replaced it meanwhile), and runs `place` (which puts the file
   * where the record says) inside the transaction: if placing fails, nothing is recorded.
   */
  markDeidentified(id: number, sourcePath: string, record: DeidentifiedRecord, place: () => void = () => undefined): boolean {
    return this.db.transaction(() => {
      const changed = this.statements.deidentified.run({ ...record, id, sourcePath, now: Date.now() }).changes;
      if (changed === 0) return false;
      if (record.renamedFrom !== undefined) this.statements.recordRename.run({ id, original: record.renamedFrom, renamed: record.sopInstanceUid });
      else this.statements.forgetRename.run(id);
      this.writeAudit(id, record.audit, record.findings, Date.now());
      // The copy keeps the original's SOP class and transfer syntax.
      const stored = this.statements.stored.get(id) as { sopClassUid: string; transferSyntaxUid: string };
      this.research.record(id, { ...record, ...stored });
      place();
      return true;
    })();
  }

  /** Quarantines an instance whose de-identified form still shows residual risk, keeping the audit
   * and the findings (paths and keywords, never values) for the operator. */
  markQuarantinedWithFindings(id: number, sourcePath: string, reason: string, audit: unknown[], findings: unknown[]): boolean {
    return this.db.transaction(() => {
      if (!this.markHeld(id, sourcePath, 'quarantined', reason)) return false;
      this.writeAudit(id, audit, findings, Date.now());
      return true;
    })();
  }

  /**
   * Records many instances' audit entries and findings in one transaction (an instance's earlier
   * audit is replaced), e.g. when a batch is de-identified or imported at once: one commit, and one
   * WAL write, instead of one per instance. The instances must be indexed (foreign key).
   */
  recordAudits(rows: ReadonlyArray<{ instancePk: number; entries: unknown[]; findings: unknown[] }>, now = Date.now()): void {
    this.db.transaction(() => {
      for (const row of rows) this.writeAudit(row.instancePk, row.entries, row.findings, now);
    })();
  }

  /** The one place an audit row is written: every path shares the one prepared statement. */
  private writeAudit(instancePk: number, entries: unknown[], findings: unknown[], now: number): void {
    this.statements.audit.run(instancePk, JSON.stringify(entries), JSON.stringify(findings), now);
  }

  /** Holds an instance back (quarantined) or records that it could not be de-identified (failed). */
  markHeld(id: number, sourcePath: string, state: 'quarantined' | 'failed', reason: string): boolean {
    return this.db.transaction(() => {
      if (this.statements.held.run({ id, sourcePath, state, reason, now: Date.now() }).changes === 0) return false;
      this.research.remove(id);
      // Held back, it is not forwarded: references to it keep the UID it had.
      this.statements.forgetRename.run(id);
      return true;
    })();
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

  /** Sends an instance back to de-identification (its copy was lost). */
  redo(id: number): void {
    this.db.transaction(() => {
      this.db.prepare(`UPDATE instances SET state = 'received', state_changed_at = ?, state_reason = NULL WHERE id = ? AND state = 'deidentified'`).run(Date.now(), id);
      this.research.remove(id);
    })();
  }

  countByState(): Record<string, number> {
    const rows = this.statements.countByState.all() as Array<{ state: string; count: number }>;
    return Object.fromEntries(rows.map((row) => [row.state, row.count]));
  }
}
