/**
 * PS3.10 7.1: the DICOM file format — a 128-byte preamble, "DICM", and the File Meta Information
 * (group 0002, explicit VR little endian) — ahead of the dataset bytes exactly as they were received.
 */

import { constants, deflateRawSync } from 'node:zlib';
import { DatasetFormatError } from './header-scanner.js';
import { LONG_VRS } from './values.js';

/** Gantry's Implementation Class UID (a UUID-derived UID, PS3.5 B.2) and version name. */
export const IMPLEMENTATION_CLASS_UID = '2.25.321850691147362074619267135472068027305';
export const IMPLEMENTATION_VERSION_NAME = 'GANTRY_0_1_0';
/** Media Storage Directory Storage (PS3.10 8.6): a DICOMDIR, the directory of a medium, not an instance. */
export const MEDIA_STORAGE_DIRECTORY_SOP_CLASS_UID = '1.2.840.10008.1.3.10';

export interface FileMetaInformation {
  mediaStorageSopClassUid: string;
  mediaStorageSopInstanceUid: string;
  transferSyntaxUid: string;
  /** The AE that sent the content: the calling AE title of the association it came on. */
  sourceApplicationEntityTitle?: string;
}

/** One group 0002 element's number, VR and value (a string, padded to even length with `pad`). */
interface MetaElement {
  elementNumber: number;
  vr: 'OB' | 'UI' | 'SH' | 'AE' | 'UL';
  value: string | Buffer;
  pad: '\0' | ' ';
}

const PREAMBLE_BYTES = 128;
/** A 2-byte length for these VRs, a 4-byte one after two reserved bytes for OB (PS3.5 7.1.2). */
const headerBytes = (vr: MetaElement['vr']) => (vr === 'OB' ? 12 : 8);
const valueBytes = (element: MetaElement) => (typeof element.value === 'string' ? element.value.length + (element.value.length % 2) : element.value.length);

/**
 * The preamble, the DICM prefix and the File Meta Information, ready to be followed by the dataset.
 * Written into one buffer: every received instance and every de-identified copy starts with one.
 */
export function encodePart10Header(meta: FileMetaInformation): Buffer {
  const elements: MetaElement[] = [
    { elementNumber: 0x0001, vr: 'OB', value: FILE_META_VERSION, pad: '\0' },
    { elementNumber: 0x0002, vr: 'UI', value: meta.mediaStorageSopClassUid, pad: '\0' },
    { elementNumber: 0x0003, vr: 'UI', value: meta.mediaStorageSopInstanceUid, pad: '\0' },
    { elementNumber: 0x0010, vr: 'UI', value: meta.transferSyntaxUid, pad: '\0' },
    { elementNumber: 0x0012, vr: 'UI', value: IMPLEMENTATION_CLASS_UID, pad: '\0' },
    { elementNumber: 0x0013, vr: 'SH', value: IMPLEMENTATION_VERSION_NAME, pad: ' ' },
  ];
  if (meta.sourceApplicationEntityTitle) {
    elements.push({ elementNumber: 0x0016, vr: 'AE', value: meta.sourceApplicationEntityTitle, pad: ' ' });
  }
  let groupBytes = 0;
  for (const element of elements) groupBytes += headerBytes(element.vr) + valueBytes(element);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(groupBytes);
  elements.unshift({ elementNumber: 0x0000, vr: 'UL', value: groupLength, pad: '\0' });
  const out = Buffer.alloc(PREAMBLE_BYTES + 4 + 12 + groupBytes);
  let at = out.write('DICM', PREAMBLE_BYTES, 'latin1') + PREAMBLE_BYTES;
  for (const element of elements) at = writeMetaElement(out, at, element);
  return out;
}

/** Writes one element at `at` (explicit VR little endian); returns where the next one starts. */
function writeMetaElement(out: Buffer, at: number, element: MetaElement): number {
  const length = valueBytes(element);
  out.writeUInt16LE(0x0002, at);
  out.writeUInt16LE(element.elementNumber, at + 2);
  out.write(element.vr, at + 4, 'latin1');
  if (element.vr === 'OB') out.writeUInt32LE(length, at + 8);
  else out.writeUInt16LE(length, at + 6);
  const valueAt = at + headerBytes(element.vr);
  if (typeof element.value === 'string') {
    out.write(element.value, valueAt, 'latin1');
    if (element.value.length % 2 === 1) out.write(element.pad, valueAt + length - 1, 'latin1');
  } else {
    element.value.copy(out, valueAt);
  }
  return valueAt + length;
}

/** File Meta Information Version (0002,0001): 00 01 (PS3.10 7.1). */
const FILE_META_VERSION = Buffer.from([0x00, 0x01]);

