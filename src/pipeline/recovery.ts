/**
 * Start-up and clean stop. A running Gantry keeps a marker file (its PID) under storage.path:
 * - at start, a marker whose PID is a live Gantry means another process uses this storage: refuse;
 * - a marker left by a dead process means the last run did not stop cleanly (crash, SIGKILL, power
 *   loss). Then the newest index rows are checked against their files: a new instance's file sync and
 *   its index commit run side by side (receive.ts), so a crash between them can leave a row whose file
 *   is short or missing. Such a row was never acknowledged: it and its file are removed. (A copy that
 *   replaces a stored one is synced before its row is committed, so it never looks like this; one
 *   never committed is deleted when no row names it, and the copy it replaced is in replaced_originals,
 *   which the retention sweep at every start works through.)
 *
 * The PID alone cannot say whether a Gantry runs: in a container it is always 1, and a second
 * container on the same volume took the marker for its own previous run. So a running Gantry also
 * holds a lock on gantry.lock (SQLite's, on the file: the kernel drops it with the process, however
 * it ends, and it holds across the containers of one host): a start that cannot take it is refused.
 */
import Database from 'better-sqlite3';
import { existsSync, readFileSync } from 'node:fs';
import { open, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { DeidWork } from '../index/deid-work.js';
import type { InstanceIndex } from '../index/instance-index.js';
import type { Logger } from '../observability/logger.js';
import { ORIGINALS_DIR, pathSegment, syncDirectory, type ObjectStore } from '../store/object-store.js';

const MARKER = 'gantry.running';
const LOCK = 'gantry.lock';
/** The locks this process holds, by storage.path. */
const locks = new Map<string, Database.Database>();
/** Rows received this long before the newest one are checked (the window of a crash is far shorter). */
const CHECK_WINDOW_MS = 60_000;

/** Claims storage.path for this process. Returns whether the previous run stopped uncleanly. */
export async function claimStorage(storagePath: string): Promise<{ unclean: boolean }> {
  const marker = join(storagePath, MARKER);
  const previous = await readFile(marker, 'utf8').catch(() => undefined);
  const pid = previous === undefined ? Number.NaN : Number.parseInt(previous, 10);
  // The marker's PID when it names another process; in a container the other node's PID may be ours
  // (1), or the marker unreadable: then the lock is what tells.
  const holder = Number.isInteger(pid) && pid > 0 && pid !== process.pid ? `PID ${pid}` : `it holds ${LOCK}`;
  const inUse = () => new Error(`storage.path ${storagePath} is in use by another Gantry (${holder}); give each Gantry its own storage.path`);
  const taken = !locks.has(storagePath);
  if (taken) {
    // A short wait: a command checking for a node (refuseMigrationUnderNode) holds the lock for a
    // moment; a node holds it for as long as it runs.
    const lock = new Database(join(storagePath, LOCK), { timeout: 2000 });
    try {
      lock.pragma('locking_mode = EXCLUSIVE');
      // Held until the lock's connection closes (releaseStorage) or the process ends.
      lock.exec('BEGIN EXCLUSIVE');
    } catch (error) {
      lock.close();
      if ((error as { code?: string }).code === 'SQLITE_BUSY') throw inUse();
      throw error;
    }
    locks.set(storagePath, lock);
  }
  try {
    if (pid !== process.pid && isLiveGantry(pid)) throw inUse();
    await writeFile(marker, `${process.pid}\n`);
    await syncDirectory(storagePath);
  } catch (error) {
    // Not claimed (another Gantry, or a marker that cannot be written): the lock taken here is not
    // kept either, or the storage stays locked by a node that never started.
    if (taken) releaseStorageLock(storagePath);
    throw error;
  }
  return { unclean: previous !== undefined };
}

/** The PID of the Gantry running on storage.path, or undefined when none runs. */
export async function runningGantry(storagePath: string): Promise<number | undefined> {
  const marker = await readFile(join(storagePath, MARKER), 'utf8').catch(() => undefined);
  const pid = marker === undefined ? Number.NaN : Number.parseInt(marker, 10);
  return isLiveGantry(pid) ? pid : undefined;
}

/**
 * For the commands and the library (not the node, which migrates at its own start): refuses to
 * migrate the index of storage.path while a Gantry node runs on it. After a new version is installed
 * and before the node is restarted, the node still running is the old version: a command that
 * migrated the index under it (gantry status, to check the upgrade) left it writing to a schema it
 * does not know (past migration 11, every audit it recorded failed). A node is known by its lock on
 * gantry.lock, or, for a version of before that lock, by its marker naming a live Gantry process
 * other than this one.
 */
export function refuseMigrationUnderNode(storagePath: string): (from: number, to: number) => void {
  return (from, to) => {
    const running = nodeRunningOn(storagePath);
    if (running === undefined) return;
    throw new Error(
      `the index under ${storagePath} has schema version ${from} and this Gantry migrates it to ${to}, but a Gantry node ` +
        `${running === 'lock' ? '' : `(PID ${running}) `}runs on ${storagePath}: stop it and start this version's node, which migrates the index ` +
        '(docs/operations.md section 9, Upgrades), then run this command again',
    );
  };
}

/** 'lock' when a process holds gantry.lock, else the PID of a live Gantry the marker names, else undefined. */
export function nodeRunningOn(storagePath: string): 'lock' | number | undefined {
  if (locks.has(storagePath)) return 'lock';
  const lockFile = join(storagePath, LOCK);
  if (existsSync(lockFile)) {
    let probe: Database.Database | undefined;
    try {
      probe = new Database(lockFile, { timeout: 0, fileMustExist: true });
      probe.prepare('SELECT count(*) FROM sqlite_master').get();
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_BUSY') return 'lock';
      throw error;
    } finally {
      probe?.close();
    }
  }
  let marker: string | undefined;
  try {
    marker = readFileSync(join(storagePath, MARKER), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(marker, 10);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  return isLiveGantry(pid) ? pid : undefined;
}

/** Whether `pid` is a live Gantry process (by its command line; alive and no /proc to tell: assumed). */
function isLiveGantry(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  let commandLine: string;
  try {
    commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return processRunning(pid); // alive, and no /proc to tell what it is: assume the worst
  }
  return /gantry|main\.js/.test(commandLine);
}

/** Whether a process has this PID (one of another user's too: the signal is refused, EPERM). */
export function processRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** After an unclean stop: removes the newest rows whose files are not whole, and those files. */
export async function checkNewestRows(index: InstanceIndex, store: ObjectStore, log: Logger): Promise<number> {
  const recent = index.recentInstances(CHECK_WINDOW_MS);
  let removed = 0;
  let unchecked = 0;
  /** The kept rows by folder: each folder is read once, however many of its instances are recent. */
  const kept = new Map<string, Map<string, string>>();
  for (const row of recent) {
    // Only a file that is gone or short says the row was never acknowledged. Any other error (a folder
    // the node may not read, EACCES; a failing disk, EIO) says nothing about the file: its row stays.
    const size = await stat(store.absolute(row.filePath)).then(
      (stats) => stats.size,
      (error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? -1 : undefined),
    );
    if (size === undefined) unchecked += 1;
    else if (row.state === 'forwarded' && size !== row.fileSize) {
      // Forwarded: acknowledged long ago. Its original is gone because retention deleted it, and the
      // record of that did not survive (the delete runs inside the transaction that records it). The
      // row is the instance's history and names its de-identified copy: it stays, marked.
      if (size === -1) index.markOriginalDeleted(row.sopInstanceUid);
      else unchecked += 1;
      continue;
    } else if (size !== row.fileSize) {
      index.deleteInstance(row.sopInstanceUid);
      await store.remove(row.filePath);
      removed += 1;
      continue;
    }
    const folder = dirname(row.filePath);
    if (!kept.has(folder)) kept.set(folder, new Map());
    kept.get(folder)?.set(pathSegment(row.sopInstanceUid), basename(row.filePath));
  }
  let unnamed = 0;
  for (const [folder, named] of kept) unnamed += await removeUnnamedCopies(store, folder, named);
  const newest = index.newestReceivedAt();
  const unindexed = await removeUnindexedOriginals(index, store, newest === undefined ? 0 : newest - CHECK_WINDOW_MS);
  log.warn({ checked: recent.length, removed, unnamed, unindexed, unchecked }, 'the last run did not stop cleanly; checked the newest instances against their files');
  return removed;
}

/**
 * After an unclean stop: deletes the originals placed shortly before it that no row names. A store
 * renames its file into originals/ and then commits its row (receive.ts), so a crash between the two
 * leaves the file of an instance that has no row at all, never acknowledged, holding PHI that nothing
 * would ever find or delete (the check of the newest rows only reads the folders they name). Every
 * series folder is looked at (one stat each); those changed since `sinceMs` are read, and each copy
 * there (named by its UID's segment, alone or with a variant) whose UID has no row, or a row naming
 * another file, goes; so does a copy named by a hashed segment (an instance UID that is no plain UID)
 * that no row names. Any other name (an import's copy under its name or temporary name) is left.
 * Answers how many were deleted.
 */
async function removeUnindexedOriginals(index: InstanceIndex, store: ObjectStore, sinceMs: number): Promise<number> {
  let removed = 0;
  for (const study of await folderNames(store.absolute(ORIGINALS_DIR))) {
    for (const series of await folderNames(store.absolute(join(ORIGINALS_DIR, study)))) {
      const folder = join(ORIGINALS_DIR, study, series);
      const changed = await stat(store.absolute(folder)).then((info) => info.mtimeMs >= sinceMs, () => false);
      if (!changed) continue;
      let namedHere: ReadonlySet<string> | undefined;
      for (const name of await readdir(store.absolute(folder)).catch(() => [] as string[])) {
        const relativePath = join(folder, name);
        const sopInstanceUid = instanceUidOfCopy(name);
        if (sopInstanceUid !== undefined) {
          if (index.filePathOf(sopInstanceUid) === relativePath) continue;
        } else if (HASHED_COPY.test(name)) {
          // Its UID cannot be read back from a hash: the folder's named files are read (once).
          namedHere ??= index.filePathsIn(folder);
          if (namedHere.has(relativePath)) continue;
        } else continue;
        await store.remove(relativePath);
        removed += 1;
      }
    }
  }
  return removed;
}

/** The folders in `path` (none when it cannot be read). */
async function folderNames(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name);
}

/** The SOP Instance UID a copy's file name spells (its segment, alone or with a variant), when the
 * segment is the UID itself (pathSegment keeps a well-formed UID as it is). */
function instanceUidOfCopy(name: string): string | undefined {
  if (!name.endsWith('.dcm')) return undefined;
  const stem = name.slice(0, -'.dcm'.length);
  const segment = PLAIN_UID.test(stem) ? stem : withoutVariant(stem);
  return segment !== undefined && PLAIN_UID.test(segment) ? segment : undefined;
}

/** A copy named by the hash pathSegment gives a UID that is no plain UID, alone or with a variant. */
const HASHED_COPY = /^x[0-9a-f]{40}(\.[0-9a-z]*[a-z][0-9a-z]*)?\.dcm$/;

/** A UID as pathSegment keeps it (src/store/object-store.ts). */
const PLAIN_UID = /^[0-9][0-9.]{0,63}$/;

/** A copy's variant (ObjectStore.uniqueVariant): letters and digits, at least one letter, so that it
 * is never taken for the next component of a UID. */
const VARIANT = /^[0-9a-z]*[a-z][0-9a-z]*$/;

/** The UID segment of a copy's name stem with a variant ("1.2.3.k7" gives "1.2.3"), else undefined. */
function withoutVariant(stem: string): string | undefined {
  const dot = stem.lastIndexOf('.');
  return dot > 0 && VARIANT.test(stem.slice(dot + 1)) ? stem.slice(0, dot) : undefined;
}

/**
 * Deletes, in `folder`, the copies of the instances `named` (UID path segment → the file its row names)
 * that no row names: a copy received again is committed, then the one it replaced is deleted
 * (receive.ts), so a crash between the two, or between placing a new copy and committing it, left an
 * original (PHI) that retention never reaches. Copies are named by the segment, alone or with a variant
 * of letters and digits (ObjectStore.uniqueVariant); a name with no letter after the segment could be
 * another instance's UID ("1.2.3" and "1.2.3.4") and is never taken. Answers how many were deleted.
 */
async function removeUnnamedCopies(store: ObjectStore, folder: string, named: ReadonlyMap<string, string>): Promise<number> {
  const names = await readdir(store.absolute(folder)).catch(() => [] as string[]);
  const copies = names.filter((name) => {
    if (!name.endsWith('.dcm')) return false;
    const stem = name.slice(0, -'.dcm'.length);
    const segment = named.has(stem) ? stem : withoutVariant(stem);
    return segment !== undefined && named.has(segment) && named.get(segment) !== name;
  });
  for (const name of copies) await store.remove(join(folder, name));
  return copies.length;
}

/**
 * At every start: de-identified copies are written without a sync (they can be made again), so the
 * newest ones are checked, and those that did not survive (gone, short, or their first block not yet
 * written: no "DICM" after the preamble) go back to de-identification. Not after an unclean stop only:
 * a power cut soon after a clean stop loses copies the same way, and the forwarder then failed their
 * items as unreadable until they went to dead letter (found in the durability review).
 */
export async function checkNewestDeidentified(work: DeidWork, storagePath: string, log: Logger): Promise<number> {
  const recent = work.recentlyDeidentified(CHECK_WINDOW_MS * 10);
  let redone = 0;
  for (const row of recent) {
    if (!(await isWholeCopy(join(storagePath, row.deidFilePath), row.deidFileSize))) {
      work.redo(row.id);
      redone += 1;
    }
  }
  if (redone > 0) log.warn({ checked: recent.length, redone }, 'de-identified copies lost since the last run (a crash or a power cut) are made again');
  return redone;
}

/** Whether a copy has the size its row recorded and a Part 10 preamble's "DICM" (PS3.10 7.1). */
async function isWholeCopy(path: string, size: number): Promise<boolean> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return false;
  try {
    if ((await handle.stat()).size !== size) return false;
    const magic = Buffer.alloc(4);
    const { bytesRead } = await handle.read(magic, 0, 4, 128);
    return bytesRead === 4 && magic.toString('latin1') === 'DICM';
  } finally {
    await handle.close();
  }
}

/** Called last in a stop. `clean` false (stores were still placing their files when the stop went
 * on): the marker stays, so the next start checks the newest instances as after a crash. */
export async function releaseStorage(storagePath: string, clean = true): Promise<void> {
  if (clean) await unlink(join(storagePath, MARKER)).catch(() => undefined);
  releaseStorageLock(storagePath);
}

function releaseStorageLock(storagePath: string): void {
  locks.get(storagePath)?.close();
  locks.delete(storagePath);
}
