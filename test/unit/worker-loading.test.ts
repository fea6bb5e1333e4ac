/**
 * Every worker pool loads its threads' ES module entry through import(), never require(): piscina
 * tries require() first, and Node's require(esm) once aborted a `gantry export` process with a native
 * assertion (src/worker-loading.ts); and every pool listens for its threads' failures.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { WORKER_EXEC_ARGV, workerPool } from '../../src/worker-loading.js';

const SOURCES = join(import.meta.dirname, '..', '..', '..', 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

test('every piscina pool of the source is made by workerPool (its threads import their entry; its thread failures have a listener)', () => {
  const constructing = sourceFiles(SOURCES).filter((file) => /new Piscina\b/.test(readFileSync(file, 'utf8')));
  assert.deepEqual(constructing.map((file) => relative(SOURCES, file)), ['worker-loading.ts']);
  const callers = sourceFiles(SOURCES).filter((file) => /\bworkerPool\(/.test(readFileSync(file, 'utf8')) && !file.endsWith('worker-loading.ts'));
  assert.ok(callers.length >= 5, `the files that make pools: ${callers.length}`);
});

// Found at the start of the tenth session: the pools of gantry import and export had no 'error'
// listener, and piscina emits 'error' for a thread failure that no task waits for: an 'error' event
// without a listener is thrown, and would have ended the command half done.
test('a failure of a thread that no task waits for is told to onThreadError, not thrown', async (t) => {
  const told: string[] = [];
  const pool = workerPool({ filename: new URL('../../src/store/transcode-worker.js', import.meta.url).href, minThreads: 0, maxThreads: 1 }, (error) => told.push(error.message));
  t.after(() => pool.destroy());
  assert.doesNotThrow(() => pool.emit('error', new Error('the thread failed while idle')));
  assert.deepEqual(told, ['the thread failed while idle']);
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
