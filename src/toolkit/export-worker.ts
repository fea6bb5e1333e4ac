/**
 * The export's worker (one per thread of its piscina pool): a batch of instances, each copied (the
 * node de-identified it already) or de-identified now from its original with the node's settings, and
 * written straight to its place in the layout (a temporary name in the output folder, then renamed).
 * Naming, creating folders and writing happen here, in parallel; the main thread only keeps the journal.
 */
import { copyFileSync, mkdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { workerData } from 'piscina';
import { FileSource } from '../dicom/dataset-tree.js';
import type { BaseSettings } from '../deid/decide.js';
import { deidentifyFile } from '../deid/deidentify-file.js';
import { residualRiskReason } from '../deid/settings.js';
import { Pseudonymizer } from '../deid/pseudonyms.js';
import type { CompiledProfile } from '../deid/rules.js';
import { SettingsCache, type SharedSettings } from '../deid/shared-settings.js';
import type { ReleaseOverride } from '../index/deid-work.js';
import { withoutValues } from '../observability/redact.js';
import { loadCodecs } from '../pixels/codecs.js';
import { layoutPath, LAYOUT_TAGS, type LayoutValues } from './layout.js';

export interface ExportItem {
  id: number;
  /** The node's de-identified copy (absolute), with the layout values of its research view. */
  copy?: { path: string; values: LayoutValues };
  /** Otherwise: the original (absolute) and its calling AE title (rules may name it). */
  original?: { path: string; callingAeTitle: string; renamedUids?: Array<[string, string]>; override?: ReleaseOverride };
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
  | { id: number; kind: 'held' | 'failed'; reason: string };

const pseudonyms = new Pseudonymizer((workerData as { secret: string }).secret);
const window = Buffer.allocUnsafe(FileSource.WINDOW);
const settingsCache = new SettingsCache();
let sequence = 0;
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

function exportOne(item: ExportItem, batch: ExportBatch, batchBase: BaseSettings, profiles: readonly CompiledProfile[]): ExportItemResult {
  sequence += 1;
  // In the output folder, so the rename stays on one file system; a dot name no layout produces.
  const temporary = join(batch.out, `.gantry-export-${process.pid}-${threadId}-${sequence}.tmp`);
  try {
    if (item.copy) {
      copyFileSync(item.copy.path, temporary);
      return place(item.id, temporary, layoutPath(batch.layout, item.copy.values), batch.out, 'copied');
    }
    if (!item.original) return { id: item.id, kind: 'failed', reason: 'nothing to export' };
    const base = item.original.renamedUids?.length ? { ...batchBase, renamedUids: new Map(item.original.renamedUids) } : batchBase;
    const result = deidentifyFile(item.original.path, temporary, {
      settings: { profiles, base, callingAeTitle: item.original.callingAeTitle },
      pseudonyms,
      window,
      outputIsTemporary: true,
      collect: [...LAYOUT_TAGS.values()],
    });
    if (result.kind === 'quarantined') return { id: item.id, kind: 'held', reason: result.reason };
    // The node's rule: residual risk holds the instance back.
    const risk = residualRiskReason(result.findings, batch.quarantineOnFindings, item.original.override?.ignoreFindings);
    if (risk !== undefined) {
      unlinkSync(temporary);
      return { id: item.id, kind: 'held', reason: risk };
    }
    const values: LayoutValues = {};
    for (const [keyword, tag] of LAYOUT_TAGS) {
      const value = result.values?.get(tag);
      if (value !== undefined) values[keyword] = value;
    }
    const written = place(item.id, temporary, layoutPath(batch.layout, values), batch.out, 'deidentified');
    if (written.kind === 'written') written.pseudonyms = { ...(values.PatientID !== undefined ? { PatientID: String(values.PatientID) } : {}), ...(values.PatientName !== undefined ? { PatientName: String(values.PatientName) } : {}) };
    return written;
  } catch (error) {
    try {
      unlinkSync(temporary);
    } catch {
      // not written
    }
    const code = (error as NodeJS.ErrnoException).code;
    const syscall = (error as NodeJS.ErrnoException).syscall;
    // Codes and system calls only: an error's message may quote a value or a path.
    return { id: item.id, kind: 'failed', reason: code ? `${code}${syscall ? ` (${syscall})` : ''}` : withoutValues((error as Error).message, 160) };
  }
}

function place(id: number, temporary: string, relative: string, out: string, how: 'copied' | 'deidentified'): ExportItemResult {
  const target = join(out, relative);
  const folder = dirname(target);
  ensureFolder(folder);
  try {
    renameSync(temporary, target);
  } catch (error) {
    // The folder went since this thread made it (removed by hand): make it again, once.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    folders.delete(folder);
    ensureFolder(folder);
    renameSync(temporary, target);
  }
  return { id, kind: 'written', path: relative, bytes: statSync(target).size, how };
}
