/**
 * The copies `gantry import --copy` places in originals/ before the batch that names them commits. A
 * copy is noted (its SOP Instance UID and path, one line) in a list of the import's own,
 * storage/import-copies/<pid>.list, before it is made. When the import ends, and for the list of an
 * import that did not end (killed, or a crash of the machine) at the next import's or the node's
 * start, every noted copy that no row names is deleted, then the list: such a copy is of a file the
 * user still has, but in storage nothing would ever name it, and retention would never delete it.
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, normalize, sep } from 'node:path';
import type { Db } from '../db/database.js';
import { processRunning } from '../pipeline/recovery.js';
import { ORIGINALS_DIR } from '../store/object-store.js';

const COPY_LISTS_DIR = 'import-copies';

/** This process's list of copies under `storagePath` (its folder made). */
export function openCopyList(storagePath: string): string {
  mkdirSync(join(storagePath, COPY_LISTS_DIR), { recursive: true });
  return join(storagePath, COPY_LISTS_DIR, `${process.pid}.list`);
}

/** Notes a copy before it is made (one short append: lines of threads writing at once stay whole). */
export function noteCopy(list: string, sopInstanceUid: string, relativePath: string): void {
  appendFileSync(list, `${sopInstanceUid}\t${relativePath}\n`);
}

/** Deletes the copies a list notes that no row names (and their temporary files), then the list,
 * keeping in it the lines of copies that could not be deleted (tried again next time); answers how
 * many copies were deleted. */
export function settleCopyList(db: Db, storagePath: string, list: string): number {
  const pid = /(\d+)\.list$/.exec(list)?.[1];
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
    const pid = Number(/^(\d+)\.list$/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid || processRunning(pid)) continue;
    deleted += settleCopyList(db, storagePath, join(storagePath, COPY_LISTS_DIR, name));
  }
  return deleted;
}

/** A path the list may name: under originals/, never above it (the list is only a file on disk). */
function insideOriginals(relativePath: string): boolean {
  const path = normalize(relativePath);
  return path.startsWith(ORIGINALS_DIR + sep) && !path.split(sep).includes('..');
}

