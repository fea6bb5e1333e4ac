/**
 * An incoming file (src/store/incoming-file.ts): what is written arrives whole and in order, whether
 * batches are written inline or in the thread pool, and when writes go inline again while a pool write
 * is still queued; the pool path (taken after a slow write, and while a background sync of a large
 * file runs) holds its producer back at the high-water mark until the queue drains.
 */
import assert from 'node:assert/strict';
import { pbkdf2, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { IncomingFile, sendWritesToThreadPool } from '../../src/store/incoming-file.js';
import { scratchDir } from '../helpers/scratch.js';

/** Chunks of uneven sizes, as a socket gives them. */
function chunksOf(bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let offset = 0, size = 1; offset < bytes.length; offset += size, size = (size * 7 + 13) % 70_000 || 1) {
    chunks.push(bytes.subarray(offset, offset + size));
  }
  return chunks;
}

test('a small object is written whole and in order, its producer never held back', async () => {
  sendWritesToThreadPool(0);
  const path = join(scratchDir('incoming'), 'small.part');
  const header = Buffer.from('header');
  const body = randomBytes(600_000);
  const file = new IncomingFile(path, header);
  for (const chunk of chunksOf(body)) assert.equal(file.write(chunk), true);
  assert.equal(await file.complete(), header.length + body.length);
  await file.sync();
  await file.close();
  assert.deepEqual(readFileSync(path), Buffer.concat([header, body]));
});

test('a large object written faster than the pool takes it is held back at the high-water mark, and arrives whole', async () => {
  const path = join(scratchDir('incoming'), 'large.part');
  const body = randomBytes(24 * 1024 * 1024);
  const file = new IncomingFile(path);
  let heldBack = 0;
  for (let offset = 0; offset < body.length; offset += 64 * 1024) {
    // Past 8 MB a background sync starts, and writes go to the thread pool while it runs.
    if (!file.write(body.subarray(offset, offset + 64 * 1024))) {
      heldBack += 1;
      await file.whenDrained();
    }
  }
  assert.ok(heldBack > 0, 'the producer was told to wait at least once');
  assert.equal(await file.complete(), body.length);
  await file.sync();
  await file.close();
  assert.ok(readFileSync(path).equals(body));
});

test('writes that go inline again while a pool write is still queued wait for it: the bytes stay in order', async (t) => {
  // Every thread of the pool busy, so the pool write cannot have run when the inline writes come.
  const busy = Array.from({ length: 8 }, () => new Promise((resolve) => pbkdf2('x', 'y', 300_000, 64, 'sha512', resolve)));
  t.after(() => sendWritesToThreadPool(0));
  const path = join(scratchDir('incoming'), 'order.part');
  const body = randomBytes(2 * 1024 * 1024);
  const file = new IncomingFile(path);
  sendWritesToThreadPool(60_000);
  file.write(body.subarray(0, 512 * 1024));
  sendWritesToThreadPool(0);
  for (let offset = 512 * 1024; offset < body.length; offset += 64 * 1024) file.write(body.subarray(offset, offset + 64 * 1024));
  assert.equal(await file.complete(), body.length);
  await file.close();
  assert.ok(readFileSync(path).equals(body), 'the file holds the bytes in the order they were written');
  await Promise.all(busy);
});

test('a file that cannot be created reports why at complete, and can be discarded', async () => {
  const path = join(scratchDir('incoming'), 'missing-dir', 'x.part');
  const file = new IncomingFile(path, Buffer.from('header'));
  file.write(randomBytes(100_000));
  await assert.rejects(file.complete(), { code: 'ENOENT' });
  await file.discard();
});

test('a sync started with the last byte covers the content written before it, under the name given after it', async () => {
  sendWritesToThreadPool(0);
  const dir = scratchDir('incoming');
  const header = Buffer.from('header');
  const body = randomBytes(700_000);
  const file = new IncomingFile(join(dir, 'early.part'), header);
  for (const chunk of chunksOf(body)) file.write(chunk);
  file.startSync();
  file.moveTo(join(dir, 'placed.dcm'));
  assert.equal(await file.complete(), header.length + body.length);
  await file.sync();
  await file.close();
  assert.deepEqual(readFileSync(join(dir, 'placed.dcm')), Buffer.concat([header, body]));
});

test('a sync started early reports a failed file, and a chunk written after it, at sync()', async () => {
  const failing = new IncomingFile(join(scratchDir('incoming'), 'missing-dir', 'x.part'), Buffer.from('header'));
  failing.startSync();
  await assert.rejects(failing.sync(), { code: 'ENOENT' });
  await failing.discard();
  // Bytes after the sync began may not be covered by it: the store must fail, not acknowledge them.
  const path = join(scratchDir('incoming'), 'late.part');
  const late = new IncomingFile(path, Buffer.from('header'));
  late.startSync();
  late.write(randomBytes(1_000));
  await assert.rejects(late.sync(), /written after the file's final sync began/);
  await late.discard();
});

test('a discard during an early sync deletes the file at once, and the sync never runs on a closed descriptor', async () => {
  const path = join(scratchDir('incoming'), 'discarded.part');
  const file = new IncomingFile(path, Buffer.from('header'));
  file.write(randomBytes(300_000));
  file.startSync();
  await file.discard();
  assert.throws(() => readFileSync(path), { code: 'ENOENT' });
  // Either the sync ran before the discard took the descriptor (and it was closed after the sync), or
  // it found the file closed; never EBADF from a descriptor closed under it.
  await file.sync().catch((error: Error) => assert.match(error.message, /closed before its sync/));
});
