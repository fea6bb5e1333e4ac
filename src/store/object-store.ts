/**
 * The files on disk under storage.path. Objects arrive in incoming/, are made durable there, and are
 * moved into originals/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm; the directory is
 * synced after the move, so the name survives a power cut as well as the content.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsync, openSync } from 'node:fs';
import { mkdir, readdir, stat, statfs, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { dirname, join, resolve, sep } from 'node:path';
import { createHash } from 'node:crypto';
import { IncomingFile } from './incoming-file.js';
import { SpareFiles } from './spare-files.js';
import { syncDirectory } from './sync.js';

export { syncDirectory };

export type { IncomingFile };

const fsyncAsync = promisify(fsync);

export const ORIGINALS_DIR = 'originals';
/** The mode of the files Gantry keeps that hold PHI (originals, copies, lists of them, the index):
 * never readable by other accounts on the host. */
export const STORED_FILE_MODE = 0o640;
export const DEIDENTIFIED_DIR = 'deidentified';
/** Where de-identified files are written before they move under their new UIDs. */
export const DEID_INCOMING_DIR = join(DEIDENTIFIED_DIR, '.incoming');
const INCOMING_DIR = 'incoming';
/** Incoming files kept created ahead: a few stores starting at once find theirs ready. */
export const SPARE_INCOMING_FILES = 4;

export class ObjectStore {
  readonly incomingDir: string;
  /** Open descriptors of the directories files were placed in lately, for their syncs. */
  private readonly directorySyncs = new DirectorySyncs(64);
  /** Directories known to exist durably, or being made so. */
  private readonly directories = new Map<string, Promise<void>>();
  private sequence = 0;
  private readonly prefix = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly variantSalt = randomBytes(4).toString('hex');
  private readonly spares: SpareFiles;

  constructor(readonly root: string) {
    this.incomingDir = join(root, INCOMING_DIR);
    this.spares = new SpareFiles(() => this.nextIncomingPath(), SPARE_INCOMING_FILES);
  }

  /** Creates the layout and deletes what a previous run left half-written: received files never
   * acknowledged, and de-identified files never recorded. */
  async init(): Promise<{ staleIncoming: number }> {
    await mkdir(join(this.root, ORIGINALS_DIR), { recursive: true });
    let stale = 0;
    for (const directory of [this.incomingDir, join(this.root, DEID_INCOMING_DIR)]) {
      await mkdir(directory, { recursive: true });
      const names = await readdir(directory);
      const sizes = await Promise.all(names.map((name) => removeReportingSize(join(directory, name))));
      // Empty files are ones made ahead for stores that never came (spare-files.ts), not stores.
      stale += sizes.filter((size) => size > 0).length;
    }
    return { staleIncoming: stale };
  }

  /** A new incoming file, whose first bytes are `header`: one created ahead when one is ready (the
   * first store creates its own, and starts the making ahead). */
  createIncoming(header: Buffer): IncomingFile {
    return new IncomingFile(this.spares.take() ?? this.nextIncomingPath(), header);
  }

  private nextIncomingPath(): string {
    this.sequence += 1;
    return join(this.incomingDir, `${this.prefix}-${this.sequence}.part`);
  }

  /**
   * The path, relative to the root, where an instance lives. A copy that replaces a stored one gets a
   * `variant` of its own, so that it never overwrites the copy it replaces before the index says so.
   */
  originalPath(studyInstanceUid: string, seriesInstanceUid: string, sopInstanceUid: string, variant?: string): string {
    const name = variant === undefined ? pathSegment(sopInstanceUid) : `${pathSegment(sopInstanceUid)}.${variant}`;
    return join(ORIGINALS_DIR, pathSegment(studyInstanceUid), pathSegment(seriesInstanceUid), `${name}.dcm`);
  }

  /** A name suffix unique to this process and moment, for originalPath's `variant`: letters and digits
   * only (recovery.ts tells variants from UIDs by them). The time and the sequence alone could repeat
   * a name after a restart with the clock stepped back; the run's random salt keeps runs apart. */
  uniqueVariant(): string {
    this.sequence += 1;
    return `${Date.now().toString(36)}${this.variantSalt}${this.sequence.toString(36)}`;
  }

  absolute(relativePath: string): string {
    return join(this.root, relativePath);
  }

