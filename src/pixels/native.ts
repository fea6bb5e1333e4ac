/**
 * Redaction of native (uncompressed) Pixel Data, PS3.5 8.1 and 8.2: every frame in turn is read from
 * the stored file, the pixels inside the zones are set to black, and the frame is written out. Pixels
 * outside the zones are copied bit for bit; memory holds one frame.
 *
 * "Black" follows the Photometric Interpretation (PS3.3 C.7.6.3.1.2): the lowest stored value for
 * MONOCHROME2 (most negative when signed), the highest for MONOCHROME1, 0 for RGB, Y = 0 with
 * Cb = Cr = mid-range for YBR_FULL and YBR_FULL_422 (whose pairs of pixels share Cb and Cr, so a zone
 * widens to even columns), and for PALETTE COLOR the index whose palette entry is darkest.
 */
import type { ByteSource, ElementNode } from '../dicom/dataset-tree.js';
import { elementNumber, elementText } from '../dicom/element-value.js';
import type { Rect } from './zones.js';

export class PixelRedactionError extends Error {}

export interface PixelGeometry {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  signed: boolean;
  planar: boolean;
  photometric: string;
  frames: number;
  bigEndian: boolean;
  /** PALETTE COLOR: the stored index shown darkest. */
  paletteBlack?: number;
}

const TAG = {
  SamplesPerPixel: 0x00280002,
  PhotometricInterpretation: 0x00280004,
  PlanarConfiguration: 0x00280006,
  NumberOfFrames: 0x00280008,
  Rows: 0x00280010,
  Columns: 0x00280011,
  BitsAllocated: 0x00280100,
  BitsStored: 0x00280101,
  HighBit: 0x00280102,
  PixelRepresentation: 0x00280103,
  RedPaletteColorLookupTableDescriptor: 0x00281101,
  RedPaletteColorLookupTableData: 0x00281201,
  GreenPaletteColorLookupTableData: 0x00281202,
  BluePaletteColorLookupTableData: 0x00281203,
} as const;

/** The Image Pixel module of a dataset's top level, checked enough to redact safely. */
export function pixelGeometry(byTag: ReadonlyMap<number, ElementNode>, source: ByteSource, bigEndian: boolean): PixelGeometry {
  const number = (tag: number) => elementNumber(byTag.get(tag), source, bigEndian);
  const required = (tag: number, name: string) => {
    const value = number(tag);
    if (value === undefined) throw new PixelRedactionError(`${name} is missing`);
    return value;
  };
  const bitsAllocated = required(TAG.BitsAllocated, 'BitsAllocated');
  const geometry: PixelGeometry = {
    rows: required(TAG.Rows, 'Rows'),
    columns: required(TAG.Columns, 'Columns'),
    samplesPerPixel: number(TAG.SamplesPerPixel) ?? 1,
    bitsAllocated,
    bitsStored: number(TAG.BitsStored) ?? bitsAllocated,
    highBit: number(TAG.HighBit) ?? (number(TAG.BitsStored) ?? bitsAllocated) - 1,
    signed: number(TAG.PixelRepresentation) === 1,
    planar: number(TAG.PlanarConfiguration) === 1,
    photometric: (elementText(byTag.get(TAG.PhotometricInterpretation), source, bigEndian) ?? '').trim().toUpperCase(),
    frames: number(TAG.NumberOfFrames) ?? 1,
    bigEndian,
  };
  if (!Number.isInteger(geometry.frames) || geometry.frames < 1) throw new PixelRedactionError(`NumberOfFrames ${geometry.frames} is not a whole number of frames`);
  if (![1, 8, 16, 32].includes(geometry.bitsAllocated)) throw new PixelRedactionError(`BitsAllocated ${geometry.bitsAllocated} is not 1, 8, 16 or 32`);
  if (geometry.bitsStored < 1 || geometry.bitsStored > geometry.bitsAllocated || geometry.highBit >= geometry.bitsAllocated || geometry.highBit < geometry.bitsStored - 1) {
    throw new PixelRedactionError(`BitsStored ${geometry.bitsStored} and HighBit ${geometry.highBit} do not fit BitsAllocated ${geometry.bitsAllocated}`);
  }
  if (geometry.rows < 1 || geometry.columns < 1) throw new PixelRedactionError('Rows or Columns is 0');
  if (geometry.photometric === 'PALETTE COLOR') geometry.paletteBlack = darkestPaletteIndex(byTag, source, bigEndian);
  checkSamples(geometry);
  return geometry;
}

