/**
 * The index of received instances (tables patients, studies, series, instances; migration 001).
 * Writes go through `IndexWriter`, which commits the instances that finished in the same turn of the
 * event loop in one transaction and then syncs the WAL: every caller waits for a durable commit, and
 * concurrent associations share one sync.
 */
import type { Statement } from 'better-sqlite3';
import type { Db, WalSync } from '../db/database.js';
import type { IndexedAttributes } from './attributes.js';
import { RowsPerStatement, valuesList } from '../db/rows-per-statement.js';
import { EmptyRows } from './empty-rows.js';
import type { FileStamp } from './file-stamp.js';
import { ResearchIndex } from './research-index.js';

export type InstanceState = 'received' | 'deidentified' | 'quarantined' | 'failed' | 'forwarded';

export interface InstanceRecord {
  attributes: IndexedAttributes;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  filePath: string;
  fileSize: number;
  /** The file's modification time and inode once it is in place (file-stamp.ts): what tells a reader
   * that a file of the same size is no longer this instance's. */
  fileStamp?: FileStamp;
  callingAeTitle: string;
  receivedAt: number;
  /** gantry import: where the file was found (absolute). */
  sourcePath?: string;
  /** gantry import without --copy: `filePath` names that file in place, which Gantry never deletes. */
  external?: boolean;
  /** gantry import without --forward: the instance is de-identified but never routed. */
  forwardHeld?: boolean;
}

export interface UpsertOutcome {
  /** False when the SOP Instance UID was already indexed (its row was updated). */
  inserted: boolean;
  /** The file the row pointed to before, when the update moved it elsewhere. */
  replacedFilePath?: string;
}

export interface StoredInstance {
  sopInstanceUid: string;
  sopClassUid: string;
  seriesInstanceUid: string;
  studyInstanceUid: string;
  transferSyntaxUid: string;
  filePath: string;
  fileSize: number;
  state: InstanceState;
  callingAeTitle: string;
  /** An imported file in place (gantry import): the user's, never deleted. */
  external: boolean;
}

/** A row the check after an unclean stop looks at (recovery.ts). */
export interface RecentInstance {
  sopInstanceUid: string;
  filePath: string;
  fileSize: number;
  state: string;
}

/** The states of an instance (migration 001's CHECK), in the order they are usually passed. */
export const INSTANCE_STATES = ['received', 'deidentified', 'quarantined', 'failed', 'forwarded'] as const;

export interface IndexCounts {
  patients: number;
  studies: number;
  series: number;
  instances: number;
}

interface SeriesMemo {
  seriesPk: number;
  studyInstanceUid: string;
  /** The patient, study and series values written (hierarchyValues): an instance that brings others
   * writes the hierarchy again, so no value an instance of the series carries is left out. */
  hierarchy: string;
  writtenAt: number;
  /** PRAGMA data_version when the row was committed: it changes when another connection (a command:
   * quarantine delete, an import) commits, which may have deleted the series and given its id away. */
  dataVersion?: number;
  /** The series row was deleted since (left empty): its id may be another series' now. */
  dropped?: true;
}

/** Every attribute upsertHierarchy writes to the patient, study and series rows. */
const HIERARCHY_KEYWORDS = [
  'PatientID', 'IssuerOfPatientID', 'PatientName', 'PatientBirthDate', 'PatientSex',
  'StudyDate', 'StudyTime', 'AccessionNumber', 'StudyID', 'StudyDescription', 'ReferringPhysicianName', 'SpecificCharacterSet',
  'Modality', 'SeriesNumber', 'SeriesDescription', 'SeriesDate', 'SeriesTime', 'BodyPartExamined',
] as const satisfies ReadonlyArray<keyof IndexedAttributes>;

/** An instance's hierarchy values as one string (absent and empty told apart). */
function hierarchyValues(attributes: IndexedAttributes): string {
  return HIERARCHY_KEYWORDS.map((keyword) => {
    const value = attributes[keyword];
    return value === undefined ? '\u0001' : String(value);
  }).join('\u0000');
}

/** How long a series' hierarchy rows count as fresh (see InstanceIndex.recentSeriesPk). */
const HIERARCHY_REFRESH_MS = 1000;

/** When the newest instance received over the network was (rows gantry import wrote, possibly
 * later and by another process, say nothing of when the node stopped). */
