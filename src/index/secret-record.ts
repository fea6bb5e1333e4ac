/**
 * The digest of the de-identification secret the node de-identifies a storage with (table
 * deid_secret, migration 23). The node records it at each start and says when it changed (every
 * pseudonym, UID and date shift changes from then on); gantry export and the library's export, which
 * de-identify beside the node's copies, refuse another secret: one patient would otherwise have two
 * pseudonyms in one export. So does the library's Instance.deidentify.
 */
import { secretDigest } from '../config/secret.js';
import type { Db } from '../db/database.js';
import { Pseudonymizer } from '../deid/pseudonyms.js';

/** The digest recorded, if a node ever started on this index. */
export function recordedSecretDigest(db: Db): string | undefined {
  return db.prepare('SELECT digest FROM deid_secret WHERE id = 1').pluck().get() as string | undefined;
}

/** Records the node's secret; answers whether it differs from the one recorded before (undefined: none was). */
export function recordSecretDigest(db: Db, digest: string, now = Date.now()): boolean | undefined {
  const before = recordedSecretDigest(db);
  if (before === digest) return false;
  db.prepare('INSERT INTO deid_secret (id, digest, recorded_at) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET digest = excluded.digest, recorded_at = excluded.recorded_at').run(digest, now);
  return before === undefined ? undefined : true;
}

/** How many of the newest de-identified copies copiesMadeWith reads. */
const COPIES_READ = 5;

/**
 * Whether the node's de-identified copies were made with `secret`, read off their Study Instance UIDs
 * (each the keyed UID of its original, pseudonyms.ts): for an index on which no digest was recorded
 * (made before migration 23, and no node started since), where an export with another secret was
 * accepted and gave one patient two pseudonyms (found in the upgrade review). undefined: no copy
 * tells (none yet, or every one kept its original UIDs).
 */
export function copiesMadeWith(db: Db, secret: string): boolean | undefined {
  const copies = db
    .prepare(
      `SELECT st.study_instance_uid AS original, i.deid_study_instance_uid AS deidentified
       FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk
       WHERE i.deid_study_instance_uid IS NOT NULL AND i.deid_study_instance_uid != st.study_instance_uid
       ORDER BY i.id DESC LIMIT ${COPIES_READ}`,
    )
    .all() as Array<{ original: string; deidentified: string }>;
  if (copies.length === 0) return undefined;
  const pseudonyms = new Pseudonymizer(secret);
  return copies.some((copy) => pseudonyms.uid(copy.original) === copy.deidentified);
}

/**
 * Refuses `secret` (deid.secret of the config at `source`) when it is not the one the node
 * de-identifies this storage with: `made` (what the caller would make with it) and the node's copies
 * would give one patient two pseudonyms. Without a recorded digest (an index of before migration 23),
 * the node's copies tell.
 */
export function refuseAnotherSecret(db: Db, secret: string, source: string, made: string): void {
  const recorded = recordedSecretDigest(db);
  if (recorded === undefined ? copiesMadeWith(db, secret) === false : recorded !== secretDigest(secret)) {
    throw new Error(
      `deid.secret of ${source} is not the one the node de-identifies this storage with (as it recorded at its last start): its copies and ${made} would give one patient two pseudonyms; use the node's config`,
    );
  }
}
