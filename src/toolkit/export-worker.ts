/**
 * The export's worker (one per thread of its piscina pool): a batch of instances, each copied (the
 * node de-identified it already) or de-identified now from its original with the node's settings, and
 * written straight to its place in the layout (a temporary name beside it, then renamed).
 * Naming, creating folders and writing happen here, in parallel; the main thread only keeps the journal.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { workerData } from 'piscina';
import { FileSource } from '../dicom/dataset-tree.js';
import type { BaseSettings } from '../deid/decide.js';
import { planDeidentification, type DeidPlan } from '../deid/deidentify-file.js';
import { AnotherInstanceError, heldOriginal, type OriginalOrigin } from '../deid/original-check.js';
import { residualRiskReason } from '../deid/release-policy.js';
import { Pseudonymizer, PSEUDONYM_FORMS, type PatientKey } from '../deid/pseudonyms.js';
import type { CompiledProfile } from '../deid/rules.js';
import { SettingsCache, type SharedSettings } from '../deid/shared-settings.js';
import type { ReleaseOverride } from '../index/deid-work.js';
import type { FileStamp } from '../index/file-stamp.js';
import { withoutValues } from '../observability/redact.js';
import { loadCodecs } from '../pixels/codecs.js';
import type { ScannedValue } from '../dicom/header-scanner.js';
import { decodeIndexedAttributes } from '../index/attributes.js';
import { layoutPath, LAYOUT_TAGS, type LayoutValues } from './layout.js';

const SPECIFIC_CHARACTER_SET = 0x00080005;

export interface ExportItem {
  id: number;
  /** The node's de-identified copy (absolute), its size as the node wrote it (null for rows from
   * before the size was indexed), with the layout values of its research view. */
  copy?: { path: string; size: number | null; values: LayoutValues };
  /** Otherwise, or when the copy is gone by the time it is copied (retention, a re-send): the original
   * (absolute), its SOP Instance UID, size and stamp when indexed (to tell it changed since), where it
   * came from, and its calling AE title (rules may name it). */
  original?: { path: string; size: number; sopInstanceUid: string; stamp?: FileStamp; origin: OriginalOrigin; callingAeTitle: string; renamedUids?: Array<[string, string]>; override?: ReleaseOverride };
  /** The patient the index files the instance under (its study's), whose pseudonyms the ledger records. */
  ledgerPatient?: PatientKey;
}

export interface ExportBatch {
  items: ExportItem[];
  out: string;
  layout: string;
  /** The node's profiles and base settings, shared once for the whole export (shared-settings.ts). */
  settings: SharedSettings;
  /** deid.quarantineOnFindings: residual risk in the output holds the instance back, as in the node. */
  quarantineOnFindings: boolean;
}

export type ExportItemResult =
  | { id: number; kind: 'written'; path: string; bytes: number; how: 'copied' | 'deidentified'; pseudonyms?: { PatientID?: string; PatientName?: string } }
  | {
      id: number;
      kind: 'held' | 'failed';
      reason: string;
      /** The original is not the indexed file any more: the reason to record it as failed with in the index (what changed, how to recover), as the node would. */
      originalChanged?: string;
      /** The system error's code, when a system call failed (ENOSPC: the disk of --out is full). */
      code?: string;
    };

const pseudonyms = new Pseudonymizer((workerData as { secret: string }).secret);
const window = Buffer.allocUnsafe(FileSource.WINDOW);
const settingsCache = new SettingsCache();
/** Folders this thread made or found (the most recent ones): a series' instances share one. */
const folders = new Set<string>();
const MAX_FOLDERS_REMEMBERED = 4096;

function ensureFolder(folder: string): void {
  if (folders.has(folder)) return;
  mkdirSync(folder, { recursive: true });
  if (folders.size >= MAX_FOLDERS_REMEMBERED) folders.clear();
  folders.add(folder);
}

export default async function exportBatch(batch: ExportBatch): Promise<ExportItemResult[]> {
  // The WebAssembly codecs (tens of MB per thread) are needed only to redact JPEG-LS and JPEG 2000
  // frames: loaded only when there are zones. A codec that cannot load holds back only the instances
  // that need it, with the reason, as in the node.
  const { profiles, passProfiles, base } = settingsCache.get(batch.settings);
  if (base.pixelZones?.length) await loadCodecs().catch(() => undefined);
  return batch.items.map((item) => exportOne(item, batch, base, item.original?.override?.pass ? passProfiles : profiles));
}

