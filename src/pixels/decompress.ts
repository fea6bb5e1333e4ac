/**
 * A stored object decompressed for a destination that refuses its compressed transfer syntax (RLE,
 * JPEG-LS, JPEG 2000): every frame decoded with the codecs that redaction uses, the dataset written in
 * explicit (or implicit) VR little endian with native Pixel Data. Nothing else changes but what must:
 * PhotometricInterpretation (a JPEG 2000 colour transform is undone: RGB), PlanarConfiguration (as the
 * decoder lays samples out), the offset tables (gone), and, from a JPEG baseline or extended object,
 * the marks of lossy compression (markLossy). The object is built in memory, its decoded frames once: a
 * fallback, up to MAX_DECOMPRESSED_BYTES.
 */
import { BufferSource, parseDataset, parseFile, PIXEL_DATA, type ByteSource } from '../dicom/dataset-tree.js';
import { DatasetWriter, insertElement, type EditableElement } from '../dicom/dataset-writer.js';
import { elementText } from '../dicom/element-value.js';
import { header, reencodeElements } from '../dicom/reencode.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from '../dicom/transfer-syntaxes.js';
import { EXTENDED_OFFSET_TABLE, FRAGMENT_DESCRIPTIONS, frameBytes, framesOf } from './encapsulated.js';
import { FRAME_CODECS } from './frame-codecs.js';
import { frameBits, pixelGeometry, PixelRedactionError } from './native.js';

const MAX_DECOMPRESSED_BYTES = 1024 * 1024 * 1024;

const TAG = {
  PhotometricInterpretation: 0x00280004,
  PlanarConfiguration: 0x00280006,
  LossyImageCompression: 0x00282110,
  LossyImageCompressionRatio: 0x00282112,
  LossyImageCompressionMethod: 0x00282114,
  PixelGroupLength: 0x7fe00000,
} as const;

/** Transfer syntaxes whose every frame was compressed lossily (PS3.5 A.4.1: JPEG processes 1, 2 and 4),
 * with the LossyImageCompressionMethod term that names them (PS3.3 C.7.6.1.1.5.1). */
const ALWAYS_LOSSY = new Map([
  ['1.2.840.10008.1.2.4.50', 'ISO_10918_1'],
  ['1.2.840.10008.1.2.4.51', 'ISO_10918_1'],
]);

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
    const decoded = frames.map((fragments) => {
      const compressed = frameBytes(fragments, parsed.source);
      compressedLength += compressed.length;
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
    markLossy(elements, byTag, parsed.source, parsed.transferSyntaxUid, nativeLength / compressedLength);
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

/**
 * PS3.3 C.7.6.1.1.5: an image once compressed lossily says so for good, decompressed too. The dataset
 * of a JPEG baseline or extended object need not (LossyImageCompression is Type 3 in the General Image
 * module): its transfer syntax said it, and decompressing drops that. LossyImageCompression becomes 01;
 * the method and the ratio (`ratio`, native bytes to compressed) are added where absent, as a
 * compressor records them.
 */
function markLossy(elements: EditableElement[], byTag: ReadonlyMap<number, EditableElement>, source: ByteSource, transferSyntaxUid: string, ratio: number): void {
  const method = ALWAYS_LOSSY.get(transferSyntaxUid);
  if (method === undefined) return;
  const text = (value: string) => Buffer.from(value.length % 2 ? `${value} ` : value, 'latin1');
  if (elementText(byTag.get(TAG.LossyImageCompression), source, false)?.trim() !== '01') insertElement(elements, TAG.LossyImageCompression, 'CS', text('01'));
  if (!byTag.has(TAG.LossyImageCompressionMethod)) insertElement(elements, TAG.LossyImageCompressionMethod, 'CS', text(method));
  // DS: at most 16 characters.
  if (!byTag.has(TAG.LossyImageCompressionRatio) && Number.isFinite(ratio)) insertElement(elements, TAG.LossyImageCompressionRatio, 'DS', text(ratio.toFixed(2).slice(0, 16)));
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
