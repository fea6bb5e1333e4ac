import type { Migration } from '../database.js';

/**
 * The instances waiting for de-identification, by arrival and by series. With deid.receiveFirst a
 * burst waits in the index on purpose (src/pipeline/receive-first.ts), thousands of rows: the
 * scheduler asks which of them arrived first, the metrics how long it has waited, and routing whether
 * a study has any instance waiting. Through the index on state alone, that last question walked every
 * waiting row of the whole index for each study (180-200 ms per page of routing with 5,000 waiting).
 */
export const migration012WaitingByArrival: Migration = {
  version: 12,
  name: 'instances waiting for de-identification, by arrival and by series',
  up(db) {
    db.exec(`
      CREATE INDEX instances_waiting ON instances (received_at, id) WHERE state = 'received';
      CREATE INDEX instances_waiting_by_series ON instances (series_pk) WHERE state = 'received';
    `);
  },
};
