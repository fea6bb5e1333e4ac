/**
 * The DICOM RLE codec (PS3.5 Annex G): a frame is a 64-byte header (the number of segments and their
 * offsets) and up to 15 segments, each one byte of each sample of every pixel ("byte planes", most
 * significant byte first), PackBits-compressed. Redaction works on the byte planes directly, so a
 * frame is decoded, blanked and encoded again without ever changing a pixel outside the zone.
 */

import { blackSamples, PixelRedactionError, type PixelGeometry, type RowMask } from './native.js';

/** A damaged RLE frame. A PixelRedactionError, so that redaction holds the instance with the reason
 * and the decompression fallback refuses it, as for a damaged frame of any other codec; it escaped
 * both as an unexpected error (a failed de-identification, an aborted transcoding). */
export class RleError extends PixelRedactionError {}

const HEADER_BYTES = 64;
const MAX_SEGMENTS = 15;

/** The byte planes of one RLE frame, each `pixels` bytes long. */
export function decodeRleFrame(frame: Buffer, pixels: number, expectedSegments: number): Buffer[] {
  if (frame.length < HEADER_BYTES) throw new RleError(`an RLE frame of ${frame.length} bytes has no header`);
  const segments = frame.readUInt32LE(0);
  if (segments !== expectedSegments) throw new RleError(`the RLE header has ${segments} segments; the image needs ${expectedSegments}`);
  const offsets: number[] = [];
  for (let index = 0; index < segments; index += 1) offsets.push(frame.readUInt32LE(4 + index * 4));
  return offsets.map((start, index) => {
    const end = index + 1 < segments ? (offsets[index + 1] as number) : frame.length;
    if (start < HEADER_BYTES || end > frame.length || end < start) throw new RleError(`RLE segment ${index + 1} lies outside its frame`);
    return unpackBits(frame.subarray(start, end), pixels, index + 1);
  });
}

/** PackBits (PS3.5 G.3.1): n ≥ 0 copies n + 1 bytes, −127 ≤ n ≤ −1 repeats the next byte 1 − n times. */
function unpackBits(input: Buffer, size: number, segment: number): Buffer {
  const out = Buffer.alloc(size);
  let at = 0;
  let i = 0;
  while (at < size && i < input.length) {
    const n = (input[i] as number) << 24 >> 24;
    i += 1;
    if (n >= 0) {
      const count = n + 1;
      if (i + count > input.length || at + count > size) throw new RleError(`RLE segment ${segment}: a literal run goes past its end`);
      input.copy(out, at, i, i + count);
      at += count;
      i += count;
    } else if (n !== -128) {
      const count = 1 - n;
      if (i >= input.length || at + count > size) throw new RleError(`RLE segment ${segment}: a repeat run goes past its end`);
      out.fill(input[i] as number, at, at + count);
      at += count;
      i += 1;
    }
  }
  if (at < size) throw new RleError(`RLE segment ${segment} decodes to ${at} bytes; the image needs ${size}`);
  return out;
}

/** Encodes byte planes as one RLE frame; runs never cross a row (PS3.5 G.3.1). */
export function encodeRleFrame(planes: readonly Buffer[], columns: number): Buffer {
  if (planes.length > MAX_SEGMENTS) throw new RleError(`${planes.length} byte planes; RLE holds at most ${MAX_SEGMENTS}`);
  const segments = planes.map((plane) => {
    const pieces: Buffer[] = [];
    for (let row = 0; row < plane.length; row += columns) pieces.push(packBits(plane.subarray(row, Math.min(row + columns, plane.length))));
    const segment = Buffer.concat(pieces);
    return segment.length % 2 === 0 ? segment : Buffer.concat([segment, Buffer.from([0])]);
  });
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(segments.length, 0);
  let offset = HEADER_BYTES;
  segments.forEach((segment, index) => {
    header.writeUInt32LE(offset, 4 + index * 4);
    offset += segment.length;
  });
  return Buffer.concat([header, ...segments]);
}

function packBits(row: Buffer): Buffer {
  // At worst one count byte per 128 literal bytes.
  const out = Buffer.allocUnsafe(row.length + Math.ceil(row.length / 128) + 1);
  let at = 0;
  let i = 0;
  while (i < row.length) {
    // A run of at least three equal bytes is worth a repeat.
    let run = 1;
    while (i + run < row.length && run < 128 && row[i + run] === row[i]) run += 1;
    if (run >= 3) {
      out[at] = (1 - run) & 0xff;
      out[at + 1] = row[i] as number;
      at += 2;
      i += run;
      continue;
    }
    const start = i;
    while (i < row.length && i - start < 128) {
      if (i + 2 < row.length && row[i] === row[i + 1] && row[i] === row[i + 2]) break;
      i += 1;
    }
    out[at] = i - start - 1;
    row.copy(out, at + 1, start, i);
    at += 1 + i - start;
  }
  return out.subarray(0, at);
}

/** Redacts one RLE frame: decoded to byte planes, the zone set to the black value's bytes, encoded. */
export function rleFrameRedactor(g: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer {
  if (g.bitsAllocated === 1 || g.photometric === 'YBR_FULL_422') throw new PixelRedactionError(`RLE with ${g.bitsAllocated === 1 ? 'BitsAllocated 1' : 'YBR_FULL_422'}`);
  const sampleBytes = g.bitsAllocated / 8;
  // Segment order (PS3.5 G.2): per sample, its most significant byte first.
  const planeBlack = blackSamples(g).flatMap((value) => {
    const unsigned = value < 0 ? value + 2 ** g.bitsAllocated : value;
    return Array.from({ length: sampleBytes }, (_, k) => Math.floor(unsigned / 2 ** (8 * (sampleBytes - 1 - k))) & 0xff);
  });
  const pixels = g.rows * g.columns;
  return (frame) => {
    const planes = decodeRleFrame(frame, pixels, planeBlack.length);
    planes.forEach((plane, index) => {
      const black = planeBlack[index] as number;
      for (let row = 0; row < g.rows; row += 1) {
        for (const [from, to] of mask(row)) plane.fill(black, row * g.columns + from, row * g.columns + to);
      }
    });
    return encodeRleFrame(planes, g.columns);
  };
}

/** One RLE frame as native samples: pixel-interleaved, little endian, in BitsAllocated containers. */
export function decodeRleFrameSamples(frame: Buffer, g: PixelGeometry): Buffer {
  const sampleBytes = g.bitsAllocated / 8;
  const pixels = g.rows * g.columns;
  const planes = decodeRleFrame(frame, pixels, g.samplesPerPixel * sampleBytes);
  const out = Buffer.alloc(pixels * g.samplesPerPixel * sampleBytes);
  for (let s = 0; s < g.samplesPerPixel; s += 1) {
    for (let k = 0; k < sampleBytes; k += 1) {
      // Segment k of a sample is its byte of weight sampleBytes - 1 - k (most significant first).
      const plane = planes[s * sampleBytes + k] as Buffer;
      const byteInSample = sampleBytes - 1 - k;
      for (let p = 0; p < pixels; p += 1) out[(p * g.samplesPerPixel + s) * sampleBytes + byteInSample] = plane[p] as number;
    }
  }
  return out;
}
