/**
 * gantry export: the de-identified form of a selection of the session, written under a folder in a
 * configurable layout (default <PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm,
 * every name taken from the de-identified copy, so pseudonymised). An instance the node de-identified
 * already is copied; one still waiting (an import the node has not reached, or no node at all) is
 * de-identified here by the node's own worker, with the node's settings, zones included. Instances held
 * back (quarantined, failed, or held by this de-identification) are counted with their reason, never
 * written. Each file is written under a temporary name and renamed; what was written is recorded in
 * the index (export_items), so an interrupted export resumes, and pages of the index are read one at a
 * time, so memory stays flat whatever the size of the session.
 */
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Piscina } from 'piscina';
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import type { DeidSchedulerSettings } from '../pipeline/deidentify.js';
import type { DeidTask, DeidTaskResult } from '../deid/worker.js';
import type { IndexedAttributes } from '../index/attributes.js';
import type { Progress } from './progress.js';

export const DEFAULT_LAYOUT = '{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm';
/** The keywords a layout may use: the de-identified copy's indexed attributes. */
export const LAYOUT_KEYWORDS = ['PatientID', 'PatientName', 'StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID', 'Modality', 'StudyDate', 'SeriesNumber', 'InstanceNumber', 'StudyID', 'AccessionNumber'] as const;
type LayoutKeyword = (typeof LAYOUT_KEYWORDS)[number];
export type LayoutValues = Partial<Record<LayoutKeyword, string | number | null>>;

const PAGE = 500;
const TEMPORARY_DIR = '.gantry-export';

export interface ExportSelection {
  studyInstanceUids?: string[];
  seriesInstanceUids?: string[];
  patientIds?: string[];
  modalities?: string[];
}

export interface ExportOptions {
  out: string;
  selection: ExportSelection;
  layout: string;
  /** The node's de-identification worker pool (src/deid/worker.ts), for instances not yet de-identified. */
  pool: Piscina;
  settings: DeidSchedulerSettings;
  storagePath: string;
  /** Tasks in flight at once. */
  concurrency: number;
  progress?: Progress;
}

export interface ExportSummary {
  selected: number;
  written: number;
  bytes: number;
  /** Written by an earlier run of the same export: skipped. */
  alreadyExported: number;
  /** Copied from the node's de-identified copy; the others were de-identified here. */
  copied: number;
  deidentified: number;
  held: number;
  failed: number;
  /** Reasons for held and failed instances, with counts. */
  problems: Map<string, number>;
}

/** What a layout names must be a keyword it knows: said at once, not after an hour of export. */
export function checkLayout(layout: string): void {
  const unknown = [...layout.matchAll(/\{([^}]*)\}/g)].map((match) => match[1] as string).filter((keyword) => !(LAYOUT_KEYWORDS as readonly string[]).includes(keyword));
  if (unknown.length > 0) throw new Error(`--layout: unknown ${unknown.map((keyword) => `{${keyword}}`).join(', ')}; allowed: ${LAYOUT_KEYWORDS.map((keyword) => `{${keyword}}`).join(' ')}`);
  if (!layout.includes('{SOPInstanceUID}')) throw new Error('--layout: must contain {SOPInstanceUID}, or instances would overwrite each other');
}

/** A layout filled in: each value made safe as one path segment (no separators, no "..", no control
 * characters), an empty one written as "_". */
export function layoutPath(layout: string, values: LayoutValues): string {
  return layout.replace(/\{([^}]*)\}/g, (_, keyword: string) => {
    const raw = String(values[keyword as LayoutKeyword] ?? '').trim();
    const safe = raw.replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_').replace(/^\.+/, '_');
    return safe === '' ? '_' : safe.slice(0, 128);
  });
}

interface SelectedInstance {
  id: number;
  filePath: string;
  callingAeTitle: string;
  state: string;
  deidFilePath: string | null;
  /** The research view of the copy (set when the node de-identified it). */
  PatientID: string | null;
  PatientName: string | null;
  StudyInstanceUID: string | null;
  SeriesInstanceUID: string | null;
  SOPInstanceUID: string | null;
  Modality: string | null;
  StudyDate: string | null;
  SeriesNumber: number | null;
  InstanceNumber: number | null;
  StudyID: string | null;
  AccessionNumber: string | null;
  deidFileSize: number | null;
}