function exportOne(item: ExportItem, batch: ExportBatch, base: BaseSettings, profiles: readonly CompiledProfile[]): ExportItemResult {
  try {
    if (item.copy) {
      try {
        return exportCopy(item.id, item.copy, batch, item.ledgerPatient);
      } catch (error) {
        if (!item.original || !(gone(error, item.copy.path) || error instanceof DamagedCopyError)) throw error;
        // Deleted since the export chose it, or cut short: the original is de-identified here, as
        // for an instance whose copy was deleted before the export began.
      }
    }
    if (item.original) return exportDeidentified(item.id, item.original, batch, base, profiles, item.ledgerPatient);
    return { id: item.id, kind: 'failed', reason: 'nothing to export' };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const syscall = (error as NodeJS.ErrnoException).syscall;
    // Codes and system calls only: an error's message may quote a value or a path.
    if (code) return { id: item.id, kind: 'failed', reason: `${code}${syscall ? ` (${syscall})` : ''}`, code };
    return { id: item.id, kind: 'failed', reason: withoutValues((error as Error).message, 160) };
  }
}

/** Whether `error` is a missing file, and `path` the file that is missing. */
function gone(error: unknown, path: string): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(path);
}

/** The node's de-identified copy, copied to its place in the layout. */
function exportCopy(id: number, copy: NonNullable<ExportItem['copy']>, batch: ExportBatch, ledgerPatient: PatientKey | undefined): ExportItemResult {
  const relative = layoutPath(batch.layout, copy.values);
  const target = join(batch.out, relative);
  const bytes = intoFolder(target, () => copyThenRename(copy.path, target, copy.size));
  return { id, kind: 'written', path: relative, bytes, how: 'copied', ...ledgerPseudonyms(copy.values, ledgerPatient) };
}

/**
 * A node's copy whose size is not the one the node wrote: the node writes its copies without a sync
 * each, so an unclean stop can leave one empty or cut short until the node's next start makes it
 * again (recovery.ts). Such a copy is never exported (a run again would count it as done).
 */
class DamagedCopyError extends Error {
  constructor(size: number, expected: number) {
    super(`the node's de-identified copy holds ${size} bytes, not the ${expected} it wrote (an unclean stop cut it short): start the node, which makes it again, then export again`);
    this.name = 'DamagedCopyError';
  }
}

/**
 * The pseudonymous PatientID and PatientName an exported file carries, for the pseudonym ledger. An
 * instance of a study that moved to another patient (a correction sent again for some of its
 * instances) carries its own patient's pseudonyms: recorded under the study's patient, the ledger led
 * from them to the wrong patient (found in the export review). A value in the form of Gantry's
 * pseudonyms that is not this patient's is such a one, and is not recorded; any other value (this
 * patient's, or one a replace rule wrote) is.
 */
function ledgerPseudonyms(values: LayoutValues, patient: PatientKey | undefined): { pseudonyms?: { PatientID?: string; PatientName?: string } } {
  if (patient === undefined) return {};
  const recorded: { PatientID?: string; PatientName?: string } = {};
  for (const kind of ['PatientID', 'PatientName'] as const) {
    const value = values[kind];
    if (value === undefined || value === null) continue;
    const text = String(value);
    const own = kind === 'PatientID' ? pseudonyms.patientId(patient) : pseudonyms.patientName(patient);
    if (text === own || !PSEUDONYM_FORMS[kind].test(text)) recorded[kind] = text;
  }
  return Object.keys(recorded).length > 0 ? { pseudonyms: recorded } : {};
}

