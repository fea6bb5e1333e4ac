/**
 * The copies `gantry import --copy` places in originals/ before the batch that names them commits. A
 * copy is noted (its SOP Instance UID and path, one line) in a list of the import's own,
 * storage/import-copies/<pid>-<random>.list, before it is made. When the import ends, and for the list
 * of an import that did not end (killed, or a crash of the machine) at the next import's or the node's
 * start, every noted copy that no row names is deleted, then the list: such a copy is of a file the
 * user still has, but in storage nothing would ever name it, and retention would never delete it.
 *
 * Whether the import of a list still runs is told by a lock beside it (<same name>.lock, SQLite's
 * exclusive lock on the file, which the kernel drops with the process), as gantry.lock tells a node:
 * a PID says nothing across containers (every one may be PID 1; found in a review).
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, join, normalize, sep } from 'node:path';
import type { Db } from '../db/database.js';
import { ORIGINALS_DIR, STORED_FILE_MODE } from '../store/object-store.js';

const COPY_LISTS_DIR = 'import-copies';

/** This import's list of copies, and the lock that says it runs (held until `close`). */
export interface CopyList {
  path: string;
  close(): void;
}

/** Opens this process's list of copies under `storagePath` and takes its lock. */
export function openCopyList(storagePath: string): CopyList {
  mkdirSync(join(storagePath, COPY_LISTS_DIR), { recursive: true });
  const stem = join(storagePath, COPY_LISTS_DIR, `${process.pid}-${randomBytes(6).toString('hex')}`);
  const lock = new Database(`${stem}.lock`);
  lock.pragma('locking_mode = EXCLUSIVE');
  lock.exec('BEGIN EXCLUSIVE');
  return {
    path: `${stem}.list`,
    close: () => {
      lock.close();
      removeLock(stem);
    },
  };
}

/** Notes a copy before it is made (one short append: lines of threads writing at once stay whole). */
export function noteCopy(list: string, sopInstanceUid: string, relativePath: string): void {
  // Its lines are PHI (UIDs, and the paths of copies): created as the files it lists are.
  appendFileSync(list, `${sopInstanceUid}\t${relativePath}\n`, { mode: STORED_FILE_MODE });
}

/** Deletes the copies a list notes that no row names (and their temporary files), then the list,
 * keeping in it the lines of copies that could not be deleted (tried again next time); answers how
 * many copies were deleted. */
export function settleCopyList(db: Db, storagePath: string, list: string): number {
  const pid = /(\d+)(?:-[0-9a-f]+)?\.list$/.exec(list)?.[1];
  let text = '';
  try {
    text = readFileSync(list, 'utf8');
  } catch {
    return 0;
  }
  const named = db.prepare('SELECT file_path FROM instances WHERE sop_instance_uid = ?').pluck();
  let deleted = 0;
  const kept: string[] = [];
  for (const line of text.split('\n')) {
    const [sopInstanceUid, relativePath] = line.split('\t');
    if (!sopInstanceUid || !relativePath || !insideOriginals(relativePath)) continue;
    if (named.get(sopInstanceUid) === relativePath) continue;
    const target = join(storagePath, relativePath);
    const removed = [removeFile(`${target}.import-${pid}`), removeFile(target)];
    if (removed.includes('failed')) kept.push(line);
    if (removed[1] === 'deleted') deleted += 1;
  }
  if (kept.length > 0) writeFileSync(list, kept.map((line) => `${line}\n`).join(''));
  else rmSync(list, { force: true });
  return deleted;
}

/** Deletes a file: 'deleted', 'absent' (never made, deleted already, or its folder never made), or
 * 'failed'. */
function removeFile(path: string): 'deleted' | 'absent' | 'failed' {
  try {
    unlinkSync(path);
    return 'deleted';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'absent' : 'failed';
  }
}

/** Settles the lists of imports that are no longer running (not this process's); answers how many
 * copies were deleted. */
export function settleAbandonedCopyLists(db: Db, storagePath: string): number {
  let names: string[];
  try {
    names = readdirSync(join(storagePath, COPY_LISTS_DIR));
  } catch {
    return 0;
  }
  let deleted = 0;
  for (const name of names) {
    if (!name.endsWith('.list')) continue;
    const stem = join(storagePath, COPY_LISTS_DIR, name.slice(0, -'.list'.length));
    if (lockHeld(`${stem}.lock`)) continue;
    deleted += settleCopyList(db, storagePath, `${stem}.list`);
    removeLock(stem);
  }
  // The lock of an import killed before it noted its first copy has no list beside it: removed once no
  // process holds it, or one such pair piled up per kill (found in the crash chaos review). Not a young
  // one: an import creates its lock file and then takes the lock, and a lock removed (or probed) in
  // between left that import's copies without one, deleted by the next settle (found in the review of
  // the session's diff).
  for (const name of names) {
    if (!name.endsWith('.lock')) continue;
    const stem = join(storagePath, COPY_LISTS_DIR, name.slice(0, -'.lock'.length));
    if (names.includes(`${basename(stem)}.list`) || youngerThan(`${stem}.lock`, LOCK_GRACE_MS)) continue;
    if (!lockHeld(`${stem}.lock`)) removeLock(stem);
  }
  return deleted;
}

/** How old a lock without a list must be before it is looked at: far more than an import takes
 * from creating its lock file to holding it. */
const LOCK_GRACE_MS = 60_000;

/** Whether the file was modified less than `ms` ago (or is gone: nothing to remove). */
function youngerThan(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs < ms;
  } catch {
    return true;
  }
}

/** The lock file and the journal SQLite may leave beside it. */
function removeLock(stem: string): void {
  rmSync(`${stem}.lock`, { force: true });
  rmSync(`${stem}.lock-journal`, { force: true });
}

/** Whether a process holds the lock file (an import that runs); a list without one is abandoned. */
function lockHeld(path: string): boolean {
  if (!existsSync(path)) return false;
  let probe: Database.Database | undefined;
  try {
    probe = new Database(path, { timeout: 0, fileMustExist: true });
    probe.prepare('SELECT count(*) FROM sqlite_master').get();
    return false;
  } catch {
    // Busy: an import holds it. Any other failure to look (no descriptor left, no permission) is taken
    // the same way: its copies are left for a later look, never deleted under a running import.
    return true;
  } finally {
    probe?.close();
  }
}

/** A path the list may name: under originals/, never above it (the list is only a file on disk). */
function insideOriginals(relativePath: string): boolean {
  const path = normalize(relativePath);
  return path.startsWith(ORIGINALS_DIR + sep) && !path.split(sep).includes('..');
}

