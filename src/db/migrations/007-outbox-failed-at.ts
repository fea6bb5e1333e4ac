import type { Migration } from '../database.js';

/** When an outbox item last failed, so that `gantry status` can list the recent failures; and the
 * queued items of one routing of a study, so that its forwarding time is measured when its last item
 * is confirmed. */
export const migration007OutboxFailedAt: Migration = {
  version: 7,
  name: 'outbox: time of the last failure, queued items per routing',
  up(db) {
    db.exec(`
      ALTER TABLE forward_outbox ADD COLUMN failed_at INTEGER;  -- the last failed attempt or unreachable destination
      CREATE INDEX forward_outbox_failed ON forward_outbox (failed_at) WHERE failed_at IS NOT NULL;
      -- Failures recorded before this column: dated by when the item was queued, the best there is.
      UPDATE forward_outbox SET failed_at = queued_at WHERE state != 'sent' AND last_error IS NOT NULL;
      CREATE INDEX forward_outbox_routing_queued ON forward_outbox (study_pk, destination, routed_at) WHERE state = 'queued';
    `);
  },
};
