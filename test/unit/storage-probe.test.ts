/**
 * Readiness of storage.path for writes (src/store/storage-probe.ts): free disk alone said ready on a
 * file system remounted read-only, while every C-STORE failed.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { StorageProbe, storageWritable } from '../../src/store/storage-probe.js';
import { scratchDir } from '../helpers/scratch.js';

// Root writes through permissions, so a folder that is no folder (ENOTDIR) stands for a read-only one.
test('a storage that takes no writes is not ready, says why, and is ready again once mended', async () => {
  const dir = scratchDir('storage-probe');
  const incoming = join(dir, 'incoming');
  writeFileSync(incoming, 'a file where the folder should be');
  const probe = new StorageProbe(incoming);
  const failed = await probe.probe();
  assert.equal(failed.failure, 'ENOTDIR');
  const unready = storageWritable(failed);
  assert.equal(unready.ok, false);
  assert.match(unready.ok ? '' : unready.detail, /^storage\.path does not take writes \(ENOTDIR\): C-STORE fails/);
  rmSync(incoming);
  mkdirSync(incoming);
  const mended = await probe.probe();
  assert.equal(mended.failure, undefined);
  assert.deepEqual(storageWritable(mended), { ok: true });
  assert.deepEqual(readdirSync(incoming), [], 'the probe leaves nothing behind');
});

test('a probe that has not ended for a minute is not ready either (a device that stopped answering)', () => {
  const now = Date.now();
  assert.deepEqual(storageWritable({ at: now - 30_000 }, now), { ok: true });
  const stale = storageWritable({ at: now - 61_000 }, now);
  assert.equal(stale.ok, false);
  assert.match(stale.ok ? '' : stale.detail, /has not answered a write for 61 s/);
  assert.match(stale.ok ? '' : stale.detail, /check the device/);
  assert.equal(storageWritable({ at: 0 }, now).ok, false, 'never probed');
});

// Found in a review: the probe ran every interval whether or not the last one had ended. On a device
// that stopped answering, each probe waits forever on a thread of libuv's pool (four by default), and
// in 40 s they held every one: the file system, DNS look-ups of destinations and statfs all waited
// behind them. A probe that has not ended is left to end (readiness says it is stale).
test('a probe that has not ended is not joined by another', async (t) => {
  const probe = new StorageProbe(scratchDir('storage-probe-hung'), 5);
  t.after(() => probe.stop());
  let started = 0;
  probe.probe = () => {
    started += 1;
    // The first (at start) ends; the next never does, as on a device that stopped answering.
    return started === 1 ? Promise.resolve({ at: Date.now() }) : new Promise(() => {});
  };
  await probe.start();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(started, 2, 'one probe under way at a time');
});
