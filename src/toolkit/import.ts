/**
 * gantry import: a folder tree into the index, without a network. Files stay where they are (the index
 * names them by their path, and Gantry never deletes or changes them, retention included) unless
 * --copy puts a copy in the storage layout. Headers are read up to Pixel Data in worker threads; the
 * main thread walks the tree and writes the index, a transaction per batch. A file whose path is
 * already indexed is skipped, so an interrupted import resumes where it stopped. Imported instances
 * wait for de-identification like received ones (the node picks them up), and are forwarded only when
 * imported with --forward.
 */
import { statSync } from 'node:fs';
import { lstat, opendir, realpath, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import { InstanceIndex, type InstanceRecord } from '../index/instance-index.js';
import type { ImportScan, ScannedInstance, ScanTask } from './import-scan.js';
import { openCopyList, settleAbandonedCopyLists, settleCopyList } from './import-copies.js';
import { tally, type Progress } from './progress.js';
import { workerPool } from '../worker-loading.js';
import { commandLogger } from '../observability/logger.js';
import { SkippedList } from './skipped-list.js';

/** Files per task: enough to amortise a message between threads, few enough to keep all busy. */
const BATCH = 128;
/** The calling AE title imported instances carry (rules and destination conditions can name it). */
export const IMPORT_CALLING_AE_TITLE = 'IMPORT';
const MAX_EXAMPLES = 20;

export interface ImportOptions {
  roots: readonly string[];
  /** Copy the files into storage instead of indexing them in place. */
  copy: boolean;
  /** Forward the instances once de-identified, like received ones. */
  forward: boolean;
  workers: number;
  progress?: Progress;
  /** Where a failure of a thread that no batch waits for is told (default: stderr, warnings and worse). */
  log?: Logger;
  /** Where every file not indexed is listed with its reason (skipped-list.ts); none when absent. */
  skippedList?: string;
}

export interface ImportSummary {
  /** Regular files found under the roots. */
  files: number;
  indexed: number;
  bytes: number;
  /** Their path was indexed by an earlier import: skipped (a resumed import). */
  alreadyIndexed: number;
  /** Indexed before without --forward, now imported again with it: forwarded from now on. */
  released: number;
  /** Imported in place before from a path where they are no more, found here at the size indexed:
   * the index names them here from now on (a tree moved, then imported again). */
  moved: number;
  /** Their SOP Instance UID is indexed already, from another file or the network: skipped. */
  duplicates: number;
  notDicom: number;
  unreadable: number;
  /** Why files were not indexed, with counts (offsets and lengths in the reasons folded, so this stays small). */
  problems: Map<string, number>;
  /** The first few files not indexed (not DICOM, unreadable, a duplicate SOP Instance UID), with their reason. */
  examples: Array<{ path: string; reason: string }>;
  /** The file that lists every one of them (options.skippedList), when any was left out. */
  skippedList?: string;
}

export async function importFolders(db: Db, storagePath: string, options: ImportOptions): Promise<ImportSummary> {
  const summary: ImportSummary = { files: 0, indexed: 0, bytes: 0, alreadyIndexed: 0, released: 0, moved: 0, duplicates: 0, notDicom: 0, unreadable: 0, problems: new Map(), examples: [] };
  const skipped = new Skipped(summary, options.skippedList === undefined ? undefined : new SkippedList(options.skippedList));
  const index = new InstanceIndex(db);
  const log = options.log ?? commandLogger('warn');
  const pool = workerPool({
    filename: new URL('./import-scan.js', import.meta.url).href,
    minThreads: options.workers,
    maxThreads: options.workers,
    idleTimeout: 1000,
    // A batch of headers at a time: small heaps keep the threads' memory flat however large the tree.
    resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 4 },
  }, (error) => log.error({ err: error.message }, 'an import thread failed (replaced; the import goes on)'));
  // Copies an earlier import --copy made and never committed (it was killed) go first.
  settleAbandonedCopyLists(db, storagePath);
  const copyList = options.copy ? openCopyList(storagePath) : undefined;
  const inFlight = new Set<Promise<void>>();
  // The first failure of a batch (the index unwritable, a thread lost) ends the import, after the
  // batches in flight; none is left as an unhandled rejection.
  let failure: Error | undefined;
  const record = (results: ImportScan[]) => recordBatch(db, index, storagePath, options, results, summary, skipped);
  const dispatch = async (found: FoundFile[]) => {
    const paths = found.map((file) => file.path);
    await renameRowsOfWalkedPaths(index, storagePath, found);
    const known = index.knownSourcePaths(paths);
    summary.alreadyIndexed += known.size;
    // Imported before without --forward: a run again with --forward lets them be forwarded.
    if (options.forward && known.size > 0) summary.released += index.releaseForwarding([...known]);
    options.progress?.add(known.size);
    const remaining = paths.filter((path) => !known.has(path));
    if (remaining.length === 0) return;
    while (inFlight.size >= options.workers * 2) await Promise.race(inFlight);
    const task: ScanTask = { paths: remaining, ...(copyList ? { copyInto: storagePath, copyList: copyList.path } : {}) };
    const running: Promise<void> = (pool.run(task) as Promise<ImportScan[]>)
      .then(record)
      .catch((error: Error) => {
        failure ??= error;
      })
      .finally(() => inFlight.delete(running));
    inFlight.add(running);
  };
  try {
    let batch: FoundFile[] = [];
    const unreadable = (path: string, reason: string) => skipped.problem('unreadable', path, reason);
    for await (const file of filesUnder(options.roots, storagePath, unreadable)) {
      if (failure) break;
      summary.files += 1;
      batch.push(file);
      if (batch.length >= BATCH) {
        await dispatch(batch);
        batch = [];
      }
    }
    if (batch.length > 0 && !failure) await dispatch(batch);
    await Promise.all(inFlight);
    if (failure) throw failure;
  } finally {
    // Also when the walk failed: the batches under way are recorded (their copies are in storage),
    // not cut off by the pool's end. They never reject (dispatch keeps the failure).
    await Promise.all(inFlight);
    await pool.destroy();
    skipped.close();
    // Every copy is now named by its row or was never committed: those go, and the list with them.
    if (copyList) {
      settleCopyList(db, storagePath, copyList.path);
      copyList.close();
    }
  }
  options.progress?.finish();
  return summary;
}

