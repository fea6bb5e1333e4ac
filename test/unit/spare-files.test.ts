/**
 * Incoming files created ahead of the stores that take them (src/store/spare-files.ts): each is new,
 * empty, open for writing and taken once; the pool refills to its size; closing deletes what was not
 * taken; an incoming file made from one behaves as one the store created itself.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { SpareFiles } from '../../src/store/spare-files.js';
import { ObjectStore, SPARE_INCOMING_FILES } from '../../src/store/object-store.js';
import { sleep } from '../helpers/processes.js';
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
  await spares.closeAll();
  assert.deepEqual(readdirSync(dir).sort(), paths.map((path) => path?.split('/').pop()).sort(), 'the files not taken are deleted');
  assert.equal(spares.take(), undefined, 'a closed pool hands out nothing');
  await spares.settled();
  assert.equal(readdirSync(dir).length, 2, 'and makes nothing more');
});

test('a pool that cannot create files hands out none, and tries again at the next take', async () => {
  const dir = join(scratchDir('spares'), 'not-yet');
  const spares = pool(dir, 2);
  spares.fill();
  await spares.settled();
  assert.equal(spares.take(), undefined);
  await spares.settled();
  assert.equal(existsSync(dir), false);
  mkdirSync(dir);
  assert.equal(spares.take(), undefined, 'none was ready');
  await spares.settled();
  assert.equal(readdirSync(dir).length, 2, 'the take started filling again');
  await spares.closeAll();
  assert.deepEqual(readdirSync(dir), []);
});

test('the object store hands out files made ahead once its first store started the making', async () => {
  const root = scratchDir('spares-store');
  const store = new ObjectStore(root);
  await store.init();
  assert.deepEqual(readdirSync(store.incomingDir), [], 'nothing is made before a store needs it');
  const first = store.createIncoming(Buffer.from('first'));
  const deadline = Date.now() + 5000;
  // The first store's own file is empty too until its bytes are written (they are queued).
  const ready = () => readdirSync(store.incomingDir).map((name) => join(store.incomingDir, name)).filter((path) => path !== first.path);
  while (ready().length < SPARE_INCOMING_FILES && Date.now() < deadline) await sleep(10);
  const madeAhead = ready();
  assert.equal(madeAhead.length, SPARE_INCOMING_FILES);
  const second = store.createIncoming(Buffer.from('header'));
  assert.ok(madeAhead.includes(second.path), 'the second store writes into a file made ahead');
  second.write(Buffer.from('-dataset'));
  assert.equal(await second.complete(), 14);
  await second.sync();
  await second.close();
  assert.equal(readFileSync(second.path, 'latin1'), 'header-dataset');
  await first.discard();
  await store.close();
  assert.deepEqual(readdirSync(store.incomingDir), [second.path.split('/').pop()], 'only the file in use is left');
});

test('the object store places files of two new series of a new study at once, under a root given as ./relative/', async () => {
  const root = scratchDir('store-directories');
  const store = new ObjectStore(`./${relative(process.cwd(), root)}/`);
  await store.init();
  const files = ['1.2', '1.3'].map((series) => ({ series, file: store.createIncoming(Buffer.from(series)) }));
  await Promise.all(files.map(({ series, file }) => store.moveIntoPlace(file, store.originalPath('1.1', series, `${series}.1`))));
  for (const { series, file } of files) {
    assert.equal(await file.complete(), 3);
    await store.syncPlaced(file);
    assert.equal(readFileSync(join(root, store.originalPath('1.1', series, `${series}.1`)), 'latin1'), series);
  }
  await store.close();
});