export class ExportJournal {
  private readonly page: Statement;
  private readonly done: Statement;
  private readonly countSelected: Statement;
  private readonly countDone: Statement;
  private readonly parameters: Record<string, string>;

  constructor(
    private readonly db: Db,
    private readonly outDir: string,
    selection: ExportSelection,
  ) {
    const filter = selectionFilter(selection);
    this.parameters = filter.parameters;
    const from = `FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk JOIN patients p ON p.id = st.patient_pk`;
    // The research view holds the copy's pseudonymised names, for the layout of copies.
    const research = `LEFT JOIN r_instances ri ON ri.id = i.id LEFT JOIN r_series rse ON rse.id = ri.series_pk
      LEFT JOIN r_studies rst ON rst.id = rse.study_pk LEFT JOIN r_patients rp ON rp.id = rst.patient_pk`;
    const where = `WHERE i.state IN ('received', 'deidentified', 'forwarded') ${filter.where}`;
    const exported = `SELECT 1 FROM export_items e WHERE e.out_dir = @outDir AND e.instance_pk = i.id`;
    this.page = db.prepare(`
      SELECT i.id, i.file_path AS filePath, i.calling_ae_title AS callingAeTitle, i.state,
        CASE WHEN i.state != 'received' AND i.deid_deleted_at IS NULL THEN i.deid_file_path END AS deidFilePath, i.deid_file_size AS deidFileSize,
        rp.patient_id AS PatientID, rp.patient_name AS PatientName, rst.study_instance_uid AS StudyInstanceUID,
        rse.series_instance_uid AS SeriesInstanceUID, ri.sop_instance_uid AS SOPInstanceUID, rse.modality AS Modality,
        rst.study_date AS StudyDate, rse.series_number AS SeriesNumber, ri.instance_number AS InstanceNumber,
        rst.study_id AS StudyID, rst.accession_number AS AccessionNumber
      ${from} ${research} ${where} AND i.id > @afterId AND NOT EXISTS (${exported})
      ORDER BY i.id LIMIT ${PAGE}`);
    this.countSelected = db.prepare(`SELECT count(*) AS count ${from} ${where}`);
    this.countDone = db.prepare(`SELECT count(*) AS count ${from} ${where} AND EXISTS (${exported})`);
    this.done = db.prepare(`INSERT INTO export_items (out_dir, instance_pk, path, exported_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (out_dir, instance_pk) DO UPDATE SET path = excluded.path, exported_at = excluded.exported_at`);
  }

  counts(): { selected: number; done: number } {
    const selected = (this.countSelected.get(this.parameters) as { count: number }).count;
    const done = (this.countDone.get({ ...this.parameters, outDir: this.outDir }) as { count: number }).count;
    return { selected, done };
  }

  nextPage(afterId: number): SelectedInstance[] {
    return this.page.all({ ...this.parameters, outDir: this.outDir, afterId }) as SelectedInstance[];
  }

  record(written: ReadonlyArray<{ id: number; path: string }>, now = Date.now()): void {
    this.db.transaction(() => {
      for (const item of written) this.done.run(this.outDir, item.id, item.path, now);
    })();
  }
}

function selectionFilter(selection: ExportSelection): { where: string; parameters: Record<string, string> } {
  const clauses: string[] = [];
  const parameters: Record<string, string> = {};
  const add = (column: string, name: string, values: string[] | undefined) => {
    if (!values || values.length === 0) return;
    parameters[name] = JSON.stringify(values);
    clauses.push(`AND ${column} IN (SELECT value FROM json_each(@${name}))`);
  };
  add('st.study_instance_uid', 'studies', selection.studyInstanceUids);
  add('se.series_instance_uid', 'series', selection.seriesInstanceUids);
  add('p.patient_id', 'patients', selection.patientIds);
  add('se.modality', 'modalities', selection.modalities);
  return { where: clauses.join(' '), parameters };
}