  /**
   * Moves an incoming file to its place, possibly before all of it is written or synced: only for a
   * target where no acknowledged copy can be. syncPlaced then makes content and name durable.
   */
  async moveIntoPlace(file: IncomingFile, relativePath: string): Promise<void> {
    const target = this.absolute(relativePath);
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.ensureDirectory(dirname(target));
        file.moveTo(target);
        return;
      } catch (error) {
        // Retention removed the series or study folder (emptied) since it was made, before the rename
        // or before the series folder was made in it: made again. Bounded: a folder removed again in
        // the moment between (retention sweeps are minutes apart) fails.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3 || !existsSync(file.path)) throw error;
        this.forgetDirectory(dirname(target));
        this.forgetDirectory(dirname(dirname(target)));
      }
    }
  }

  /**
   * A folder under the root (relative to it) that was removed: retention removes the series and study
   * folders it empties. Made and synced again when next needed, not taken as ready; its descriptor
   * dropped.
   */
  folderRemoved(relativeFolder: string): void {
    this.forgetDirectory(this.absolute(relativeFolder));
  }

  private forgetDirectory(directory: string): void {
    this.directories.delete(directory);
    this.directorySyncs.forget(directory);
  }

  /** Makes a file moved by moveIntoPlace durable, content and name, and closes it. */
  async syncPlaced(file: IncomingFile): Promise<void> {
    try {
      // Both must be durable before the answer; their order does not matter, so they run together.
      await Promise.all([file.sync(), this.directorySyncs.sync(dirname(file.path))]);
    } finally {
      await file.close();
    }
  }

  async remove(relativePath: string): Promise<void> {
    await unlink(this.absolute(relativePath)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }

  /** Closes what the store keeps open, and deletes the incoming files made ahead (waiting for one
   * being made). */
  async close(): Promise<void> {
    await this.spares.closeAll();
    this.directorySyncs.closeAll();
  }

  /** Bytes available to Gantry on the file system of storage.path. */
  async freeBytes(): Promise<number> {
    const stats = await statfs(this.root);
    return stats.bavail * stats.bsize;
  }

  /**
   * mkdir -p under the root, one level at a time, each directory's name made durable by a sync of its
   * parent before anything below it counts as ready. Concurrent callers for one directory share the
   * work and its outcome, and so do callers for two directories with a new parent in common (the
   * second must not be answered while the first is still syncing the parent's parent). A directory
   * found already there is synced into its parent all the same, once per run: a run that was killed
   * may have made it without syncing. A failure is not remembered.
   */
  private ensureDirectory(directory: string): Promise<void> {
    let ready = this.directories.get(directory);
    if (!ready) {
      const parent = dirname(directory);
      const root = resolve(this.root);
      const underRoot = resolve(parent).startsWith(root + sep);
      const parentReady = underRoot ? this.ensureDirectory(parent) : Promise.resolve();
      ready = parentReady.then(() => makeDirectoryDurably(directory, !underRoot));
      this.directories.set(directory, ready);
      ready.catch(() => this.directories.delete(directory));
      if (this.directories.size > 50_000) this.directories.clear();
    }
    return ready;
  }
}

/** One directory whose parent exists durably (or, at the top, whose ancestors are made as needed):
 * made if missing, and its name synced. */
async function makeDirectoryDurably(directory: string, atTop: boolean): Promise<void> {
  await mkdir(directory, { recursive: atTop }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  await syncDirectory(dirname(directory));
}

/**
 * Syncs directories through descriptors kept open for the most recently used ones: one thread-pool
 * trip per sync instead of three (open, fsync, close). Whatever deletes directories under originals/
 * (retention, later) must drop them from here and from ensureDirectory's map.
 *
 * A descriptor is closed only once no sync of it is waiting or running: a sync queued in the thread
 * pool (behind the stores' file syncs, under load) whose descriptor was closed meanwhile ran on a
 * closed one (EBADF), or on whatever file was opened next under its number, leaving the directory
 * unsynced while its store was acknowledged (found in a review).
 */
class DirectorySyncs {
  private readonly open = new Map<string, DirectoryDescriptor>();

  constructor(private readonly capacity: number) {}

  async sync(directory: string): Promise<void> {
    let entry = this.open.get(directory);
    if (entry === undefined) {
      entry = { fd: openSync(directory, 'r'), users: 0, dropped: false };
      this.open.set(directory, entry);
    } else {
      // Most recently used last.
      this.open.delete(directory);
      this.open.set(directory, entry);
    }
    entry.users += 1;
    this.evict();
    try {
      await fsyncAsync(entry.fd);
    } finally {
      entry.users -= 1;
      if (entry.dropped && entry.users === 0) closeSync(entry.fd);
    }
  }

  /** Drops the least recently used descriptors past the capacity; one in use closes when its syncs end. */
  private evict(): void {
    for (const [directory, entry] of this.open) {
      if (this.open.size <= this.capacity) return;
      this.open.delete(directory);
      this.drop(entry);
    }
  }

  private drop(entry: DirectoryDescriptor): void {
    entry.dropped = true;
    if (entry.users === 0) closeSync(entry.fd);
  }

  /** A directory removed: its descriptor names the removed one, and a sync of it would not make a
   * new directory of the same name durable. */
  forget(directory: string): void {
    const entry = this.open.get(directory);
    if (entry === undefined) return;
    this.open.delete(directory);
    this.drop(entry);
  }

  closeAll(): void {
    for (const entry of this.open.values()) this.drop(entry);
    this.open.clear();
  }
}

interface DirectoryDescriptor {
  fd: number;
  /** Syncs of this descriptor waiting or running. */
  users: number;
  /** No longer in the map: closed once `users` is 0. */
  dropped: boolean;
}


/** Where the de-identified copy of an instance goes, relative to the storage root. */
export function deidentifiedPath(studyInstanceUid: string, seriesInstanceUid: string, sopInstanceUid: string): string {
  return join(DEIDENTIFIED_DIR, pathSegment(studyInstanceUid), pathSegment(seriesInstanceUid), `${pathSegment(sopInstanceUid)}.dcm`);
}

/** A UID as a file name: itself when it is a plain UID, else a hash of it (a dataset's UIDs are
 * untrusted input: no "..", slashes or over-long names reach the file system). */
export function pathSegment(uid: string): string {
  if (/^[0-9][0-9.]{0,63}$/.test(uid) && !uid.includes('..')) return uid;
  return `x${createHash('sha256').update(uid).digest('hex').slice(0, 40)}`;
}

/** Deletes a file; resolves with the size it had (0 when it could not be read or deleted). */
async function removeReportingSize(path: string): Promise<number> {
  const size = await stat(path).then((info) => info.size, () => 0);
  await unlink(path).catch(() => undefined);
  return size;
}
