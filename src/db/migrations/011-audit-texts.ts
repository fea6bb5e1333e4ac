import { createHash } from 'node:crypto';
import type { Db, Migration } from '../database.js';

/** The digest as src/deid/audit-text.ts makes it, written out here: a released migration never changes. */
function digestOf(json: string): string {
  return createHash('sha256').update(json).digest('base64');
}

/** Every audit row into the new tables, a page at a time (a text can run to tens of kilobytes). */
function copyAudits(db: Db): void {
  const page = db.prepare('SELECT instance_pk AS instancePk, entries, findings, created_at AS createdAt FROM deid_audit WHERE instance_pk > ? ORDER BY instance_pk LIMIT 512');
  const addText = db.prepare('INSERT INTO audit_texts (digest, text) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING');
  const idOf = db.prepare('SELECT id FROM audit_texts WHERE digest = ?').pluck();
  const addRow = db.prepare('INSERT INTO deid_audit_by_text (instance_pk, entries_id, findings_id, created_at) VALUES (?, ?, ?, ?)');
  const textId = (text: string): number => {
    const digest = digestOf(text);
    addText.run(digest, text);
    return idOf.get(digest) as number;
  };
  let after = 0;
  for (;;) {
    const rows = page.all(after) as Array<{ instancePk: number; entries: string; findings: string; createdAt: number }>;
    for (const row of rows) addRow.run(row.instancePk, textId(row.entries), textId(row.findings), row.createdAt);
    const last = rows[rows.length - 1];
    if (last === undefined) return;
    after = last.instancePk;
  }
}

/**
 * De-identification audits stored once per distinct text, under its SHA-256. An audit lists paths,
 * keywords and actions (never values), so the instances of a series, made by one modality under one
 * profile, mostly share the same text: a real CT's runs to hundreds of entries, stored once per
 * instance before. Each instance's row now names its entries and findings texts (owned by
 * src/index/deid-audit.ts); deid_audit_json reads them back as text.
 */
export const migration011AuditTexts: Migration = {
  version: 11,
  name: 'de-identification audits: each distinct text stored once',
  up(db) {
    db.exec(`
      CREATE TABLE audit_texts (
        id INTEGER PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,        -- SHA-256 of text, base64 (src/deid/audit-text.ts)
        text TEXT NOT NULL                  -- JSON: entries or findings; never an original value
      );                                    -- never deleted: ids name their text for good
      CREATE TABLE deid_audit_by_text (
        instance_pk INTEGER PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
        -- audit_texts ids, without a foreign key: DeidAudit is their only writer and no text is ever
        -- deleted, and the two checks cost 17% of a bulk write (bench/persist).
        entries_id INTEGER NOT NULL,
        findings_id INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      );
    `);
    copyAudits(db);
    db.exec(`
      DROP TABLE deid_audit;
      ALTER TABLE deid_audit_by_text RENAME TO deid_audit;
      CREATE VIEW deid_audit_json AS
        SELECT a.instance_pk, e.text AS entries, f.text AS findings, a.created_at
        FROM deid_audit a JOIN audit_texts e ON e.id = a.entries_id JOIN audit_texts f ON f.id = a.findings_id;
    `);
  },
};
