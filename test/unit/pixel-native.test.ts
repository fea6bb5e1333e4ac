/**
 * Native pixel redaction for every layout Gantry accepts: inside the zone every sample is black for
 * its Photometric Interpretation, outside it every byte is the input's, in every frame.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferSource, parseDataset, type ElementNode } from '../../src/dicom/dataset-tree.js';
import { blackSamples, frameBits, outsideMask, pixelGeometry, PixelRedactionError, rectMask, redactNativePixelData, type PixelGeometry, type RowMask } from '../../src/pixels/native.js';
import { bigEndianElement, eightBitImagePixel, encodeDataset } from '../helpers/synthetic-dicom.js';
import type { EditableElement } from '../../src/dicom/dataset-writer.js';
import { redactAttachedPixels } from '../../src/pixels/attached.js';

function geometry(overrides: Partial<PixelGeometry>): PixelGeometry {
  const bitsAllocated = overrides.bitsAllocated ?? 8;
  return {
    rows: 6,
    columns: 10,
    samplesPerPixel: 1,
    bitsAllocated,
    bitsStored: bitsAllocated,
    highBit: (overrides.bitsStored ?? bitsAllocated) - 1,
    signed: false,
    planar: false,
    photometric: 'MONOCHROME2',
    frames: 3,
    bigEndian: false,
    ...overrides,
  };
}

/** Pixel data whose every byte differs from black (so a byte left alone is told from a blanked one). */
function pixelData(g: PixelGeometry, pad = 0): Buffer {
  const bytes = Buffer.alloc(Math.ceil((frameBits(g) * g.frames) / 8) + pad);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = 0x5a ^ (i * 37);
  return bytes;
}

function redact(g: PixelGeometry, input: Buffer, mask: RowMask): Buffer {
  const element: ElementNode = { tag: 0x7fe00010, vr: 'OW', offset: 0, headerLength: 0, length: input.length, valueOffset: 0, end: input.length };
  const pieces: Buffer[] = [];
  redactNativePixelData(element, new BufferSource(input), g, mask, (bytes) => pieces.push(Buffer.from(bytes)));
  const output = Buffer.concat(pieces);
  assert.equal(output.length, input.length, 'the length does not change');
  return output;
}

/** Where sample `s` of pixel (x, y) of frame f is, in bytes (not for 1 bit or 4:2:2). */
function sampleOffset(g: PixelGeometry, f: number, x: number, y: number, s: number): number {
  const size = g.bitsAllocated / 8;
  const frame = (frameBits(g) / 8) * f;
  if (g.planar) return frame + (s * g.rows * g.columns + y * g.columns + x) * size;
  return frame + ((y * g.columns + x) * g.samplesPerPixel + s) * size;
}

function readSample(bytes: Buffer, offset: number, size: number, bigEndian: boolean): number {
  if (size === 1) return bytes.readUInt8(offset);
  if (size === 2) return bigEndian ? bytes.readUInt16BE(offset) : bytes.readUInt16LE(offset);
  return bigEndian ? bytes.readUInt32BE(offset) : bytes.readUInt32LE(offset);
}

/** Checks every sample of every frame: black inside `inside`, the input's outside. */
function checkRedacted(g: PixelGeometry, input: Buffer, output: Buffer, inside: (x: number, y: number) => boolean, black: number[]): void {
  const size = g.bitsAllocated / 8;
  let blanked = 0;
  for (let f = 0; f < g.frames; f += 1) {
    for (let y = 0; y < g.rows; y += 1) {
      for (let x = 0; x < g.columns; x += 1) {
        for (let s = 0; s < g.samplesPerPixel; s += 1) {
          const offset = sampleOffset(g, f, x, y, s);
          const got = readSample(output, offset, size, g.bigEndian);
          if (inside(x, y)) {
            assert.equal(got, black[s], `frame ${f} (${x}, ${y}) sample ${s} is black`);
            blanked += 1;
          } else assert.equal(got, readSample(input, offset, size, g.bigEndian), `frame ${f} (${x}, ${y}) sample ${s} unchanged`);
        }
      }
    }
  }
  assert.ok(blanked > 0);
}

const RECT = [[2, 1, 5, 3]] as const; // x 2..6, y 1..3
const inRect = (x: number, y: number) => x >= 2 && x < 7 && y >= 1 && y < 4;

