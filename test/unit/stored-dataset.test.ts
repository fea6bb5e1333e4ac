/** A stored file read back for sending (src/store/stored-dataset.ts): preloaded whole when it fits
 * (inline, or in the thread pool after a slow read), read as it is sent when it does not, and refused
 * when it is not a Part 10 file Gantry wrote. */
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { openStoredDataset, sendPreloadsToThreadPool } from '../../src/store/stored-dataset.js';
import { scratchDir } from '../helpers/scratch.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

function storedFile(dir: string, name: string, datasetLength: number): { path: string; dataset: Buffer } {
  const dataset = Buffer.alloc(datasetLength);
  for (let i = 0; i < datasetLength; i += 1) dataset[i] = (i * 31 + (i >> 10)) & 0xff;
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: CT, mediaStorageSopInstanceUid: `1.2.3.${datasetLength}`, transferSyntaxUid: EXPLICIT_LE }), dataset]));
  return { path, dataset };
}

async function readAll(stored: { length: number; read(target: Buffer, position: number): Promise<number> }): Promise<Buffer> {
  const out = Buffer.alloc(stored.length);
  for (let position = 0; position < stored.length; ) {
    const read = await stored.read(out.subarray(position, Math.min(out.length, position + 300_000)), position);
    assert.ok(read > 0, 'reads until the end');
    position += read;
  }
  return out;
}

/** Each case runs with preloads read inline, then in the thread pool. */
const PRELOAD_MODES = [
  ['inline', 0],
  ['in the thread pool', 60_000],
] as const;

test('a file that fits the preload buffer is read whole; a larger one is read as it is sent; both give the dataset as stored', async (t) => {
  t.after(() => sendPreloadsToThreadPool(0));
  const dir = scratchDir('stored-dataset');
  const preload = Buffer.alloc(1024 * 1024);
  for (const [mode, poolMs] of PRELOAD_MODES) {
    sendPreloadsToThreadPool(poolMs);
    for (const length of [10, 600_000, 1024 * 1024 + 10, 3 * 1024 * 1024]) {
      const { path, dataset } = storedFile(dir, `${length}-${poolMs}.dcm`, length);
      const stored = await openStoredDataset(path, preload);
      try {
        assert.equal(stored.sopClassUid, CT);
        assert.equal(stored.sopInstanceUid, `1.2.3.${length}`);
        assert.equal(stored.transferSyntaxUid, EXPLICIT_LE);
        assert.equal(stored.length, length);
        assert.equal(stored.bytes !== undefined, length < 1024 * 1024 - 200, `${length} bytes preloaded only when it fits (${mode})`);
        assert.ok((await readAll(stored)).equals(dataset), `${length} bytes as stored (${mode})`);
      } finally {
        await stored.close();
      }
    }
  }
});

test('a preload runs inline (read before openStoredDataset returns) until a slow read sends it to the thread pool', async (t) => {
  t.after(() => sendPreloadsToThreadPool(0));
  const { path } = storedFile(scratchDir('stored-dataset-pace'), 'one.dcm', 1000);
  const preload = Buffer.alloc(1024 * 1024);
  for (const [mode, poolMs] of PRELOAD_MODES) {
    sendPreloadsToThreadPool(poolMs);
    preload.fill(0);
    const opening = openStoredDataset(path, preload);
    // Only inline is it certain when the buffer is filled: a pool thread reads into it beside this
    // thread, and under load it may finish before the next line runs (seen in a full run).
    if (mode === 'inline') assert.equal(preload.toString('latin1', 128, 132), 'DICM', 'read before openStoredDataset returns');
    assert.equal((await opening).length, 1000);
  }
});

test('a file that is not Part 10, cannot be read, or is missing, is refused with the reason', async (t) => {
  t.after(() => sendPreloadsToThreadPool(0));
  const dir = scratchDir('stored-dataset-bad');
  writeFileSync(join(dir, 'plain.txt'), 'not DICOM at all');
  const preload = Buffer.alloc(1024 * 1024);
  const descriptors = () => readdirSync('/proc/self/fd').length;
  const before = descriptors();
  for (const [mode, poolMs] of PRELOAD_MODES) {
    sendPreloadsToThreadPool(poolMs);
    await assert.rejects(openStoredDataset(join(dir, 'plain.txt'), preload), /not a DICOM Part 10 file/, mode);
    // A directory opens, and its read fails: the descriptor is closed all the same.
    await assert.rejects(openStoredDataset(dir, preload), (error: NodeJS.ErrnoException) => error.code === 'EISDIR', mode);
    await assert.rejects(openStoredDataset(join(dir, 'missing.dcm'), preload), (error: NodeJS.ErrnoException) => error.code === 'ENOENT', mode);
  }
  await assert.rejects(openStoredDataset(join(dir, 'plain.txt')), /not a DICOM Part 10 file/);
  // The descriptors are closed as the reads end: given a moment.
  for (let tries = 0; tries < 50 && descriptors() > before; tries += 1) await new Promise((resolve) => setTimeout(resolve, 10));
  // At most as many: a descriptor an earlier test left closing may close meanwhile (seen under load).
  assert.ok(descriptors() <= before, `no file left open (${descriptors()} descriptors, ${before} before)`);
});