export interface ReadFileMeta {
  /** Element number (of group 0002) → value bytes. */
  elements: Map<number, Buffer>;
  /** Where the dataset starts: after the last group 0002 element. */
  datasetOffset: number;
}

/**
 * Reads the File Meta Information of a Part 10 file (explicit VR little endian, PS3.10 7.1) from `file`,
 * its first bytes or all of it; `fileSize` is the size of the whole file. An element that runs past the
 * end of the file is a format error (a dataset read from beyond it would be empty or negative). One that
 * runs past the bytes given but not the file (a private element of more than 64 KiB) is left out, and
 * datasetOffset still says where the dataset starts: the caller reads from there.
 */
export function readFileMeta(file: Buffer, fileSize = file.length): ReadFileMeta {
  if (file.length < 132 || file.toString('latin1', 128, 132) !== 'DICM') throw new Error('not a DICOM Part 10 file');
  const elements = new Map<number, Buffer>();
  let offset = 132;
  // Where (0002,0000) says the group ends (PS3.10 7.1): group 0002 elements from there on, from the
  // first that starts the group again (an element number not above the last one read: a sender that
  // put a file's meta into its dataset; the de-identification removes them), belong to the dataset. Read as meta they replaced
  // the stored file's transfer syntax and UIDs (found in a review). Elements that go on in order after
  // it are the meta's, a writer's group length counted short (real files have it), as is one that
  // falls inside an element.
  const groupLengthEnd = file.length >= 144 && file.readUInt32LE(132) === 0x00000002 && file.toString('latin1', 136, 138) === 'UL' && file.readUInt16LE(138) === 4 ? 144 + file.readUInt32LE(140) : undefined;
  let lastElement = -1;
  while (offset + 8 <= Math.min(file.length, fileSize) && file.readUInt16LE(offset) === 0x0002) {
    const element = file.readUInt16LE(offset + 2);
    if (groupLengthEnd !== undefined && offset >= groupLengthEnd && element <= lastElement) break;
    lastElement = element;
    const vr = file.toString('latin1', offset + 4, offset + 6);
    const long = LONG_VRS.has(vr);
    if (long && offset + 12 > file.length) {
      throw new DatasetFormatError(fileSize > file.length ? `File Meta Information longer than the ${file.length} bytes read` : `File Meta Information element (0002,${hex(element)}) is cut short`);
    }
    const length = long ? file.readUInt32LE(offset + 8) : file.readUInt16LE(offset + 6);
    const start = offset + (long ? 12 : 8);
    if (start + length > fileSize) throw new DatasetFormatError(`File Meta Information element (0002,${hex(element)}) runs past the end of the file`);
    if (start + length <= file.length) elements.set(element, file.subarray(start, start + length));
    offset = start + length;
  }
  return { elements, datasetOffset: offset };
}

function hex(element: number): string {
  return element.toString(16).toUpperCase().padStart(4, '0');
}

/** Where the dataset starts in a Part 10 file. */
export function datasetOffset(file: Buffer): number {
  return readFileMeta(file).datasetOffset;
}

/** A dataset deflated for the Deflated Explicit VR Little Endian transfer syntax (PS3.5 A.5): raw
 * deflate, padded with a trailing zero byte to an even length, as every DICOM stream must be. */
export function deflateDataset(dataset: Buffer): Buffer {
  const deflated = deflateRawSync(dataset);
  return deflated.length % 2 === 0 ? deflated : Buffer.concat([deflated, Buffer.alloc(1)]);
}

/** Bytes of dataset deflated at a time by DeflatingWriter. */
const DEFLATE_BATCH = 1024 * 1024;

/**
 * A deflated dataset (PS3.5 A.5) written as it is made, a megabyte at a time: each batch a raw deflate
 * stream ended by a sync flush (no final block), the last one ending the stream, so that together they
 * read as one (each batch's back-references stay within it). Deflated whole, a de-identified dataset
 * was held three times over (its pieces, joined, and deflated; found in the resource review).
 */
export class DeflatingWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written = 0;

  constructor(private readonly write: (bytes: Buffer) => void) {}

  /** Takes a copy of `bytes` (a writer may reuse its buffer). */
  add(bytes: Buffer): void {
    this.pending.push(Buffer.from(bytes));
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= DEFLATE_BATCH) this.deflatePending(false);
  }

  /** Ends the stream, padded with a zero byte to an even length as every DICOM stream must be. */
  end(): void {
    this.deflatePending(true);
    if (this.written % 2 === 1) this.write(Buffer.alloc(1));
  }

  private deflatePending(last: boolean): void {
    const batch = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    const deflated = deflateRawSync(batch, last ? {} : { finishFlush: constants.Z_SYNC_FLUSH });
    this.written += deflated.length;
    this.write(deflated);
  }
}
