/**
 * bench/persist: persisting pseudonym mappings (PseudonymLedger.record) and per-instance audit
 * findings (DeidWork.recordAudits) in bulk, against the target of 0.13 s for 100,000 of each.
 *
 *   node dist/bench/persist.js [--rounds 5] [--patients 50000] [--instances 100000] [--data .bench-data] [--explain]
 *
 * Every round opens a fresh index file (openDatabase: WAL, synchronous=NORMAL, every migration), so
 * that no round writes into pages an earlier round left warm. Only the persisting call is timed: the
 * values are made beforehand, the audits encoded (JSON and its SHA-256) as the de-identification
 * workers send them (made in parallel, off the main thread), and the instances the audit rows belong to (foreign key) are
 * inserted before the clock starts. Each round checks that every row arrived, so that a round cannot time a
 * no-op. The connection checkpoints as the node's does, in a worker thread (runRound). Prints every
 * round, then medians and whether each is under the target. --explain adds, per
 * round, a second fresh index that splits each figure into its parts (see explainRound).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BackgroundCheckpoints, type WalCheckpoint } from '../src/db/background-checkpoints.js';
import { workerPool } from '../src/worker-loading.js';
import { openDatabase, type Db } from '../src/db/database.js';
import { silentLogger } from '../src/observability/logger.js';
import { Pseudonymizer } from '../src/deid/pseudonyms.js';
import { auditText } from '../src/deid/audit-text.js';
import type { EncodedAudit } from '../src/index/deid-audit.js';
import { DeidWork } from '../src/index/deid-work.js';
import { InstanceIndex } from '../src/index/instance-index.js';
import { PseudonymLedger, type PseudonymMapping } from '../src/index/pseudonym-ledger.js';
import { median } from './stats.js';
import { fillFreeMemory } from './vm-memory.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    patients: { type: 'string', default: '50000' },
    instances: { type: 'string', default: '100000' },
    data: { type: 'string', default: '.bench-data' },
    explain: { type: 'boolean', default: false },
  },
});
const MAX_PATIENTS = 64_000;
const rounds = Number(values.rounds);
const patients = Number(values.patients);
const instances = Number(values.instances);
const root = resolve(values.data);
const TARGET_SECONDS = 0.13;
if (patients > MAX_PATIENTS) throw new Error(`--patients: at most ${MAX_PATIENTS} (one made-up name each)`);

type AuditRow = { instancePk: number; entries: unknown[]; findings: unknown[] };
/** Series of instances whose audits differ (a private element of their own removed). */
const SERIES_PATTERNS = 16;

const SYLLABLES = ['ka', 'lo', 'mi', 'ran', 'sen', 'to', 'vel', 'dor', 'ha', 'ne', 'gar', 'li', 'mon', 'su', 'ber', 'ta', 'ko', 'ri', 'van', 'de', 'ma', 'lin', 'os', 'te', 'bu', 'rel', 'an', 'zo', 'pe', 'kin', 'sa', 'wen', 'ol', 'fa', 'ric', 'mu', 'ya', 'del', 'no', 'gu'];
const GIVEN = ['Anna', 'John', 'Maria', 'Wei', 'Fatima', 'Lars', 'Sofia', 'Ahmed', 'Emma', 'Luca', 'Yuki', 'Olga', 'Pierre', 'Grace', 'Tomas', 'Ines'];

/** A made-up family name of three syllables, one per patient up to 64,000 patients. */
function familyName(n: number): string {
  const syllable = (digit: number) => SYLLABLES[Math.floor(n / SYLLABLES.length ** digit) % SYLLABLES.length] as string;
  const name = `${syllable(2)}${syllable(1)}${syllable(0)}`;
  return `${name.charAt(0).toUpperCase()}${name.slice(1)}`;
}

/**
 * `count` patients' PatientID and PatientName mappings (two per patient), with the pseudonyms
 * src/deid/pseudonyms.ts gives them. Patients come in the order they would arrive, unrelated to their
 * MRNs' or names' order: input already in key order would flatter record's sort and the B-tree.
 */
