/**
 * The de-identification worker (one per thread of the piscina pool): de-identifies one stored
 * original into a new file under the de-identified root, named by its new UIDs, durably.
 */
import { renameSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { workerData } from 'piscina';
import { DEIDENTIFIED_DIR } from '../store/object-store.js';
import { makeDirectoryDurablySync, syncDirectorySync } from '../store/sync.js';
import { deidentifyFile } from './deidentify-file.js';
import type { AuditEntry, Finding } from './engine.js';
import type { ProfileOption } from './profile-types.js';
import { Pseudonymizer } from './pseudonyms.js';

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

export default function deidentify(task: DeidTask): DeidTaskResult {
  const outcome = deidentifyFile(task.input, task.temporary, {
    settings: { options: new Set(task.options), dateShift: task.dateShift, maxAgeYears: task.maxAgeYears },
    pseudonyms,
    sync: true,
  });
  const target = join(task.root, DEIDENTIFIED_DIR, outcome.studyInstanceUid, outcome.seriesInstanceUid, `${outcome.sopInstanceUid}.dcm`);
  makeDirectoryDurablySync(dirname(target));
  renameSync(task.temporary, target);
  syncDirectorySync(dirname(target));
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
