import type { Migration } from '../database.js';

/**
 * A confirmation names the item's instance and destination besides its outbox id. forward_outbox's
 * ids are SQLite rowids, which a new row takes again when the highest one was deleted: an item
 * withdrawn by a reload while its request was on the wire, then a new item of the same routing pass
 * given its id, took the old request's late Success for its own; its instance counted as forwarded
 * and retention deleted its original, which that destination never had (found in a review). Rows of
 * earlier versions (NULL here) are matched by id and routing as before.
 */
export const migration024ConfirmationItems: Migration = {
  version: 24,
  name: 'confirmations name their instance and destination',
  up(db) {
    db.exec(`
      ALTER TABLE forward_confirmations ADD COLUMN instance_pk INTEGER;
      ALTER TABLE forward_confirmations ADD COLUMN destination TEXT;
    `);
  },
};