export async function exportSelection(db: Db, options: ExportOptions): Promise<ExportSummary> {
  const out = resolve(options.out);
  const storage = resolve(options.storagePath) + sep;
  if ((out + sep).startsWith(storage)) throw new Error(`--out ${options.out} lies inside storage.path: choose a folder outside the session`);
  checkLayout(options.layout);
  const temporaryDir = join(out, TEMPORARY_DIR);
  await rm(temporaryDir, { recursive: true, force: true }); // what an interrupted run left half-written
  await mkdir(temporaryDir, { recursive: true });
  const journal = new ExportJournal(db, out, options.selection);
  const { selected, done } = journal.counts();
  const summary: ExportSummary = { selected, written: 0, bytes: 0, alreadyExported: done, copied: 0, deidentified: 0, held: 0, failed: 0, problems: new Map() };
  options.progress?.setTotal(selected - done);
  let pending: Array<{ id: number; path: string }> = [];
  const inFlight = new Set<Promise<void>>();
  let sequence = 0;
  const flush = () => {
    journal.record(pending);
    pending = [];
  };
  const place = async (instance: SelectedInstance, values: LayoutValues, temporary: string, bytes: number) => {
    const relative = layoutPath(options.layout, values);
    const target = join(out, relative);
    await mkdir(dirname(target), { recursive: true });
    await rename(temporary, target);
    pending.push({ id: instance.id, path: relative });
    summary.written += 1;
    summary.bytes += bytes;
    options.progress?.add(1, bytes);
  };
  const held = (kind: 'held' | 'failed', reason: string) => {
    summary[kind] += 1;
    const key = `${kind}: ${reason.replace(/0x[0-9a-f]+|\b\d{3,}\b/gi, 'N')}`;
    summary.problems.set(key, (summary.problems.get(key) ?? 0) + 1);
    options.progress?.add(1);
  };
  const one = async (instance: SelectedInstance) => {
    sequence += 1;
    const temporary = join(temporaryDir, `${process.pid}-${sequence}.dcm`);
    if (instance.deidFilePath !== null && instance.SOPInstanceUID !== null) {
      try {
        await copyFile(join(options.storagePath, instance.deidFilePath), temporary);
        summary.copied += 1;
        await place(instance, instance, temporary, instance.deidFileSize ?? 0);
        return;
      } catch (error) {
        // The copy went (retention, a lost disk): de-identify the original instead.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    const task: DeidTask = {
      input: join(options.storagePath, instance.filePath),
      temporary,
      profiles: options.settings.profiles,
      base: options.settings.base,
      callingAeTitle: instance.callingAeTitle,
    };
    let result: DeidTaskResult;
    try {
      result = (await options.pool.run(task)) as DeidTaskResult;
    } catch (error) {
      held('failed', (error as Error).message.slice(0, 120));
      return;
    }
    if (result.kind === 'quarantined') {
      held('held', result.reason);
      return;
    }
    summary.deidentified += 1;
    await place(instance, layoutValues(result.attributes), temporary, result.fileSize);
  };
  let afterId = 0;
  for (;;) {
    const page = journal.nextPage(afterId);
    if (page.length === 0) break;
    afterId = (page[page.length - 1] as SelectedInstance).id;
    for (const instance of page) {
      while (inFlight.size >= options.concurrency) await Promise.race(inFlight);
      const running: Promise<void> = one(instance).finally(() => inFlight.delete(running));
      inFlight.add(running);
    }
    await Promise.all(inFlight);
    flush();
  }
  await rm(temporaryDir, { recursive: true, force: true });
  options.progress?.finish();
  return summary;
}

function layoutValues(attributes: IndexedAttributes): LayoutValues {
  const values: LayoutValues = {};
  for (const keyword of LAYOUT_KEYWORDS) {
    const value = attributes[keyword as keyof IndexedAttributes];
    if (value !== undefined) values[keyword] = value;
  }
  return values;
}
