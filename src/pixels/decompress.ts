/**
 * A stored object decompressed for a destination that refuses its compressed transfer syntax (RLE,
 * JPEG-LS, JPEG 2000): every frame decoded with the codecs that redaction uses, the dataset written in
 * explicit (or implicit) VR little endian with native Pixel Data. Nothing else changes but what must:
 * PhotometricInterpretation (a JPEG 2000 colour transform is undone: RGB), PlanarConfiguration (as the
 * decoder lays samples out), the offset tables (gone). LossyImageCompression stays as it was. The
 * object is built in memory: a fallback, up to MAX_DECOMPRESSED_BYTES.
 */
import { BufferSource, parseDataset, parseFile, PIXEL_DATA } from '../dicom/dataset-tree.js';
import { DatasetWriter, insertElement, type EditableElement } from '../dicom/dataset-writer.js';
import { reencodeElements } from '../dicom/reencode.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from '../dicom/transfer-syntaxes.js';
import { frameBytes, framesOf } from './encapsulated.js';
import { FRAME_CODECS } from './frame-codecs.js';
import { frameBits, pixelGeometry, PixelRedactionError } from './native.js';

const MAX_DECOMPRESSED_BYTES = 1024 * 1024 * 1024;

const TAG = {
  PhotometricInterpretation: 0x00280004,
  PlanarConfiguration: 0x00280006,
  PixelGroupLength: 0x7fe00000,
  ExtendedOffsetTable: 0x7fe00001,
  ExtendedOffsetTableLengths: 0x7fe00002,
} as const;

/** Whether a stored syntax can be sent decompressed, in explicit or implicit VR little endian. */
export function canDecompress(transferSyntaxUid: string): boolean {
  return FRAME_CODECS.has(transferSyntaxUid);
}

/** The dataset of `path`, decompressed, in `toTransferSyntaxUid` (explicit or implicit VR LE). */
export function decompressedDataset(path: string, toTransferSyntaxUid: string): Buffer {
  if (toTransferSyntaxUid !== EXPLICIT_VR_LITTLE_ENDIAN && toTransferSyntaxUid !== IMPLICIT_VR_LITTLE_ENDIAN) {
    throw new PixelRedactionError(`cannot decompress into ${toTransferSyntaxUid}`);
  }
  const parsed = parseFile(path);
  try {
    const codec = FRAME_CODECS.get(parsed.transferSyntaxUid);
    if (!codec) throw new PixelRedactionError(`cannot decompress ${parsed.transferSyntaxUid}`);
    const elements = parsed.elements as EditableElement[];
    const byTag = new Map(elements.map((element) => [element.tag, element]));
    const pixelData = byTag.get(PIXEL_DATA);
    if (!pixelData) throw new PixelRedactionError('the object has no Pixel Data');
    const geometry = pixelGeometry(byTag, parsed.source, false);
    if ((frameBits(geometry) / 8) * geometry.frames > MAX_DECOMPRESSED_BYTES) throw new PixelRedactionError('the decompressed object would exceed 1 GB');
    const frames = framesOf(pixelData, parsed.source, geometry.frames, byTag.get(TAG.ExtendedOffsetTable));
    let planar = false;
    let photometric = geometry.photometric;
    const decoded = frames.map((fragments) => {
      const { samples, layout } = codec.decode(frameBytes(fragments, parsed.source), geometry);
      if (layout.bitsAllocated !== geometry.bitsAllocated) throw new PixelRedactionError(`frames decode to ${layout.bitsAllocated}-bit samples; BitsAllocated is ${geometry.bitsAllocated}`);
      planar = layout.planar;
      photometric = layout.photometric;
      return samples;
    });
    const native = Buffer.concat(decoded);
    const pixels = native.length % 2 === 0 ? native : Buffer.concat([native, Buffer.alloc(1)]);
    pixelData.replacement = { value: pixels, vr: geometry.bitsAllocated > 8 ? 'OW' : 'OB' };
    pixelData.items = undefined;
    pixelData.encapsulated = false;
    if (photometric !== geometry.photometric) insertElement(elements, TAG.PhotometricInterpretation, 'CS', Buffer.from(photometric.length % 2 ? `${photometric} ` : photometric, 'latin1'));
    if (geometry.samplesPerPixel > 1) insertElement(elements, TAG.PlanarConfiguration, 'US', Buffer.from([planar ? 1 : 0, 0]));
    for (const tag of [TAG.PixelGroupLength, TAG.ExtendedOffsetTable, TAG.ExtendedOffsetTableLengths]) {
      const stale = byTag.get(tag);
      if (stale) stale.removed = true;
    }
    const parts: Buffer[] = [];
    new DatasetWriter(parsed.source, 'explicit-le', (bytes) => parts.push(Buffer.from(bytes))).writeElements(elements);
    const explicit = Buffer.concat(parts);
    if (toTransferSyntaxUid === EXPLICIT_VR_LITTLE_ENDIAN) return explicit;
    const implicit: Buffer[] = [];
    const source = new BufferSource(explicit);
    reencodeElements(parseDataset(source, 'explicit-le'), source, 'explicit-le', 'implicit-le', (bytes) => implicit.push(Buffer.from(bytes)));
    return Buffer.concat(implicit);
  } finally {
    parsed.close();
  }
}
