/**
 * Temporary folders for tests, deleted when the test process exits: after every process a test
 * started has been stopped by its own `after` hook (hooks run in the order they were registered, so
 * a folder deleted in an earlier hook would vanish under a Gantry that is still running).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
process.once('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

export function scratchDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `gantry-${name}-`));
  made.push(dir);
  return dir;
}
