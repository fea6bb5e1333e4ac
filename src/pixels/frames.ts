/**
 * One frame of an image as samples, decoded on demand: native frames are read from the stored value,
 * encapsulated ones decoded through the codec table (frame-codecs.ts). Shared by `gantry zones preview`
 * and the library API (src/session/), so that what can be shown and what can be read never differ.
 * JPEG-LS and JPEG 2000 are WebAssembly modules: call loadCodecs() (codecs.ts) before decoding them.
 */
import { PIXEL_DATA, UNDEFINED_LENGTH, type ByteSource, type ElementNode } from '../dicom/dataset-tree.js';
import { findTransferSyntax } from '../dicom/transfer-syntaxes.js';
import { EXTENDED_OFFSET_TABLE, frameBytes, framesOf } from './encapsulated.js';
import { FRAME_CODECS } from './frame-codecs.js';
import { checkNativeLayout, frameBits, PixelRedactionError, type PixelGeometry } from './native.js';

/** A decoded frame: its samples, and how they lie (a codec may change bit depth, planar configuration
 * and byte order from those of the stored image). */
export interface FrameSamples {
  /**
   * The frame's samples as `layout` says. A 1-bit image (BitsAllocated 1: a BINARY segmentation, a
   * bitmap) is unpacked to one byte per sample holding 0 or 1, row by row: its layout says
   * bitsAllocated 8, bitsStored 1, highBit 0.
   */
  samples: Buffer;
  layout: PixelGeometry;
}

/** Frame `index` (from 0) of the top-level Pixel Data of a parsed dataset whose geometry is `g`. */
export function decodeFrame(byTag: ReadonlyMap<number, ElementNode>, source: ByteSource, transferSyntaxUid: string, g: PixelGeometry, index: number): FrameSamples {
  const pixelData = byTag.get(PIXEL_DATA);
  if (!pixelData) throw new PixelRedactionError('the instance has no Pixel Data');
  if (!Number.isInteger(index) || index < 0 || index >= g.frames) throw new PixelRedactionError(`there is no frame ${index} (frames 0 to ${g.frames - 1})`);
  const syntax = findTransferSyntax(transferSyntaxUid);
  if (!syntax?.encapsulated) {
    if (g.bitsAllocated === 1) return { samples: unpackedBitFrame(pixelData, source, g, index), layout: unpackedBitLayout(g) };
    checkNativeLayout(g);
    const length = frameBits(g) / 8;
    // The geometry says where a frame lies; the value must hold it, or what follows Pixel Data would
    // be read as its samples.
    const end = (index + 1) * length;
    if (pixelData.length === UNDEFINED_LENGTH || end > pixelData.length) {
      throw new PixelRedactionError(`Pixel Data holds ${pixelData.length === UNDEFINED_LENGTH ? 'no value of defined length' : `${pixelData.length} bytes`}: frame ${index} would end at byte ${end} (Rows, Columns, bits and NumberOfFrames say so)`);
    }
    return { samples: Buffer.from(source.read(pixelData.valueOffset + index * length, length)), layout: g };
  }
  // PS3.5 8.2 (CP 2301) lets RLE and JPEG 2000 hold 1-bit frames, but encoders disagree on whether an
  // RLE segment holds packed bits or a byte per pixel: refused rather than decoded by a guess.
  if (g.bitsAllocated === 1) throw new PixelRedactionError(`1-bit frames are decoded from native or deflated Pixel Data only, not from ${syntax.name}`);
  const codec = FRAME_CODECS.get(transferSyntaxUid);
  if (!codec) throw new PixelRedactionError(`Gantry has no decoder for frames in ${syntax.name}`);
  return codec.decode(frameBytes(framesOf(pixelData, source, g.frames, byTag.get(EXTENDED_OFFSET_TABLE))[index] ?? [], source), g);
}

/**
 * Frame `index` of native 1-bit Pixel Data, one byte (0 or 1) per sample. PS3.5 8.1.1: the bits are
 * packed 8 to a byte, the first pixel in the least significant bit, and frames follow one another
 * without padding, so frame n starts at bit n × Rows × Columns × SamplesPerPixel: inside a byte
 * whenever that is not a multiple of 8 (a 5×5 segmentation, PS3.3 C.8.20.2, BINARY).
 */
function unpackedBitFrame(pixelData: ElementNode, source: ByteSource, g: PixelGeometry, index: number): Buffer {
  // PS3.5 A.3: explicit VR big endian (retired) swaps the bytes of each OW word, bits with them.
  if (g.bigEndian && pixelData.vr === 'OW') throw new PixelRedactionError('1-bit Pixel Data in explicit VR big endian words (OW)');
  const bits = frameBits(g);
  const firstBit = index * bits;
  const firstByte = Math.floor(firstBit / 8);
  const end = Math.ceil((firstBit + bits) / 8);
  if (pixelData.length === UNDEFINED_LENGTH || end > pixelData.length) {
    throw new PixelRedactionError(`Pixel Data holds ${pixelData.length === UNDEFINED_LENGTH ? 'no value of defined length' : `${pixelData.length} bytes`}: 1-bit frame ${index} would end in byte ${end} (Rows, Columns, SamplesPerPixel and NumberOfFrames say so)`);
  }
  const packed = source.read(pixelData.valueOffset + firstByte, end - firstByte);
  const samples = Buffer.alloc(bits);
  const shift = firstBit % 8;
  for (let i = 0; i < bits; i += 1) samples[i] = ((packed[(shift + i) >> 3] as number) >> ((shift + i) & 7)) & 1;
  return samples;
}

/** How unpackedBitFrame lays its samples out: one 8-bit container per sample, its value in bit 0. */
function unpackedBitLayout(g: PixelGeometry): PixelGeometry {
  return { ...g, bitsAllocated: 8, bitsStored: 1, highBit: 0, planar: false, bigEndian: false };
}
