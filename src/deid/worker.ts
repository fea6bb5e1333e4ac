/**
 * The de-identification worker (one per thread of the piscina pool): de-identifies one stored
 * original into a new file under the de-identified root, named by its new UIDs, durably.
 */
import { mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { setPriority } from 'node:os';
import { workerData } from 'piscina';
import { FileSource } from '../dicom/dataset-tree.js';
import { DEIDENTIFIED_DIR } from '../store/object-store.js';
import { makeDirectoryDurablySync, syncDirectorySync } from '../store/sync.js';
import { deidentifyFile } from './deidentify-file.js';
import type { AuditEntry, Finding } from './engine.js';
import type { ProfileOption } from './profile-types.js';
import { Pseudonymizer } from './pseudonyms.js';
import type { SafePrivateElement } from './safe-private.js';

const WORKER_NICENESS = 10;

export interface DeidTask {
  /** The original, absolute. */
  input: string;
  /** A temporary path on the same file system as the output root. */
  temporary: string;
  /** The storage root; the output goes to <root>/deidentified/<Study>/<Series>/<SOP>.dcm. */
  root: string;
  options: ProfileOption[];
  dateShift: { minDays: number; maxDays: number };
  maxAgeYears: number;
  safePrivate?: SafePrivateElement[];
  /** Sync the output and its directory (the pipeline does; benchmarks of the engine alone do not). */
  sync?: boolean;
}

export interface DeidTaskResult {
  /** Relative to the storage root. */
  filePath: string;
  fileSize: number;
  sopInstanceUid: string;
  seriesInstanceUid: string;
  studyInstanceUid: string;
  audit: AuditEntry[];
  findings: Finding[];
}

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
  const outcome = deidentifyFile(task.input, task.temporary, {
    settings: { options: new Set(task.options), dateShift: task.dateShift, maxAgeYears: task.maxAgeYears, safePrivate: task.safePrivate ?? [] },
    pseudonyms,
    sync: task.sync ?? true,
    window,
  });
  const target = join(task.root, DEIDENTIFIED_DIR, outcome.studyInstanceUid, outcome.seriesInstanceUid, `${outcome.sopInstanceUid}.dcm`);
  const durable = task.sync ?? true;
  if (durable) makeDirectoryDurablySync(dirname(target));
  else mkdirSync(dirname(target), { recursive: true });
  renameSync(task.temporary, target);
  if (durable) syncDirectorySync(dirname(target));
  const { size } = statSync(target);
  return {
    filePath: relative(task.root, target),
    fileSize: size,
    sopInstanceUid: outcome.sopInstanceUid,
    seriesInstanceUid: outcome.seriesInstanceUid,
    studyInstanceUid: outcome.studyInstanceUid,
    audit: outcome.audit,
    findings: outcome.findings,
  };
}