const CASES: Array<[string, Partial<PixelGeometry>, number[]]> = [
  ['MONOCHROME2 8-bit', {}, [0]],
  ['MONOCHROME2 16-bit signed, 12 stored', { bitsAllocated: 16, bitsStored: 12, highBit: 11, signed: true }, [0xf800]],
  ['MONOCHROME2 16-bit big endian', { bitsAllocated: 16, bigEndian: true }, [0]],
  ['MONOCHROME1 16-bit, 12 stored', { bitsAllocated: 16, bitsStored: 12, highBit: 11, photometric: 'MONOCHROME1' }, [4095]],
  ['MONOCHROME1 8-bit signed', { photometric: 'MONOCHROME1', signed: true }, [127]],
  ['MONOCHROME2 32-bit', { bitsAllocated: 32 }, [0]],
  ['MONOCHROME2 32-bit signed', { bitsAllocated: 32, signed: true }, [0x80000000]],
  ['RGB interleaved', { samplesPerPixel: 3, photometric: 'RGB' }, [0, 0, 0]],
  ['RGB planar', { samplesPerPixel: 3, photometric: 'RGB', planar: true }, [0, 0, 0]],
  ['RGB 16-bit', { samplesPerPixel: 3, photometric: 'RGB', bitsAllocated: 16 }, [0, 0, 0]],
  ['YBR_FULL', { samplesPerPixel: 3, photometric: 'YBR_FULL' }, [0, 128, 128]],
  ['YBR_FULL planar', { samplesPerPixel: 3, photometric: 'YBR_FULL', planar: true }, [0, 128, 128]],
  ['PALETTE COLOR', { photometric: 'PALETTE COLOR', paletteBlack: 7 }, [7]],
  ['MONOCHROME1 high bit not at the top', { bitsAllocated: 16, bitsStored: 12, highBit: 15, photometric: 'MONOCHROME1' }, [0xfff0]],
];

for (const [name, overrides, black] of CASES) {
  test(`${name}: the zone is black in every frame, every other byte unchanged`, () => {
    const g = geometry(overrides);
    assert.deepEqual(blackSamples(g).map((value) => (value < 0 ? value + 2 ** g.bitsAllocated : value)), black);
    const input = pixelData(g, 1);
    const output = redact(g, input, rectMask(RECT, g.rows, g.columns));
    checkRedacted(g, input, output, inRect, black);
    assert.deepEqual(output.subarray(-1), input.subarray(-1), 'the padding byte is copied');
  });
}

test('native YBR_FULL_422 of an odd width, or planar, is refused: its pairs of pixels do not fit the rows', () => {
  for (const overrides of [{ columns: 9 }, { planar: true }]) {
    const g = geometry({ samplesPerPixel: 3, photometric: 'YBR_FULL_422', ...overrides });
    assert.throws(() => redact(g, Buffer.alloc(Math.ceil(frameBits(g) / 8) * g.frames), rectMask(RECT, g.rows, g.columns)), /YBR_FULL_422 other than 8-bit/);
  }
});

test('YBR_FULL_422: pairs of pixels share Cb and Cr, so a zone widens to whole pairs', () => {
  const g = geometry({ samplesPerPixel: 3, photometric: 'YBR_FULL_422' });
  const frameLength = g.rows * g.columns * 2;
  const input = Buffer.alloc(frameLength * g.frames);
  for (let i = 0; i < input.length; i += 1) input[i] = 0x5a ^ (i * 37);
  const output = redact({ ...g }, input, rectMask([[3, 1, 3, 2]], g.rows, g.columns)); // x 3..5 → pairs 2-3, 4-5
  for (let f = 0; f < g.frames; f += 1) {
    for (let y = 0; y < g.rows; y += 1) {
      for (let pair = 0; pair < g.columns / 2; pair += 1) {
        const at = f * frameLength + y * g.columns * 2 + pair * 4;
        const inside = y >= 1 && y < 3 && pair >= 1 && pair <= 2;
        if (inside) assert.deepEqual([...output.subarray(at, at + 4)], [0, 0, 128, 128], `frame ${f} row ${y} pair ${pair}`);
        else assert.deepEqual(output.subarray(at, at + 4), input.subarray(at, at + 4));
      }
    }
  }
});

for (const [name, rows, columns, black] of [
  ['1-bit frames on byte boundaries', 4, 8, 0],
  ['1-bit frames across byte boundaries', 5, 5, 0],
  ['1-bit MONOCHROME1', 5, 5, 1],
] as const) {
  test(`${name}: only the zone's bits change`, () => {
    const g = geometry({ bitsAllocated: 1, rows, columns, photometric: black === 1 ? 'MONOCHROME1' : 'MONOCHROME2' });
    const input = pixelData(g);
    const mask = rectMask([[1, 1, 2, 2]], rows, columns);
    const output = redact(g, input, mask);
    for (let f = 0; f < g.frames; f += 1) {
      for (let y = 0; y < rows; y += 1) {
        for (let x = 0; x < columns; x += 1) {
          const bit = (f * rows + y) * columns + x;
          const got = ((output[bit >> 3] as number) >> (bit & 7)) & 1;
          const was = ((input[bit >> 3] as number) >> (bit & 7)) & 1;
          const inside = x >= 1 && x < 3 && y >= 1 && y < 3;
          assert.equal(got, inside ? black : was, `frame ${f} (${x}, ${y})`);
        }
      }
    }
  });
}

