/**
 * Every worker pool loads its threads' ES module entry through import(), never require(): piscina
 * tries require() first, and Node's require(esm) once aborted a `gantry export` process with a native
 * assertion (src/worker-loading.ts).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { WORKER_EXEC_ARGV } from '../../src/worker-loading.js';

const SOURCES = join(import.meta.dirname, '..', '..', '..', 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

test('every piscina pool of the source starts its threads with WORKER_EXEC_ARGV', () => {
  const pools = sourceFiles(SOURCES).flatMap((file) => {
    const text = readFileSync(file, 'utf8');
    return [...text.matchAll(/new Piscina\(\{([^]*?)\n\s*\}\)/g)].map((match) => ({ file, options: match[1] ?? '' }));
  });
  assert.ok(pools.length >= 5, `the pools found: ${pools.length}`);
  for (const { file, options } of pools) assert.match(options, /execArgv: \[\.\.\.WORKER_EXEC_ARGV\]/, file);
});

test('a thread started with WORKER_EXEC_ARGV cannot require() an ES module, so piscina imports it', async (t) => {
  if (WORKER_EXEC_ARGV.length === 0) return t.skip('this Node has no require(esm) to turn off');
  const entry = fileURLToPath(new URL('../../src/store/transcode-worker.js', import.meta.url));
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads');
     try { require(${JSON.stringify(entry)}); parentPort.postMessage('required'); } catch (error) { parentPort.postMessage(error.code); }`,
    { eval: true, execArgv: [...WORKER_EXEC_ARGV] },
  );
  t.after(() => worker.terminate());
  const [answer] = (await once(worker, 'message')) as [string];
  assert.equal(answer, 'ERR_REQUIRE_ESM');
});
