/**
 * Which fragments of encapsulated Pixel Data make up each frame (PS3.5 A.4): one fragment per frame,
 * the Basic Offset Table, the Extended Offset Table, or, with neither, the codestream start at the
 * head of each frame's first fragment. What cannot be told apart is refused, never guessed.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { BufferSource, parseDataset, PIXEL_DATA, type ElementNode } from '../../src/dicom/dataset-tree.js';
import { basicOffsetTable, EXTENDED_OFFSET_TABLE, frameBytes, framesOf } from '../../src/pixels/encapsulated.js';
import { PixelRedactionError } from '../../src/pixels/native.js';
import { definedItem, elementHeader } from '../helpers/synthetic-dicom.js';

const JPEG_START = [0xff, 0xd8, 0xff, 0xe0];
const J2K_START = [0xff, 0x4f, 0xff, 0x51];


/** Frame `index`'s bytes in `pieces` fragments: the codestream start, then bytes that name the frame. */
function frame(start: readonly number[], index: number, pieces: number): Buffer[] {
  const body = Buffer.concat([Buffer.from(start), Buffer.alloc(6 * pieces - start.length, index + 1)]);
  return Array.from({ length: pieces }, (_, piece) => body.subarray(piece * 6, piece * 6 + 6));
}

interface Encapsulated {
  pixelData: ElementNode;
  extendedOffsetTable?: ElementNode;
  source: BufferSource;
}

/**
 * A dataset with encapsulated Pixel Data holding `frames` (each a list of fragments), a Basic Offset
 * Table if `basic`, and an Extended Offset Table (64-bit offsets) if `extended`.
 */
function encapsulated(frames: readonly Buffer[][], options: { basic?: boolean; extended?: boolean } = {}): Encapsulated {
  const offsets: number[] = [];
  let position = 0;
  for (const fragments of frames) {
    offsets.push(position);
    for (const fragment of fragments) position += 8 + fragment.length;
  }
  const basic = Buffer.alloc(options.basic ? 4 * frames.length : 0);
  offsets.forEach((offset, index) => options.basic && basic.writeUInt32LE(offset, index * 4));
  const parts: Buffer[] = [];
  if (options.extended) {
    const table = Buffer.alloc(8 * frames.length);
    offsets.forEach((offset, index) => table.writeBigUInt64LE(BigInt(offset), index * 8));
    parts.push(elementHeader(EXTENDED_OFFSET_TABLE, 'OV', table.length), table);
  }
  parts.push(elementHeader(PIXEL_DATA, 'OB', 0xffffffff), definedItem(basic), ...frames.flat().map(definedItem), Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]));
  const source = new BufferSource(Buffer.concat(parts));
  const elements = parseDataset(source, 'explicit-le');
  const pixelData = elements.find((element) => element.tag === PIXEL_DATA);
  assert.ok(pixelData?.items, 'the dataset has encapsulated Pixel Data');
  return { pixelData, extendedOffsetTable: elements.find((element) => element.tag === EXTENDED_OFFSET_TABLE), source };
}

/** The bytes of every frame as framesOf splits them. */
function splitFrames(data: Encapsulated, count: number): Buffer[] {
  return framesOf(data.pixelData, data.source, count, data.extendedOffsetTable).map((fragments) => frameBytes(fragments, data.source));
}

test('without an offset table, a JPEG frame begins at each fragment that opens with SOI', () => {
  const frames = [frame(JPEG_START, 0, 2), frame(JPEG_START, 1, 3), frame(JPEG_START, 2, 1)];
  assert.deepEqual(splitFrames(encapsulated(frames), 3), frames.map((fragments) => Buffer.concat(fragments)));
});

test('without an offset table, a JPEG 2000 or HTJ2K frame begins at each fragment that opens with SOC and SIZ', () => {
  const frames = [frame(J2K_START, 0, 3), frame(J2K_START, 1, 1), frame(J2K_START, 2, 2), frame(J2K_START, 3, 4)];
  assert.deepEqual(splitFrames(encapsulated(frames), 4), frames.map((fragments) => Buffer.concat(fragments)));
});

test('the Extended Offset Table tells the frames apart when the Basic Offset Table is empty, whatever the codestream', () => {
  // Bytes with no codestream start anywhere: only the table can say where the frames begin.
  const frames = [frame([0x01, 0x02], 0, 2), frame([0x01, 0x02], 1, 3), frame([0x01, 0x02], 2, 2)];
  assert.deepEqual(splitFrames(encapsulated(frames, { extended: true }), 3), frames.map((fragments) => Buffer.concat(fragments)));
  assert.throws(() => splitFrames(encapsulated(frames, { extended: true }), 4), /Extended Offset Table has 3 entries for 4 frames/);
});

test('the Basic Offset Table is used when it has entries, before any marker', () => {
  const frames = [frame(JPEG_START, 0, 2), frame(JPEG_START, 1, 2)];
  assert.deepEqual(splitFrames(encapsulated(frames, { basic: true }), 2), frames.map((fragments) => Buffer.concat(fragments)));
  assert.throws(() => splitFrames(encapsulated(frames, { basic: true }), 3), /Basic Offset Table has 2 entries for 3 frames/);
});