function pseudonymMappings(count: number): PseudonymMapping[] {
  const pseudonymizer = new Pseudonymizer('the benchmark secret, long enough');
  const mappings: PseudonymMapping[] = [];
  for (let n = 0; n < count; n += 1) {
    // A multiplicative scramble of n: distinct 8-digit MRNs in no particular order.
    const mrn = String(10_000_000 + ((n * 7_368_787) % 89_999_999)).padStart(8, '0');
    const name = `${familyName(n)}^${GIVEN[n % GIVEN.length]}`;
    const key = { issuerOfPatientId: 'HOSPITAL-A', patientId: mrn };
    mappings.push({ kind: 'PatientID', original: mrn, pseudonym: pseudonymizer.patientId(key) });
    mappings.push({ kind: 'PatientName', original: name, pseudonym: pseudonymizer.patientName(key) });
  }
  return mappings;
}

/**
 * What the de-identifier records for an instance: a few audit entries (paths, keywords, actions;
 * never values) and one finding. Each instance gets arrays of its own, as the engine hands them over.
 * The entries differ between SERIES_PATTERNS series (each removes a private element of its own), or,
 * with `everyOneDistinct`, between every instance (the worst case for storing each text once).
 */
function auditRows(instancePks: number[], everyOneDistinct = false): AuditRow[] {
  return instancePks.map((instancePk, n) => ({
    instancePk,
    entries: [
      { path: '(0008,0018)', keyword: 'SOPInstanceUID', action: 'uid' },
      { path: '(0008,0020)', keyword: 'StudyDate', action: 'clean' },
      { path: '(0008,0090)', keyword: 'ReferringPhysicianName', action: 'empty' },
      { path: '(0010,0010)', keyword: 'PatientName', action: 'dummy' },
      { path: '(0010,0020)', keyword: 'PatientID', action: 'dummy' },
      { path: `(0019,${(0x1000 + (everyOneDistinct ? n : n % SERIES_PATTERNS)).toString(16).toUpperCase()})`, keyword: '', action: 'remove' },
    ],
    findings: [{ code: 'identifier-in-text', message: "StudyDescription quotes the patient's name or an identifier", path: '(0008,1030)' }],
  }));
}

/** The audits as the de-identification workers send them to the main thread: JSON and its SHA-256,
 * made there (src/deid/audit-text.ts). */
function encode(rows: AuditRow[]): EncodedAudit[] {
  return rows.map((row) => ({ instancePk: row.instancePk, entries: auditText(row.entries), findings: auditText(row.findings) }));
}

/**
 * Indexes `count` instances (the audit rows' foreign key), untimed: one through InstanceIndex, which
 * makes its patient, study and series rows, then the rest copied from it in SQL, into that series
 * (the audit rows need nothing more than the instance rows).
 */