/** The original de-identified now: held back (nothing written), or written to its place in the layout. */
function exportDeidentified(
  id: number,
  original: NonNullable<ExportItem['original']>,
  batch: ExportBatch,
  batchBase: BaseSettings,
  profiles: readonly CompiledProfile[],
  ledgerPatient: PatientKey | undefined,
): ExportItemResult {
  // A file imported in place is the user's and may have been changed, replaced (with the same size or
  // not) or deleted since: what it holds now is not the instance the index describes (its selection,
  // its patient in the pseudonym ledger, its journal entry), and could be another patient's. One stat:
  // size and modification time (original-check.ts). A stat that fails otherwise fails by its code.
  const held = heldOriginal(original.path, { size: original.size, ...(original.stamp ? { stamp: original.stamp } : {}) }, original.origin);
  if (held !== undefined) return { id, kind: 'failed', reason: held.brief, originalChanged: held.reason };
  const base = original.renamedUids?.length ? { ...batchBase, renamedUids: new Map(original.renamedUids) } : batchBase;
  let plan: DeidPlan;
  try {
    plan = planDeidentification(original.path, {
      settings: { profiles, base, callingAeTitle: original.callingAeTitle },
      pseudonyms,
      window,
      collect: [...LAYOUT_TAGS.values(), SPECIFIC_CHARACTER_SET],
      expected: { sopInstanceUid: original.sopInstanceUid, origin: original.origin },
    });
  } catch (error) {
    // Replaced since the stat above, or a row without a stamp replaced by another of the same size.
    if (error instanceof AnotherInstanceError) return { id, kind: 'failed', reason: error.held.brief, originalChanged: error.held.reason };
    throw error;
  }
  try {
    if (plan.result.kind === 'quarantined') return { id, kind: 'held', reason: plan.result.reason };
    // The node's rule: residual risk holds the instance back. Decided before anything is written.
    const risk = residualRiskReason(plan.result.findings, batch.quarantineOnFindings, original.override?.ignoreFindings);
    if (risk !== undefined) return { id, kind: 'held', reason: risk };
    const values = layoutValues(plan.result.values);
    const relative = layoutPath(batch.layout, values);
    const target = join(batch.out, relative);
    // Written as target.partial in the target's own folder, then renamed: on this machine's ext4
    // (mounted with discard), files made in one shared folder right after a tree was removed cost
    // several times as much (bench/scale's export: the file creations were most of its time).
    const outcome = intoFolder(target, () => plan.write(target));
    if (outcome.kind === 'quarantined') return { id, kind: 'held', reason: outcome.reason };
    // The size as written (a stat of the file again cost a system call per file).
    return { id, kind: 'written', path: relative, bytes: outcome.bytes ?? statSync(target).size, how: 'deidentified', ...ledgerPseudonyms(values, ledgerPatient) };
  } finally {
    plan.close();
  }
}

/** The layout values of a copy made here, decoded as the research view decodes the node's copies
 * (decodeIndexedAttributes: IS as a number, text by its character set): "0001" and "1" would otherwise
 * name one series two ways, and an instance written by an interrupted run and copied from the node's
 * copy by the next would be exported twice. */
function layoutValues(output: ReadonlyMap<number, string> | undefined): LayoutValues {
  const scanned = new Map<number, ScannedValue>();
  for (const tag of [...LAYOUT_TAGS.values(), SPECIFIC_CHARACTER_SET]) {
    const value = output?.get(tag);
    // The collected text is the value's bytes as latin1: the same bytes again.
    if (value !== undefined) scanned.set(tag, { vr: undefined, bytes: Buffer.from(value, 'latin1'), bigEndian: false });
  }
  const attributes = decodeIndexedAttributes(scanned);
  const values: LayoutValues = {};
  for (const keyword of LAYOUT_TAGS.keys()) {
    const value = attributes[keyword];
    if (value !== undefined) values[keyword] = value;
  }
  return values;
}

/** Runs `write` for `target` once its folder is there; once more if the folder went meanwhile
 * (removed by hand since this thread made it). */
function intoFolder<T>(target: string, write: () => T): T {
  const folder = dirname(target);
  ensureFolder(folder);
  try {
    return write();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    folders.delete(folder);
    ensureFolder(folder);
    return write();
  }
}

/** The node's de-identified copy, copied under a temporary name beside the target, its size checked
 * against the one the node wrote, then renamed; answers the size. */
function copyThenRename(source: string, target: string, expectedSize: number | null): number {
  const partial = `${target}.partial`;
  try {
    copyFileSync(source, partial);
    const size = statSync(partial).size;
    if (expectedSize !== null && size !== expectedSize) throw new DamagedCopyError(size, expectedSize);
    renameSync(partial, target);
    return size;
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
}
