/**
 * A frame whose codestream header claims another size than the image is refused from its header,
 * before anything of that size is allocated or decoded: a JPEG frame of 136 bytes in a 4×4 image that
 * said 65000×65000 had the DCT decoder allocate 8 GB of coefficients and run 15 seconds before the
 * size was compared (and 4 components sampled 4×4 would exceed memory: the worker killed, not the
 * instance held). OpenJPEG likewise: a JPEG 2000 frame whose SIZ said 20000×20000 took 17 s and 2.9 GB.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { loadCodecs } from '../../src/pixels/codecs.js';
import { FRAME_CODECS } from '../../src/pixels/frame-codecs.js';
import { segment } from '../../src/pixels/jpeg-entropy.js';
import { PixelRedactionError, rectMask, type PixelGeometry } from '../../src/pixels/native.js';

const IMAGE: PixelGeometry = { rows: 4, columns: 4, samplesPerPixel: 1, bitsAllocated: 8, bitsStored: 8, highBit: 7, signed: false, planar: false, photometric: 'MONOCHROME2', frames: 1, bigEndian: false };
const CLAIMED = 8000;

/** A JPEG stream of `sof` (SOF0 or SOF3) whose header says CLAIMED × CLAIMED, one component, with
 * Huffman tables of one 1-bit code each, and no entropy-coded data at all. */
function oversizedStream(sof: number): Buffer {
  const frameHeader = Buffer.from([8, CLAIMED >> 8, CLAIMED & 0xff, CLAIMED >> 8, CLAIMED & 0xff, 1, 1, 0x11, 0]);
  const counts = Buffer.alloc(16);
  counts[0] = 1;
  const tables = Buffer.concat([Buffer.from([0x00]), counts, Buffer.from([0]), Buffer.from([0x10]), counts, Buffer.from([0])]);
  const scan = sof === 0xffc3 ? Buffer.from([1, 1, 0x00, 1, 0, 0]) : Buffer.from([1, 1, 0x00, 0, 63, 0]);
  return Buffer.concat([
    Buffer.from([0xff, 0xd8]),
    segment(0xffdb, Buffer.concat([Buffer.from([0]), Buffer.alloc(64, 1)])),
    segment(sof, frameHeader),
    segment(0xffc4, tables),
    segment(0xffda, scan),
    Buffer.from([0xff, 0xd9]),
  ]);
}

for (const [name, syntax, sof] of [
  ['JPEG baseline', '1.2.840.10008.1.2.4.50', 0xffc0],
  ['JPEG lossless', '1.2.840.10008.1.2.4.70', 0xffc3],
] as const) {
  test(`${name}: a frame header of another size is refused before its data is decoded`, () => {
    const codec = FRAME_CODECS.get(syntax);
    assert.ok(codec);
    const stream = oversizedStream(sof);
    const before = process.memoryUsage().arrayBuffers;
    const refused = (error: unknown) => {
      assert.ok(error instanceof PixelRedactionError, String(error));
      assert.match(error.message, new RegExp(`frame of ${CLAIMED}×${CLAIMED}×1 in an image of 4×4×1`));
      return true;
    };
    assert.throws(() => codec.redactor(IMAGE, rectMask([[0, 0, 2, 2]], 4, 4))(stream), refused);
    assert.throws(() => codec.decode(stream, IMAGE), refused);
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 * 1024 * 1024, 'nothing of the claimed size was allocated');
  });
}

// Found in the pixel robustness review: a header and Rows and Columns that agree on a large size were
// allocated and decoded from a stream of a few bytes (5 GB for 30000×30000×3, outside the thread's
// heap limit); the bits a frame of that size needs at the least are counted first.
for (const [name, syntax, sof] of [
  ['JPEG baseline', '1.2.840.10008.1.2.4.50', 0xffc0],
  ['JPEG lossless', '1.2.840.10008.1.2.4.70', 0xffc3],
] as const) {
  test(`${name}: a frame of the image's size in a stream far too short for it is refused before anything is allocated`, () => {
    const codec = FRAME_CODECS.get(syntax);
    assert.ok(codec);
    const image: PixelGeometry = { ...IMAGE, rows: CLAIMED, columns: CLAIMED };
    const stream = oversizedStream(sof);
    const before = process.memoryUsage().arrayBuffers;
    const refused = (error: unknown) => {
      assert.ok(error instanceof PixelRedactionError, String(error));
      assert.match(error.message, /stream is too short for its frame/);
      return true;
    };
    assert.throws(() => codec.redactor(image, rectMask([[0, 0, 2, 2]], CLAIMED, CLAIMED))(stream), refused);
    assert.throws(() => codec.decode(stream, image), refused);
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 * 1024 * 1024, 'nothing of the claimed size was allocated');
  });
}

interface Encoder {
  getDecodedBuffer(info: { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned?: boolean }): Uint8Array;
  getEncodedBuffer(): Uint8Array;
  setQuality?(lossless: boolean, layers: number): void;
  setNearLossless?(near: number): void;
  encode(): void;
  delete(): void;
}

/** A 64×64 frame encoded by the codec module Gantry uses, then its header changed to say CLAIMED × CLAIMED. */
async function oversizedCodestream(kind: 'JPEG 2000' | 'JPEG-LS'): Promise<Buffer> {
  const require = createRequire(import.meta.url);
  const quiet = { print: () => undefined, printErr: () => undefined };
  const module = kind === 'JPEG 2000' ? await require('@cornerstonejs/codec-openjpeg/wasmjs')(quiet) : await require('@cornerstonejs/codec-charls/wasmjs')(quiet);
  const encoder: Encoder = kind === 'JPEG 2000' ? new module.J2KEncoder() : new module.JpegLSEncoder();
  try {
    encoder.getDecodedBuffer({ width: 64, height: 64, bitsPerSample: 8, componentCount: 1, isSigned: false }).set(Buffer.alloc(64 * 64, 7));
    encoder.setQuality?.(true, 0);
    encoder.setNearLossless?.(0);
    encoder.encode();
    const stream = Buffer.from(encoder.getEncodedBuffer());
    if (kind === 'JPEG 2000') {
      // SIZ (T.800 A.5.1) right after SOC: Xsiz, Ysiz, then the offsets, then XTsiz, YTsiz.
      for (const at of [8, 12, 24, 28]) stream.writeUInt32BE(CLAIMED, at);
    } else {
      const sof = stream.indexOf(Buffer.from([0xff, 0xf7]));
      stream.writeUInt16BE(CLAIMED, sof + 5);
      stream.writeUInt16BE(CLAIMED, sof + 7);
    }
    return stream;
  } finally {
    encoder.delete();
  }
}

for (const [name, syntax] of [
  ['JPEG 2000', '1.2.840.10008.1.2.4.90'],
  ['JPEG-LS', '1.2.840.10008.1.2.4.80'],
] as const) {
  test(`${name}: a codestream header of another size is refused before the codec decodes it`, async () => {
    await loadCodecs();
    const codec = FRAME_CODECS.get(syntax);
    assert.ok(codec);
    const stream = await oversizedCodestream(name);
    const refused = (error: unknown) => {
      assert.ok(error instanceof PixelRedactionError, String(error));
      assert.match(error.message, new RegExp(`a ${name} frame of ${CLAIMED}×${CLAIMED}×1 in an image of 4×4×1`));
      return true;
    };
    assert.throws(() => codec.redactor(IMAGE, rectMask([[0, 0, 2, 2]], 4, 4))(stream), refused);
    assert.throws(() => codec.decode(stream, IMAGE), refused);
  });
}
