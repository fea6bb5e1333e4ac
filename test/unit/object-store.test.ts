/**
 * The object store's placing of files (src/store/object-store.ts): a file's name is made durable by a
 * sync of its directory, through descriptors kept open for the directories used lately.
 */
import assert from 'node:assert/strict';
import { pbkdf2 } from 'node:crypto';
import { existsSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { ObjectStore } from '../../src/store/object-store.js';
import { newUid } from '../helpers/synthetic-dicom.js';
import { scratchDir } from '../helpers/scratch.js';

// Found in a review: past 64 directories the least recently used descriptor was closed at once, even
// while a sync of it still waited for a thread of the pool (under load, behind the stores' file
// syncs). That sync then ran on a closed descriptor (EBADF: a store failed for nothing) or on the
// next file opened under its number (the directory was never synced, and the store acknowledged).
test('a directory sync waiting in the thread pool keeps its descriptor, however many directories follow', async (t) => {
  const store = new ObjectStore(scratchDir('object-store'));
  await store.init();
  t.after(() => store.close());
  const files = [];
  for (let i = 0; i < 70; i += 1) {
    const file = store.createIncoming(Buffer.from('DICM'));
    await store.moveIntoPlace(file, store.originalPath(newUid(), newUid(), newUid()));
    await file.complete();
    files.push(file);
  }
  // Every thread of the pool busy: the syncs wait in its queue while the later directories are opened.
  const busy = Array.from({ length: 8 }, () => new Promise((resolve) => pbkdf2('x', 'y', 200_000, 64, 'sha512', resolve)));
  const results = await Promise.allSettled(files.map((file) => store.syncPlaced(file)));
  await Promise.all(busy);
  const failed = results.filter((result) => result.status === 'rejected').map((result) => (result as PromiseRejectedResult).reason.code);
  assert.deepEqual(failed, [], 'every sync of a healthy directory succeeds');
});

// Suspected in a review: a replacement's name was the time and a sequence run together, so a restart
// with the clock stepped back could name a new copy as an earlier run named one.
test('two runs name their replacement copies apart, at the same moment and sequence', (t) => {
  t.mock.method(Date, 'now', () => 1_700_000_000_000);
  const [first, second] = [new ObjectStore(scratchDir('variant-a')), new ObjectStore(scratchDir('variant-b'))];
  const [a, b] = [first.uniqueVariant(), second.uniqueVariant()];
  assert.notEqual(a, b);
  for (const variant of [a, b]) assert.match(variant, /^[0-9a-z]*[a-z][0-9a-z]*$/, 'letters and digits, with a letter: recovery.ts tells variants from UIDs by them');
});

// Found in a review: retention now removes the series and study folders it empties, which the store
// had made and remembered as ready: the next file of that series must find its folder made again
// (durably: its name synced into a folder that exists), whether retention said so or not.
test('a file placed into a series whose folders were removed since is placed, the folders made again', async (t) => {
  const root = scratchDir('object-store-removed');
  const store = new ObjectStore(root);
  await store.init();
  t.after(() => store.close());
  const [study, series] = [newUid(), newUid()];
  const place = async () => {
    const file = store.createIncoming(Buffer.from('DICM'));
    const path = store.originalPath(study, series, newUid());
    await store.moveIntoPlace(file, path);
    await file.complete();
    await store.syncPlaced(file);
    return path;
  };
  const first = await place();
  const remove = () => {
    rmSync(join(root, first), { force: true });
    rmdirSync(join(root, dirname(first)));
    rmdirSync(join(root, dirname(dirname(first))));
  };
  remove();
  // Not told: the store finds out when the rename fails.
  const second = await place();
  assert.ok(existsSync(join(root, second)));
  rmSync(join(root, second));
  rmdirSync(join(root, dirname(second)));
  rmdirSync(join(root, dirname(dirname(second))));
  // Told, as retention tells it.
  store.folderRemoved(dirname(second));
  store.folderRemoved(dirname(dirname(second)));
  const third = await place();
  assert.ok(existsSync(join(root, third)));
  // The study folder removed, not told, and another series of it placed: its folder cannot be made in
  // a study folder that is gone (found in the review of this change: the store failed with ENOENT).
  rmSync(join(root, third));
  rmdirSync(join(root, dirname(third)));
  rmdirSync(join(root, dirname(dirname(third))));
  const file = store.createIncoming(Buffer.from('DICM'));
  const otherSeries = store.originalPath(study, newUid(), newUid());
  await store.moveIntoPlace(file, otherSeries);
  await file.complete();
  await store.syncPlaced(file);
  assert.ok(existsSync(join(root, otherSeries)));
});
