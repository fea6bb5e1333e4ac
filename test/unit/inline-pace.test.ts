/**
 * The pace of inline file operations (src/store/inline-pace.ts): fast ones keep the next inline; a
 * slow one (a throw too) sends the next to the thread pool for a window that doubles with each slow
 * one and starts over after a fast one. On a clock of the test's own: nothing depends on real time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InlinePace } from '../../src/store/inline-pace.js';

/** A pace on a clock the test moves, and an operation that takes `ms` of that clock. */
function pacedClock(): { pace: InlinePace; advance(ms: number): void; taking(ms: number): () => string } {
  let now = 10_000;
  return {
    pace: new InlinePace(() => now),
    advance: (ms) => {
      now += ms;
    },
    taking: (ms) => () => {
      now += ms;
      return `took ${ms} ms`;
    },
  };
}

test('fast operations stay inline and return what they give; a slow one sends the next to the pool', () => {
  const { pace, taking } = pacedClock();
  assert.equal(pace.shouldRunInline(), true);
  assert.equal(pace.runInlineTimed(taking(2)), 'took 2 ms');
  assert.equal(pace.shouldRunInline(), true, '2 ms is not slow');
  pace.runInlineTimed(taking(3));
  assert.equal(pace.shouldRunInline(), false, '3 ms is');
  pace.sendToThreadPool(0);
  assert.equal(pace.shouldRunInline(), true, 'sendToThreadPool(0) lets operations run inline again');
});

test('a slow operation that throws still counts, and its error reaches the caller', () => {
  const { pace, advance } = pacedClock();
  assert.throws(
    () =>
      pace.runInlineTimed(() => {
        advance(5);
        throw new Error('EIO');
      }),
    /EIO/,
  );
  assert.equal(pace.shouldRunInline(), false);
});

test('the window doubles with each slow operation up to 64 s, and starts over after a fast one', () => {
  const { pace, advance, taking } = pacedClock();
  /** How long the next operations stay in the pool after a slow one, to the millisecond. */
  const windowAfterSlowOperation = () => {
    pace.runInlineTimed(taking(5));
    let waited = 0;
    while (!pace.shouldRunInline() && waited < 100_000) {
      advance(1);
      waited += 1;
    }
    return waited;
  };
  assert.deepEqual(
    Array.from({ length: 8 }, windowAfterSlowOperation),
    [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 64_000],
  );
  pace.runInlineTimed(taking(1));
  assert.equal(windowAfterSlowOperation(), 1_000, 'after a fast operation it starts at 1 s again');
});
