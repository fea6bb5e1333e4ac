/** Making names durable: directory syncs (a file's sync does not cover its name, PS: fsync(2)). */
import { closeSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';

export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function syncDirectorySync(directory: string): void {
  const fd = openSync(directory, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** mkdir -p that also syncs the parent of every directory it creates (for worker threads). */
export function makeDirectoryDurablySync(directory: string): void {
  const firstCreated = mkdirSync(directory, { recursive: true });
  if (firstCreated === undefined) return;
  let parent = dirname(firstCreated);
  for (const segment of relative(parent, directory).split(sep)) {
    syncDirectorySync(parent);
    parent = join(parent, segment);
  }
}
