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
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { existsSync, rmdirSync, rmSync } from 'node:fs';
import { opendir, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Piscina } from 'piscina';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import { DEID_THREAD_HEAP_MB, largeInstancePool, outOfMemory, outOfMemoryReason } from '../deid/large-instances.js';
import { checkedDeidSettings } from '../deid/settings.js';
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import { shareSettings } from '../deid/shared-settings.js';
import { stampFromColumns } from '../index/file-stamp.js';
import { originOf } from '../deid/original-check.js';
import { STORED_FILE_MODE } from '../store/object-store.js';
import { DeidWork, renamesExcept, type ReleaseOverride, type StudyRename } from '../index/deid-work.js';
import { PseudonymLedger, type PseudonymMapping } from '../index/pseudonym-ledger.js';
import { refuseAnotherSecret } from '../index/secret-record.js';
import { opensSeal, sealedSecret, secretDigest } from '../config/secret.js';
import type { DeidSchedulerSettings } from '../pipeline/deidentify.js';
import type { ExportBatch, ExportItem, ExportItemResult } from './export-worker.js';
import { checkLayout, DEFAULT_LAYOUT, LAYOUT_KEYWORDS, type LayoutKeyword, type LayoutValues } from './layout.js';
import { makeFolder } from './folders.js';
import { tally, type Progress } from './progress.js';
import { workerPool } from '../worker-loading.js';
import { commandLogger } from '../observability/logger.js';

export { DEFAULT_LAYOUT } from './layout.js';

const PAGE = 512;
/** Instances per worker task: a message per batch, not per file. */
const BATCH = 32;
/** The export's identity in its folder: the journal is kept per identity, so a folder emptied or
 * deleted starts afresh, and the same folder resumes. */
const MARKER_FILE = '.gantry-export.json';

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
  /** A pool of export workers (export-worker.ts), given the de-identification secret. */
  pool: Piscina;
  /** Where an instance that ran a thread of `pool` out of heap is exported once more: one export
   * worker with a larger heap (deid.largeInstanceHeapMb). Absent: such an instance fails at once. */
  largeInstances?: { pool: Piscina; heapMb: number };
  settings: DeidSchedulerSettings;
  storagePath: string;
  /** Batches in flight at once. */
  concurrency: number;
  /** The de-identification secret, checked against the folder's marker (sealed there, never as it
   * is): a run again with another secret would give the same patients other pseudonyms in the same
   * export. */
  secret?: string;
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

/** A selected instance, with the research view of its copy (set when the node de-identified it) under
 * the layout's keywords. */
type SelectedInstance = Record<LayoutKeyword, string | number | null> & {
  id: number;
  /** The original's SOP Instance UID (SOPInstanceUID is the research view's). */
  originalSopInstanceUid: string;
  studyPk: number;
  /** An operator's release from quarantine (JSON), applied as the node applies it. */
  override: string | null;
  filePath: string;
  /** The original's size when it was indexed, and its stamp (null for rows indexed before migration 019). */
  fileSize: number;
  fileMtimeNs: string | null;
  fileIno: string | null;
  /** Indexed by gantry import (1), or received (0). */
  imported: number;
  /** Which copy of the instance the row holds (DeidWork.markHeld checks it). */
  receivedAt: number;
  callingAeTitle: string;
  state: string;
  /** Why the node quarantined or failed it (free of values, as stored). */
  stateReason: string | null;
  deidFilePath: string | null;
  deidFileSize: number | null;
  /** When retention deleted the original (storage.retainOriginals). */
  originalDeletedAt: number | null;
  /** The original's PatientID and PatientName (for the pseudonym ledger; never in a path or a log). */
  originalPatientId: string | null;
  originalPatientName: string | null;
  originalIssuerOfPatientId: string;
  originalStudyInstanceUid: string;
};

/** Which original PatientID and PatientName an exported file's pseudonyms stand for, with the issuer
 * of the patient's ID (pseudonyms.ts derives both from the issuer and the ID). */
