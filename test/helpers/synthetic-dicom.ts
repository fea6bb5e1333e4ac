/**
 * Writes synthetic DICOM Part 10 files (explicit VR little endian) for tests and benchmarks: CT-like
 * single frames and multi-frame objects of any size, whose pixel data is streamed to disk so a 1 GB
 * object costs no memory.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { LONG_VRS } from '../../src/dicom/values.js';

export const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
export const MULTIFRAME_GRAYSCALE_WORD_SC = '1.2.840.10008.5.1.4.1.1.7.3';
export const EXPLICIT_LE = '1.2.840.10008.1.2.1';

export type ElementValue = string | number | Buffer;
/** [tag, VR, value]; text is padded to even length, numbers are encoded by VR. */
export type Element = readonly [number, string, ElementValue];

/** A new UID under 2.25 (PS3.5 B.2), unique per call. */
export function newUid(): string {
  return `2.25.${BigInt(`0x${randomBytes(16).toString('hex')}`).toString()}`;
}


export function encodeElement(tag: number, vr: string, value: ElementValue): Buffer {
  let bytes: Buffer;
  if (Buffer.isBuffer(value)) bytes = value;
  else if (typeof value === 'number') {
    if (vr === 'US') {
      bytes = Buffer.alloc(2);
      bytes.writeUInt16LE(value);
    } else if (vr === 'UL') {
      bytes = Buffer.alloc(4);
      bytes.writeUInt32LE(value);
    } else bytes = Buffer.from(String(value), 'latin1');
  } else bytes = Buffer.from(value, vr === 'PN' || vr === 'LO' || vr === 'SH' ? 'utf8' : 'latin1');
  if (bytes.length % 2 === 1) bytes = Buffer.concat([bytes, Buffer.from(vr === 'UI' || vr === 'OB' ? [0] : [0x20])]);
  return Buffer.concat([elementHeader(tag, vr, bytes.length), bytes]);
}

export function elementHeader(tag: number, vr: string, length: number): Buffer {
  const long = LONG_VRS.has(vr);
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.write(vr, 4, 'latin1');
  if (long) header.writeUInt32LE(length, 8);
  else header.writeUInt16LE(length, 6);
  return header;
}

/**
 * The Image Pixel Module's description of 8-bit unsigned samples, stored in 8 of 8 bits (PS3.3 C.7.6.3):
 * RGB by pixel, or one sample (MONOCHROME2, PALETTE COLOR); with `frames`, Number of Frames.
 */
export function eightBitImagePixel(image: { rows: number; columns: number; photometric?: 'MONOCHROME2' | 'RGB' | 'PALETTE COLOR'; frames?: number }): Element[] {
  const photometric = image.photometric ?? 'MONOCHROME2';
  return [
    [0x00280002, 'US', photometric === 'RGB' ? 3 : 1],
    [0x00280004, 'CS', photometric],
    ...(photometric === 'RGB' ? ([[0x00280006, 'US', 0]] as const) : []),
    ...(image.frames === undefined ? [] : ([[0x00280008, 'IS', String(image.frames)]] as const)),
    [0x00280010, 'US', image.rows],
    [0x00280011, 'US', image.columns],
    [0x00280100, 'US', 8],
    [0x00280101, 'US', 8],
    [0x00280102, 'US', 7],
    [0x00280103, 'US', 0],
  ];
}

export function encodeDataset(elements: readonly Element[]): Buffer {
  return Buffer.concat([...elements].sort((a, b) => a[0] - b[0]).map(([tag, vr, value]) => encodeElement(tag, vr, value)));
}

export interface SyntheticInstance {
  sopClassUid?: string;
  sopInstanceUid?: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  patientId: string;
  patientName: string;
  instanceNumber?: number;
  seriesNumber?: number;
  modality?: string;
  rows?: number;
  columns?: number;
  frames?: number;
  accessionNumber?: string;
  studyDate?: string;
  studyDescription?: string;
  manufacturer?: string;
  /** Extra elements to include. */
  extra?: Element[];
}

/** The elements before Pixel Data, and the pixel data's length. */
export function instanceElements(spec: SyntheticInstance): { elements: Element[]; pixelBytes: number; sopInstanceUid: string; sopClassUid: string } {
  const rows = spec.rows ?? 512;
  const columns = spec.columns ?? 512;
  const frames = spec.frames ?? 1;
  const sopClassUid = spec.sopClassUid ?? (frames > 1 ? MULTIFRAME_GRAYSCALE_WORD_SC : CT_IMAGE_STORAGE);
  const sopInstanceUid = spec.sopInstanceUid ?? newUid();
  const elements: Element[] = [
    [0x00080005, 'CS', 'ISO_IR 192'],
    [0x00080008, 'CS', 'ORIGINAL\\PRIMARY\\AXIAL'],
    [0x00080016, 'UI', sopClassUid],
    [0x00080018, 'UI', sopInstanceUid],
    [0x00080020, 'DA', spec.studyDate ?? '20240102'],
    [0x00080030, 'TM', '101112'],
    [0x00080050, 'SH', spec.accessionNumber ?? 'ACC0001'],
    [0x00080060, 'CS', spec.modality ?? 'CT'],
    [0x00080070, 'LO', spec.manufacturer ?? 'GANTRY TEST'],
    [0x00080090, 'PN', ''],
    [0x00081030, 'LO', spec.studyDescription ?? 'SYNTHETIC STUDY'],
    [0x00100010, 'PN', spec.patientName],
    [0x00100020, 'LO', spec.patientId],
    [0x00100030, 'DA', '19700101'],
    [0x00100040, 'CS', 'O'],
    [0x0020000d, 'UI', spec.studyInstanceUid],
    [0x0020000e, 'UI', spec.seriesInstanceUid],
    [0x00200010, 'SH', '1'],
    [0x00200011, 'IS', spec.seriesNumber ?? 1],
    [0x00200013, 'IS', spec.instanceNumber ?? 1],
    [0x00280002, 'US', 1],
    [0x00280004, 'CS', 'MONOCHROME2'],
    [0x00280010, 'US', rows],
    [0x00280011, 'US', columns],
    [0x00280100, 'US', 16],
    [0x00280101, 'US', 16],
    [0x00280102, 'US', 15],
    [0x00280103, 'US', 0],
    ...(spec.extra ?? []),
  ];
  if (frames > 1) elements.push([0x00280008, 'IS', frames]);
  return { elements, pixelBytes: rows * columns * 2 * frames, sopInstanceUid, sopClassUid };
}