function checkSamples(g: PixelGeometry): void {
  // YBR_RCT and YBR_ICT occur in JPEG 2000 only; its decoder gives RGB.
  const expected: Record<string, number> = { MONOCHROME1: 1, MONOCHROME2: 1, 'PALETTE COLOR': 1, RGB: 3, YBR_FULL: 3, YBR_FULL_422: 3, YBR_RCT: 3, YBR_ICT: 3 };
  const samples = expected[g.photometric];
  if (samples === undefined) throw new PixelRedactionError(`Photometric Interpretation "${g.photometric}" cannot be redacted`);
  if (g.samplesPerPixel !== samples) throw new PixelRedactionError(`${g.photometric} with SamplesPerPixel ${g.samplesPerPixel}`);
  if (g.bitsAllocated === 1 && samples !== 1) throw new PixelRedactionError(`BitsAllocated 1 with ${g.photometric}`);
}

/** Native YBR_FULL_422 as Gantry lays it out (pairs of pixels, Y1 Y2 Cb Cr): 8-bit, interleaved, an
 * even number of columns. Not asked of encapsulated frames, whose codec lays out its own samples (a
 * JPEG of an odd width is as good as any). */
export function checkNativeLayout(g: PixelGeometry): void {
  if (g.photometric === 'YBR_FULL_422' && (g.planar || g.bitsAllocated !== 8 || g.columns % 2 !== 0)) {
    throw new PixelRedactionError('YBR_FULL_422 other than 8-bit, interleaved, with an even number of columns');
  }
}

/** PS3.3 C.7.6.3.1.5: the entry of the palette with the least R + G + B, as a stored index. */
function darkestPaletteIndex(byTag: ReadonlyMap<number, ElementNode>, source: ByteSource, bigEndian: boolean): number {
  const descriptor = elementText(byTag.get(TAG.RedPaletteColorLookupTableDescriptor), source, bigEndian)?.split('\\').map(Number);
  // Palettes reach 65,536 entries of 2 bytes: read them whole, not through the text-sized reader.
  const tables = [TAG.RedPaletteColorLookupTableData, TAG.GreenPaletteColorLookupTableData, TAG.BluePaletteColorLookupTableData].map((tag) => {
    const element = byTag.get(tag);
    if (!element || element.length === 0xffffffff || element.length > 256 * 1024) return Buffer.alloc(0);
    return Buffer.from(element.value ?? source.read(element.valueOffset, element.length));
  });
  if (!descriptor || descriptor.length < 3 || tables.some((table) => table.length === 0) || tables.some((table) => table.length !== tables[0]?.length)) {
    throw new PixelRedactionError('PALETTE COLOR without a readable palette of equal red, green and blue tables (segmented palettes are not supported)');
  }
  const firstMapped = descriptor[1] ?? 0;
  // PS3.3 C.7.6.3.1.5: 8-bit entries are stored as 8 bits allocated (one byte each), 16-bit ones as
  // words; some writers put 8-bit entries in words. The data's length against the number of entries
  // (0 meaning 65,536) tells which; only the entries' order matters.
  const entries = (descriptor[0] ?? 0) || 65536;
  const length = tables[0]?.length ?? 0;
  const entryBytes = descriptor[2] === 8 && length < entries * 2 ? 1 : 2;
  if (length < entries * entryBytes) throw new PixelRedactionError(`a palette of ${entries} entries of ${descriptor[2]} bits in ${length} bytes`);
  if (entryBytes === 1 && bigEndian) throw new PixelRedactionError('a palette of 8-bit entries in explicit VR big endian');
  const read = (table: Buffer, index: number) => (entryBytes === 1 ? (table[index] as number) : bigEndian ? table.readUInt16BE(index * 2) : table.readUInt16LE(index * 2));
  let darkest = 0;
  let lowest = Number.POSITIVE_INFINITY;
  for (let index = 0; index < entries; index += 1) {
    let sum = 0;
    for (const table of tables) sum += read(table, index);
    if (sum < lowest) {
      lowest = sum;
      darkest = index;
    }
  }
  return firstMapped + darkest;
}