test('masks: rectangles are clipped to the image; outside regions is the complement', () => {
  const clipped = rectMask([[8, 0, 10, 2], [0, 5, 3, 9]], 6, 10);
  assert.deepEqual(clipped(0), [[8, 10]]);
  assert.deepEqual(clipped(5), [[0, 3]]);
  assert.deepEqual(clipped(6), []);
  const outside = outsideMask([[2, 1, 3, 2], [4, 1, 4, 1]], 6, 10);
  assert.deepEqual(outside(0), [[0, 10]]);
  assert.deepEqual(outside(1), [[0, 2], [8, 10]]);
  assert.deepEqual(outside(2), [[0, 2], [5, 10]]);
});

test('pixel data shorter than its frames is refused, not half redacted; longer too (frames NumberOfFrames does not count)', () => {
  const g = geometry({});
  const short = Buffer.alloc(g.rows * g.columns * g.frames - 1);
  assert.throws(() => redact(g, short, rectMask(RECT, g.rows, g.columns)), /Pixel Data has \d+ bytes; 3 frame\(s\)/);
  const long = Buffer.alloc(g.rows * g.columns * (g.frames + 1));
  assert.throws(() => redact(g, long, rectMask(RECT, g.rows, g.columns)), /Pixel Data has \d+ bytes; 3 frame\(s\)/);
});

/** The Image Pixel module of an 8-bit PALETTE COLOR image whose palette has `entries` entries of
 * `bitsPerEntry` bits, every entry white but `darkest`, which is black. */
function paletteGeometry(entries: number, bitsPerEntry: 8 | 16, bytesPerEntry: 1 | 2, darkest: number, firstMapped = 0): PixelGeometry {
  const table = Buffer.alloc(entries * bytesPerEntry);
  for (let k = 0; k < entries; k += 1) {
    const value = k === darkest ? 0 : bitsPerEntry === 8 ? 0xff : 0xffff;
    if (bytesPerEntry === 1) table[k] = value;
    else table.writeUInt16LE(value, k * 2);
  }
  const descriptor = Buffer.alloc(6);
  descriptor.writeUInt16LE(entries === 65536 ? 0 : entries, 0);
  descriptor.writeUInt16LE(firstMapped, 2);
  descriptor.writeUInt16LE(bitsPerEntry, 4);
  const source = new BufferSource(
    encodeDataset([
      ...eightBitImagePixel({ rows: 4, columns: 4, photometric: 'PALETTE COLOR' }),
      ...[0x00281101, 0x00281102, 0x00281103].map((tag) => [tag, 'US', descriptor] as const),
      ...[0x00281201, 0x00281202, 0x00281203].map((tag) => [tag, 'OW', table] as const),
    ]),
  );
  const elements = parseDataset(source, 'explicit-le');
  return pixelGeometry(new Map(elements.map((element) => [element.tag, element])), source, false);
}

test('PALETTE COLOR: black is the darkest palette entry, whether entries are 16-bit words or 8-bit bytes (PS3.3 C.7.6.3.1.5)', () => {
  assert.equal(paletteGeometry(256, 16, 2, 200).paletteBlack, 200, '16-bit entries');
  assert.equal(paletteGeometry(256, 8, 2, 200).paletteBlack, 200, '8-bit entries in 16-bit words');
  assert.equal(paletteGeometry(256, 8, 1, 200).paletteBlack, 200, '8-bit entries, one byte each (as many bytes as entries)');
  assert.equal(paletteGeometry(256, 8, 1, 7, 16).paletteBlack, 23, 'offset by the first value mapped');
  assert.throws(() => paletteGeometry(256, 16, 1, 200), PixelRedactionError, 'a table shorter than its entries is refused');
});

test('a kept 8-bit icon in explicit VR big endian words (OW) is refused, as the image itself is: its pixels are swapped in pairs', () => {
  const us = (value: number) => Buffer.from([value >> 8, value & 0xff]);
  const item = Buffer.concat([
    bigEndianElement(0x00280002, 'US', us(1)),
    bigEndianElement(0x00280004, 'CS', Buffer.from('MONOCHROME2 ')),
    bigEndianElement(0x00280010, 'US', us(2)),
    bigEndianElement(0x00280011, 'US', us(4)),
    bigEndianElement(0x00280100, 'US', us(8)),
    bigEndianElement(0x00280101, 'US', us(8)),
    bigEndianElement(0x00280102, 'US', us(7)),
    bigEndianElement(0x00280103, 'US', us(0)),
    // Pixels 0 to 7 as 16-bit words, big endian: each pair's second pixel comes first.
    bigEndianElement(0x7fe00010, 'OW', Buffer.from([11, 10, 13, 12, 15, 14, 17, 16])),
  ]);
  const itemHeader = Buffer.alloc(8);
  itemHeader.writeUInt32BE(0xfffee000, 0);
  itemHeader.writeUInt32BE(item.length, 4);
  const source = new BufferSource(bigEndianElement(0x00880200, 'SQ', Buffer.concat([itemHeader, item])));
  const elements = parseDataset(source, 'explicit-be') as EditableElement[];
  const image = geometry({ rows: 2, columns: 4, frames: 1, bigEndian: true });
  assert.throws(() => redactAttachedPixels(elements, source, true, image, rectMask([[1, 0, 1, 2]], 2, 4)), PixelRedactionError);
});
