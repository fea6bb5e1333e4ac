/**
 * The index under storage.path as the commands open it (queue, forward, audit, quarantine, status,
 * import, export). What keeps them from it is a problem of storage.path, said as `serve` says it (a
 * ConfigError: exit 2, the key named, what to do): found in the operations review, a folder this user
 * could not enter read as "no Gantry index at …", an index file it could not open as SQLite's bare
 * "unable to open database file", and `import` on a folder it could not write exited 1 with Node's
 * "EACCES: permission denied".
 */
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, type LoadedConfig } from '../config/load.js';
import { DATABASE_FILE, openDatabase, type Db } from '../db/database.js';
import { MIGRATIONS } from '../db/migrations/index.js';
import { refuseMigrationUnderNode } from '../pipeline/recovery.js';
import { makeFolder } from '../toolkit/folders.js';

/** Errors of the file system or of SQLite opening a file that this user may not read or write. */
const ACCESS_CODES: ReadonlySet<string> = new Set(['EACCES', 'EPERM', 'EROFS', 'SQLITE_CANTOPEN', 'SQLITE_READONLY', 'SQLITE_PERM']);

/**
 * Opens the index of `loaded`'s storage.path. 'existing': there must be one (export, queue, status);
 * 'create': the folder and the index are made when missing (import).
 */
export function openCommandIndex(loaded: LoadedConfig, use: 'create' | 'existing'): { db: Db; storagePath: string } {
  const storagePath = resolve(loaded.config.storage.path);
  const file = join(storagePath, DATABASE_FILE);
  if (use === 'create') {
    try {
      makeFolder(storagePath, 'storage.path');
    } catch (error) {
      throw new ConfigError(loaded.source, [(error as Error).message]);
    }
  }
  try {
    if (use === 'existing' && !indexExists(file)) throw new Error(`no Gantry index at ${file} (storage.path of ${loaded.source})`);
    return { db: openDatabase(file, MIGRATIONS, { beforeMigrating: refuseMigrationUnderNode(storagePath) }), storagePath };
  } catch (error) {
    throw asStorageProblem(error, loaded, storagePath);
  }
}

/** Whether the index file is there; a folder or file this user may not look into throws (EACCES). */
function indexExists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return false;
    throw error;
  }
}

function asStorageProblem(error: unknown, loaded: LoadedConfig, storagePath: string): unknown {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || !ACCESS_CODES.has(code)) return error;
  const what = (error as Error).message.replace(/^[A-Z]+: /, '');
  return new ConfigError(loaded.source, [
    `storage.path: ${storagePath} cannot be used by this user (${code}: ${what}); run the command as the user the node runs as, or give this user read and write access to the folder and its index`,
  ]);
}