const NEWEST_RECEIVED = 'SELECT received_at FROM instances WHERE source_path IS NULL ORDER BY received_at DESC LIMIT 1';

export class InstanceIndex {
  private readonly recentSeries = new Map<string, SeriesMemo>();
  /** Series rows written in the open transaction: reused within it (import writes a batch of a
   * series' instances in one), remembered past it only once it commits, since a rolled back row's key
   * may be given to another series. Whoever rolls back calls dropPending. */
  private pendingMemos: Array<[string, SeriesMemo]> = [];
  private readonly statements: {
    upsertPatient: Statement;
    upsertStudy: Statement;
    upsertSeries: Statement;
    findInstancePath: Statement;
    findInstance: Statement;
    counts: Statement;
    countsByState: Statement;
    deleteInstance: Statement;
    dataVersion: Statement;
    recentInstances: Statement;
    newestReceivedAt: Statement;
    knownSourcePaths: Statement;
    relocateImported: Statement;
    releaseForwarding: Statement;
    studyParent: Statement;
    seriesParent: Statement;
    forgetAudit: Statement;
    waitingBytes: Statement;
  };

  private readonly research: ResearchIndex;
  private readonly emptyRows: EmptyRows;
  /** Instance rows, one (a received instance) or many per statement (gantry import's batches). */
  private readonly instanceRows: RowsPerStatement<InstanceRow>;

  constructor(private readonly db: Db) {
    this.instanceRows = new RowsPerStatement<InstanceRow>(db, upsertInstancesSql, INSTANCE_COLUMNS.length, instanceColumns);
    this.research = new ResearchIndex(db);
    this.emptyRows = new EmptyRows(db);
    this.statements = {
      upsertPatient: db.prepare(`
        INSERT INTO patients (patient_key, patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex, created_at, updated_at)
        VALUES (@key, @patientId, @issuer, @name, @birthDate, @sex, @now, @now)
        ON CONFLICT (patient_key) DO UPDATE SET
          patient_name = coalesce(excluded.patient_name, patient_name),
          patient_birth_date = coalesce(excluded.patient_birth_date, patient_birth_date),
          patient_sex = coalesce(excluded.patient_sex, patient_sex),
          updated_at = excluded.updated_at
        RETURNING id`),
      upsertStudy: db.prepare(`
        INSERT INTO studies (study_instance_uid, patient_pk, study_date, study_time, accession_number, study_id,
          study_description, referring_physician_name, specific_character_set, created_at, last_received_at)
        VALUES (@uid, @patientPk, @date, @time, @accession, @studyId, @description, @referring, @charset, @now, @now)
        ON CONFLICT (study_instance_uid) DO UPDATE SET
          patient_pk = excluded.patient_pk,
          study_date = coalesce(excluded.study_date, study_date),
          study_time = coalesce(excluded.study_time, study_time),
          accession_number = coalesce(excluded.accession_number, accession_number),
          study_id = coalesce(excluded.study_id, study_id),
          study_description = coalesce(excluded.study_description, study_description),
          referring_physician_name = coalesce(excluded.referring_physician_name, referring_physician_name),
          specific_character_set = coalesce(excluded.specific_character_set, specific_character_set),
          last_received_at = excluded.last_received_at
        RETURNING id`),
      upsertSeries: db.prepare(`
        INSERT INTO series (series_instance_uid, study_pk, modality, series_number, series_description, series_date,
          series_time, body_part_examined, created_at, last_received_at)
        VALUES (@uid, @studyPk, @modality, @number, @description, @date, @time, @bodyPart, @now, @now)
        ON CONFLICT (series_instance_uid) DO UPDATE SET
          study_pk = excluded.study_pk,
          modality = coalesce(excluded.modality, modality),
          series_number = coalesce(excluded.series_number, series_number),
          series_description = coalesce(excluded.series_description, series_description),
          series_date = coalesce(excluded.series_date, series_date),
          series_time = coalesce(excluded.series_time, series_time),
          body_part_examined = coalesce(excluded.body_part_examined, body_part_examined),
          last_received_at = excluded.last_received_at
        RETURNING id`),
      findInstancePath: db.prepare('SELECT file_path AS filePath, original_external AS external, series_pk AS seriesPk FROM instances WHERE sop_instance_uid = ?'),
      findInstance: db.prepare(`
        SELECT i.sop_instance_uid AS sopInstanceUid, i.sop_class_uid AS sopClassUid,
          se.series_instance_uid AS seriesInstanceUid, st.study_instance_uid AS studyInstanceUid,
          i.transfer_syntax_uid AS transferSyntaxUid, i.file_path AS filePath, i.file_size AS fileSize,
          i.state AS state, i.calling_ae_title AS callingAeTitle, i.original_external AS external
        FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk
        WHERE i.sop_instance_uid = ?`),
      deleteInstance: db.prepare('DELETE FROM instances WHERE sop_instance_uid = ?'),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
      studyParent: db.prepare('SELECT patient_pk FROM studies WHERE study_instance_uid = ?').pluck(),
      seriesParent: db.prepare('SELECT study_pk FROM series WHERE series_instance_uid = ?').pluck(),
      forgetAudit: db.prepare('DELETE FROM deid_audit WHERE instance_pk = (SELECT id FROM instances WHERE sop_instance_uid = ?)'),
      knownSourcePaths: db.prepare(`SELECT source_path AS path FROM instances WHERE source_path IN (SELECT value FROM json_each(?))`),
      relocateImported: db.prepare(`UPDATE instances SET file_path = @filePath, file_mtime_ns = @fileMtimeNs, file_ino = @fileIno,
          source_path = @sourcePath, original_external = @external,
          forward_held = forward_held AND NOT @release
        WHERE sop_instance_uid = @sopInstanceUid AND original_external = 1`),
      releaseForwarding: db.prepare(`UPDATE instances SET forward_held = 0 WHERE forward_held = 1 AND source_path IN (SELECT value FROM json_each(?))`),
      recentInstances: db.prepare(`
        SELECT sop_instance_uid AS sopInstanceUid, file_path AS filePath, file_size AS fileSize, state
        FROM instances WHERE received_at >= (${NEWEST_RECEIVED}) - ? AND original_external = 0
          AND original_deleted_at IS NULL`),
      newestReceivedAt: db.prepare(NEWEST_RECEIVED).pluck(),
      counts: db.prepare(`SELECT
        (SELECT count(*) FROM patients) AS patients, (SELECT count(*) FROM studies) AS studies,
        (SELECT count(*) FROM series) AS series, (SELECT count(*) FROM instances) AS instances`),
      // Kept by triggers (migration 020): a count of the rows read every one of them, 164 ms with
      // 2,000,000 instances, on the main thread at every scrape.
      countsByState: db.prepare('SELECT state, count FROM instance_state_counts WHERE count > 0'),
      waitingBytes: db.prepare(`SELECT bytes FROM instance_state_counts WHERE state = 'received'`).pluck(),
    };
  }

