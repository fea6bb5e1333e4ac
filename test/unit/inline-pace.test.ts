/**
 * The pace of inline file operations (src/store/inline-pace.ts): fast ones keep the next inline; a
 * slow one sends the next to the thread pool for a window that doubles with each slow one and starts
 * over after a fast one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InlinePace } from '../../src/store/inline-pace.js';

/** Busy-waits `ms`: an operation that takes that long on the calling thread. */
function takes(ms: number): () => number {
  return () => {
    const until = performance.now() + ms;
    let spins = 0;
    while (performance.now() < until) spins += 1;
    return spins;
  };
}

/** A slow operation (5 ms, over the 2 ms that counts as slow): the next go to the pool. */
function slowOperation(pace: InlinePace): void {
  pace.timed(takes(5));
  assert.equal(pace.inline(), false, 'a slow operation sends the next to the pool');
}

test('fast operations stay inline and return what they give; a slow one sends the next to the pool', () => {
  const pace = new InlinePace();
  assert.equal(pace.inline(), true);
  assert.equal(pace.timed(() => 42), 42);
  assert.equal(pace.inline(), true, 'a fast operation keeps the next inline');
  slowOperation(pace);
  pace.sendToThreadPool(0);
  assert.equal(pace.inline(), true, 'sendToThreadPool(0) lets operations run inline again');
});

test('a slow operation that throws still counts, and its error reaches the caller', () => {
  const pace = new InlinePace();
  assert.throws(
    () =>
      pace.timed(() => {
        takes(5)();
        throw new Error('EIO');
      }),
    /EIO/,
  );
  assert.equal(pace.inline(), false);
});

test('the window doubles with each slow operation and starts over after a fast one', async () => {
  const pace = new InlinePace();
  const inlineAgainWithin = async (ms: number) => {
    const deadline = performance.now() + ms;
    while (!pace.inline() && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    return pace.inline();
  };
  slowOperation(pace);
  assert.equal(await inlineAgainWithin(1_500), true, 'the first window is about 1 s');
  slowOperation(pace);
  assert.equal(await inlineAgainWithin(1_500), false, 'the second slow operation doubles it');
  assert.equal(await inlineAgainWithin(1_000), true, 'to about 2 s');
  pace.timed(() => 0);
  slowOperation(pace);
  assert.equal(await inlineAgainWithin(1_500), true, 'after a fast operation it starts at 1 s again');
});