function indexInstances(db: Db, count: number): number[] {
  new InstanceIndex(db).upsert({
    attributes: { PatientName: 'Bench^Persist', PatientID: 'BENCH01', Modality: 'CT' },
    studyInstanceUid: '1.2.826.0.1.3680043.9.7433.1.1',
    seriesInstanceUid: '1.2.826.0.1.3680043.9.7433.2.1',
    sopInstanceUid: '1.2.826.0.1.3680043.9.7433.3.0',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    filePath: 'originals/0.dcm',
    fileSize: 524_288,
    callingAeTitle: 'BENCH',
    receivedAt: Date.now(),
  });
  db.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
     INSERT INTO instances (sop_instance_uid, series_pk, sop_class_uid, transfer_syntax_uid, file_path, file_size, calling_ae_title, received_at, state_changed_at)
     SELECT '1.2.826.0.1.3680043.9.7433.3.' || n.i, f.series_pk, f.sop_class_uid, f.transfer_syntax_uid, 'originals/' || n.i || '.dcm', f.file_size, f.calling_ae_title, f.received_at, f.state_changed_at
     FROM n, (SELECT * FROM instances LIMIT 1) f`,
  ).run(count - 1);
  return (db.prepare('SELECT id FROM instances ORDER BY id').pluck().all() as number[]).slice(0, count);
}

function countRows(db: Db, table: string): number {
  return db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
}

function seconds(work: () => void): number {
  const began = performance.now();
  work();
  return (performance.now() - began) / 1000;
}

interface Round {
  mappings: number;
  audits: number;
  /** originalOf on the full ledger, milliseconds (no index on the pseudonym: a scan of one kind). */
  lookupMs: number;
}

/** A fresh index in the round's scratch folder, with `instances` instances indexed (untimed). */
function freshIndex(name: string, everyOneDistinct = false): { db: Db; file: string; rows: EncodedAudit[]; encodeSeconds: number; dispose: () => void } {
  const dir = join(root, 'work', 'persist', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'index.sqlite');
  const db = openDatabase(file);
  const made = auditRows(indexInstances(db, instances), everyOneDistinct);
  let rows: EncodedAudit[] = [];
  const encodeSeconds = seconds(() => (rows = encode(made)));
  return {
    db,
    file,
    rows,
    encodeSeconds,
    dispose: () => {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function checkEverythingPersisted(db: Db, mappings: PseudonymMapping[], rows: EncodedAudit[]): void {
  if (countRows(db, 'pseudonym_map') !== mappings.length) throw new Error('not every pseudonym mapping was persisted');
  if (countRows(db, 'deid_audit') !== rows.length) throw new Error('not every audit row was persisted');
}

/** The thread the checkpoints run in (in the node, one of the de-identification threads). */
const checkpointThread = workerPool({ filename: new URL('../src/db/checkpoint-task.js', import.meta.url).href, minThreads: 1, maxThreads: 1 }, (error) => console.error(error));

/**
 * A round as the node persists: its connection checkpoints in a worker thread (src/db/
 * background-checkpoints.ts), so a commit copies nothing into the database file. Between the two
 * timed calls, untimed, the thread copies the mappings' pages, as it would between two writes of the
 * node; --explain times that copy on its own.
 */
async function runRound(round: number, mappings: PseudonymMapping[]): Promise<Round> {
  const { db, file, rows, dispose } = freshIndex(`round-${round}`);
  // Every round starts with an empty WAL: the untimed indexing's pages are in the database file.
  db.pragma('wal_checkpoint(TRUNCATE)');
  const checkpoints = new BackgroundCheckpoints(db, (signal) => checkpointThread.run({ databaseFile: file }, { signal }) as Promise<WalCheckpoint>, silentLogger());
  try {
    // The thread up and past its first look, as in a node that has been running.
    await withinAMinute(checkpoints.nextCheckpoint(), 'the checkpoint thread did not start');
    const ledger = new PseudonymLedger(db);
    const work = new DeidWork(db);
    const now = Date.now();
    const mappingsSeconds = seconds(() => ledger.record(mappings, now));
    await caughtUp(checkpoints);
    const auditsSeconds = seconds(() => work.recordAudits(rows, now));
    checkEverythingPersisted(db, mappings, rows);
    const wanted = mappings[mappings.length - 1] as PseudonymMapping;
    let found: string | undefined;
    const lookupMs = seconds(() => (found = ledger.originalOf(wanted.kind, wanted.pseudonym))) * 1000;
    if (found !== wanted.original) throw new Error('originalOf did not find the original');
    return { mappings: mappingsSeconds, audits: auditsSeconds, lookupMs };
  } finally {
    await checkpoints.stop();
    dispose();
  }
}

/** Until the thread's checkpoint has copied every frame of a WAL that has some. */
async function caughtUp(checkpoints: BackgroundCheckpoints): Promise<void> {
  for (;;) {
    const { log, checkpointed } = await withinAMinute(checkpoints.nextCheckpoint(), 'the checkpoint thread did not copy the WAL');
    if (log > 0 && checkpointed === log) return;
  }
}

async function withinAMinute<T>(promise: Promise<T>, failure: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${failure} within a minute`)), 60_000)))]);
  } finally {
    clearTimeout(timer);
  }
}

interface Explained {
  mappingsWithoutCheckpoint: number;
  mappingsCheckpoint: number;
  auditsWithoutCheckpoint: number;
  auditsCheckpoint: number;
  /** JSON and SHA-256 of every row's entries and findings, which the workers make, in parallel. */
  encode: number;
  /** recordAudits, checkpoint included, when no two instances' entries are the same. */
  auditsAllDistinct: number;
}

/**
 * --explain: where the time goes. The same calls on another fresh index whose connection does not
 * checkpoint at commit (wal_autocheckpoint = 0, set here only), then the checkpoint SQLite would
 * have run (PASSIVE, as the automatic one) timed on its own; the audits' encoding (JSON and SHA-256, in
 * the workers in the node); and the audits written when no two instances' entries are the same.
 */
