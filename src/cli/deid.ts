/**
 * `gantry deid --out DIR IN...`: the de-identification engine over files, for dry runs and batches,
 * with the profiles and rules of the config (the calling AE title of a rule is the file's Source
 * Application Entity Title). Inputs are files or folders (read recursively); outputs go to
 * DIR/<Study>/<Series>/<SOP>.dcm under the new UIDs. The originals are never modified. What the node
 * would hold back is held back here too (pixel risk, and residual risk under
 * deid.quarantineOnFindings), with its reason. Under retainUIDs the references to inputs that
 * redaction gave new UIDs follow them, as the node's do (followRenames).
 */
import { makeFolder } from '../toolkit/folders.js';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, renameSync, rmSync, statSync, type Dirent, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, type LoadedConfig } from '../config/load.js';
import { DATABASE_FILE } from '../db/database.js';
import { refuseAnotherSecret } from '../index/secret-record.js';
import { openCommandIndex } from './command-index.js';
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
  refuseAnotherSecretThanTheNodes(loaded, secret);
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
  let staged = 0;
  const stagingFile = () => join(staging, `${(staged += 1)}.dcm`);
  /** Under retainUIDs: the outputs written, with the references each wrote; the redacted inputs'
   * renames, original SOP Instance UID → the UID its output got. */
  const outputs: WrittenOutput[] = [];
  const renames = new Map<string, string>();
  for (const path of files) {
    try {
      const temporary = stagingFile();
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
      if (outcome.renamedFrom !== undefined) renames.set(outcome.renamedFrom, outcome.sopInstanceUid);
      if (outcome.references?.length) outputs.push({ path, target, references: outcome.references, ...(outcome.renamedFrom !== undefined ? { renamedFrom: outcome.renamedFrom } : {}) });
    } catch (error) {
      summary.failed.push({ path, reason: (error as Error).message });
    }
  }
  // An output another input replaced since (the same SOP Instance UID) is that input's now.
  followRenames(outputs.filter((output) => written.get(output.target) === output.path), renames, { settings, pseudonyms, stagingFile }, summary);
  rmSync(staging, { recursive: true, force: true });
  return summary;
}

type DeidFileSettings = { profiles: ReturnType<typeof compileProfiles>; base: ReturnType<typeof checkedDeidSettings>['base'] };

interface WrittenOutput {
  path: string;
  target: string;
  /** Each instance it references: the original UID, and the UID written for it. */
  references: ReadonlyArray<readonly [string, string]>;
  renamedFrom?: string;
}

/**
 * Under retainUIDs a redacted instance gets a UID of its own (its pixels changed), and references to
 * it must follow, as the node's do (renamedUids). Which inputs are redacted is known only once each is
 * done: the outputs that wrote a reference to one under its original UID are made again, knowing the
 * renames (one pass: a rename depends on the pixels alone, never on references). Without it an SR, a
 * presentation state or a derived image in the same output named UIDs no output had (found in the UID
 * review).
 */
function followRenames(
  outputs: readonly WrittenOutput[],
  renames: ReadonlyMap<string, string>,
  run: { settings: DeidFileSettings; pseudonyms: Pseudonymizer; stagingFile: () => string },
  summary: DeidRunSummary,
): void {
  if (renames.size === 0) return;
  for (const output of outputs) {
    if (!output.references.some(([original, written]) => renames.has(original) && renames.get(original) !== written)) continue;
    const others = new Map([...renames].filter(([original]) => original !== output.renamedFrom));
    const temporary = run.stagingFile();
    try {
      const settings = { ...run.settings, base: { ...run.settings.base, renamedUids: others } };
      const outcome = deidentifyFile(output.path, temporary, { settings, pseudonyms: run.pseudonyms, outputIsTemporary: true });
      if (outcome.kind === 'quarantined') throw new Error(`held when made again with the renames of the redacted instances it references: ${outcome.reason}`);
      renameSync(temporary, output.target);
    } catch (error) {
      rmSync(temporary, { force: true });
      rmSync(output.target, { force: true });
      summary.done -= 1;
      summary.failed.push({ path: output.path, reason: `its references to redacted instances could not be made to follow their new UIDs: ${(error as Error).message}` });
    }
  }
}

/**
 * With the node's storage at storage.path, its secret: gantry deid gives the node's pseudonyms (the
 * documented way to de-identify files as the node would), and another secret (a stale variable in the
 * operator's shell) gave one patient two, silently (found in the secrets review). Without an index
 * there, nothing to compare with.
 */
function refuseAnotherSecretThanTheNodes(loaded: LoadedConfig, secret: string): void {
  if (!existsSync(join(resolve(loaded.config.storage.path), DATABASE_FILE))) return;
  const { db } = openCommandIndex(loaded, 'existing');
  try {
    refuseAnotherSecret(db, secret, loaded.source, "gantry deid's outputs");
  } catch (error) {
    throw new ConfigError(loaded.source, [(error as Error).message]);
  } finally {
    db.close();
  }
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