function ledgerEntries(instance: SelectedInstance, pseudonyms: { PatientID?: string; PatientName?: string } | undefined): PseudonymMapping[] {
  const issuerOfPatientId = instance.originalIssuerOfPatientId;
  const entries: PseudonymMapping[] = [];
  if (instance.originalPatientId && pseudonyms?.PatientID) entries.push({ kind: 'PatientID', original: instance.originalPatientId, pseudonym: pseudonyms.PatientID, issuerOfPatientId });
  if (instance.originalPatientName && pseudonyms?.PatientName) entries.push({ kind: 'PatientName', original: instance.originalPatientName, pseudonym: pseudonyms.PatientName, issuerOfPatientId });
  return entries;
}

/** A file the export wrote, for its journal: exported_at holds the row's receivedAt (record()). */
interface WrittenItem {
  id: number;
  path: string;
  bytes: number;
  receivedAt: number;
}

export class ExportJournal {
  private readonly page: Statement;
  private readonly done: Statement;
  private readonly exportedPath: Statement;
  private readonly journalPage: Statement;
  private readonly forget: Statement;
  private readonly countSelected: Statement;
  private readonly countDone: Statement;
  private readonly parameters: Record<string, string | number>;

  constructor(
    private readonly db: Db,
    private readonly outDir: string,
    selection: ExportSelection,
  ) {
    const filter = selectionFilter(selection);
    // The instances there are when the export starts: one the node receives while it runs waits for a
    // run again. Paged on to the end, an export counted and wrote them beyond the selection it had
    // counted ("exported 899 instance(s) (of 675 selected)", found in the concurrency review).
    const lastId = db.prepare('SELECT coalesce(max(id), 0) FROM instances').pluck().get() as number;
    this.parameters = { ...filter.parameters, lastId };
    const from = `FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk JOIN patients p ON p.id = st.patient_pk`;
    // The research view holds the copy's pseudonymised names, for the layout of copies.
    const research = `LEFT JOIN r_instances ri ON ri.id = i.id LEFT JOIN r_series rse ON rse.id = ri.series_pk
      LEFT JOIN r_studies rst ON rst.id = rse.study_pk LEFT JOIN r_patients rp ON rp.id = rst.patient_pk`;
    // Quarantined and failed instances are selected too: counted as held back with their reason.
    const where = `WHERE i.state IN ('received', 'deidentified', 'forwarded', 'quarantined', 'failed') AND i.id <= @lastId ${filter.where}`;
    // Exported since it was last received: an instance sent again (replaced) is exported again.
    const exported = `SELECT 1 FROM export_items e WHERE e.out_dir = @outDir AND e.instance_pk = i.id AND e.exported_at >= i.received_at`;
    // Without a selection, pages are read in id order from the table itself: through the state index
    // SQLite gathered and sorted every row after the page's start for each page of 512 (11.7 ms a
    // page at the start of 10,000 instances against 3.9 ms; quadratic in the session's size).
    // A selection keeps the planner's choice: its study or series narrows the rows first.
    const pageFrom = filter.where ? from : from.replace('FROM instances i', 'FROM instances i NOT INDEXED');
    this.page = db.prepare(`
      SELECT i.id, i.sop_instance_uid AS originalSopInstanceUid, st.id AS studyPk, i.file_path AS filePath, i.file_size AS fileSize, i.file_mtime_ns AS fileMtimeNs, i.file_ino AS fileIno,
        i.source_path IS NOT NULL AS imported, i.received_at AS receivedAt, i.deid_override AS override, i.calling_ae_title AS callingAeTitle, i.state, i.state_reason AS stateReason,
        CASE WHEN i.state != 'received' AND i.deid_deleted_at IS NULL THEN i.deid_file_path END AS deidFilePath, i.deid_file_size AS deidFileSize,
        i.original_deleted_at AS originalDeletedAt,
        rp.patient_id AS PatientID, rp.patient_name AS PatientName, rst.study_instance_uid AS StudyInstanceUID,
        rse.series_instance_uid AS SeriesInstanceUID, ri.sop_instance_uid AS SOPInstanceUID, rse.modality AS Modality,
        rst.study_date AS StudyDate, rse.series_number AS SeriesNumber, ri.instance_number AS InstanceNumber,
        rst.study_id AS StudyID, rst.accession_number AS AccessionNumber,
        p.patient_id AS originalPatientId, p.patient_name AS originalPatientName, p.issuer_of_patient_id AS originalIssuerOfPatientId,
        st.study_instance_uid AS originalStudyInstanceUid
      ${pageFrom} ${research} ${where} AND i.id > @afterId AND NOT EXISTS (${exported})
      ORDER BY i.id LIMIT ${PAGE}`);
    this.countSelected = db.prepare(`SELECT count(*) AS count ${from} ${where}`);
    this.countDone = db.prepare(`SELECT count(*) AS count ${from} ${where} AND EXISTS (${exported})`);
    this.done = db.prepare(`INSERT INTO export_items (out_dir, instance_pk, path, exported_at, bytes) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (out_dir, instance_pk) DO UPDATE SET path = excluded.path, exported_at = excluded.exported_at, bytes = excluded.bytes`);
    this.journalPage = db.prepare(`SELECT instance_pk AS id, path, bytes FROM export_items WHERE out_dir = ? AND instance_pk > ? ORDER BY instance_pk LIMIT ${PAGE}`);
    this.forget = db.prepare(`DELETE FROM export_items WHERE out_dir = ? AND instance_pk = ?`);
    this.exportedPath = db.prepare(`SELECT path FROM export_items WHERE out_dir = ? AND instance_pk = ?`).pluck();
  }

