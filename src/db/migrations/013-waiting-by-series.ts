import type { Migration } from '../database.js';

/**
 * The instances waiting for de-identification by series, for routing's question whether a study has
 * any instance waiting. With deid.receiveFirst a burst waits in the index on purpose, thousands of
 * rows; through the index on state alone that question walked every waiting row of the whole index
 * for each study (a review measured 180-200 ms per page of routing with 5,000 waiting).
 */
export const migration013WaitingBySeries: Migration = {
  version: 13,
  name: 'instances waiting for de-identification, by series',
  up(db) {
    db.exec(`CREATE INDEX IF NOT EXISTS instances_waiting_by_series ON instances (series_pk) WHERE state = 'received';`);
  },
};