/** The regular files under the roots, depth first, one directory open at a time per level, each by
 * its real path: the index names a file by where it is, so that no other name of it (a link to its
 * folder) lets an export or a de-identification write among the user's originals. Symbolic links are
 * followed, to files and to folders (an archive's year folders are often links to other disks). Each
 * folder is walked once however it is reached (directly, through links, under overlapping roots:
 * folders known by device and inode, so memory grows with the folders, not the files), which also
 * ends loops. A link whose target cannot be read is reported, not passed over. The storage folder is
 * left out, by its real path (a root may reach it through a symbolic link, or name it by another path). */
/**
 * Rows an earlier version recorded under the path a file was walked through (a link), not its real
 * path, are named by the real path from now on, so that the file counts as imported and the guards on
 * imported files see it; only where the file has the row's size and inode (renameSourcePaths).
 */
async function renameRowsOfWalkedPaths(index: InstanceIndex, storagePath: string, found: readonly FoundFile[]): Promise<void> {
  const walkedAs = found.filter((file) => file.walked !== file.path);
  if (walkedAs.length === 0) return;
  const recorded = index.knownSourcePaths(walkedAs.map((file) => file.walked));
  const aliases = walkedAs.filter((file) => recorded.has(file.walked));
  if (aliases.length === 0) return;
  const stats = await Promise.all(aliases.map((file) => stat(file.path, { bigint: true }).catch(() => undefined)));
  index.renameSourcePaths(
    aliases.flatMap((file, n) => {
      const info = stats[n];
      return info ? [{ from: file.walked, to: file.path, filePath: relative(storagePath, file.path), size: Number(info.size), ino: info.ino.toString() }] : [];
    }),
  );
}

/** A file found by the walk: its real path, and the path it was reached by (the same unless a link led to it). */
interface FoundFile {
  path: string;
  walked: string;
}

async function* filesUnder(roots: readonly string[], storagePath: string, unreadable: (path: string, reason: string) => void): AsyncGenerator<FoundFile> {
  const storage = (await realpath(storagePath).catch(() => resolve(storagePath))) + sep;
  const walked = new WalkedPaths();
  // Every root checked before the first file: a mistyped last root must not end the import once the
  // first roots' batches are under way.
  const checked = [];
  for (const root of roots) {
    const absolute = resolve(root);
    const info = await stat(absolute).catch((error: NodeJS.ErrnoException) => {
      throw new Error(`${root}: ${error.code === 'ENOENT' ? 'no such folder or file' : `cannot be read (${error.code ?? 'error'})`}; nothing was imported`);
    });
    if (!info.isFile() && !info.isDirectory()) throw new Error(`${root} is neither a folder nor a file; nothing was imported`);
    checked.push({ absolute, isFile: info.isFile() });
  }
  for (const { absolute, isFile } of checked) {
    if (isFile) {
      const real = await realFile(absolute, storage, unreadable);
      if (real !== undefined && walked.firstTimeLinked(real)) yield { path: real, walked: absolute };
      continue;
    }
    yield* walk(absolute, storage, unreadable, walked);
  }
}

/** Whether a real path is the storage folder or under it. */
function insideStorage(real: string, storage: string): boolean {
  return (real + sep).startsWith(storage);
}

