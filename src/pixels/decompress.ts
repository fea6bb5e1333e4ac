/**
 * A stored object decompressed for a destination that refuses its compressed transfer syntax (RLE,
 * JPEG-LS, JPEG 2000): every frame decoded with the codecs that redaction uses, the dataset written in
 * explicit (or implicit) VR little endian with native Pixel Data. Nothing else changes but what must:
 * PhotometricInterpretation (a JPEG 2000 colour transform is undone: RGB), PlanarConfiguration (as the
 * decoder lays samples out), the offset tables (gone), and, from frames compressed lossily, the marks
 * of lossy compression (lossy-history.ts). The object is built in memory, its decoded frames once: a
 * fallback, up to MAX_DECOMPRESSED_BYTES.
 */
import { BufferSource, parseDataset, parseFile, PIXEL_DATA, type ByteSource } from '../dicom/dataset-tree.js';
import { DatasetWriter, insertElement, type EditableElement } from '../dicom/dataset-writer.js';
import { header, reencodeElements } from '../dicom/reencode.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from '../dicom/transfer-syntaxes.js';
import { EXTENDED_OFFSET_TABLE, FRAGMENT_DESCRIPTIONS, frameBytes, framesOf } from './encapsulated.js';
import { FRAME_CODECS } from './frame-codecs.js';
import { lossyMethodOf, markLossy } from './lossy-history.js';
import { frameBits, pixelGeometry, PixelRedactionError } from './native.js';

const MAX_DECOMPRESSED_BYTES = 1024 * 1024 * 1024;

const TAG = {
  PhotometricInterpretation: 0x00280004,
  PlanarConfiguration: 0x00280006,
  PixelGroupLength: 0x7fe00000,
} as const;

/** Whether a stored syntax can be sent decompressed, in explicit or implicit VR little endian. */
export function canDecompress(transferSyntaxUid: string): boolean {
  return FRAME_CODECS.has(transferSyntaxUid);
}

/**
 * The dataset of `path`, decompressed, in `toTransferSyntaxUid` (explicit or implicit VR LE), as pieces
 * to send in order: the elements before Pixel Data, its header, each frame in a Buffer of its own, and
 * the elements after it. The frames are never joined: a large object costs its decoded size once,
 * not again for each copy a single Buffer would take.
 */
export function decompressedDataset(path: string, toTransferSyntaxUid: string): Buffer[] {
  if (toTransferSyntaxUid !== EXPLICIT_VR_LITTLE_ENDIAN && toTransferSyntaxUid !== IMPLICIT_VR_LITTLE_ENDIAN) {
    throw new PixelRedactionError(`cannot decompress into ${toTransferSyntaxUid}`);
  }
  const to = toTransferSyntaxUid === EXPLICIT_VR_LITTLE_ENDIAN ? 'explicit-le' : 'implicit-le';
  const parsed = parseFile(path);
  try {
    const codec = FRAME_CODECS.get(parsed.transferSyntaxUid);
    if (!codec) throw new PixelRedactionError(`cannot decompress ${parsed.transferSyntaxUid}`);
    const elements = parsed.elements as EditableElement[];
    const byTag = new Map(elements.map((element) => [element.tag, element]));
    const pixelData = byTag.get(PIXEL_DATA);
    if (!pixelData) throw new PixelRedactionError('the object has no Pixel Data');
    const geometry = pixelGeometry(byTag, parsed.source, false);
    const frameLength = frameBits(geometry) / 8;
    if (frameLength * geometry.frames > MAX_DECOMPRESSED_BYTES) throw new PixelRedactionError('the decompressed object would exceed 1 GB');
    const frames = framesOf(pixelData, parsed.source, geometry.frames, byTag.get(EXTENDED_OFFSET_TABLE));
    let planar = false;
    let photometric = geometry.photometric;
    let compressedLength = 0;
    let lossyMethod: string | undefined;
    const decoded = frames.map((fragments) => {
      const compressed = frameBytes(fragments, parsed.source);
      compressedLength += compressed.length;
      lossyMethod ??= lossyMethodOf(parsed.transferSyntaxUid, compressed);
      const { samples, layout } = codec.decode(compressed, geometry);
      if (layout.bitsAllocated !== geometry.bitsAllocated) throw new PixelRedactionError(`frames decode to ${layout.bitsAllocated}-bit samples; BitsAllocated is ${geometry.bitsAllocated}`);
      planar = layout.planar;
      photometric = layout.photometric;
      return samples;
    });
    if (photometric !== geometry.photometric) insertElement(elements, TAG.PhotometricInterpretation, 'CS', Buffer.from(photometric.length % 2 ? `${photometric} ` : photometric, 'latin1'));
    if (geometry.samplesPerPixel > 1) insertElement(elements, TAG.PlanarConfiguration, 'US', Buffer.from([planar ? 1 : 0, 0]));
    for (const tag of [TAG.PixelGroupLength, ...FRAGMENT_DESCRIPTIONS]) {
      const stale = byTag.get(tag);
      if (stale) stale.removed = true;
    }
    // Not frameLength × frames: YBR_FULL_422 decodes to three samples a pixel (YBR_FULL).
    const nativeLength = decoded.reduce((sum, samples) => sum + samples.length, 0);
    // The transfer syntax said the frames were lossy (JPEG baseline), or they did (JPEG-LS NEAR, a 9-7
    // wavelet): decompressed, the dataset says it (found in the pixel review: a near-lossless JPEG-LS
    // object sent decompressed carried no mark of its loss).
    if (lossyMethod) markLossy(elements, byTag, parsed.source, lossyMethod, nativeLength / compressedLength);
    const padding = nativeLength % 2 === 0 ? [] : [Buffer.alloc(1)];
    const at = elements.indexOf(pixelData);
    return [
      encodedElements(parsed.source, elements.slice(0, at), to),
      header(PIXEL_DATA, geometry.bitsAllocated > 8 ? 'OW' : 'OB', nativeLength + padding.length, to),
      ...decoded,
      ...padding,
      encodedElements(parsed.source, elements.slice(at + 1), to),
    ];
  } finally {
    parsed.close();
  }
}

/** Elements of an explicit VR little endian dataset, edits applied, in `to`. */
function encodedElements(source: ByteSource, elements: EditableElement[], to: 'explicit-le' | 'implicit-le'): Buffer {
  const parts: Buffer[] = [];
  new DatasetWriter(source, 'explicit-le', (bytes) => parts.push(Buffer.from(bytes))).writeElements(elements);
  const explicit = Buffer.concat(parts);
  if (to === 'explicit-le') return explicit;
  const implicit: Buffer[] = [];
  const written = new BufferSource(explicit);
  reencodeElements(parseDataset(written, 'explicit-le'), written, 'explicit-le', 'implicit-le', (bytes) => implicit.push(Buffer.from(bytes)));
  return Buffer.concat(implicit);
}