/** The stored values of one black pixel, one per sample. */
export function blackSamples(g: PixelGeometry): number[] {
  const shift = g.highBit + 1 - g.bitsStored;
  const lowest = g.signed ? -(2 ** (g.bitsStored - 1)) : 0;
  const highest = g.signed ? 2 ** (g.bitsStored - 1) - 1 : 2 ** g.bitsStored - 1;
  const middle = 2 ** (g.bitsStored - 1);
  const place = (value: number) => value * 2 ** shift;
  switch (g.photometric) {
    case 'MONOCHROME1':
      return [place(highest)];
    case 'MONOCHROME2':
      return [place(lowest)];
    case 'PALETTE COLOR':
      return [place(g.paletteBlack ?? 0)];
    case 'RGB':
      return [0, 0, 0];
    default: // YBR_FULL, YBR_FULL_422
      return [0, place(middle), place(middle)];
  }
}

/** A frame's size in bits. YBR_FULL_422 keeps two samples per pixel: Cb and Cr are shared by pairs
 * (PS3.3 C.7.6.3.1.2). */
export function frameBits(g: PixelGeometry): number {
  const samples = g.photometric === 'YBR_FULL_422' ? 2 : g.samplesPerPixel;
  return g.rows * g.columns * samples * g.bitsAllocated;
}

/** Which columns of a row are redacted: [from, to) ranges, sorted, not overlapping. */
export type RowMask = (row: number) => ReadonlyArray<readonly [number, number]>;

/** The mask of rectangles, clipped to the image. */
export function rectMask(rects: readonly Rect[], rows: number, columns: number): RowMask {
  return (row) => {
    if (row >= rows) return [];
    const ranges = rects
      .filter(([, y, , height]) => row >= y && row < y + height)
      .map(([x, , width]) => [Math.min(x, columns), Math.min(x + width, columns)] as const)
      .filter(([from, to]) => to > from);
    return mergeRanges(ranges);
  };
}

/** Whether the mask blanks at least one pixel of the image. */
export function maskBlanksAnything(mask: RowMask, rows: number): boolean {
  for (let row = 0; row < rows; row += 1) if (mask(row).length > 0) return true;
  return false;
}

/** Everything outside the rectangles (the ultrasound regions), as a mask. */
export function outsideMask(regions: readonly Rect[], rows: number, columns: number): RowMask {
  const inside = rectMask(regions, rows, columns);
  return (row) => {
    const kept = inside(row);
    const out: Array<readonly [number, number]> = [];
    let at = 0;
    for (const [from, to] of kept) {
      if (from > at) out.push([at, from]);
      at = Math.max(at, to);
    }
    if (at < columns) out.push([at, columns]);
    return out;
  };
}

/** Sorted, overlapping or touching ranges merged. */
export function mergeRanges(ranges: ReadonlyArray<readonly [number, number]>): Array<readonly [number, number]> {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [from, to] of sorted) {
    const last = merged[merged.length - 1];
    if (last && from <= last[1]) last[1] = Math.max(last[1], to);
    else merged.push([from, to]);
  }
  return merged;
}

/** Sets the masked pixels of one frame (its bytes, in the dataset's byte order) to black, or to the
 * given sample values. */
export function blankFrame(frame: Buffer, g: PixelGeometry, mask: RowMask, samples: readonly number[] = blackSamples(g)): void {
  if (g.bitsAllocated === 1) {
    blankBits(frame, 0, g, mask);
    return;
  }
  const sampleBytes = g.bitsAllocated / 8;
  const black = samples.map((value) => sampleBytesOf(value, sampleBytes, g.bigEndian));
  if (g.photometric === 'YBR_FULL_422') {
    // Y1 Y2 Cb Cr for each pair of pixels (PS3.3 C.7.6.3.1.2): a pair is blanked whole.
    const pair = Buffer.from([0, 0, black[1]?.[0] ?? 128, black[2]?.[0] ?? 128]);
    const rowBytes = g.columns * 2;
    for (let row = 0; row < g.rows; row += 1) {
      for (const [from, to] of mask(row)) frame.fill(pair, row * rowBytes + Math.floor(from / 2) * 4, row * rowBytes + Math.ceil(to / 2) * 4);
    }
    return;
  }
  if (g.planar) {
    const plane = g.rows * g.columns * sampleBytes;
    black.forEach((sample, s) => {
      for (let row = 0; row < g.rows; row += 1) {
        for (const [from, to] of mask(row)) frame.fill(sample, s * plane + (row * g.columns + from) * sampleBytes, s * plane + (row * g.columns + to) * sampleBytes);
      }
    });
    return;
  }
  const pixel = Buffer.concat(black);
  for (let row = 0; row < g.rows; row += 1) {
    for (const [from, to] of mask(row)) frame.fill(pixel, (row * g.columns + from) * pixel.length, (row * g.columns + to) * pixel.length);
  }
}

