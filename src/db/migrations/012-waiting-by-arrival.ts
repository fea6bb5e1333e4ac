import type { Migration } from '../database.js';

/** The instances waiting for de-identification in the order they arrived: a re-sent instance keeps
 * its row (and id) but arrives anew. The scheduler asks which arrived first (src/pipeline/receive-first.ts). */
export const migration012WaitingByArrival: Migration = {
  version: 12,
  name: 'instances waiting for de-identification, by arrival',
  up(db) {
    db.exec(`CREATE INDEX instances_waiting ON instances (received_at, id) WHERE state = 'received';`);
  },
};