  counts(): { selected: number; done: number } {
    const selected = (this.countSelected.get(this.parameters) as { count: number }).count;
    const done = (this.countDone.get({ ...this.parameters, outDir: this.outDir }) as { count: number }).count;
    return { selected, done };
  }

  nextPage(afterId: number): SelectedInstance[] {
    return this.page.all({ ...this.parameters, outDir: this.outDir, afterId }) as SelectedInstance[];
  }

  /**
   * Records what was written; answers the paths (relative to the folder) of earlier exports of these
   * instances that were written elsewhere (an instance received again under another PatientID).
   * Each is stamped with the receivedAt of the row it was exported from, not the clock: an instance
   * the node receives again while its old bytes are being exported is then newer than its export,
   * and the next run writes it again.
   */
  record(written: ReadonlyArray<WrittenItem>): string[] {
    const replaced: string[] = [];
    // IMMEDIATE: it reads before it writes, and a running node's commit in between would fail a
    // deferred transaction's first write at once (SQLITE_BUSY_SNAPSHOT) instead of waiting.
    this.db.transaction(() => {
      for (const item of written) {
        const earlier = this.exportedPath.get(this.outDir, item.id) as string | undefined;
        if (earlier !== undefined && earlier !== item.path) replaced.push(earlier);
        this.done.run(this.outDir, item.id, item.path, item.receivedAt, item.bytes);
      }
    }).immediate();
    return replaced;
  }

  /**
   * Forgets the files the journal lists that the folder `out` lacks or holds at another size, so that
   * this run writes them again; answers how many. Files are written without a sync each (as cp does):
   * after a power loss the journal can list a file that is gone, or empty (its data never allocated).
   * On ext4 (data=ordered) a file whose size survived has its data too.
   */
  async forgetMissing(out: string): Promise<number> {
    let forgotten = 0;
    for (let afterId = 0; ; ) {
      const rows = this.journalPage.all(this.outDir, afterId) as Array<{ id: number; path: string; bytes: number | null }>;
      if (rows.length === 0) return forgotten;
      afterId = (rows[rows.length - 1] as { id: number }).id;
      const sizes = await Promise.all(rows.map((row) => stat(join(out, row.path)).then((info) => info.size, () => undefined)));
      const lost = rows.filter((row, n) => sizes[n] === undefined || (row.bytes !== null && sizes[n] !== row.bytes));
      this.db.transaction(() => {
        for (const row of lost) this.forget.run(this.outDir, row.id);
      })();
      forgotten += lost.length;
    }
  }
}

