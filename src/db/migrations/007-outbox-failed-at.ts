import type { Migration } from '../database.js';

/** When an outbox item last failed, so that `gantry status` can list the recent failures. */
export const migration007OutboxFailedAt: Migration = {
  version: 7,
  name: 'outbox: time of the last failure',
  up(db) {
    db.exec(`
      ALTER TABLE forward_outbox ADD COLUMN failed_at INTEGER;  -- the last failed attempt or unreachable destination
      CREATE INDEX forward_outbox_failed ON forward_outbox (failed_at) WHERE failed_at IS NOT NULL;
    `);
  },
};