  /** Whether the instance is indexed as imported from `sourcePath` (gantry import). */
  importedFrom(sopInstanceUid: string, sourcePath: string): boolean {
    return this.db.prepare('SELECT 1 FROM instances WHERE sop_instance_uid = ? AND source_path = ?').get(sopInstanceUid, sourcePath) !== undefined;
  }

  findInstance(sopInstanceUid: string): StoredInstance | undefined {
    const row = this.statements.findInstance.get(sopInstanceUid) as (Omit<StoredInstance, 'external'> & { external: number }) | undefined;
    return row ? { ...row, external: row.external === 1 } : undefined;
  }

  /** Files imported by another path (the one a link led to, before imports named files by their
   * real path) named by their real path: `filePath` is where the index finds one imported in place.
   * Only a row whose size and inode (when recorded) are the file's: a link pointed elsewhere since
   * leads to another file, which is imported as itself. */
  renameSourcePaths(renames: ReadonlyArray<{ from: string; to: string; filePath: string; size: number; ino: string }>): void {
    const rename = this.db.prepare(
      `UPDATE instances SET source_path = @to, file_path = CASE WHEN original_external = 1 THEN @filePath ELSE file_path END
       WHERE source_path = @from AND (original_external = 0 OR (file_size = @size AND (file_ino IS NULL OR file_ino = @ino)))
         AND NOT EXISTS (SELECT 1 FROM instances other WHERE other.source_path = @to)`,
    );
    this.db.transaction(() => {
      for (const entry of renames) rename.run(entry);
    }).immediate();
  }

