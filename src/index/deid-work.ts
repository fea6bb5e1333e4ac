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
}

export class DeidWork {
  private readonly statements: Record<'waiting' | 'deidentified' | 'audit' | 'held' | 'countByState' | 'stored', Statement>;
  private readonly research: ResearchIndex;

  constructor(private readonly db: Db) {
    this.research = new ResearchIndex(db);
    this.statements = {
      stored: db.prepare(`SELECT sop_class_uid AS sopClassUid, transfer_syntax_uid AS transferSyntaxUid FROM instances WHERE id = ?`),
      waiting: db.prepare(`
        SELECT id, file_path AS filePath, calling_ae_title AS callingAeTitle, deid_override AS override
        FROM instances WHERE state = 'received' AND id > ? ORDER BY id LIMIT ?`),
      deidentified: db.prepare(`
        UPDATE instances SET state = 'deidentified', state_changed_at = @now, state_reason = NULL,
          deid_file_path = @filePath, deid_file_size = @fileSize, deid_sop_instance_uid = @sopInstanceUid,
          deid_series_instance_uid = @seriesInstanceUid, deid_study_instance_uid = @studyInstanceUid,
          deid_profile = @profile, routed_at = NULL, deid_deleted_at = NULL
        WHERE id = @id AND state = 'received' AND file_path = @sourcePath`),
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
      this.statements.audit.run(id, JSON.stringify(record.audit), JSON.stringify(record.findings), Date.now());
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
      this.statements.audit.run(id, JSON.stringify(audit), JSON.stringify(findings), Date.now());
      return true;
    })();
  }

  /** Holds an instance back (quarantined) or records that it could not be de-identified (failed). */
  markHeld(id: number, sourcePath: string, state: 'quarantined' | 'failed', reason: string): boolean {
    return this.db.transaction(() => {
      if (this.statements.held.run({ id, sourcePath, state, reason, now: Date.now() }).changes === 0) return false;
      this.research.remove(id);
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
