/**
 * The files on disk under storage.path. Objects arrive in incoming/, are made durable there, and are
 * moved into originals/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm; the directory is
 * synced after the move, so the name survives a power cut as well as the content.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, statfs, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { createHash } from 'node:crypto';
import { IncomingFile } from './incoming-file.js';

export type { IncomingFile };

export const ORIGINALS_DIR = 'originals';
const INCOMING_DIR = 'incoming';

export class ObjectStore {
  readonly incomingDir: string;
  private readonly knownDirectories = new Set<string>();
  private sequence = 0;
  private readonly prefix = `${process.pid}-${randomBytes(4).toString('hex')}`;

  constructor(readonly root: string) {
    this.incomingDir = join(root, INCOMING_DIR);
  }

  /** Creates the layout and deletes what a previous run left half-received (never acknowledged). */
  async init(): Promise<{ staleIncoming: number }> {
    await mkdir(join(this.root, ORIGINALS_DIR), { recursive: true });
    await mkdir(this.incomingDir, { recursive: true });
    const stale = await readdir(this.incomingDir);
    await Promise.all(stale.map((name) => unlink(join(this.incomingDir, name)).catch(() => undefined)));
    return { staleIncoming: stale.length };
  }

  /** A new incoming file, whose first bytes are `header`. */
  createIncoming(header: Buffer): IncomingFile {
    this.sequence += 1;
    return new IncomingFile(join(this.incomingDir, `${this.prefix}-${this.sequence}.part`), header);
  }

  /** The path, relative to the root, where an instance lives. */
  originalPath(studyInstanceUid: string, seriesInstanceUid: string, sopInstanceUid: string): string {
    return join(ORIGINALS_DIR, pathSegment(studyInstanceUid), pathSegment(seriesInstanceUid), `${pathSegment(sopInstanceUid)}.dcm`);
  }

  absolute(relativePath: string): string {
    return join(this.root, relativePath);
  }

  /**
   * Moves a complete incoming file to its place before its content is synced: for a target where no
   * acknowledged copy can be, so that one sync (syncPlaced) then covers content and name.
   */
  async moveIntoPlace(file: IncomingFile, relativePath: string): Promise<void> {
    const target = this.absolute(relativePath);
    await this.ensureDirectory(dirname(target));
    await file.moveTo(target);
  }

  /** Makes a file moved by moveIntoPlace durable, content and name, and closes it. */
  async syncPlaced(file: IncomingFile): Promise<void> {
    try {
      // Both must be durable before the answer; their order does not matter, so they run together.
      await Promise.all([file.sync(), syncDirectory(dirname(file.path))]);
    } finally {
      await file.close();
    }
  }

  /**
   * Moves a complete incoming file over a target that may hold an acknowledged copy: the content is
   * synced before the rename, so a crash never leaves a half-written file in its place. With
   * `overwrite` false an existing file is kept and the incoming one deleted. Closes the file.
   * Returns whether the incoming file was placed.
   */
  async placeOverExisting(file: IncomingFile, relativePath: string, overwrite: boolean): Promise<boolean> {
    const target = this.absolute(relativePath);
    const directory = dirname(target);
    await this.ensureDirectory(directory);
    try {
      await file.sync();
      if (overwrite) {
        await file.moveTo(target);
      } else {
        try {
          await link(file.path, target);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
          await file.discard();
          return false;
        }
        await unlink(file.path);
        file.path = target;
      }
      await syncDirectory(directory);
    } finally {
      await file.close();
    }
    return true;
  }

  async remove(relativePath: string): Promise<void> {
    await unlink(this.absolute(relativePath)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }

  /** Bytes available to Gantry on the file system of storage.path. */
  async freeBytes(): Promise<number> {
    const stats = await statfs(this.root);
    return stats.bavail * stats.bsize;
  }

  /** mkdir -p, syncing each new directory's parent so the new names are durable. */
  private async ensureDirectory(directory: string): Promise<void> {
    if (this.knownDirectories.has(directory)) return;
    const firstCreated = await mkdir(directory, { recursive: true });
    if (firstCreated !== undefined) {
      const created = relative(dirname(firstCreated), directory).split(sep);
      let parent = dirname(firstCreated);
      for (const segment of created) {
        await syncDirectory(parent);
        parent = join(parent, segment);
      }
    }
    if (this.knownDirectories.size > 50_000) this.knownDirectories.clear();
    this.knownDirectories.add(directory);
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** UIDs are digits and dots (PS3.5 9.1); anything else (a broken sender) is hashed into a safe name. */
function pathSegment(uid: string): string {
  if (/^[0-9][0-9.]{0,63}$/.test(uid) && !uid.includes('..')) return uid;
  return `x${createHash('sha256').update(uid).digest('hex').slice(0, 40)}`;
}
