/** Synthetic images for the pixel tests: an RGB ultrasound cine with one ultrasound region. */
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { parseFile, PIXEL_DATA } from '../../src/dicom/dataset-tree.js';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { eightBitImagePixel, elementHeader, encodeDataset, encodeElement, EXPLICIT_LE, newUid, type Element } from './synthetic-dicom.js';

const US_MULTIFRAME = '1.2.840.10008.5.1.4.1.1.3.1';
export const ROWS = 64;
export const COLUMNS = 80;
export const FRAMES = 3;

/** Writes an RGB ultrasound cine (Manufacturer ACME, model SonoStar 3, BurnedInAnnotation YES) whose
 * every sample is bright (100 to 249), with the region x 10..69, y 12..59; returns its pixel data. */
export function writeUltrasound(path: string, extra: Element[] = []): Buffer {
  const sopInstanceUid = newUid();
  const region = Buffer.concat([
    encodeElement(0x00186018, 'UL', 10),
    encodeElement(0x0018601a, 'UL', 12),
    encodeElement(0x0018601c, 'UL', 69),
    encodeElement(0x0018601e, 'UL', 59),
  ]);
  const item = Buffer.concat([itemHeader(region.length), region]);
  const regions = Buffer.concat([elementHeader(0x00186011, 'SQ', item.length), item]);
  const elements: Element[] = [
    [0x00080016, 'UI', US_MULTIFRAME],
    [0x00080018, 'UI', sopInstanceUid],
    [0x00080060, 'CS', 'US'],
    [0x00080070, 'LO', 'ACME'],
    [0x00081090, 'LO', 'SonoStar 3'],
    [0x00100010, 'PN', 'Burned^In'],
    [0x00100020, 'LO', 'PIX-0001'],
    [0x0020000d, 'UI', newUid()],
    [0x0020000e, 'UI', newUid()],
    ...eightBitImagePixel({ rows: ROWS, columns: COLUMNS, photometric: 'RGB', frames: FRAMES }),
    [0x00280301, 'CS', 'YES'],
    ...extra,
  ];
  const pixels = Buffer.alloc(ROWS * COLUMNS * 3 * FRAMES);
  for (let i = 0; i < pixels.length; i += 1) pixels[i] = 100 + (i % 150);
  const before = encodeDataset(elements.filter(([tag]) => tag < 0x00186011));
  const after = encodeDataset(elements.filter(([tag]) => tag > 0x00186011));
  const header = encodePart10Header({ mediaStorageSopClassUid: US_MULTIFRAME, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: EXPLICIT_LE });
  writeFileSync(path, Buffer.concat([header, before, regions, after, elementHeader(PIXEL_DATA, 'OB', pixels.length), pixels]));
  return pixels;
}

/** Overlay plane 6000 of a 4×4 image (PS3.3 C.9.2): graphics at the origin, in `bitsAllocated`
 * bits at `bitPosition`; Overlay Data, when it has any, is the caller's to add. */
export function overlayPlane4x4(bitsAllocated: number, bitPosition: number): Element[] {
  return [
    [0x60000010, 'US', 4],
    [0x60000011, 'US', 4],
    [0x60000040, 'CS', 'G'],
    [0x60000050, 'SS', Buffer.from([1, 0, 1, 0])],
    [0x60000100, 'US', bitsAllocated],
    [0x60000102, 'US', bitPosition],
  ];
}

/** An overlay plane of a 4×4 image held in bit 15 of Pixel Data (OverlayBitsAllocated 16, bit
 * position 15: the retired usage of PS3.5 8.1.2), as writeTinyImage's `extra`. */
export const OVERLAY_IN_BIT_15: Element[] = overlayPlane4x4(16, 15);

/**
 * Writes a 4×4 monochrome image (explicit VR little endian; Manufacturer ACME) of `sopClassUid` and
 * `modality`, its samples of `bitsAllocated` bits (stored 8 of 8, or 12 of 16) all bytes 0x80, with
 * `extra` elements (sorted in) and `trailing` bytes after the dataset (an element given again, out of
 * order); returns `path`.
 */
export function writeTinyImage(path: string, image: { sopClassUid: string; modality: string; bitsAllocated: 8 | 16; extra?: Element[]; trailing?: Buffer }): string {
  const wide = image.bitsAllocated === 16;
  return writeAcmeInstance(
    path,
    image.sopClassUid,
    image.modality,
    [
      [0x00280002, 'US', 1],
      [0x00280004, 'CS', 'MONOCHROME2'],
      [0x00280010, 'US', 4],
      [0x00280011, 'US', 4],
      [0x00280100, 'US', image.bitsAllocated],
      [0x00280101, 'US', wide ? 12 : 8],
      [0x00280102, 'US', wide ? 11 : 7],
      [0x00280103, 'US', 0],
      ...(image.extra ?? []),
      [PIXEL_DATA, wide ? 'OW' : 'OB', Buffer.alloc(wide ? 32 : 16, 0x80)],
    ],
    image.trailing,
  );
}

/**
 * An instance of `sopClassUid` and `modality` from Manufacturer ACME (the zones of the tests match it),
 * with new SOP Instance, Study and Series UIDs, and `elements` (encodeDataset sorts them in), then
 * `trailing` bytes after the dataset; explicit VR little endian under a Part 10 header. Returns `path`.
 */