/**
 * What of a selection the index does not hold, one line each: a UID with a typo, a de-identified UID
 * given for an original one, or a modality in lower case selected nothing and exited 0 without a word
 * (found in the export review).
 */
function unmatchedSelection(db: Db, selection: ExportSelection): string[] {
  const checks: Array<[string, string[] | undefined, string, string | undefined]> = [
    ['--study', selection.studyInstanceUids, 'SELECT 1 FROM studies WHERE study_instance_uid = ?', 'SELECT 1 FROM r_studies WHERE study_instance_uid = ?'],
    ['--series', selection.seriesInstanceUids, 'SELECT 1 FROM series WHERE series_instance_uid = ?', 'SELECT 1 FROM r_series WHERE series_instance_uid = ?'],
    ['--patient', selection.patientIds, 'SELECT 1 FROM patients WHERE patient_id = ?', 'SELECT 1 FROM r_patients WHERE patient_id = ?'],
    ['--modality', selection.modalities, 'SELECT 1 FROM series WHERE modality = ?', undefined],
  ];
  const problems: string[] = [];
  for (const [option, values, original, deidentified] of checks) {
    for (const value of values ?? []) {
      if (db.prepare(original).get(value) !== undefined) continue;
      const isPseudonym = deidentified !== undefined && db.prepare(deidentified).get(value) !== undefined;
      problems.push(`${option} ${value} matches nothing in the index${isPseudonym ? `: it is a de-identified value, and ${option} takes the original one` : ''}`);
    }
  }
  return problems;
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
  // Both checks by the path given and by the real one: a folder reached through a symbolic link is
  // the same folder (the storage, or an imported tree, by another name).
  const outs = [...new Set([out, await realPathOf(out)])];
  const storages = [...new Set([resolve(options.storagePath), await realPathOf(resolve(options.storagePath))])];
  if (outs.some((folder) => storages.some((storage) => (folder + sep).startsWith(storage + sep)))) {
    throw new Error(`--out ${options.out} lies inside storage.path: choose a folder outside the session`);
  }
  checkLayout(options.layout);
  const unmatched = unmatchedSelection(db, options.selection);
  if (unmatched.length > 0) throw new Error(`${unmatched.join('; ')}: nothing exported`);
  // Files imported in place are the user's originals: an export must never write among them.
  const importedUnder = db.prepare(`SELECT source_path AS path FROM instances WHERE source_path >= ? AND source_path < ? LIMIT 1`);
  if (outs.some((folder) => importedUnder.get(folder + sep, `${folder}${String.fromCharCode(sep.charCodeAt(0) + 1)}`) !== undefined)) {
    throw new Error(`--out ${options.out} holds files imported in place (gantry import): choose a folder of its own`);
  }
  makeFolder(out, `--out ${options.out}`);
  // An earlier run on this folder may have been interrupted while writing: what it left half-written
  // (target.partial, target.frames) goes before this run writes anything. Only in a folder an export
  // made: a folder of the user's own lost every file so named (found in the export review).
  if (existsSync(join(out, MARKER_FILE))) await removeLeftovers(out);
  // A marker being written when a first run died (its .new file) is the folder's only content: Gantry's.
  else if ((await readdir(out)).some((name) => !name.startsWith(`${MARKER_FILE}.`))) {
    throw new Error(`--out ${options.out} is not empty and holds no export of Gantry's: choose a new or empty folder (an export resumed in its folder removes the half-written files it left there)`);
  }
  let journal = new ExportJournal(db, `${out}#${await exportIdentity(out, false, options.secret, options.layout)}`, options.selection);
  let { selected, done } = journal.counts();
  // Emptied but for the marker (rm -rf out/*): nothing of the earlier run is left, so start afresh.
  if (done > 0 && (await readdir(out)).every((name) => name.startsWith('.gantry-export'))) {
    journal = new ExportJournal(db, `${out}#${await exportIdentity(out, true, options.secret, options.layout)}`, options.selection);
    ({ selected, done } = journal.counts());
  }
  if (done > 0 && (await journal.forgetMissing(out)) > 0) ({ selected, done } = journal.counts());
  const ledger = new PseudonymLedger(db);
  const work = new DeidWork(db);
  const summary: ExportSummary = { selected, written: 0, bytes: 0, alreadyExported: done, copied: 0, deidentified: 0, held: 0, failed: 0, problems: new Map() };
  options.progress?.setTotal(selected - done);
  const inFlight = new Set<Promise<void>>();
  // The first failure of a batch (the index unwritable, a thread lost, the disk of --out full) ends
  // the export once the batches in flight are done; what was written is journalled, so a run again
  // resumes.
  let failure: Error | undefined;
  const settle = (page: Map<number, SelectedInstance>, results: ExportItemResult[]) => {
    const written: WrittenItem[] = [];
    const mappings: PseudonymMapping[] = [];
    for (const result of results) {
      if (result.kind !== 'written') {
        const row = page.get(result.id);
        // Held in the index as the node holds it (failed, with what changed and how to recover), so
        // that neither the node nor a run again de-identifies it, and gantry quarantine deletes it.
        // Only while it waits: a row the node de-identified keeps its copy and state.
        if (result.originalChanged !== undefined && row?.state === 'received') work.markHeld(row.id, row, 'failed', result.originalChanged);
        summary[result.kind] += 1;
        tally(summary.problems, result.kind, result.reason);
        options.progress?.add(1);
        // Every instance after it would fail the same way, each after its whole de-identification.
        if (result.kind === 'failed' && OUT_OF_SPACE.has(result.code ?? '')) failure ??= outOfSpace(options.out, result.code as string);
        continue;
      }
      const instance = page.get(result.id);
      if (instance) written.push({ id: result.id, path: result.path, bytes: result.bytes, receivedAt: instance.receivedAt });
      summary.written += 1;
      summary.bytes += result.bytes;
      summary[result.how === 'copied' ? 'copied' : 'deidentified'] += 1;
      options.progress?.add(1, result.bytes);
      // Which original a pseudonym stands for, kept for an authorised operator (pseudonym-ledger.ts).
      if (instance) mappings.push(...ledgerEntries(instance, result.pseudonyms));
    }
    // An instance written again elsewhere (received again, under another patient): its copy at the
    // old path goes, or the folder would hold it twice, once under a patient it does not belong to.
    for (const path of journal.record(written)) removeExported(out, path);
    if (mappings.length > 0) ledger.record(mappings);
  };
  let afterId = 0;
  const settings = shareSettings(options.settings.profiles, options.settings.base);
  while (!failure) {
    const selected = journal.nextPage(afterId);
    if (selected.length === 0) break;
    afterId = (selected[selected.length - 1] as SelectedInstance).id;
    const rows = heldByTheNode(selected, (kind, reason) => {
      summary[kind] += 1;
      tally(summary.problems, kind, reason);
      options.progress?.add(1);
    });
    const exportable = rows.filter((row) => {
      if (!needsOriginal(row) || row.originalDeletedAt === null) return true;
      // Nothing left to export: said so, not as the ENOENT of a file deleted on purpose.
      summary.failed += 1;
      tally(
        summary.problems,
        'failed',
        row.deidFilePath === null
          ? 'the original and the de-identified copy were deleted by retention (storage.retainOriginals, storage.retainDeidentified)'
          : 'the original was deleted by retention (storage.retainOriginals), and its de-identified copy has no row in the research view to name it by',
      );
      options.progress?.add(1);
      return false;
    });
    const page = new Map(exportable.map((row) => [row.id, row]));
    const renamesByStudy = new Map<number, StudyRename[]>();
    const renamesOf = (row: SelectedInstance) => {
      let renames = renamesByStudy.get(row.studyPk);
      if (!renames) renamesByStudy.set(row.studyPk, (renames = work.patientRenames(row.studyPk)));
      return renamesExcept(renames, row.id);
    };
    for (let start = 0; start < exportable.length; start += BATCH) {
      while (inFlight.size >= options.concurrency) await Promise.race(inFlight);
      if (failure) break;
      const batch: ExportBatch = {
        items: exportable.slice(start, start + BATCH).map((row) => exportItem(row, options.storagePath, renamesOf)),
        out,
        layout: options.layout,
        settings,
        quarantineOnFindings: options.settings.quarantineOnFindings,
      };
      const running: Promise<void> = (options.pool.run(batch) as Promise<ExportItemResult[]>)
        .then((results) => settle(page, results))
        .catch(async (error: Error) => {
          if (!outOfMemory(error)) {
            failure ??= error;
            return;
          }
          // One instance too large for a thread's heap (an RT Structure Set of a hundred thousand
          // contours, an enhanced multi-frame's per-frame groups) took its batch's thread down: the
          // batch is done again instance by instance, that one once more in the large-instance thread,
          // and counted as failed, with why, only when it does not fit there either, instead of ending
          // the export (which a run again would end at the same place).
          for (const item of batch.items) {
            try {
              settle(page, await runAlone(options, { ...batch, items: [item] }));
            } catch (itemError) {
              failure ??= itemError as Error;
              return;
            }
          }
        })
        .finally(() => inFlight.delete(running));
      inFlight.add(running);
    }
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
  options.progress?.finish();
  return summary;
}

/** System errors that say the disk written to is full (or the user's quota spent). */
const OUT_OF_SPACE = new Set(['ENOSPC', 'EDQUOT']);

function outOfSpace(out: string, code: string): Error {
  return new Error(
    `the disk of --out ${out} is full (${code}): the export stopped; free space there (or export to a larger disk), then run the same command again: it resumes where this one stopped`,
  );
}

/**
 * The results of a batch of one instance: exported by a thread of the pool, or, when its header ran
 * that thread out of heap, by the large-instance thread (one at a time); failed with what to change
 * when it does not fit there either. Any other failure of a thread is thrown.
 */
async function runAlone(options: ExportOptions, batch: ExportBatch): Promise<ExportItemResult[]> {
  const failed = (heapMb: number | undefined) => batch.items.map((item) => ({ id: item.id, kind: 'failed' as const, reason: outOfMemoryReason(heapMb, 'then export again') }));
  try {
    return (await options.pool.run(batch)) as ExportItemResult[];
  } catch (error) {
    if (!outOfMemory(error)) throw error;
  }
  const large = options.largeInstances;
  if (!large) return failed(undefined);
  try {
    return (await large.pool.run(batch)) as ExportItemResult[];
  } catch (error) {
    if (!outOfMemory(error)) throw error;
    return failed(large.heapMb);
  }
}

/** Removes an exported file, and the folders of the layout it leaves empty. */
function removeExported(out: string, path: string): void {
  rmSync(join(out, path), { force: true });
  for (let folder = dirname(join(out, path)); folder.startsWith(out + sep); folder = dirname(folder)) {
    try {
      rmdirSync(folder);
    } catch {
      return; // not empty (or gone): the folders above it are not empty either
    }
  }
}

/** The real path of `path` (symbolic links resolved), the part not there yet appended as it is. */
async function realPathOf(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (error) {
    // Not there (or under a file: makeFolder names that) is resolved by the parent's real path.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
    const parent = dirname(path);
    return parent === path ? path : join(await realPathOf(parent), basename(path));
  }
}

/** The rows to export; those the node quarantined (held) or that failed (in the node, or in an
 * earlier export) are reported instead: they stay so until an operator releases them (gantry
 * quarantine release), as in the node. A failed one counts as failed, run after run: counted as held,
 * a second run exited 0 for an export that still lacked it (found in the export review). */
function heldByTheNode(rows: SelectedInstance[], report: (kind: 'held' | 'failed', reason: string) => void): SelectedInstance[] {
  return rows.filter((row) => {
    if (row.state === 'quarantined') report('held', `quarantined by the node${row.stateReason ? `: ${row.stateReason}` : ''}`);
    else if (row.state === 'failed') report('failed', row.stateReason ?? 'failed');
    else return true;
    return false;
  });
}

/** Whether the instance is de-identified from its original (the node made no copy, or retention deleted it), as exportItem decides. */
function needsOriginal(row: SelectedInstance): boolean {
  return row.deidFilePath === null || row.SOPInstanceUID === null;
}

function exportItem(row: SelectedInstance, storagePath: string, renamesOf: (row: SelectedInstance) => Map<string, string>): ExportItem {
  const original = row.originalDeletedAt === null ? originalOf(row, storagePath, renamesOf) : undefined;
  // The key the engine makes (pseudonyms.ts): without a PatientID, the study stands for the patient.
  const ledgerPatient = { patientId: row.originalPatientId ?? '', issuerOfPatientId: row.originalIssuerOfPatientId, studyInstanceUid: row.originalStudyInstanceUid };
  const common = { id: row.id, ...(original ? { original } : {}), ledgerPatient };
  if (row.deidFilePath !== null && row.SOPInstanceUID !== null) {
    // The research view's columns are named by the layout's keywords.
    const values: LayoutValues = Object.fromEntries(LAYOUT_KEYWORDS.map((keyword) => [keyword, row[keyword]]));
    return { ...common, copy: { path: join(storagePath, row.deidFilePath), size: row.deidFileSize, values } };
  }
  return common;
}

function originalOf(row: SelectedInstance, storagePath: string, renamesOf: (row: SelectedInstance) => Map<string, string>): ExportItem['original'] {
  // Under retainUIDs, references to redacted instances of the study follow them, as in the node.
  const renames = renamesOf(row);
  const override = row.override ? (JSON.parse(row.override) as ReleaseOverride) : undefined;
  const stamp = stampFromColumns(row.fileMtimeNs, row.fileIno);
  return { path: join(storagePath, row.filePath), size: row.fileSize, sopInstanceUid: row.originalSopInstanceUid, ...(stamp ? { stamp } : {}), origin: originOf(row.imported), callingAeTitle: row.callingAeTitle, ...(renames.size > 0 ? { renamedUids: [...renames] } : {}), ...(override ? { override } : {}) };
}

/** Removes the temporary files of an interrupted run from the output tree (it is Gantry's own folder:
 * the marker file says so); the files the run completed stay. */
async function removeLeftovers(out: string): Promise<void> {
  for await (const entry of await opendir(out, { recursive: true })) {
    if (entry.isFile() && /\.(partial|frames)$/.test(entry.name)) await rm(join(entry.parentPath, entry.name), { force: true });
  }
}

/** The identity recorded in the folder's marker file, made on the first run, with the secret sealed
 * (sealedSecret) and the layout: resumed in another layout, the folder would hold what the first run
 * wrote in one and the rest in the other (the journal skips what was written, wherever). A marker of
 * an earlier Gantry, with the secret's fast digest, is checked by it and written again sealed. */
async function exportIdentity(out: string, afresh = false, secret?: string, layout?: string): Promise<string> {
  const marker = join(out, MARKER_FILE);
  if (!afresh) try {
    const recorded = JSON.parse(await readFile(marker, 'utf8')) as { id?: unknown; secret?: unknown; sealedSecret?: unknown; layout?: unknown };
    const { id } = recorded;
    if (typeof id === 'string' && id.length > 0) {
      const seal = recorded.sealedSecret as { salt?: unknown; check?: unknown } | undefined;
      const sealed = typeof seal?.salt === 'string' && typeof seal.check === 'string';
      const same =
        secret === undefined ||
        (sealed ? opensSeal(secret, { salt: seal.salt as string, check: seal.check as string }) : typeof recorded.secret !== 'string' || recorded.secret === secretDigest(secret));
      if (!same) {
        throw new Error(`--out ${out} holds an export made with another deid.secret: resumed, the same patients would get other pseudonyms in it; choose a new folder`);
      }
      if (typeof recorded.layout === 'string' && layout !== undefined && recorded.layout !== layout) {
        throw new Error(`--out ${out} holds an export in the layout ${recorded.layout}: resumed with --layout ${layout}, it would hold both; run again with that layout, or choose a new folder`);
      }
      if (!sealed && typeof recorded.secret === 'string') await writeMarker(marker, id, secret, typeof recorded.layout === 'string' ? recorded.layout : layout);
      return id;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && !(error instanceof SyntaxError)) throw error;
  }
  const id = randomUUID();
  await writeMarker(marker, id, secret, layout);
  return id;
}

/** The marker file: readable by the owner and group only, as the exported files are. */
async function writeMarker(marker: string, id: string, secret: string | undefined, layout: string | undefined): Promise<void> {
  const note = 'gantry export: the identity of this export, so that running it again resumes it (with a salted check of the secret its pseudonyms are keyed by, and its layout)';
  // `secret: "sealed"`, which no digest equals: a Gantry of before the seal, resuming this folder with
  // any secret, refuses (it checked a string there, and took a folder without one with any secret).
  const body = `${JSON.stringify({ id, ...(secret !== undefined ? { secret: 'sealed', sealedSecret: sealedSecret(secret) } : {}), ...(layout !== undefined ? { layout } : {}), note })}\n`;
  // Written anew under a name of this process and renamed: a marker of an earlier Gantry is replaced
  // whole, and a file of that name left by a crash gives its mode to nothing.
  const fresh = `${marker}.${process.pid}.new`;
  await rm(fresh, { force: true });
  await writeFile(fresh, body, { mode: STORED_FILE_MODE });
  await rename(fresh, marker);
}


export interface ExportRequest {
  out: string;
  selection?: ExportSelection;
  /** Default DEFAULT_LAYOUT. */
  layout?: string;
  /** Threads (default: every CPU, as a batch job; fewer leave CPUs to a node serving on the same host). */
  workers?: number;
  progress?: Progress;
  /** Where a failure of a thread that no instance waits for is told (default: stderr, at log.level). */
  log?: Logger;
}

/**
 * An export with the node's de-identification settings and secret, in a pool of export workers made
 * for it (gantry export, and Session.export of the library).
 */
export async function exportWithConfig(db: Db, loaded: LoadedConfig, secret: string, request: ExportRequest): Promise<ExportSummary> {
  refuseAnotherSecret(db, secret, loaded.source, "this export's own");
  const workers = request.workers ?? availableParallelism();
  // Checked as the node checks them, before anything is written: a wrong rule is a config error said
  // once, not a failure of every instance.
  const { profiles, base } = checkedDeidSettings(loaded);
  const settings: DeidSchedulerSettings = { profiles, base, quarantineOnFindings: loaded.config.deid.quarantineOnFindings };
  const log = request.log ?? commandLogger(loaded.config.log.level);
  const threadFailed = (error: Error) => log.error({ err: error.message }, 'an export thread failed (replaced; the export goes on)');
  const pool = workerPool({
    filename: new URL('./export-worker.js', import.meta.url).href,
    workerData: { secret },
    minThreads: workers,
    maxThreads: workers,
    idleTimeout: 1000,
    // One file at a time per thread (as the node's de-identification pool): small heaps, flat memory.
    resourceLimits: { maxOldGenerationSizeMb: DEID_THREAD_HEAP_MB, maxYoungGenerationSizeMb: 4 },
  }, threadFailed);
  const heapMb = loaded.config.deid.largeInstanceHeapMb;
  const largePool = largeInstancePool(new URL('./export-worker.js', import.meta.url).href, heapMb, secret, threadFailed);
  try {
    return await exportSelection(db, {
      out: request.out,
      selection: request.selection ?? {},
      layout: request.layout ?? DEFAULT_LAYOUT,
      pool,
      settings,
      storagePath: resolve(loaded.config.storage.path),
      concurrency: workers * 2,
      ...(largePool ? { largeInstances: { pool: largePool, heapMb } } : {}),
      secret,
      ...(request.progress ? { progress: request.progress } : {}),
    });
  } finally {
    await pool.destroy();
    await largePool?.destroy();
  }
}
