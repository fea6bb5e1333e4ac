/**
 * The pseudonym ledger (table pseudonym_map, migration 9): which original each pseudonym given out
 * stands for, per kind (a DICOM keyword: PatientID, PatientName, StudyInstanceUID, ...).
 *
 * Why it exists: pseudonyms are HMAC-derived from the originals (src/deid/pseudonyms.ts), so they are
 * consistent without any table, but an HMAC cannot be run backwards. When a research finding has to
 * reach the patient it is about, an authorised operator looks the pseudonym up here to find the
 * original. The table therefore holds PHI, like the rest of the index: values are never logged, and
 * nothing here writes them anywhere but the database.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';

export interface PseudonymMapping {
  /** The DICOM keyword the value belongs to: PatientID, PatientName, StudyInstanceUID, ... */
  kind: string;
  original: string;
  pseudonym: string;
}

/**
 * Mappings written per INSERT statement by `record`. Measured on 100,000 mappings (bench/persist's
 * data, 2-core VM): many rows per statement cost fewer calls from JavaScript into SQLite, and, with the
 * rows sorted into key order, each B-tree leaf page is visited once instead of at random; together,
 * sort included, they are 15 to 20% faster than one row per statement in arrival order. Either alone
 * gained nothing (25 or 100 rows per statement: the same as 50).
 */
const ROWS_PER_STATEMENT = 50;

/** The upsert of `rows` mappings. An original seen again keeps the newest pseudonym (after a change
 * of the de-identification secret, the one in use now), unless this record is older than the one kept. */
function upsertSql(rows: number): string {
  return `INSERT INTO pseudonym_map (kind, original, pseudonym, recorded_at) VALUES ${Array(rows).fill('(?, ?, ?, ?)').join(', ')}
    ON CONFLICT (kind, original) DO UPDATE SET pseudonym = excluded.pseudonym, recorded_at = excluded.recorded_at
    WHERE excluded.recorded_at >= pseudonym_map.recorded_at`;
}

/** The table's key order (JavaScript compares UTF-16 code units, SQLite UTF-8 bytes: they disagree
 * only between astral and U+E000..U+FFFF characters, which costs locality, never correctness). */
function byKey(a: PseudonymMapping, b: PseudonymMapping): number {
  if (a.kind !== b.kind) return a.kind < b.kind ? -1 : 1;
  if (a.original !== b.original) return a.original < b.original ? -1 : 1;
  return 0;
}

export class PseudonymLedger {
  private readonly statements: Record<'upsertOne' | 'upsertMany' | 'pseudonymOf' | 'originalOf', Statement>;

  constructor(private readonly db: Db) {
    this.statements = {
      upsertOne: db.prepare(upsertSql(1)),
      upsertMany: db.prepare(upsertSql(ROWS_PER_STATEMENT)),
      pseudonymOf: db.prepare(`SELECT pseudonym FROM pseudonym_map WHERE kind = ? AND original = ?`).pluck(),
      // Several originals can share a pseudonym (two spellings of one patient's name give one
      // PatientName pseudonym): the one recorded last is the answer, the others are in originalsOf.
      // No index on (kind, pseudonym): an operator's lookup scans one kind's rows (7 ms for 100,000,
      // bench/persist), while such an index made recording 100,000 mappings over three times as slow.
      originalOf: db.prepare(`SELECT original FROM pseudonym_map WHERE kind = ? AND pseudonym = ? ORDER BY recorded_at DESC, original`).pluck(),
    };
  }

  /**
   * Records mappings in one transaction. A kind and original given twice keep the later pseudonym:
   * the sort into key order is stable, and SQLite applies a statement's rows in order.
   */
  record(entries: ReadonlyArray<PseudonymMapping>, now = Date.now()): void {
    const ordered = [...entries].sort(byKey);
    this.db.transaction(() => {
      const whole = ordered.length - (ordered.length % ROWS_PER_STATEMENT);
      const values: Array<string | number> = new Array<string | number>(ROWS_PER_STATEMENT * 4);
      for (let start = 0; start < whole; start += ROWS_PER_STATEMENT) {
        this.statements.upsertMany.run(fillValues(values, ordered, start, now));
      }
      for (const entry of ordered.slice(whole)) this.statements.upsertOne.run(entry.kind, entry.original, entry.pseudonym, now);
    })();
  }

  /** The pseudonym given to an original, if one was recorded. */
  pseudonymOf(kind: string, original: string): string | undefined {
    return this.statements.pseudonymOf.get(kind, original) as string | undefined;
  }

  /** The original a pseudonym stands for (the one recorded last, when several share it). */
  originalOf(kind: string, pseudonym: string): string | undefined {
    return this.statements.originalOf.get(kind, pseudonym) as string | undefined;
  }

  /** Every original recorded for a pseudonym, the one recorded last first. */
  originalsOf(kind: string, pseudonym: string): string[] {
    return this.statements.originalOf.all(kind, pseudonym) as string[];
  }
}

/** Puts ROWS_PER_STATEMENT mappings from `start` into `values`, reused from one statement to the next. */
function fillValues(values: Array<string | number>, ordered: PseudonymMapping[], start: number, now: number): Array<string | number> {
  for (let row = 0; row < ROWS_PER_STATEMENT; row += 1) {
    const entry = ordered[start + row] as PseudonymMapping;
    values[row * 4] = entry.kind;
    values[row * 4 + 1] = entry.original;
    values[row * 4 + 2] = entry.pseudonym;
    values[row * 4 + 3] = now;
  }
  return values;
}
