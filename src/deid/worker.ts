/**
 * The de-identification worker (one per thread of the piscina pool): decides and de-identifies one
 * stored original into a temporary file, and says where it belongs under the de-identified root
 * (named by its new UIDs). The main thread moves it there once the index has recorded it: only the
 * index knows whether this output is still wanted (a newer copy of the instance may have arrived).
 *
 * Its threads also take the index's WAL checkpoints, as the named task `checkpoint`
 * (src/db/background-checkpoints.ts): threads the node has anyway, where one of their own cost 8 MB.
 */
import { statSync } from 'node:fs';
export { default as checkpoint } from '../db/checkpoint-task.js';
import { setPriority } from 'node:os';
import { workerData } from 'piscina';
import { FileSource } from '../dicom/dataset-tree.js';
import { deidentifiedPath } from '../store/object-store.js';
import type { IndexedAttributes } from '../index/attributes.js';
import { scanIndexedAttributes } from '../index/scan-file.js';
import { deidentifyFile } from './deidentify-file.js';
import { loadCodecs } from '../pixels/codecs.js';
import { auditText, type AuditText } from './audit-text.js';
import type { Finding } from './engine.js';
import { Pseudonymizer } from './pseudonyms.js';
import type { OriginalOrigin } from './original-check.js';
import { SettingsCache, type SharedSettings } from './shared-settings.js';

const WORKER_NICENESS = 10;

export interface DeidTask {
  /** The original, absolute. */
  input: string;
  /** Where the output is written, on the same file system as the storage root. */
  temporary: string;
  /** Profiles (named first, the default last: settings.ts) and base settings, shared once per version. */
  settings: SharedSettings;
  callingAeTitle: string;
  /** An operator released this instance from quarantine letting its pixels through. */
  pass?: boolean;
  /** The original's SOP Instance UID in the index, and where it came from: a file that names another
   * instance is not de-identified as this one (original-check.ts, AnotherInstanceError). */
  expected?: { sopInstanceUid: string; origin: OriginalOrigin };
  /** Under retainUIDs: other instances of the study renamed by redaction, [original, new]. */
  renamedUids?: Array<[string, string]>;
  /** Shared with the scheduler: the time (ms) the thread began the task, 0 before. Its time limit
   * counts from then, not from the wait in the pool's queue. */
  startedAt?: BigInt64Array;
}

export type DeidTaskResult =
  | {
      kind: 'deidentified';
      /** Where the output (now at the task's `temporary`) belongs, relative to the storage root. */
      filePath: string;
      fileSize: number;
      sopInstanceUid: string;
      seriesInstanceUid: string;
      studyInstanceUid: string;
      profile: string;
      /** The audit entries, encoded here, in parallel, rather than on the main thread, which would
       * otherwise copy hundreds of entry objects out of the message and encode them again. */
      audit: AuditText;
      findings: Finding[];
      /** The indexed attributes of the de-identified copy: the research view of the index. */
      attributes: IndexedAttributes;
      /** Under retainUIDs, the original SOP Instance UID when the copy has another. */
      renamedFrom?: string;
      /** Under retainUIDs: the instances it references, with the UID written for each. */
      references?: Array<[string, string]>;
    }
  | { kind: 'quarantined'; reason: string };

const pseudonyms = new Pseudonymizer((workerData as { secret: string }).secret);
const settingsCache = new SettingsCache();
/** One read window for every file this thread de-identifies (one at a time). */
const window = Buffer.allocUnsafe(FileSource.WINDOW);

// Receiving comes first: this thread runs at a lower scheduling priority (on Linux, setpriority
// with pid 0 applies to the calling thread only), so a de-identification backlog takes the CPU the
// receive path leaves, not the CPU it needs.
try {
  setPriority(WORKER_NICENESS);
} catch {
  // Not permitted here: run at normal priority.
}

/** A task of no work: the thread loaded this module (the readiness check's probe, deid-threads.ts). */
export function ready(): true {
  return true;
}

export default async function deidentify(task: DeidTask): Promise<DeidTaskResult> {
  if (task.startedAt) Atomics.store(task.startedAt, 0, BigInt(Date.now()));
  // A codec that failed on the last instance is loaded afresh. A codec that cannot load at all holds
  // back only the instances that need it (their redaction says so), not every de-identification.
  await loadCodecs().catch(() => undefined);
  // Not synced: a de-identified copy can always be made again from its original (the engine is
  // deterministic); syncing every copy measured as halving the receive path, whose syncs waited
  // behind these on the same disk. At every start the check of the newest copies sends those that did
  // not survive back to `received`.
  const { profiles, passProfiles, base } = settingsCache.get(task.settings);
  const outcome = deidentifyFile(task.input, task.temporary, {
    settings: {
      profiles: task.pass ? passProfiles : profiles,
      base: task.renamedUids?.length ? { ...base, renamedUids: new Map(task.renamedUids) } : base,
      callingAeTitle: task.callingAeTitle,
    },
    pseudonyms,
    window,
    // A name of the scheduler's own, moved into place only after the outcome is recorded.
    outputIsTemporary: true,
    ...(task.expected ? { expected: task.expected } : {}),
  });
  if (outcome.kind === 'quarantined') return outcome;
  return {
    kind: 'deidentified',
    filePath: deidentifiedPath(outcome.studyInstanceUid, outcome.seriesInstanceUid, outcome.sopInstanceUid),
    // The size as written (deidentify-file.ts counts it); a stat only if it was not counted.
    fileSize: outcome.bytes ?? statSync(task.temporary).size,
    sopInstanceUid: outcome.sopInstanceUid,
    seriesInstanceUid: outcome.seriesInstanceUid,
    studyInstanceUid: outcome.studyInstanceUid,
    profile: outcome.profile,
    audit: auditText(outcome.audit),
    findings: outcome.findings,
    attributes: await scanIndexedAttributes(task.temporary),
    ...(outcome.renamedFrom !== undefined ? { renamedFrom: outcome.renamedFrom } : {}),
    ...(outcome.references?.length ? { references: outcome.references } : {}),
  };
}