  /** Which of these files (absolute paths) an import indexed already. */
  knownSourcePaths(paths: readonly string[]): Set<string> {
    const rows = this.statements.knownSourcePaths.all(JSON.stringify(paths)) as Array<{ path: string }>;
    return new Set(rows.map((row) => row.path));
  }

  /** Imported files held from forwarding (imported without --forward) are forwarded from now on. */
  releaseForwarding(paths: readonly string[]): number {
    return this.statements.releaseForwarding.run(JSON.stringify(paths)).changes;
  }

  /** An instance imported in place whose file moved: the index names it at its new place (or its
   * copy in storage, `external` false), with that file's stamp; `release`: forwarded from now on
   * (imported again with --forward). */
  relocateImported(sopInstanceUid: string, filePath: string, fileStamp: FileStamp | undefined, sourcePath: string, external: boolean, release: boolean): void {
    this.statements.relocateImported.run({ sopInstanceUid, filePath, ...stampParameters(fileStamp), sourcePath, external: external ? 1 : 0, release: release ? 1 : 0 });
  }

  hasInstance(sopInstanceUid: string): boolean {
    return this.statements.findInstancePath.get(sopInstanceUid) !== undefined;
  }

  /** Deletes an instance's row, and its research-view row with the patient, study and series rows it
   * leaves empty there (the cascade alone left them: research C-FIND listed empty studies; found in
   * a review), and likewise the series, study and patient it leaves empty in the source index (a row
   * taken back after a failed store listed its study, empty, in a source C-FIND). */
  deleteInstance(sopInstanceUid: string): void {
    this.db.transaction(() => {
      const previous = this.statements.findInstancePath.get(sopInstanceUid) as { seriesPk: number } | undefined;
      this.research.removeByOriginalUid(sopInstanceUid);
      this.statements.deleteInstance.run(sopInstanceUid);
      if (previous) this.dropSeriesIfEmpty(previous.seriesPk);
    })();
  }

  /** Instances received within `windowMs` of the newest one received over the network (rows gantry
   * import wrote later, possibly by another process, would move the window past the crash; imported
   * files in place are the user's, and originals retention deleted are meant to be gone: neither is
   * checked, since the start-up check deletes the rows whose files it finds short or missing). */
  recentInstances(windowMs: number): RecentInstance[] {
    return this.statements.recentInstances.all(windowMs) as RecentInstance[];
  }

  /** When the newest instance received over the network was received (ms since the epoch), if any. */
  newestReceivedAt(): number | undefined {
    return (this.statements.newestReceivedAt.get() as number | undefined) ?? undefined;
  }

  /** The file (relative to storage.path) the index names for an instance, if it is indexed. */
  filePathOf(sopInstanceUid: string): string | undefined {
    return (this.statements.findInstancePath.get(sopInstanceUid) as { filePath: string } | undefined)?.filePath;
  }

  /** The files (relative to storage.path) the index names in one folder: a read of every row (no
   * index on file_path), for the check after an unclean stop of a folder with hashed names only. */
  filePathsIn(folder: string): Set<string> {
    const prefix = `${folder}/`;
    const rows = this.db.prepare(`SELECT file_path FROM instances WHERE substr(file_path, 1, ?) = ?`).pluck().all(prefix.length, prefix) as string[];
    return new Set(rows);
  }

  /** Records that an instance's original is gone (retention deleted it; the record did not survive). */
  markOriginalDeleted(sopInstanceUid: string, now = Date.now()): void {
    this.db.prepare(`UPDATE instances SET original_deleted_at = ? WHERE sop_instance_uid = ? AND original_deleted_at IS NULL`).run(now, sopInstanceUid);
  }

  counts(): IndexCounts {
    return this.statements.counts.get() as IndexCounts;
  }

  /** Instances by state (received: waiting for de-identification), for metrics and `gantry status`. */
  countsByState(): Record<string, number> {
    const rows = this.statements.countsByState.all() as Array<{ state: string; count: number }>;
    return Object.fromEntries(rows.map((row) => [row.state, row.count]));
  }

  /** The bytes of the originals waiting for de-identification (migration 027): about what their
   * de-identified copies will take. */
  waitingBytes(): number {
    return (this.statements.waitingBytes.get() as number | undefined) ?? 0;
  }

