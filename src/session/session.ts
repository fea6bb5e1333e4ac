/**
 * `openSession(path)`: Gantry's index of a storage folder as a library. The same SQLite file the node
 * writes (WAL lets a running node and a session in at once), listed page by page, with the node's own
 * de-identification.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfigFile, type LoadedConfig } from '../config/load.js';
import { configSchema, type ConfigInput, type GantryConfig } from '../config/schema.js';
import { DATABASE_FILE, openDatabase, type Db } from '../db/database.js';
import { MIGRATIONS } from '../db/migrations/index.js';
import { refuseMigrationUnderNode } from '../pipeline/recovery.js';
import { deidSecret, Deidentifier } from './deidentifier.js';
import { checkExportRequest } from './export-request.js';
import { exportWithConfig, type ExportRequest, type ExportSummary } from '../toolkit/export.js';
import { checkState, Instance, Patient, Series, Study, type SessionContext } from './objects.js';
import { IndexQueries, pagedRows, type InstanceFilter, type SeriesRow } from './queries.js';

/** The keys instances() filters on (InstanceFilter). */
const FILTER_KEYS = ['StudyInstanceUID', 'SeriesInstanceUID', 'PatientID', 'Modality', 'state'] as const satisfies ReadonlyArray<keyof InstanceFilter>;

export interface SessionOptions {
  /**
   * The config whose de-identification settings (deid.*) the session uses: a YAML file's path (with
   * ${ENV} references resolved, as `gantry --config` reads it) or a config object as the file would
   * hold it. Default: the embedded config/gantry.yaml. Its storage.path is replaced by the session's path.
   */
  config?: string | ConfigInput;
}

export interface IndexCounts {
  patients: number;
  studies: number;
  series: number;
  instances: number;
}

/**
 * Opens the index of the storage folder `path` (Gantry's storage.path: it holds index.sqlite).
 * Close the session when done. Throws when there is no index there, or the config is invalid.
 */
export function openSession(path: string, options: SessionOptions = {}): Session {
  const storagePath = resolve(path);
  const databaseFile = join(storagePath, DATABASE_FILE);
  if (!existsSync(databaseFile)) throw new Error(`no Gantry index at ${databaseFile}: give the storage folder (storage.path) of a node`);
  const loaded = withStoragePath(loadSessionConfig(options.config), storagePath);
  return new Session(openDatabase(databaseFile, MIGRATIONS, { beforeMigrating: refuseMigrationUnderNode(storagePath) }), loaded);
}

function loadSessionConfig(config: string | ConfigInput | undefined): LoadedConfig {
  if (config === undefined) return loadConfigFile(undefined);
  if (typeof config === 'string') return loadConfigFile(config);
  const source = 'openSession options.config';
  const parsed = configSchema.safeParse(config);
  if (!parsed.success) throw new ConfigError(source, parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top)'}: ${issue.message}`));
  return { config: parsed.data, source, embedded: false };
}

function withStoragePath(loaded: LoadedConfig, storagePath: string): LoadedConfig {
  return { ...loaded, config: { ...loaded.config, storage: { ...loaded.config.storage, path: storagePath } } };
}

export class Session {
  /** The storage folder, absolute. */
  readonly storagePath: string;
  #db: Db | undefined;
  #queries: IndexQueries | undefined;
  /** Exports running: the index must stay open under them. */
  #exporting = 0;
  #deidentifier: Deidentifier | undefined;
  readonly #loaded: LoadedConfig;
  readonly #context: SessionContext;

  /** Use openSession. */
  constructor(db: Db, loaded: LoadedConfig) {
    this.#db = db;
    this.#queries = new IndexQueries(db);
    this.#loaded = loaded;
    this.storagePath = loaded.config.storage.path;
    this.#context = {
      storagePath: this.storagePath,
      queries: () => this.#openQueries(),
      deidentifier: () => (this.#deidentifier ??= new Deidentifier(this.#loaded, this.storagePath, this.#openDb())),
    };
  }