function sampleBytesOf(value: number, size: number, bigEndian: boolean): Buffer {
  const bytes = Buffer.alloc(size);
  const unsigned = value < 0 ? value + 2 ** (size * 8) : value;
  if (size === 1) bytes.writeUInt8(unsigned & 0xff);
  else if (size === 2) bigEndian ? bytes.writeUInt16BE(unsigned) : bytes.writeUInt16LE(unsigned);
  else bigEndian ? bytes.writeUInt32BE(unsigned) : bytes.writeUInt32LE(unsigned);
  return bytes;
}

/** BitsAllocated 1: pixel i of the frame is bit (i mod 8) of byte i / 8, least significant first
 * (PS3.5 8.1.1); `firstBit` is where the frame starts in `bytes`. */
function blankBits(bytes: Buffer, firstBit: number, g: PixelGeometry, mask: RowMask): void {
  const value = blackSamples(g)[0] === 0 ? 0 : 1;
  for (let row = 0; row < g.rows; row += 1) {
    for (const [from, to] of mask(row)) {
      for (let x = from; x < to; x += 1) {
        const bit = firstBit + row * g.columns + x;
        const index = bit >> 3;
        const flag = 1 << (bit & 7);
        bytes[index] = value ? (bytes[index] as number) | flag : (bytes[index] as number) & ~flag;
      }
    }
  }
}

/**
 * Streams the Pixel Data value with every frame redacted: `emit` gets the value's bytes in order
 * (its length unchanged). Frames are read and written one at a time; 1-bit frames that do not start
 * on a byte boundary are redacted in the bytes that hold them.
 */
export function redactNativePixelData(element: ElementNode, source: ByteSource, g: PixelGeometry, mask: RowMask, emit: (bytes: Buffer) => void): void {
  if (g.photometric === 'YBR_RCT' || g.photometric === 'YBR_ICT') throw new PixelRedactionError(`${g.photometric} in native pixel data`);
  checkNativeLength(element, g);
  const bits = frameBits(g);
  const needed = Math.ceil((bits * g.frames) / 8);
  if (g.bitsAllocated === 1 && bits % 8 !== 0) {
    // Frames share bytes: redact the whole value in memory (bitmaps are small).
    if (needed > 256 * 1024 * 1024) throw new PixelRedactionError('1-bit frames not aligned to bytes, over 256 MB in all');
    const all = Buffer.from(source.read(element.valueOffset, element.length));
    for (let frame = 0; frame < g.frames; frame += 1) blankBits(all, frame * bits, g, mask);
    emit(all);
    return;
  }
  const frameLength = bits / 8;
  const frame = Buffer.allocUnsafe(frameLength);
  for (let index = 0; index < g.frames; index += 1) {
    copyInto(frame, source, element.valueOffset + index * frameLength, frameLength);
    blankFrame(frame, g, mask);
    emit(frame);
  }
  // The one padding byte an odd length needs (checkNativeLength refuses more).
  const rest = element.length - frameLength * g.frames;
  if (rest > 0) emit(Buffer.from(source.read(element.valueOffset + frameLength * g.frames, rest)));
}

/**
 * The Pixel Data value must hold exactly the frames the Image Pixel module describes (plus one
 * padding byte): fewer is a broken object, and more would be frames that NumberOfFrames does not
 * count, which would leave unredacted. The layout must be one Gantry reads (checkNativeLayout).
 */
export function checkNativeLength(element: ElementNode, g: PixelGeometry): void {
  checkNativeLayout(g);
  const needed = Math.ceil((frameBits(g) * g.frames) / 8);
  if (element.length < needed || element.length > needed + 1) {
    throw new PixelRedactionError(`Pixel Data has ${element.length} bytes; ${g.frames} frame(s) of ${g.rows}×${g.columns}×${g.samplesPerPixel} at ${g.bitsAllocated} bits need ${needed}`);
  }
}

/** Reads [offset, offset + length) into `into`, through the source's window. */
function copyInto(into: Buffer, source: ByteSource, offset: number, length: number): void {
  const piece = 1024 * 1024;
  for (let done = 0; done < length; done += piece) {
    const size = Math.min(piece, length - done);
    source.read(offset + done, size).copy(into, done);
  }
}