  /** Inserts or updates one instance and its patient, study and series. Call inside a transaction. */
  upsert(record: InstanceRecord): UpsertOutcome {
    const hierarchy = hierarchyValues(record.attributes);
    const remembered = this.recentSeriesPk(record, hierarchy);
    const previous = this.statements.findInstancePath.get(record.sopInstanceUid) as { filePath: string; external: number; seriesPk: number } | undefined;
    // A new copy of an instance waits for de-identification again: its old copy leaves the research
    // view, and its audit goes (a rule may hold the new copy back without writing one, and the
    // operator reviewing it must not be shown the findings of a copy that is gone).
    if (previous) {
      this.research.removeByOriginalUid(record.sopInstanceUid);
      this.statements.forgetAudit.run(record.sopInstanceUid);
    }
    let seriesPk = remembered ?? this.upsertHierarchy(record, hierarchy);
    try {
      this.insertInstance(record, seriesPk);
    } catch (error) {
      // A remembered series deleted since: write the hierarchy again.
      if (remembered === undefined || (error as { code?: string }).code !== 'SQLITE_CONSTRAINT_FOREIGNKEY') throw error;
      this.recentSeries.clear();
      seriesPk = this.upsertHierarchy(record, hierarchy);
      this.insertInstance(record, seriesPk);
    }
    // Sent again under another Series Instance UID: the series it leaves may be empty now.
    if (previous && previous.seriesPk !== seriesPk) this.dropSeriesIfEmpty(previous.seriesPk);
    const outcome: UpsertOutcome = { inserted: previous === undefined };
    // An imported file in place is the user's: the new copy replaces it in the index, not on disk.
    if (previous && previous.filePath !== record.filePath && !previous.external) outcome.replacedFilePath = previous.filePath;
    return outcome;
  }

  /**
   * Inserts instances that have no row yet (gantry import checked each, and none twice), with their
   * patients, studies and series, many rows per statement: an import's 10,000 rows one per statement
   * took 490-510 ms of SQLite alone, 50 per statement 140-240 ms (each statement on instances sets up
   * its counting trigger and a statement journal). Call inside a transaction. A remembered series
   * deleted meanwhile (by another connection: the memo's data version tells most of those) fails
   * the rows' foreign key: then they are written again one by one, as upsert writes them.
   */
  insertNew(records: readonly InstanceRecord[]): void {
    const mark = this.pendingMemos.length;
    try {
      // A savepoint: a failing statement must not leave the rows of the statements before it.
      this.db.transaction(() => {
        const rows = records.map((record) => {
          const hierarchy = hierarchyValues(record.attributes);
          return { record, seriesPk: this.recentSeriesPk(record, hierarchy) ?? this.upsertHierarchy(record, hierarchy) };
        });
        this.instanceRows.run(rows, undefined);
      })();
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_CONSTRAINT_FOREIGNKEY') throw error;
      this.dropPending(mark);
      this.recentSeries.clear();
      for (const record of records) this.upsert(record);
    }
  }

  /**
   * The series of a burst: its patient, study and series rows were written less than
   * HIERARCHY_REFRESH_MS ago, with the values this instance carries, so it only adds its own row. This
   * spares each instance of a series three upserts (and their index pages in the WAL);
   * last_received_at stays exact to a second.
   */
  private recentSeriesPk(record: InstanceRecord, hierarchy: string): number | undefined {
    const pending = this.pendingMemo(record.seriesInstanceUid);
    const recent = pending ?? this.recentSeries.get(record.seriesInstanceUid);
    if (!recent || recent.dropped || recent.studyInstanceUid !== record.studyInstanceUid) return undefined;
    if (!pending && recent.dataVersion !== this.dataVersion()) return undefined;
    if (record.receivedAt - recent.writtenAt >= HIERARCHY_REFRESH_MS) return undefined;
    if (recent.hierarchy !== hierarchy) return undefined;
    return recent.seriesPk;
  }

