/**
 * Records the order of a synchronous code path's syncs and renames, for tests of what is made durable
 * before what (a power cut keeps only what was synced). node:fs's functions are replaced for the
 * duration of `run` (ES module imports of node:fs see them through syncBuiltinESMExports).
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { relative } from 'node:path';
import type { TestContext } from 'node:test';

/** Runs `run` and answers its result and its events: "sync PATH", "rename PATH" (the target) and
 * "link PATH" (the new name), paths relative to `root` ('' for root itself). */
export function recordingSyncs<T>(t: TestContext, root: string, run: () => T): { result: T; events: string[] } {
  const opened = new Map<number, string>();
  const events: string[] = [];
  const real = { openSync: fs.openSync, fsyncSync: fs.fsyncSync, renameSync: fs.renameSync, linkSync: fs.linkSync };
  const named = (path: unknown) => relative(root, String(path));
  t.mock.method(fs, 'openSync', (path: string, ...rest: unknown[]) => {
    const fd = (real.openSync as (...args: unknown[]) => number)(path, ...rest);
    opened.set(fd, String(path));
    return fd;
  });
  t.mock.method(fs, 'fsyncSync', (fd: number) => {
    events.push(`sync ${named(opened.get(fd) ?? '?')}`);
    real.fsyncSync(fd);
  });
  t.mock.method(fs, 'renameSync', (from: string, to: string) => {
    events.push(`rename ${named(to)}`);
    real.renameSync(from, to);
  });
  t.mock.method(fs, 'linkSync', (from: string, to: string) => {
    events.push(`link ${named(to)}`);
    real.linkSync(from, to);
  });
  syncBuiltinESMExports();
  try {
    return { result: run(), events };
  } finally {
    t.mock.restoreAll();
    syncBuiltinESMExports();
  }
}
