/**
 * `gantry deid --out DIR IN...`: the de-identification engine over files, for dry runs and batches,
 * with the profiles and rules of the config (the calling AE title of a rule is the file's Source
 * Application Entity Title). Inputs are files or folders (read recursively); outputs go to
 * DIR/<Study>/<Series>/<SOP>.dcm under the new UIDs. The originals are never modified. What the node
 * would hold back is held back here too (pixel risk, and residual risk under
 * deid.quarantineOnFindings), with its reason.
 */
import { makeFolder } from '../toolkit/folders.js';
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, renameSync, rmSync, statSync, type Dirent, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { resolveDeidSecret } from '../config/secret.js';
import { compileProfiles } from '../deid/decide.js';
import { deidentifyFile } from '../deid/deidentify-file.js';
import { Pseudonymizer } from '../deid/pseudonyms.js';
import { residualRiskReason } from '../deid/release-policy.js';
import { checkedDeidSettings } from '../deid/settings.js';
import type { Logger } from '../observability/logger.js';
import { pathSegment } from '../store/object-store.js';

export interface DeidRunSummary {
  done: number;
  held: Array<{ path: string; reason: string }>;
  failed: Array<{ path: string; reason: string }>;
  findings: number;
  /** Inputs whose output replaced an earlier input's: the same SOP Instance UID (one instance in
   * two files, two encodings), hence the same de-identified name. */
  replaced: Array<{ path: string; earlier: string }>;
}

export function runDeid(loaded: LoadedConfig, inputs: string[], out: string, log: Logger): DeidRunSummary {
  // A wrong rule, profile or zones file is the config's problem (exit 2), found before anything is written.
  const checked = checkedDeidSettings(loaded);
  const secret = resolveDeidSecret(loaded, resolve(loaded.config.storage.path), log);
  const pseudonyms = new Pseudonymizer(secret);
  const settings = { profiles: compileProfiles(checked.profiles), base: checked.base };
  const summary: DeidRunSummary = { done: 0, held: [], failed: [], findings: 0, replaced: [] };
  /** Which input each output of this run came from. */
  const written = new Map<string, string>();
  // An input that cannot be read (not there, no permission) fails alone, as an unreadable file does:
  // it ended the run before any file, and left the staging folder behind (found in a review).
  const failed = (path: string, reason: string) => summary.failed.push({ path, reason });
  const files = inputs.flatMap((input) => {
    try {
      return filesUnder(resolve(input), failed);
    } catch (error) {
      summary.failed.push({ path: input, reason: (error as Error).message });
      return [];
    }
  });
  // Under retainUIDs an output is named by the input's own UIDs: with --out inside the inputs, laid
  // out by UID, it would replace the input it came from (suspected in a review).
  const inputFiles = new Set(files.map((file) => realOrSelf(file)));
  // Each output is written here first, then moved under its new UIDs, which are known only after. A
  // folder made for this run: it is deleted whole at the end, and DIR may hold folders of the user's.
  makeFolder(out, '--out');
  const staging = mkdtempSync(join(out, '.staging-'));
  for (const path of files) {
    try {
      const temporary = join(staging, `${summary.done + summary.failed.length + summary.held.length}.dcm`);
      const outcome = deidentifyFile(path, temporary, { settings, pseudonyms, outputIsTemporary: true });
      if (outcome.kind === 'quarantined') {
        summary.held.push({ path, reason: outcome.reason });
        continue;
      }
      // The node's rule (deid.quarantineOnFindings): residual risk holds the file back.
      const risk = residualRiskReason(outcome.findings, loaded.config.deid.quarantineOnFindings);
      if (risk !== undefined) {
        rmSync(temporary, { force: true });
        summary.held.push({ path, reason: risk });
        continue;
      }
      const directory = join(out, pathSegment(outcome.studyInstanceUid), pathSegment(outcome.seriesInstanceUid));
      mkdirSync(directory, { recursive: true });
      const target = join(directory, `${pathSegment(outcome.sopInstanceUid)}.dcm`);
      if (!written.has(target) && inputFiles.has(realOrSelf(target))) {
        rmSync(temporary, { force: true });
        summary.failed.push({ path, reason: 'its output would replace an input file (--out among the inputs, and UIDs kept): choose an --out outside the inputs' });
        continue;
      }
      const earlier = written.get(target);
      if (earlier !== undefined) summary.replaced.push({ path, earlier });
      renameSync(temporary, target);
      written.set(target, path);
      summary.done += 1;
      summary.findings += outcome.findings.length;
    } catch (error) {
      summary.failed.push({ path, reason: (error as Error).message });
    }
  }
  rmSync(staging, { recursive: true, force: true });
  return summary;
}

/** The path with its links resolved, or itself when it does not exist. */
function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/**
 * The files to de-identify under an input: itself when it is no folder; within folders, regular files
 * only (a symbolic link to one too), as gantry import reads: a named pipe or a device among them was
 * opened and read, and the run waited on it for ever. Each folder is walked once, as gantry import
 * walks: a link back to a folder above (a loop) ran until the path was too long, and that failed the
 * whole input; a folder linked twice was de-identified twice. A folder that cannot be read fails alone.
 */
function filesUnder(path: string, failed: (path: string, reason: string) => void): string[] {
  if (!statSync(path).isDirectory()) return [path];
  const files: string[] = [];
  const walked = new Set<string>();
  const walk = (directory: string): void => {
    let entries: Dirent[];
    try {
      // As bigints: an inode number may pass 2^53 (XFS, NFS).
      const info = statSync(directory, { bigint: true });
      const identity = `${info.dev}:${info.ino}`;
      if (walked.has(identity)) return;
      walked.add(identity);
      entries = readdirSync(directory, { withFileTypes: true });
    } catch (error) {
      failed(directory, (error as Error).message);
      return;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(directory, entry.name);
      if (entry.isFile()) files.push(full);
      else if (entry.isDirectory()) walk(full);
      else if (entry.isSymbolicLink()) {
        // A link to nothing, or to itself (ELOOP), is passed over, as a pipe is.
        const target = linkTarget(full);
        if (target?.isDirectory()) walk(full);
        else if (target?.isFile()) files.push(full);
      }
    }
  };
  walk(path);
  return files;
}

function linkTarget(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}
