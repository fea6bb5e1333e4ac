/**
 * The digest of the de-identification secret the node de-identifies a storage with (table
 * deid_secret, migration 23). The node records it at each start and says when it changed (every
 * pseudonym, UID and date shift changes from then on); gantry export and the library's export, which
 * de-identify beside the node's copies, refuse another secret: one patient would otherwise have two
 * pseudonyms in one export.
 */
import type { Db } from '../db/database.js';

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
