import type { Migration } from '../database.js';

/**
 * Which de-identification secret the node last started with, as a digest that tells secrets apart
 * without revealing one (index/secret-record.ts). gantry export made the rest of a session's
 * instances with its own secret beside the node's copies made with the node's, and one patient then
 * had two pseudonyms in one export, without a word (found in a review).
 */
export const migration023DeidSecret: Migration = {
  version: 23,
  name: 'the digest of the de-identification secret in use',
  up(db) {
    db.exec(`CREATE TABLE deid_secret (id INTEGER PRIMARY KEY CHECK (id = 1), digest TEXT NOT NULL, recorded_at INTEGER NOT NULL);`);
  },
};
