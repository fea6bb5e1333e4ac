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
    // Frames of 1-bit images need not start on a byte boundary: not sliced here.
    if (g.bitsAllocated === 1) throw new PixelRedactionError('decoding frames of 1-bit images is not supported');
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
  const codec = FRAME_CODECS.get(transferSyntaxUid);
  if (!codec) throw new PixelRedactionError(`Gantry has no decoder for frames in ${syntax.name}`);
  return codec.decode(frameBytes(framesOf(pixelData, source, g.frames, byTag.get(EXTENDED_OFFSET_TABLE))[index] ?? [], source), g);
}
