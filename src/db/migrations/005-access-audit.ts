import type { Migration } from '../database.js';

/** Who queried or retrieved original identities, when, and how much (owned by src/index/access-audit.ts). */
export const migration005AccessAudit: Migration = {
  version: 5,
  name: 'access audit of original identities',
  up(db) {
    db.exec(`
      CREATE TABLE access_audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        calling_ae_title TEXT NOT NULL,
        remote_address TEXT NOT NULL,
        operation TEXT NOT NULL,            -- C-FIND, C-MOVE, C-GET
        model TEXT NOT NULL,                -- patient or study root
        level TEXT NOT NULL,
        results INTEGER NOT NULL,           -- matches returned, or instances sent
        status TEXT NOT NULL                -- the final DIMSE status, as 0xXXXX
      );
      CREATE INDEX access_audit_at ON access_audit (at);
    `);
  },
};