  /**
   * Deletes a series left without instances (and the study and patient it leaves empty), and forgets
   * its memos: series ids are rowids, and the id of the newest series, deleted, goes to the next new
   * one, under which the memo would otherwise file the old series' next instance. Marked, not removed,
   * so that the marks of savepoints into the pending memos stay right; a rollback only loses a hit.
   */
  private dropSeriesIfEmpty(seriesPk: number): void {
    if (!this.emptyRows.dropSeries(seriesPk)) return;
    for (const memo of [...this.recentSeries.values(), ...this.pendingMemos.map(([, pending]) => pending)]) {
      if (memo.seriesPk === seriesPk) memo.dropped = true;
    }
  }

  private dataVersion(): number {
    return this.statements.dataVersion.get() as number;
  }

  /** A series written earlier in the open transaction (the newest memo: batches are small). */
  private pendingMemo(seriesInstanceUid: string): SeriesMemo | undefined {
    if (!this.db.inTransaction) return undefined;
    for (let i = this.pendingMemos.length - 1; i >= 0; i -= 1) {
      const [uid, memo] = this.pendingMemos[i] as [string, SeriesMemo];
      if (uid === seriesInstanceUid) return memo;
    }
    return undefined;
  }

  /** Marks where the open transaction's pending memos end, for a savepoint that may roll back. */
  pendingMark(): number {
    return this.pendingMemos.length;
  }

  /** A savepoint (mark given) or the whole transaction (no mark) rolled back. */
  dropPending(mark = 0): void {
    this.pendingMemos.length = mark;
  }

  /** The transaction committed: its series rows may be reused by the next instances. */
  commitPending(): void {
    if (this.recentSeries.size + this.pendingMemos.length > 10_000) this.recentSeries.clear();
    const dataVersion = this.pendingMemos.length > 0 ? this.dataVersion() : 0;
    for (const [uid, memo] of this.pendingMemos) {
      memo.dataVersion = dataVersion;
      this.recentSeries.set(uid, memo);
    }
    this.pendingMemos = [];
  }

  /** Writes the patient, study and series rows; `hierarchy` is hierarchyValues of the record. */
  private upsertHierarchy(record: InstanceRecord, hierarchy: string): number {
    const a = record.attributes;
    const now = record.receivedAt;
    const patientId = a.PatientID ?? '';
    const issuer = a.IssuerOfPatientID ?? '';
    const patient = this.statements.upsertPatient.get({
      key: patientKey(issuer, patientId, record.studyInstanceUid),
      patientId,
      issuer,
      name: a.PatientName ?? null,
      birthDate: a.PatientBirthDate ?? null,
      sex: a.PatientSex ?? null,
      now,
    }) as { id: number };
    // The newest instance says whose study and which study's series it is (a corrected PatientID sent
    // again): the rows move there, and a patient or study they leave empty goes, so that a source
    // C-FIND neither files the study under the old patient nor lists that patient empty.
    const formerPatientPk = this.statements.studyParent.get(record.studyInstanceUid) as number | undefined;
    const formerStudyPk = this.statements.seriesParent.get(record.seriesInstanceUid) as number | undefined;
    const study = this.statements.upsertStudy.get({
      uid: record.studyInstanceUid,
      patientPk: patient.id,
      date: a.StudyDate ?? null,
      time: a.StudyTime ?? null,
      accession: a.AccessionNumber ?? null,
      studyId: a.StudyID ?? null,
      description: a.StudyDescription ?? null,
      referring: a.ReferringPhysicianName ?? null,
      charset: a.SpecificCharacterSet ?? null,
      now,
    }) as { id: number };
    const series = this.statements.upsertSeries.get({
      uid: record.seriesInstanceUid,
      studyPk: study.id,
      modality: a.Modality ?? null,
      number: a.SeriesNumber ?? null,
      description: a.SeriesDescription ?? null,
      date: a.SeriesDate ?? null,
      time: a.SeriesTime ?? null,
      bodyPart: a.BodyPartExamined ?? null,
      now,
    }) as { id: number };
    if (formerStudyPk !== undefined && formerStudyPk !== study.id) this.emptyRows.dropStudy(formerStudyPk);
    if (formerPatientPk !== undefined && formerPatientPk !== patient.id) this.emptyRows.dropPatient(formerPatientPk);
    const memo = { seriesPk: series.id, studyInstanceUid: record.studyInstanceUid, hierarchy, writtenAt: now };
    this.pendingMemos.push([record.seriesInstanceUid, memo]);
    return series.id;
  }


