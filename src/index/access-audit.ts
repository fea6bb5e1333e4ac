/**
 * The access audit (table access_audit): every query or retrieve of original identities (the source
 * view), with who asked, when, at what level and how many results. Never the keys asked for: they may
 * be names or IDs.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import { statusHex } from '../dimse/status.js';

export interface AccessRecord {
  callingAeTitle: string;
  remoteAddress: string;
  operation: 'C-FIND' | 'C-MOVE' | 'C-GET';
  model: string;
  level: string;
  results: number;
  status: string;
}

export interface AccessRow extends AccessRecord {
  id: number;
  at: number;
}

export class AccessAudit {
  private readonly insert: Statement;

  constructor(private readonly db: Db) {
    this.insert = db.prepare(`
      INSERT INTO access_audit (at, calling_ae_title, remote_address, operation, model, level, results, status)
      VALUES (@at, @callingAeTitle, @remoteAddress, @operation, @model, @level, @results, @status)`);
  }

  record(entry: AccessRecord, at = Date.now()): void {
    this.insert.run({ ...entry, at });
  }

  /** Records one operation of a caller (its association says who and from where). */
  recordOperation(
    caller: { callingAeTitle: string; remoteAddress: string },
    entry: Omit<AccessRecord, 'callingAeTitle' | 'remoteAddress' | 'status'> & { status: number },
  ): void {
    this.record({
      ...entry,
      callingAeTitle: caller.callingAeTitle,
      remoteAddress: caller.remoteAddress,
      status: statusHex(entry.status),
    });
  }

  /** The newest entries first, at most `limit`, optionally since `since` (ms). */
  list(limit: number, since = 0): AccessRow[] {
    return this.db
      .prepare(
        `SELECT id, at, calling_ae_title AS callingAeTitle, remote_address AS remoteAddress, operation, model, level, results, status
         FROM access_audit WHERE at >= ? ORDER BY id DESC LIMIT ?`,
      )
      .all(since, limit) as AccessRow[];
  }
}