function explainRound(round: number, mappings: PseudonymMapping[]): Explained {
  const { db, rows, encodeSeconds, dispose } = freshIndex(`explain-${round}`);
  const distinct = freshIndex(`explain-distinct-${round}`, true);
  try {
    db.pragma('wal_autocheckpoint = 0');
    db.pragma('wal_checkpoint(TRUNCATE)');
    const ledger = new PseudonymLedger(db);
    const work = new DeidWork(db);
    const now = Date.now();
    const checkpoint = () => db.pragma('wal_checkpoint(PASSIVE)');
    const explained = {
      mappingsWithoutCheckpoint: seconds(() => ledger.record(mappings, now)),
      mappingsCheckpoint: seconds(checkpoint),
      auditsWithoutCheckpoint: seconds(() => work.recordAudits(rows, now)),
      auditsCheckpoint: seconds(checkpoint),
      encode: encodeSeconds,
      auditsAllDistinct: seconds(() => new DeidWork(distinct.db).recordAudits(distinct.rows, now)),
    };
    checkEverythingPersisted(db, mappings, rows);
    if (countRows(distinct.db, 'deid_audit') !== distinct.rows.length) throw new Error('not every distinct audit row was persisted');
    return explained;
  } finally {
    dispose();
    distinct.dispose();
  }
}

function verdict(value: number): string {
  return value < TARGET_SECONDS ? `under the ${TARGET_SECONDS} s target` : `MISSES the ${TARGET_SECONDS} s target`;
}

function medianOf<T>(results: T[], pick: (result: T) => number): string {
  return median(results.map(pick)).toFixed(3);
}

function printExplained(explained: Explained[]): void {
  console.log(`where the time goes (--explain, medians of ${explained.length} more rounds; checkpoint = copying the WAL into the database file and its fsyncs, which the node runs in a worker thread, src/db/background-checkpoints.ts, and SQLite otherwise at the commit that takes the WAL past 1000 pages):`);
  console.log(
    `pseudonym mappings: ${medianOf(explained, (e) => e.mappingsWithoutCheckpoint)} s without the checkpoint + ${medianOf(explained, (e) => e.mappingsCheckpoint)} s checkpoint`,
  );
  console.log(
    `audit findings: ${medianOf(explained, (e) => e.auditsWithoutCheckpoint)} s without the checkpoint + ${medianOf(explained, (e) => e.auditsCheckpoint)} s checkpoint`,
  );
  console.log(`encoding the audits (JSON and SHA-256), in the de-identification workers (not timed above): ${medianOf(explained, (e) => e.encode)} s on one thread`);
  console.log(`audit findings when every instance's entries differ (each text stored): ${medianOf(explained, (e) => e.auditsAllDistinct)} s`);
}

async function main(): Promise<void> {
  // Before anything is timed (bench/vm-memory.ts).
  fillFreeMemory(resolve(values.data));
  const mappings = pseudonymMappings(patients);
  const results: Round[] = [];
  const explained: Explained[] = [];
  for (let round = 1; round <= rounds; round += 1) {
    const result = await runRound(round, mappings);
    results.push(result);
    console.log(`round ${round}: ${mappings.length} pseudonym mappings ${result.mappings.toFixed(3)} s, ${instances} audit rows ${result.audits.toFixed(3)} s`);
    if (values.explain) explained.push(explainRound(round, mappings));
  }
  const mappingsMedian = median(results.map((result) => result.mappings));
  const auditsMedian = median(results.map((result) => result.audits));
  console.log(`${rounds} rounds, medians (fresh index file each round, only the persisting call timed):`);
  console.log(`pseudonym mappings (${mappings.length}): ${mappingsMedian.toFixed(3)} s, ${verdict(mappingsMedian)}`);
  console.log(`audit findings (${instances} instances): ${auditsMedian.toFixed(3)} s, ${verdict(auditsMedian)}`);
  console.log(`originalOf on ${mappings.length} mappings: ${median(results.map((result) => result.lookupMs)).toFixed(2)} ms`);
  if (values.explain) printExplained(explained);
}

try {
  await main();
} finally {
  await checkpointThread.destroy();
}
