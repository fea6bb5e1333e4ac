import type { Migration } from '../database.js';

/**
 * The bytes of the instances in each state beside their count (migration 20's table and triggers):
 * the originals waiting for de-identification (state received) each need about as much again for
 * their de-identified copy, and the node keeps that much free (storage.minFreeBytes counts it). Only
 * C-STORE checked the floor: a burst accepted down to it was then de-identified into the last bytes
 * of the disk, the rest of the study waited for room, so it never became stable, was never
 * forwarded, and retention had nothing to delete (found in the failure review). The triggers follow
 * a size that changes too (an instance received again replaces its file).
 */
export const migration027WaitingBytes: Migration = {
  version: 27,
  name: 'the bytes of the instances in each state',
  up(db) {
    db.exec(`
      ALTER TABLE instance_state_counts ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
      UPDATE instance_state_counts SET bytes = (SELECT coalesce(sum(i.file_size), 0) FROM instances i WHERE i.state = instance_state_counts.state);
      DROP TRIGGER instances_counted_insert;
      DROP TRIGGER instances_counted_delete;
      DROP TRIGGER instances_counted_state;
      CREATE TRIGGER instances_counted_insert AFTER INSERT ON instances BEGIN
        UPDATE instance_state_counts SET count = count + 1, bytes = bytes + new.file_size WHERE state = new.state;
      END;
      CREATE TRIGGER instances_counted_delete AFTER DELETE ON instances BEGIN
        UPDATE instance_state_counts SET count = count - 1, bytes = bytes - old.file_size WHERE state = old.state;
      END;
      -- Also what an upsert's DO UPDATE fires (an instance received again), not the insert trigger.
      CREATE TRIGGER instances_counted_state AFTER UPDATE OF state, file_size ON instances
        WHEN old.state IS NOT new.state OR old.file_size IS NOT new.file_size BEGIN
        UPDATE instance_state_counts SET count = count - 1, bytes = bytes - old.file_size WHERE state = old.state;
        UPDATE instance_state_counts SET count = count + 1, bytes = bytes + new.file_size WHERE state = new.state;
      END;
    `);
  },
};