test('fragments that cannot be told apart are refused with the reason, never split by guess', () => {
  // A continuation fragment that happens to open with SOI makes one frame too many.
  const collision = [[...frame(JPEG_START, 0, 1), Buffer.from([...JPEG_START, 0, 0])], frame(JPEG_START, 1, 2)];
  assert.throws(() => splitFrames(encapsulated(collision), 2), (error: unknown) => error instanceof PixelRedactionError && /4 fragments for 2 frames, no offset table, and 3 of the fragments begin a codestream/.test(error.message));
  // RLE keeps each frame in one fragment (PS3.5 A.4.2): more fragments than frames cannot be split.
  const rle = [frame([0x01, 0x00, 0x00, 0x00], 0, 2), frame([0x01, 0x00, 0x00, 0x00], 1, 2)];
  assert.throws(() => splitFrames(encapsulated(rle), 2), /4 fragments for 2 frames, no offset table, and 0 of the fragments begin a codestream/);
});

test('one frame in several fragments, and one fragment per frame, need no table', () => {
  const single = [frame([0x01, 0x02], 0, 3)];
  assert.deepEqual(splitFrames(encapsulated(single), 1), [Buffer.concat(single[0] as Buffer[])]);
  const each = [frame([0x01, 0x02], 0, 1), frame([0x01, 0x02], 1, 1)];
  assert.deepEqual(splitFrames(encapsulated(each), 2), each.map((fragments) => Buffer.concat(fragments)));
});

// Found in the robustness review: offsets out of order were sought frame by frame over every
// fragment, frames × fragments steps (20,000 frames in a 320 KB object: 2.6 s of de-identification;
// 200,000 in 3 MB: minutes), and gave frames that were empty or held other frames' fragments.
test('an offset table whose entries are out of order is refused with the reason', () => {
  const frames = [frame(JPEG_START, 0, 2), frame(JPEG_START, 1, 2), frame(JPEG_START, 2, 1)];
  const data = encapsulated(frames, { basic: true });
  // Frames 1 and 2 swapped in the Basic Offset Table (its item is the first of the value).
  const table = data.pixelData.items?.[0];
  assert.ok(table);
  const bytes = data.source.read(table.valueOffset, table.length);
  const [first, second] = [bytes.readUInt32LE(0), bytes.readUInt32LE(4)];
  bytes.writeUInt32LE(second, 0);
  bytes.writeUInt32LE(first, 4);
  assert.throws(() => splitFrames(data, 3), (error: unknown) => error instanceof PixelRedactionError && /out of order \(frame 2 starts before frame 1\)/.test(error.message));
});

// Found in a review: the table of frames written anew was filled with writeUInt32LE, which throws
// once an offset passes 32 bits (a whole-slide level over 4 GiB), failing the instance with a
// RangeError instead of writing it (PS3.5 A.4: the Basic Offset Table is then left empty).
test('the Basic Offset Table of frames written anew holds their item offsets, and is empty past 32 bits', () => {
  assert.deepEqual([...basicOffsetTable([10, 6, 4]).values()], [0, 0, 0, 0, 18, 0, 0, 0, 32, 0, 0, 0]);
  assert.equal(basicOffsetTable([10]).length, 0, 'one frame: no table');
  const large = 0x7fff_fff0;
  assert.equal(basicOffsetTable([large, large, 16]).length, 12, 'the last offset still fits');
  assert.equal(basicOffsetTable([large, large, large, 16]).length, 0, 'an offset past 2^32 - 1: left empty');
});

// Found in the pixel robustness review: each marker without a length (RSTn) outside a scan was kept
// as a view of its own, some 130 bytes of heap per 2 bytes of the frame: a 4 MB frame of them ran the
// 96 MB de-identification thread out of its heap. Here a thread of 32 MB cleans a 2 MB run.
test('a long run of markers without a length before a comment is cleaned within a small heap', async () => {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    Promise.all([import(workerData.segments), import(workerData.jpeg)]).then(([{ withCleanCodestream }, { JPEG_HEADER }]) => {
      const run = Buffer.alloc(2 * 1_000_000);
      for (let i = 0; i < run.length; i += 2) { run[i] = 0xff; run[i + 1] = 0xd0 + ((i / 2) % 8); }
      const comment = Buffer.from('MRN=998877', 'latin1');
      const frame = Buffer.concat([Buffer.from([0xff, 0xd8]), run, Buffer.from([0xff, 0xfe, 0, comment.length + 2]), comment,
        Buffer.from([0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0, 0x12, 0x34, 0xff, 0xd9])]);
      const cleaned = withCleanCodestream(frame, JPEG_HEADER);
      parentPort.postMessage({ length: cleaned?.length, comment: cleaned?.includes(comment) });
    });`;
  const worker = new Worker(code, {
    eval: true,
    workerData: { segments: new URL('../../src/pixels/marker-segments.js', import.meta.url).href, jpeg: new URL('../../src/pixels/jpeg-metadata.js', import.meta.url).href },
    resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 },
  });
  try {
    const [result] = (await once(worker, 'message')) as [{ length: number; comment: boolean }];
    assert.deepEqual(result, { length: 2 + 2_000_000 + 14, comment: false }, 'the comment goes, the markers stay');
  } finally {
    await worker.terminate();
  }
});
