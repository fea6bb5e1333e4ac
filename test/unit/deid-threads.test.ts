/** The readiness check of the de-identification threads (src/observability/deid-threads.ts). Found in
 * a review: with threads that could not start, /readyz said "ready" while nothing was de-identified. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeidThreadHealth, THREAD_FAILURES_NOT_READY } from '../../src/observability/deid-threads.js';

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