/** A file's real path, unless it lies in storage (undefined); one that cannot be resolved is reported. */
async function realFile(path: string, storage: string, unreadable: (path: string, reason: string) => void): Promise<string | undefined> {
  try {
    const real = await realpath(path);
    return insideStorage(real, storage) ? undefined : real;
  } catch (error) {
    unreadable(path, `a file that cannot be resolved (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    return undefined;
  }
}

/**
 * What the walk has reached, so that each folder is walked once and each file found once, however
 * they are reached: a file reached through a link or named as a root, and again in its folder, was
 * counted twice and reported as a duplicate of itself (found in the toolkit review). Only folders and
 * the files reached otherwise than in their folder are kept, not every file.
 */
class WalkedPaths {
  /** Folders walked (or being walked), by device and inode, and by real path. */
  private readonly identities = new Set<string>();
  private readonly realFolders = new Set<string>();
  /** Files found through a link or as a root, by real path. */
  private readonly linkedFiles = new Set<string>();

  /** False when the folder (its device and inode) was reached before. */
  firstTimeFolder(identity: string): boolean {
    if (this.identities.has(identity)) return false;
    this.identities.add(identity);
    return true;
  }

  /** The folder's files are being found in it: only once it could be opened (one that cannot be listed
   * finds nothing, and a file of it named or linked to is found by itself; found in the diff review). */
  listing(real: string): void {
    this.realFolders.add(real);
  }

  /** A file reached through a link or as a root: false when its folder's walk finds it (or found it),
   * or another link did. */
  firstTimeLinked(real: string): boolean {
    if (this.realFolders.has(dirname(real)) || this.linkedFiles.has(real)) return false;
    this.linkedFiles.add(real);
    return true;
  }

  /** A file found in its folder: false when a link or a root found it first. */
  firstTimeInFolder(real: string): boolean {
    return this.linkedFiles.size === 0 || !this.linkedFiles.has(real);
  }
}

/** A folder that cannot be read is reported and skipped; the walk goes on. */
async function* walk(directory: string, storage: string, unreadable: (path: string, reason: string) => void, walked: WalkedPaths): AsyncGenerator<FoundFile> {
  let real;
  let entries;
  try {
    real = await realpath(directory);
    if (insideStorage(real, storage)) return;
    // As bigints: an inode number may pass 2^53 (XFS, NFS).
    const info = await stat(real, { bigint: true });
    if (!walked.firstTimeFolder(`${info.dev}:${info.ino}`)) return;
    entries = await opendir(real);
    walked.listing(real);
  } catch (error) {
    unreadable(directory, `a folder that cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    return;
  }
  for await (const entry of entries) {
    const path = join(real, entry.name);
    if (entry.name.includes('\ufffd') && (await notThere(path))) {
      // Node reads names as UTF-8: a Latin-1 name (an old Windows share, a CD) reads as another name,
      // which is not there; said so, not as "ENOENT" (found in the toolkit review).
      unreadable(join(directory, entry.name), `a name that is not UTF-8 (Gantry reads names as UTF-8): rename it${entry.isDirectory() ? ', and the files under it are found' : ''} (convmv, for example)`);
      continue;
    }
    // Folders by the path walked (each resolved once, in walk): the files' walked paths keep a link's name.
    if (entry.isDirectory()) yield* walk(join(directory, entry.name), storage, unreadable, walked);
    else if (entry.isFile()) {
      if (walked.firstTimeInFolder(path)) yield { path, walked: join(directory, entry.name) };
    }
    else if (entry.isSymbolicLink()) {
      const target = await stat(path).catch((error: NodeJS.ErrnoException) => error);
      if (target instanceof Error) unreadable(path, `a symbolic link whose target cannot be read (${target.code ?? 'error'})`);
      else if (target.isFile()) {
        const file = await realFile(path, storage, unreadable);
        if (file !== undefined && walked.firstTimeLinked(file)) yield { path: file, walked: join(directory, entry.name) };
      } else if (target.isDirectory()) yield* walk(join(directory, entry.name), storage, unreadable, walked);
    }
  }
}

async function notThere(path: string): Promise<boolean> {
  return lstat(path).then(
    () => false,
    (error: NodeJS.ErrnoException) => error.code === 'ENOENT',
  );
}

/** One transaction for a batch's instances; problems counted. */
function recordBatch(db: Db, index: InstanceIndex, storagePath: string, options: ImportOptions, results: ImportScan[], summary: ImportSummary, skipped: Skipped): void {
  const now = Date.now();
  const orphanCopies: string[] = [];
  let bytes = 0;
  const write = db.transaction(() => {
    // New instances are written together after the loop (InstanceIndex.insertNew): a second file of
    // one of them in this batch is told by this set, as the index tells one of an earlier batch.
    const fresh = new Map<string, InstanceRecord>();
    for (const result of results) {
      if (result.kind !== 'dicom') {
        skipped.problem(result.kind, result.path, result.reason);
        continue;
      }
      const inBatch = fresh.has(result.sopInstanceUid);
      if (inBatch || index.hasInstance(result.sopInstanceUid)) {
        // Indexed from this very file since the walk began, by another import that runs beside this
        // one: already indexed, not a duplicate of another file (found in the concurrency review).
        if (!inBatch && index.importedFrom(result.sopInstanceUid, result.path)) {
          summary.alreadyIndexed += 1;
          if (result.copiedTo) orphanCopies.push(result.copiedTo);
          continue;
        }
        if (!inBatch && movedHere(index, storagePath, result)) {
          index.relocateImported(result.sopInstanceUid, recordedPath(result, storagePath), result.stamp, result.path, result.copiedTo === undefined, options.forward);
          summary.moved += 1;
          continue;
        }
        summary.duplicates += 1;
        // Named like the files not read: two files of one UID may hold different images, and the
        // operator must be able to find the one left out.
        skipped.name(result.path, 'its SOP Instance UID is indexed already (another file, or an instance received): not imported');
        if (result.copiedTo) orphanCopies.push(result.copiedTo);
        continue;
      }
      fresh.set(result.sopInstanceUid, toRecord(result, storagePath, options, now));
      summary.indexed += 1;
      bytes += result.size;
    }
    index.insertNew([...fresh.values()]);
  });
  try {
    // IMMEDIATE: the batch reads (which UIDs are indexed) before it writes; a deferred transaction
    // whose snapshot a running node's commit made stale fails at its first write at once
    // (SQLITE_BUSY_SNAPSHOT), where taking the write lock first waits out the node's busy timeout.
    write.immediate();
  } catch (error) {
    index.dropPending();
    // The copies this batch made have no row: nothing would ever find them (or retention delete them).
    for (const result of results) if (result.kind === 'dicom' && result.copiedTo) void unlink(join(storagePath, result.copiedTo)).catch(() => undefined);
    throw error;
  }
  index.commitPending();
  summary.bytes += bytes;
  options.progress?.add(results.length, bytes);
  for (const copy of orphanCopies) void unlink(join(storagePath, copy)).catch(() => undefined);
}

function toRecord(scanned: ScannedInstance, storagePath: string, options: ImportOptions, now: number): InstanceRecord {
  return {
    attributes: scanned.attributes,
    studyInstanceUid: scanned.studyInstanceUid,
    seriesInstanceUid: scanned.seriesInstanceUid,
    sopInstanceUid: scanned.sopInstanceUid,
    sopClassUid: scanned.sopClassUid,
    transferSyntaxUid: scanned.transferSyntaxUid,
    filePath: recordedPath(scanned, storagePath),
    fileSize: scanned.size,
    fileStamp: scanned.stamp,
    callingAeTitle: IMPORT_CALLING_AE_TITLE,
    receivedAt: now,
    sourcePath: scanned.path,
    external: scanned.copiedTo === undefined,
    forwardHeld: !options.forward,
  };
}

/** Where the index finds a scanned file: its copy in storage, or in place, relative to the storage
 * root as every path of the index is (it may start with ../). */
function recordedPath(scanned: ScannedInstance, storagePath: string): string {
  return scanned.copiedTo ?? relative(storagePath, scanned.path);
}

/**
 * Whether a file whose SOP Instance UID is indexed is that instance's file, moved: the index names a
 * file imported in place that is gone (only ENOENT: a file that cannot be checked may still be there),
 * and this one has the size indexed. Anything else is a duplicate, left out.
 */
function movedHere(index: InstanceIndex, storagePath: string, scanned: ScannedInstance): boolean {
  const indexed = index.findInstance(scanned.sopInstanceUid);
  if (!indexed?.external || indexed.fileSize !== scanned.size) return false;
  try {
    statSync(join(storagePath, indexed.filePath));
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** The files left out: counted, the first few named in the summary, every one in the list. */
class Skipped {
  constructor(
    private readonly summary: ImportSummary,
    private readonly list: SkippedList | undefined,
  ) {}

  problem(kind: 'not-dicom' | 'unreadable', path: string, reason: string): void {
    if (kind === 'not-dicom') this.summary.notDicom += 1;
    else this.summary.unreadable += 1;
    tally(this.summary.problems, kind === 'not-dicom' ? 'not DICOM' : 'unreadable', reason);
    this.name(path, reason);
  }

  name(path: string, reason: string): void {
    if (this.summary.examples.length < MAX_EXAMPLES) this.summary.examples.push({ path, reason });
    this.list?.add(path, reason);
    if (this.list?.written) this.summary.skippedList = this.list.path;
  }

  close(): void {
    this.list?.close();
  }
}