  /** The effective config (defaults filled in; storage.path is the session's). A getter, so that
   * logging the session does not print deid.secret. */
  get config(): GantryConfig {
    const { config } = this.#loaded;
    // The secret is the key of every pseudonym: it stays inside the session, even from its caller.
    return config.deid.secret === undefined ? config : { ...config, deid: { ...config.deid, secret: '<set, not shown>' } };
  }

  /** Every patient, in the order first received. */
  *patients(): Generator<Patient> {
    for (const row of pagedRows((afterId) => this.#openQueries().patientsAfter(afterId))) yield new Patient(this.#context, row);
  }

  /**
   * Instances matching every key of `filter` (none: all of them). Listed series by series when the
   * filter names a study, series, patient or modality, otherwise in the order received.
   */
  *instances(filter: InstanceFilter = {}): Generator<Instance> {
    // A misspelt key would otherwise match everything (JavaScript callers have no type check).
    for (const key of Object.keys(filter)) {
      if (!(FILTER_KEYS as readonly string[]).includes(key)) throw new RangeError(`"${key}" is not a filter of instances(): use ${FILTER_KEYS.join(', ')}`);
    }
    checkState(filter.state);
    const byHierarchy = filter.StudyInstanceUID !== undefined || filter.SeriesInstanceUID !== undefined || filter.PatientID !== undefined || filter.Modality !== undefined;
    if (!byHierarchy) {
      for (const row of pagedRows((afterId) => this.#openQueries().instancesAfter(filter.state, afterId))) yield new Instance(this.#context, row);
      return;
    }
    // Series first, then each one's instances: every page is then read through an index, however
    // large the index (a join filtered on the study would scan instances in id order).
    for (const series of pagedRows<SeriesRow>((afterId) => this.#openQueries().seriesMatchingAfter(filter, afterId))) {
      yield* new Series(this.#context, series).instances(filter.state);
    }
  }

  /**
   * Writes the de-identified form of the selection (default: everything not held back) under
   * `request.out`, as `gantry export` does: the node's copies where it made them, the node's
   * de-identification otherwise, in a pseudonymised layout; running it again on the same folder resumes.
   */
  async export(request: ExportRequest): Promise<ExportSummary> {
    checkExportRequest(request);
    const db = this.#openDb();
    this.#exporting += 1;
    try {
      return await exportWithConfig(db, this.#loaded, deidSecret(this.#loaded, this.storagePath), request);
    } finally {
      this.#exporting -= 1;
    }
  }

  patient(PatientID: string, IssuerOfPatientID = ''): Patient | undefined {
    const row = this.#openQueries().patientById(PatientID, IssuerOfPatientID);
    return row && new Patient(this.#context, row);
  }

  study(StudyInstanceUID: string): Study | undefined {
    const row = this.#openQueries().studyByUid(StudyInstanceUID);
    return row && new Study(this.#context, row);
  }

  series(SeriesInstanceUID: string): Series | undefined {
    const row = this.#openQueries().seriesByUid(SeriesInstanceUID);
    return row && new Series(this.#context, row);
  }

  /** The instance's current row, or undefined when it is not (or no longer) indexed. */
  instance(SOPInstanceUID: string): Instance | undefined {
    const row = this.#openQueries().instanceByUid(SOPInstanceUID);
    return row && new Instance(this.#context, row);
  }

  counts(): IndexCounts {
    return this.#openQueries().counts();
  }

  /** Closes the index. Objects listed before keep their indexed properties, attributes and frames;
   * listing or de-identifying through them throws. Closing twice does nothing. Refused while an export
   * runs: closed under it, the export failed half-way with the driver's "connection is not open". */
  close(): void {
    if (this.#exporting > 0) throw new Error('an export of this session is running: await it before closing the session');
    this.#db?.close();
    this.#db = undefined;
    this.#queries = undefined;
  }

  #openDb(): Db {
    if (!this.#db) throw new Error('the session is closed');
    return this.#db;
  }

  #openQueries(): IndexQueries {
    if (!this.#queries) throw new Error('the session is closed');
    return this.#queries;
  }
}
