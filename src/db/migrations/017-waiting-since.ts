import type { Migration } from '../database.js';

/**
 * The instances waiting for de-identification by the time they began to wait, for
 * gantry_deid_oldest_waiting_seconds (DeidWork.oldestWaitingSince), read on the main thread at every
 * scrape. Through the index on state alone it read the row of every waiting instance: 340 ms a scrape
 * with 105,000 waiting in an index of a million (found in the operations review), the associations
 * stopped meanwhile, and longer the larger the backlog the gauge is there to show.
 */
export const migration017WaitingSince: Migration = {
  version: 17,
  name: 'instances waiting for de-identification, by the time they began to wait',
  up(db) {
    db.exec(`CREATE INDEX IF NOT EXISTS instances_waiting_since ON instances (state_changed_at) WHERE state = 'received';`);
  },
};
