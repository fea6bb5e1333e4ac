import type { Migration } from '../database.js';

/**
 * The destinations and conditions the instances were last routed under (Outbox.routeAgainIfChanged).
 * A reload compares the old config with the new one; a start has no old config, and a destination
 * added to the file while the node was stopped never reached the instances that no destination had
 * taken. Routing them all again at every start instead would redo, at each restart, the instances a
 * condition excludes for good (all but one modality, say), which may be most of the index.
 */
export const migration018RoutingRecord: Migration = {
  version: 18,
  name: 'the forward routing the instances were last routed under',
  up(db) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS forward_routing (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        routing TEXT NOT NULL,
        recorded_at INTEGER NOT NULL
      );`);
  },
};
