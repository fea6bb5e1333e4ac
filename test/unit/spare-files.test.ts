/**
 * Incoming files created ahead of the stores that take them (src/store/spare-files.ts): each is new,
 * empty, open for writing and taken once; the pool refills to its size; closing deletes what was not
 * taken; an incoming file made from one behaves as one the store created itself.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SpareFiles } from '../../src/store/spare-files.js';
import { ObjectStore } from '../../src/store/object-store.js';
import { scratchDir } from '../helpers/scratch.js';

function pool(dir: string, size: number): SpareFiles {
  let sequence = 0;
  return new SpareFiles(() => join(dir, `spare-${(sequence += 1)}.part`), size);
}

test('files are made ahead up to the pool size, each empty, writable and handed out once', async () => {
  const dir = scratchDir('spares');
  const spares = pool(dir, 3);
  assert.equal(spares.take(), undefined, 'none is ready before the pool was filled');
  await spares.settled();
  assert.equal(readdirSync(dir).length, 3);
  const taken = [spares.take(), spares.take()];
  const paths = taken.map((file) => file?.path);
  assert.equal(new Set(paths).size, 2, 'two takes, two files');
  for (const file of taken) {
    assert.ok(file);
    assert.equal(statSync(file.path).size, 0);
    writeSync(file.fd, Buffer.from('DICM'));
    assert.equal(readFileSync(file.path, 'latin1'), 'DICM');
  }
  await spares.settled();
  assert.equal(readdirSync(dir).length, 5, 'refilled to three ready besides the two taken');
  spares.closeAll();
  assert.deepEqual(readdirSync(dir).sort(), paths.map((path) => path?.split('/').pop()).sort(), 'the files not taken are deleted');
  assert.equal(spares.take(), undefined, 'a closed pool hands out nothing');
  await spares.settled();
  assert.equal(readdirSync(dir).length, 2, 'and makes nothing more');
});

test('a pool that cannot create files hands out none, and the store creates its own', async () => {
  const dir = join(scratchDir('spares'), 'missing');
  const spares = pool(dir, 2);
  spares.fill();
  await spares.settled();
  assert.equal(spares.take(), undefined);
  assert.equal(existsSync(dir), false);
});

test('the object store writes incoming files into files made ahead, and deletes the unused ones when closed', async () => {
  const root = scratchDir('spares-store');
  const store = new ObjectStore(root);
  await store.init();
  const file = store.createIncoming(Buffer.from('header'));
  file.write(Buffer.from('-dataset'));
  assert.equal(await file.complete(), 14);
  await file.sync();
  await file.close();
  assert.equal(readFileSync(file.path, 'latin1'), 'header-dataset');
  assert.ok(readdirSync(store.incomingDir).length > 1, 'other files wait in incoming/');
  store.close();
  assert.deepEqual(readdirSync(store.incomingDir), [file.path.split('/').pop()], 'only the file in use is left');
});