  private insertInstance(record: InstanceRecord, seriesPk: number): void {
    this.instanceRows.run([{ record, seriesPk }], undefined);
  }
}

interface Pending {
  record: InstanceRecord;
  resolve(outcome: UpsertOutcome): void;
  reject(error: Error): void;
}

/** Group commit: the instances submitted in one turn of the event loop share one transaction; each
 * instance has its own savepoint, so one bad row fails alone. */
export class IndexWriter {
  private queue: Pending[] = [];
  private scheduled = false;
  private readonly upsertOne: (record: InstanceRecord) => UpsertOutcome;

  constructor(
    private readonly db: Db,
    private readonly index: InstanceIndex,
    private readonly wal: WalSync,
  ) {
    this.upsertOne = db.transaction((record: InstanceRecord) => this.index.upsert(record));
  }

  /** Removes a row committed for a store that failed afterwards; durable with the next commit. */
  takeBack(sopInstanceUid: string): void {
    this.index.deleteInstance(sopInstanceUid);
  }

  submit(record: InstanceRecord): Promise<UpsertOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ record, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    const results: Array<{ outcome?: UpsertOutcome; error?: Error }> = [];
    try {
      // IMMEDIATE: each upsert reads (is the instance indexed?) before it writes, and a deferred
      // transaction that has read cannot wait for the write lock: while gantry import or export held
      // it, every store failed at once (SQLITE_BUSY) instead of waiting out the busy timeout (found
      // in a review).
      this.db.transaction(() => {
        for (const pending of batch) {
          const mark = this.index.pendingMark();
          try {
            results.push({ outcome: this.upsertOne(pending.record) });
          } catch (error) {
            // An I/O error, a full disk or no memory can make SQLite roll back the whole transaction,
            // not only the savepoint: what follows would run outside it, and the memos of rows it
            // undid would name row ids SQLite gives out again. The whole batch fails instead.
            if (!this.db.inTransaction) throw error;
            this.index.dropPending(mark);
            results.push({ error: error as Error });
          }
        }
      }).immediate();
    } catch (error) {
      this.index.dropPending();
      for (const pending of batch) pending.reject(error as Error);
      return;
    }
    this.index.commitPending();
    try {
      await this.wal.sync();
    } catch (error) {
      for (const pending of batch) pending.reject(error as Error);
      return;
    }
    batch.forEach((pending, i) => {
      const result = results[i];
      if (result?.outcome) pending.resolve(result.outcome);
      else pending.reject(result?.error ?? new Error('index write lost'));
    });
  }
}

/** An instance's row and the series it goes under. */
interface InstanceRow {
  record: InstanceRecord;
  seriesPk: number;
}

const INSTANCE_COLUMNS = [
  'sop_instance_uid', 'series_pk', 'sop_class_uid', 'instance_number', 'content_date', 'content_time',
  'number_of_frames', 'rows', 'columns', 'image_type', 'manufacturer', 'manufacturer_model_name', 'device_serial_number',
  'station_name', 'institution_name', 'burned_in_annotation', 'recognizable_visual_features', 'transfer_syntax_uid',
  'file_path', 'file_size', 'file_mtime_ns', 'file_ino', 'calling_ae_title', 'received_at', 'state_changed_at',
  'source_path', 'original_external', 'forward_held',
] as const;

/** The upsert of `rows` instances (state 'received'). An instance indexed already is a new copy of
 * it: its row is the new copy's, waiting for de-identification again. */
