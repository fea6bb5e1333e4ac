/**
 * The de-identification worker (one per thread of the piscina pool): decides and de-identifies one
 * stored original into a new file under the de-identified root, named by its new UIDs.
 */
import { mkdirSync, renameSync, statSync } from 'node:fs';
import { setPriority } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { workerData } from 'piscina';
import { FileSource } from '../dicom/dataset-tree.js';
import { DEIDENTIFIED_DIR } from '../store/object-store.js';
import { makeDirectoryDurablySync, syncDirectorySync } from '../store/sync.js';
import { compileProfiles, type BaseSettings } from './decide.js';
import { deidentifyFile } from './deidentify-file.js';
import type { AuditEntry, Finding } from './engine.js';
import { Pseudonymizer } from './pseudonyms.js';
import type { ProfileConfig } from './rules.js';

const WORKER_NICENESS = 10;

export interface DeidTask {
  /** The original, absolute. */
  input: string;
  /** A temporary path on the same file system as the output root. */
  temporary: string;
  /** The storage root; the output goes to <root>/deidentified/<Study>/<Series>/<SOP>.dcm. */
  root: string;
  /** Named profiles first, the default last (settings.ts). */
  profiles: ProfileConfig[];
  base: BaseSettings;
  callingAeTitle: string;
  /** Sync the output and its directory (not needed when the copy can be made again). */
  sync?: boolean;
}

export type DeidTaskResult =
  | {
      kind: 'deidentified';
      /** Relative to the storage root. */
      filePath: string;
      fileSize: number;
      sopInstanceUid: string;
      seriesInstanceUid: string;
      studyInstanceUid: string;
      profile: string;
      audit: AuditEntry[];
      findings: Finding[];
    }
  | { kind: 'quarantined'; reason: string };

const pseudonyms = new Pseudonymizer((workerData as { secret: string }).secret);
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

export default function deidentify(task: DeidTask): DeidTaskResult {
  const durable = task.sync ?? true;
  const outcome = deidentifyFile(task.input, task.temporary, {
    settings: { profiles: compileProfiles(task.profiles), base: task.base, callingAeTitle: task.callingAeTitle },
    pseudonyms,
    sync: durable,
    window,
  });
  if (outcome.kind === 'quarantined') return outcome;
  const target = join(task.root, DEIDENTIFIED_DIR, outcome.studyInstanceUid, outcome.seriesInstanceUid, `${outcome.sopInstanceUid}.dcm`);
  if (durable) makeDirectoryDurablySync(dirname(target));
  else mkdirSync(dirname(target), { recursive: true });
  renameSync(task.temporary, target);
  if (durable) syncDirectorySync(dirname(target));
  return {
    kind: 'deidentified',
    filePath: relative(task.root, target),
    fileSize: statSync(target).size,
    sopInstanceUid: outcome.sopInstanceUid,
    seriesInstanceUid: outcome.seriesInstanceUid,
    studyInstanceUid: outcome.studyInstanceUid,
    profile: outcome.profile,
    audit: outcome.audit,
    findings: outcome.findings,
  };
}
