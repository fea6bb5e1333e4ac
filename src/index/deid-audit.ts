/**
 * What the de-identifier did to each instance (deid_audit) and the texts that say it (audit_texts):
 * the audit entries (paths, keywords, actions) and the findings, as JSON, never an original value.
 * Each distinct text is stored once under its SHA-256 (migration 011): the instances of a series
 * mostly share theirs. A text is never deleted, even when no instance names it any more: ids stay
 * unique for good (rows name them without a foreign key), and the texts hold no original value.
 */
import type { Statement } from 'better-sqlite3';
import type { AuditText } from '../deid/audit-text.js';
import type { Db } from '../db/database.js';
import { RowsPerStatement, valuesList } from '../db/rows-per-statement.js';

/** An instance's audit as its writer encoded it (src/deid/audit-text.ts). */
export interface EncodedAudit {
  instancePk: number;
  entries: AuditText;
  findings: AuditText;
}

export interface StoredAudit {
  entries: unknown[];
  findings: unknown[];
  createdAt: number;
}

/** Digests remembered with their texts' ids. */
const REMEMBERED_DIGESTS = 16_384;
/** The upsert of `rows` audits. One row per statement, 100,000 rows like these took 207-240 ms in a
 * scratch measurement, 50 per statement 111-116 ms (rows-per-statement.ts). */
function upsertSql(rows: number): string {
  return `INSERT INTO deid_audit (instance_pk, entries_id, findings_id, created_at) VALUES ${valuesList('(?, ?, ?, @createdAt)', rows)}
    ON CONFLICT (instance_pk) DO UPDATE SET entries_id = excluded.entries_id, findings_id = excluded.findings_id, created_at = excluded.created_at`;
}

export class DeidAudit {
  private readonly statements: Record<'textId' | 'addText' | 'read', Statement>;
  private readonly upsert: RowsPerStatement<EncodedAudit, Map<string, number>>;
  /** Digest → id, for texts committed to the database (see `transaction`). Texts are never deleted,
   * so an id, once committed, names its text for good. */
  private readonly textIds = new Map<string, number>();
  /** Texts looked up or added in the outermost transaction of `transaction` so far. */
  private pending: Map<string, number> | undefined;

  constructor(private readonly db: Db) {
    this.upsert = new RowsPerStatement<EncodedAudit, Map<string, number>>(db, upsertSql, 3, (audit, into, at, found) => {
      into[at] = audit.instancePk;
      into[at + 1] = this.textId(audit.entries, found);
      into[at + 2] = this.textId(audit.findings, found);
    });
    this.statements = {
      textId: db.prepare('SELECT id FROM audit_texts WHERE digest = ?').pluck(),
      addText: db.prepare('INSERT INTO audit_texts (digest, text) VALUES (?, ?)'),
      read: db.prepare('SELECT entries, findings, created_at AS createdAt FROM deid_audit_json WHERE instance_pk = ?'),
    };
  }

  /**
   * Records instances' audits (an instance's earlier audit is replaced), all or none, in a
   * transaction of its own or inside the caller's. The instances must be indexed (foreign key): one
   * that is not fails the whole call.
   */
  write(audits: readonly EncodedAudit[], now: number): void {
    this.transaction(() => {
      // Ids found by this call are reused only within it: a savepoint around it may yet roll back.
      const found = new Map<string, number>();
      this.upsert.run(audits, found, { createdAt: now });
      for (const [digest, id] of found) this.pending?.set(digest, id);
    });
  }

  /**
   * Runs `work` in a transaction (BEGIN IMMEDIATE: it writes, and a deferred one could not take the
   * write lock after another process's commit), in which `write` may be called. Ids of texts are
   * remembered only once the outermost transaction commits, and only those still in the table under
   * the same id: a savepoint inside `work` may have rolled back a text it added, and SQLite gives a
   * rolled-back id to the next text. Inside a transaction that is not one of these, which may yet
   * roll back, nothing is remembered.
   */
  transaction<T>(work: () => T): T {
    if (this.db.inTransaction) return this.db.transaction(work)();
    const pending = new Map<string, number>();
    this.pending = pending;
    try {
      const result = this.db
        .transaction(() => {
          const value = work();
          for (const [digest, id] of pending) if (this.statements.textId.get(digest) !== id) pending.delete(digest);
          return value;
        })
        .immediate();
      for (const [digest, id] of pending) this.remember(digest, id);
      return result;
    } finally {
      this.pending = undefined;
    }
  }

  /** An instance's audit, or undefined when none was recorded. */
  read(instancePk: number): StoredAudit | undefined {
    const row = this.statements.read.get(instancePk) as { entries: string; findings: string; createdAt: number } | undefined;
    return row && { entries: JSON.parse(row.entries) as unknown[], findings: JSON.parse(row.findings) as unknown[], createdAt: row.createdAt };
  }

  private textId(text: AuditText, found: Map<string, number>): number {
    const known = this.textIds.get(text.digest) ?? found.get(text.digest);
    if (known !== undefined) return known;
    const id =
      (this.statements.textId.get(text.digest) as number | undefined) ?? Number(this.statements.addText.run(text.digest, text.json).lastInsertRowid);
    found.set(text.digest, id);
    return id;
  }

  private remember(digest: string, id: number): void {
    if (this.textIds.size >= REMEMBERED_DIGESTS) this.textIds.clear();
    this.textIds.set(digest, id);
  }
}
