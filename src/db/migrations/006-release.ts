import type { Migration } from '../database.js';

/** An operator's override for an instance released from quarantine (gantry quarantine release). */
export const migration006Release: Migration = {
  version: 6,
  name: 'quarantine release overrides',
  up(db) {
    db.exec(`ALTER TABLE instances ADD COLUMN deid_override TEXT;  -- JSON: { pass, ignoreFindings }`);
  },
};