function upsertInstancesSql(rows: number): string {
  return `INSERT INTO instances (${INSTANCE_COLUMNS.join(', ')}, state)
        VALUES ${valuesList(`(${INSTANCE_COLUMNS.map(() => '?').join(', ')}, 'received')`, rows)}
        ON CONFLICT (sop_instance_uid) DO UPDATE SET
          series_pk = excluded.series_pk, sop_class_uid = excluded.sop_class_uid,
          instance_number = excluded.instance_number, content_date = excluded.content_date,
          content_time = excluded.content_time, number_of_frames = excluded.number_of_frames, rows = excluded.rows,
          columns = excluded.columns, image_type = excluded.image_type, manufacturer = excluded.manufacturer,
          manufacturer_model_name = excluded.manufacturer_model_name,
          device_serial_number = excluded.device_serial_number, station_name = excluded.station_name,
          institution_name = excluded.institution_name, burned_in_annotation = excluded.burned_in_annotation,
          recognizable_visual_features = excluded.recognizable_visual_features,
          transfer_syntax_uid = excluded.transfer_syntax_uid, file_path = excluded.file_path,
          file_size = excluded.file_size, file_mtime_ns = excluded.file_mtime_ns, file_ino = excluded.file_ino,
          calling_ae_title = excluded.calling_ae_title,
          received_at = excluded.received_at, state = 'received', state_changed_at = excluded.received_at,
          deid_superseded_path = CASE WHEN deid_file_path IS NOT NULL AND deid_deleted_at IS NULL THEN deid_file_path ELSE deid_superseded_path END,
          state_reason = NULL, deid_file_path = NULL, deid_file_size = NULL, deid_sop_instance_uid = NULL,
          deid_series_instance_uid = NULL, deid_study_instance_uid = NULL, deid_profile = NULL,
          routed_at = NULL, original_deleted_at = NULL, deid_deleted_at = NULL, deid_override = NULL,
          source_path = excluded.source_path, original_external = excluded.original_external, forward_held = excluded.forward_held`;
}

/** An instance row's values, in INSTANCE_COLUMNS order, written straight into the statement's
 * parameters (a received instance's row is written once per store: no array of its own). */
function instanceColumns({ record, seriesPk }: InstanceRow, into: unknown[], at: number): void {
  const a = record.attributes;
  let i = at;
  into[i++] = record.sopInstanceUid;
  into[i++] = seriesPk;
  into[i++] = record.sopClassUid;
  into[i++] = a.InstanceNumber ?? null;
  into[i++] = a.ContentDate ?? null;
  into[i++] = a.ContentTime ?? null;
  into[i++] = a.NumberOfFrames ?? null;
  into[i++] = a.Rows ?? null;
  into[i++] = a.Columns ?? null;
  into[i++] = a.ImageType ?? null;
  into[i++] = a.Manufacturer ?? null;
  into[i++] = a.ManufacturerModelName ?? null;
  into[i++] = a.DeviceSerialNumber ?? null;
  into[i++] = a.StationName ?? null;
  into[i++] = a.InstitutionName ?? null;
  into[i++] = a.BurnedInAnnotation ?? null;
  into[i++] = a.RecognizableVisualFeatures ?? null;
  into[i++] = record.transferSyntaxUid;
  into[i++] = record.filePath;
  into[i++] = record.fileSize;
  into[i++] = record.fileStamp?.mtimeNs ?? null;
  into[i++] = record.fileStamp?.ino ?? null;
  into[i++] = record.callingAeTitle;
  into[i++] = record.receivedAt;
  into[i++] = record.receivedAt;
  into[i++] = record.sourcePath ?? null;
  into[i++] = record.external ? 1 : 0;
  into[i++] = record.forwardHeld ? 1 : 0;
  // The statement's width is INSTANCE_COLUMNS.length: a column added to one and not the other shows.
  if (i - at !== INSTANCE_COLUMNS.length) throw new Error(`instance row of ${i - at} values for ${INSTANCE_COLUMNS.length} columns`);
}

/** A file's stamp as the statements' @fileMtimeNs and @fileIno (NULL when unknown). */
function stampParameters(stamp: FileStamp | undefined): { fileMtimeNs: string | null; fileIno: string | null } {
  return { fileMtimeNs: stamp?.mtimeNs ?? null, fileIno: stamp?.ino ?? null };
}

/**
 * The key of an instance's patients row: its IssuerOfPatientID and PatientID. An empty PatientID
 * identifies no one (unidentified emergency patients, a modality's default): each study without one
 * is a patient of its own. Keyed by the issuer alone, every such study was filed under one patient
 * whose name, birth date and sex were the last instance's, and a source C-FIND answered one patient's
 * study with another's name (found in the query review; PS3.4 C.6.2.1: a study's patient keys are
 * its patient's). No issuer and ID give this key: it starts with a control character.
 */
function patientKey(issuer: string, patientId: string, studyInstanceUid: string): string {
  return patientId.trim() === '' ? `\u0001${studyInstanceUid}` : `${issuer}\u0000${patientId}`;
}
