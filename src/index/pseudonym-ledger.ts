/**
 * The pseudonym ledger (table pseudonym_map, migrations 9 and 26): which original each pseudonym given
 * out stands for, per kind (a DICOM keyword: PatientID, PatientName, StudyInstanceUID, ...). Every
 * pseudonym given out is kept: one original has several when patients of two issuers share an ID,
 * when patients share a name, or after a change of the secret.
 *
 * Why it exists: pseudonyms are HMAC-derived from the originals (src/deid/pseudonyms.ts), so they are
 * consistent without any table, but an HMAC cannot be run backwards. When a research finding has to
 * reach the patient it is about, an authorised operator looks the pseudonym up here to find the
 * original. The table therefore holds PHI, like the rest of the index: values are never logged, and
 * nothing here writes them anywhere but the database.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import { RowsPerStatement, valuesList } from '../db/rows-per-statement.js';
import { stableStringOrder } from '../db/string-order.js';

export interface PseudonymMapping {
  /** The DICOM keyword the value belongs to: PatientID, PatientName, StudyInstanceUID, ... */
  kind: string;
  original: string;
  pseudonym: string;
  /** The IssuerOfPatientID of the patient a PatientID or PatientName belongs to (the ID alone may not
   * tell the patient: pseudonyms.ts derives the patient's pseudonyms from both). */
  issuerOfPatientId?: string;
}

/** The upsert of `rows` mappings of one kind (@kind), recorded at @recordedAt. A mapping recorded again
 * is stamped with its newest record (what pseudonymOf answers: after a change of the secret, the
 * pseudonym in use now). */
function upsertSql(rows: number): string {
  return `INSERT INTO pseudonym_map (kind, original, pseudonym, recorded_at, issuer_of_patient_id) VALUES ${valuesList('(@kind, ?, ?, @recordedAt, ?)', rows)}
    ON CONFLICT (kind, original, pseudonym) DO UPDATE SET recorded_at = excluded.recorded_at,
      issuer_of_patient_id = coalesce(excluded.issuer_of_patient_id, pseudonym_map.issuer_of_patient_id)
    WHERE excluded.recorded_at >= pseudonym_map.recorded_at`;
}

/**
 * The mappings by kind, in the order of the table's key's first two parts, (kind, original): the kinds
 * (a handful of keywords) sorted, then each kind's originals by stableStringOrder
 * (src/db/string-order.ts), which is stable, so a kind and original given twice keep their order.
 */
function byKindInKeyOrder(entries: ReadonlyArray<PseudonymMapping>): Array<[kind: string, mappings: PseudonymMapping[]]> {
  const byKind = new Map<string, PseudonymMapping[]>();
  for (const entry of entries) {
    const group = byKind.get(entry.kind);
    if (group) group.push(entry);
    else byKind.set(entry.kind, [entry]);
  }
  return [...byKind.keys()].sort().map((kind) => {
    const group = byKind.get(kind) as PseudonymMapping[];
    const ordered = new Array<PseudonymMapping>(group.length);
    let at = 0;
    for (const index of stableStringOrder(group.map((entry) => entry.original))) ordered[at++] = group[index] as PseudonymMapping;
    return [kind, ordered];
  });
}

export class PseudonymLedger {
  private readonly statements: Record<'pseudonymOf' | 'originalOf', Statement>;
  /** Recorded in key order, many per statement: measured on 100,000 mappings (bench/persist's data,
   * 2-core VM), each B-tree leaf page is then visited once instead of at random, and with fewer
   * statements, together, sort included, 15 to 20% faster than one row per statement in arrival
   * order. Either alone gained nothing. A statement's rows share their kind and time, bound once. */
  private readonly upsert: RowsPerStatement<PseudonymMapping>;

  constructor(private readonly db: Db) {
    this.upsert = new RowsPerStatement<PseudonymMapping>(db, upsertSql, 3, (mapping, into, at) => {
      into[at] = mapping.original;
      into[at + 1] = mapping.pseudonym;
      into[at + 2] = mapping.issuerOfPatientId ?? null;
    });
    this.statements = {
      pseudonymOf: db.prepare(`SELECT pseudonym FROM pseudonym_map WHERE kind = ? AND original = ? ORDER BY recorded_at DESC, pseudonym LIMIT 1`).pluck(),
      // Several originals can share a pseudonym (two spellings of one patient's name give one
      // PatientName pseudonym): the one recorded last is the answer, the others are in originalsOf.
      // No index on (kind, pseudonym): an operator's lookup scans one kind's rows (7 ms for 100,000,
      // bench/persist), while such an index made recording 100,000 mappings over three times as slow.
      originalOf: db.prepare(`SELECT original FROM pseudonym_map WHERE kind = ? AND pseudonym = ? ORDER BY recorded_at DESC, original`).pluck(),
    };
  }

  /**
   * Records mappings in one transaction: every pseudonym of an original is kept, stamped `now`.
   */
  record(entries: ReadonlyArray<PseudonymMapping>, now = Date.now()): void {
    const groups = byKindInKeyOrder(entries);
    this.db.transaction(() => {
      for (const [kind, mappings] of groups) this.upsert.run(mappings, undefined, { kind, recordedAt: now });
    })();
  }

  /** The pseudonym given to an original, the one recorded last when it was given several, if any. */
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
