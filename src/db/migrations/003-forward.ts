import type { Migration } from '../database.js';

/** Forwarding: the outbox (owned by src/queue/outbox.ts) and, on instances, when each was routed to
 * destinations and when its files were deleted under the retention settings. */
export const migration003Forward: Migration = {
  version: 3,
  name: 'forward: outbox, routing, retention',
  up(db) {
    db.exec(`
      ALTER TABLE instances ADD COLUMN routed_at INTEGER;              -- when its stable study was routed
      ALTER TABLE instances ADD COLUMN original_deleted_at INTEGER;    -- retention (storage.retainOriginals)
      ALTER TABLE instances ADD COLUMN deid_deleted_at INTEGER;        -- retention (storage.retainDeidentified)
      CREATE INDEX instances_to_route ON instances (id) WHERE state = 'deidentified' AND routed_at IS NULL;
      CREATE INDEX instances_forwarded ON instances (state_changed_at) WHERE state = 'forwarded';

      -- One row per instance and destination: the de-identified copy to send and how sending went.
      CREATE TABLE forward_outbox (
        id INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        instance_pk INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
        file_path TEXT NOT NULL,                 -- the de-identified copy, relative to storage.path
        sop_class_uid TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,          -- de-identified
        transfer_syntax_uid TEXT NOT NULL,
        study_pk INTEGER NOT NULL,
        routed_at INTEGER NOT NULL,              -- the routing it belongs to (instances.routed_at then)
        state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_status TEXT,                        -- the last DIMSE status, as 0xXXXX
        last_error TEXT,                         -- why the last attempt failed; never PHI
        queued_at INTEGER NOT NULL,
        sent_at INTEGER,
        UNIQUE (destination, instance_pk)
      );
      CREATE INDEX forward_outbox_due ON forward_outbox (destination, next_attempt_at) WHERE state = 'queued';
      CREATE INDEX forward_outbox_instance ON forward_outbox (instance_pk);
      CREATE INDEX forward_outbox_state ON forward_outbox (state, destination);
    `);
  },
};