export function writeAcmeInstance(path: string, sopClassUid: string, modality: string, elements: readonly Element[], trailing?: Buffer): string {
  const sopInstanceUid = newUid();
  const all: Element[] = [
    [0x00080016, 'UI', sopClassUid],
    [0x00080018, 'UI', sopInstanceUid],
    [0x00080060, 'CS', modality],
    [0x00080070, 'LO', 'ACME'],
    [0x0020000d, 'UI', newUid()],
    [0x0020000e, 'UI', newUid()],
    ...elements,
  ];
  const header = encodePart10Header({ mediaStorageSopClassUid: sopClassUid, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: EXPLICIT_LE });
  writeFileSync(path, Buffer.concat([header, encodeDataset(all), trailing ?? Buffer.alloc(0)]));
  return path;
}

function itemHeader(length: number): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(0xe000fffe, 0);
  header.writeUInt32LE(length, 4);
  return header;
}


export interface MultiframeSpec {
  rows: number;
  columns: number;
  samples: 1 | 3;
  bits: 8 | 16;
  frames: number;
  /** One frame's bytes (rows × columns × samples, little endian), written `frames` times. */
  frame: Buffer;
  patientName: string;
}

/**
 * Writes a native multi-frame image (Manufacturer ACME; MONOCHROME2 12 of 16 bits, or RGB 8-bit) in
 * pieces, one frame at a time, so that files of hundreds of MB cost no memory to make.
 */
export async function writeMultiframe(path: string, spec: MultiframeSpec): Promise<void> {
  const sopClassUid = spec.samples === 3 ? US_MULTIFRAME : '1.2.840.10008.5.1.4.1.1.7.3';
  const sopInstanceUid = newUid();
  const elements: Element[] = [
    [0x00080016, 'UI', sopClassUid],
    [0x00080018, 'UI', sopInstanceUid],
    [0x00080060, 'CS', spec.samples === 3 ? 'US' : 'OT'],
    [0x00080070, 'LO', 'ACME'],
    [0x00100010, 'PN', spec.patientName],
    [0x00100020, 'LO', 'MULTIFRAME-1'],
    [0x0020000d, 'UI', newUid()],
    [0x0020000e, 'UI', newUid()],
    [0x00280002, 'US', spec.samples],
    [0x00280004, 'CS', spec.samples === 3 ? 'RGB' : 'MONOCHROME2'],
    ...(spec.samples === 3 ? ([[0x00280006, 'US', 0]] as Element[]) : []),
    [0x00280008, 'IS', spec.frames],
    [0x00280010, 'US', spec.rows],
    [0x00280011, 'US', spec.columns],
    [0x00280100, 'US', spec.bits],
    [0x00280101, 'US', spec.bits === 16 ? 12 : 8],
    [0x00280102, 'US', spec.bits === 16 ? 11 : 7],
    [0x00280103, 'US', 0],
  ];
  const out = createWriteStream(path);
  out.write(encodePart10Header({ mediaStorageSopClassUid: sopClassUid, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: EXPLICIT_LE }));
  out.write(Buffer.concat([encodeDataset(elements), elementHeader(PIXEL_DATA, spec.bits === 16 ? 'OW' : 'OB', spec.frame.length * spec.frames)]));
  for (let i = 0; i < spec.frames; i += 1) if (!out.write(spec.frame)) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
}

/** Writes a copy of the encapsulated `input` whose Pixel Data holds `frames` instead (one fragment
 * each, an empty Basic Offset Table), everything before Pixel Data kept byte for byte. */
export function withFrames(input: string, output: string, frames: readonly Buffer[]): void {
  const parsed = parseFile(input);
  try {
    const pixelData = parsed.elements.find((element) => element.tag === PIXEL_DATA);
    if (!pixelData?.items) throw new Error(`${input} has no encapsulated Pixel Data`);
    const item = (bytes: Buffer) => {
      const padded = bytes.length % 2 ? Buffer.concat([bytes, Buffer.alloc(1)]) : bytes;
      return Buffer.concat([itemHeader(padded.length), padded]);
    };
    const delimiter = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
    // The source is the dataset, which ends the file; what comes before it is the preamble and meta.
    const file = readFileSync(input);
    const datasetStart = file.length - parsed.source.length;
    writeFileSync(output, Buffer.concat([file.subarray(0, datasetStart + pixelData.valueOffset), item(Buffer.alloc(0)), ...frames.map(item), delimiter]));
  } finally {
    parsed.close();
  }
}

/** Writes a copy of `input` whose File Meta Information names `transferSyntaxUid` instead, the dataset
 * byte for byte: a file in a syntax no tool here writes (HTJ2K, video), for paths that must refuse it
 * before decoding anything. */
export function relabelled(input: string, output: string, transferSyntaxUid: string): void {
  const parsed = parseFile(input);
  try {
    const file = readFileSync(input);
    const uid = (tag: number) => parsed.meta.get(tag)?.toString('latin1').replace(/[\0 ]+$/, '') ?? '';
    const meta = encodePart10Header({ mediaStorageSopClassUid: uid(0x0002), mediaStorageSopInstanceUid: uid(0x0003), transferSyntaxUid });
    writeFileSync(output, Buffer.concat([meta, file.subarray(file.length - parsed.source.length)]));
  } finally {
    parsed.close();
  }
}