/** Writes a Part 10 file; the pixel data is a repeating pattern written in chunks. */
export async function writeSyntheticFile(path: string, spec: SyntheticInstance): Promise<{ sopInstanceUid: string; size: number }> {
  const { elements, pixelBytes, sopInstanceUid, sopClassUid } = instanceElements(spec);
  const header = encodePart10Header({ mediaStorageSopClassUid: sopClassUid, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: EXPLICIT_LE });
  const out = createWriteStream(path);
  const head = Buffer.concat([header, encodeDataset(elements), elementHeader(0x7fe00010, 'OW', pixelBytes)]);
  out.write(head);
  const chunk = Buffer.alloc(Math.min(pixelBytes, 4 * 1024 * 1024));
  for (let i = 0; i < chunk.length; i += 2) chunk.writeUInt16LE((i * 7 + (pixelBytes & 0xff)) & 0x0fff, i);
  let left = pixelBytes;
  while (left > 0) {
    const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
    left -= piece.length;
    if (!out.write(piece)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return { sopInstanceUid, size: head.length + pixelBytes };
}

export interface CorpusSpec {
  patients: number;
  studiesPerPatient: number;
  seriesPerStudy: number;
  instancesPerSeries: number;
  rows?: number;
  columns?: number;
}

export interface CorpusInstance {
  path: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  patientId: string;
}

/** A multi-patient, multi-study corpus of single-frame instances written under `dir`. */
export async function writeCorpus(dir: string, spec: CorpusSpec): Promise<CorpusInstance[]> {
  const written: CorpusInstance[] = [];
  let n = 0;
  for (let p = 0; p < spec.patients; p += 1) {
    const patientId = `PAT${String(p).padStart(5, '0')}`;
    for (let s = 0; s < spec.studiesPerPatient; s += 1) {
      const studyInstanceUid = newUid();
      for (let r = 0; r < spec.seriesPerStudy; r += 1) {
        const seriesInstanceUid = newUid();
        for (let i = 0; i < spec.instancesPerSeries; i += 1) {
          n += 1;
          const path = `${dir}/i${String(n).padStart(6, '0')}.dcm`;
          const { sopInstanceUid } = await writeSyntheticFile(path, {
            studyInstanceUid,
            seriesInstanceUid,
            patientId,
            patientName: `Doe^Patient${p}`,
            instanceNumber: i + 1,
            seriesNumber: r + 1,
            rows: spec.rows ?? 64,
            columns: spec.columns ?? 64,
            accessionNumber: `A${p}-${s}`,
          });
          written.push({ path, sopInstanceUid, studyInstanceUid, seriesInstanceUid, patientId });
        }
      }
    }
  }
  return written;
}

/** An item of defined length holding `body` (PS3.5 7.5), little endian. */
export function definedItem(body: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt16LE(0xfffe, 0);
  header.writeUInt16LE(0xe000, 2);
  header.writeUInt32LE(body.length, 4);
  return Buffer.concat([header, body]);
}

/** An element of an implicit VR little endian dataset holding `text`, padded to even length with a NUL
 * (as a UI is; the content of a UN, PS3.5 6.2.2, is written this way). */
export function implicitElement(tag: number, text: string): Buffer {
  return implicitElementOf(tag, Buffer.from(text.length % 2 === 1 ? `${text}\0` : text, 'latin1'));
}

/** An element of an implicit VR little endian dataset, its value as given (padded by the caller). */
export function implicitElementOf(tag: number, value: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.writeUInt32LE(value.length, 4);
  return Buffer.concat([header, value]);
}

/** An element of an explicit VR big endian dataset (PS3.5 A.3), its value given as the bytes it has
 * in big endian. */
export function bigEndianElement(tag: number, vr: string, value: Buffer): Buffer {
  const long = LONG_VRS.has(vr);
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16BE(tag >>> 16, 0);
  header.writeUInt16BE(tag & 0xffff, 2);
  header.write(vr, 4, 'latin1');
  if (long) header.writeUInt32BE(value.length, 8);
  else header.writeUInt16BE(value.length, 6);
  return Buffer.concat([header, value]);
}

/**
 * Makes the file at `path` another instance of the same size: every occurrence of its SOP Instance UID
 * (the dataset's and the File Meta Information's) becomes another UID of the same length. What a
 * check by size alone cannot tell from the indexed instance.
 */
export function renameInstanceInPlace(path: string, sopInstanceUid: string): string {
  const otherUid = `${sopInstanceUid.slice(0, -1)}${sopInstanceUid.endsWith('7') ? '8' : '7'}`;
  const bytes = readFileSync(path).toString('latin1');
  if (!bytes.includes(sopInstanceUid)) throw new Error(`${path} does not hold ${sopInstanceUid}`);
  writeFileSync(path, Buffer.from(bytes.split(sopInstanceUid).join(otherUid), 'latin1'));
  return otherUid;
}
