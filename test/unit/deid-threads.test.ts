/** The readiness check of the de-identification threads (src/observability/deid-threads.ts). Found in
 * a review: with threads that could not start, /readyz said "ready" while nothing was de-identified. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { DeidThreadHealth, readyProbe, THREAD_FAILURES_NOT_READY } from '../../src/observability/deid-threads.js';
import { workerPool } from '../../src/worker-loading.js';

test('failures in a row with no task finished make the node unready, saying why; a finished task makes it ready again', () => {
  const health = new DeidThreadHealth();
  assert.deepEqual(health.check(), { name: 'deidentification', ok: true });
  for (let failure = 1; failure < THREAD_FAILURES_NOT_READY; failure += 1) health.threadFailed(new Error('out of memory'));
  assert.equal(health.check().ok, true, 'a thread that died on an instance is replaced');
  health.taskFinished();
  for (let failure = 1; failure < THREAD_FAILURES_NOT_READY; failure += 1) health.threadFailed(new Error('out of memory'));
  assert.equal(health.check().ok, true, 'a task between the failures: the count starts again');
  health.threadFailed(new Error("Cannot find module '/opt/gantry/dist/src/deid/engine.js'"));
  const check = health.check();
  assert.equal(check.ok, false);
  assert.match(check.detail ?? '', new RegExp(`failed ${THREAD_FAILURES_NOT_READY} times in a row with no task finished \\(last: Cannot find module`));
  assert.match(check.detail ?? '', /restart/);
  health.taskFinished();
  assert.equal(health.check().ok, true);
});

// Found in a review of the check: piscina starts a thread only for a task. Threads that failed to
// start while the node was idle were not tried again once they could start, no instance came to a
// node that said it was not ready, and /readyz stayed "not ready" for good.
test('unready, the check probes the threads: once a thread can start again the node is ready, with no instance received', async (t) => {
  const folder = mkdtempSync(join(tmpdir(), 'gantry-deid-threads-'));
  t.after(() => rmSync(folder, { recursive: true, force: true }));
  const broken = join(folder, 'broken');
  const entry = join(folder, 'worker.mjs');
  writeFileSync(broken, '');
  // A thread entry that cannot load while the file `broken` exists, as a thread with no memory for its heap.
  writeFileSync(entry, `import { existsSync } from 'node:fs';\nif (existsSync(${JSON.stringify(broken)})) throw new Error('no memory for the thread');\nexport function ready() { return true; }\n`);
  let health: DeidThreadHealth | undefined;
  const pool = workerPool({ filename: pathToFileURL(entry).href, minThreads: 2, maxThreads: 2, idleTimeout: Number.MAX_SAFE_INTEGER }, (error) => health?.threadFailed(error));
  t.after(() => pool.destroy());
  health = new DeidThreadHealth(readyProbe(pool), 200);
  const settles = async (want: boolean, what: string) => {
    for (let tries = 0; tries < 100 && health.check().ok !== want; tries += 1) await delay(100);
    assert.equal(health.check().ok, want, what);
  };
  await settles(false, 'threads that cannot start: not ready');
  await delay(1_000);
  assert.equal(health.check().ok, false, 'still not ready while they cannot start (the probes fail or are withdrawn)');
  rmSync(broken);
  await settles(true, 'the threads can start: ready again, though no instance came');
});

test('the de-identification thread entry answers the probe', async (t) => {
  const pool = workerPool({ filename: new URL('../../src/deid/worker.js', import.meta.url).href, workerData: { secret: 'a secret for the probe of the threads' }, minThreads: 1, maxThreads: 1 }, (error) => assert.fail(error));
  t.after(() => pool.destroy());
  assert.equal(await readyProbe(pool)(AbortSignal.timeout(30_000)), true);
});
