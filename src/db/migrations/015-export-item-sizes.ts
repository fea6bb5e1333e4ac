import type { Migration } from '../database.js';

/**
 * The size of each exported file, so that a run again on the folder can tell a file that the journal
 * lists but that a power loss left missing or empty (its data not yet allocated) from one written
 * whole, and write it again. Rows journalled before have no size: only their presence is checked.
 */
export const migration015ExportItemSizes: Migration = {
  version: 15,
  name: 'sizes of exported files',
  up(db) {
    db.exec(`ALTER TABLE export_items ADD COLUMN bytes INTEGER;`);
  },
};
