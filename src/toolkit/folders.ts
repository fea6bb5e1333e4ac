/**
 * Folders the commands make (storage.path, --out): one that cannot be made is named with the key or
 * flag it came from and what to do, not with Node's bare "EEXIST: file already exists, mkdir '...'"
 * (found in a review; `serve` already said it so, app.ts claimStoragePath).
 */
import { mkdirSync } from 'node:fs';

/** Makes `path` (and its parents); an error names `what` (a key or a flag) and says how to fix it. */
export function makeFolder(path: string, what: string): void {
  try {
    mkdirSync(path, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'it, or a folder on its way, is a file' : (error as Error).message.replace(/,? \w+ '.*'$/, '');
    throw new Error(`${what}: ${path} cannot be made as a folder (${code}: ${why}); name a folder this user may create and write`);
  }
}
