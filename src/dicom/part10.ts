/**
 * PS3.10 7.1: the DICOM file format — a 128-byte preamble, "DICM", and the File Meta Information
 * (group 0002, explicit VR little endian) — ahead of the dataset bytes exactly as they were received.
 */

/** Gantry's Implementation Class UID (a UUID-derived UID, PS3.5 B.2) and version name. */
import { deflateRawSync } from 'node:zlib';
import { LONG_VRS, padToEven } from './values.js';

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

function element(group: number, elementNumber: number, vr: string, value: Buffer): Buffer {
  const long = LONG_VRS.has(vr);
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(group, 0);
  header.writeUInt16LE(elementNumber, 2);
  header.write(vr, 4, 'latin1');
  if (long) header.writeUInt32LE(value.length, 8);
  else header.writeUInt16LE(value.length, 6);
  return Buffer.concat([header, value]);
}

/** The preamble, the DICM prefix and the File Meta Information, ready to be followed by the dataset. */
export function encodePart10Header(meta: FileMetaInformation): Buffer {
  const elements = [
    element(0x0002, 0x0001, 'OB', Buffer.from([0x00, 0x01])),
    element(0x0002, 0x0002, 'UI', padToEven(meta.mediaStorageSopClassUid, '\0')),
    element(0x0002, 0x0003, 'UI', padToEven(meta.mediaStorageSopInstanceUid, '\0')),
    element(0x0002, 0x0010, 'UI', padToEven(meta.transferSyntaxUid, '\0')),
    element(0x0002, 0x0012, 'UI', padToEven(IMPLEMENTATION_CLASS_UID, '\0')),
    element(0x0002, 0x0013, 'SH', padToEven(IMPLEMENTATION_VERSION_NAME, ' ')),
  ];
  if (meta.sourceApplicationEntityTitle) {
    elements.push(element(0x0002, 0x0016, 'AE', padToEven(meta.sourceApplicationEntityTitle, ' ')));
  }
  const body = Buffer.concat(elements);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(body.length);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), element(0x0002, 0x0000, 'UL', groupLength), body]);
}

export interface ReadFileMeta {
  /** Element number (of group 0002) → value bytes. */
  elements: Map<number, Buffer>;
  /** Where the dataset starts: after the last group 0002 element. */
  datasetOffset: number;
}

/** Reads the File Meta Information of a Part 10 file (explicit VR little endian, PS3.10 7.1). */
export function readFileMeta(file: Buffer): ReadFileMeta {
  if (file.length < 132 || file.toString('latin1', 128, 132) !== 'DICM') throw new Error('not a DICOM Part 10 file');
  const elements = new Map<number, Buffer>();
  let offset = 132;
  while (offset + 8 <= file.length && file.readUInt16LE(offset) === 0x0002) {
    const vr = file.toString('latin1', offset + 4, offset + 6);
    const long = LONG_VRS.has(vr);
    const length = long ? file.readUInt32LE(offset + 8) : file.readUInt16LE(offset + 6);
    const start = offset + (long ? 12 : 8);
    elements.set(file.readUInt16LE(offset + 2), file.subarray(start, start + length));
    offset = start + length;
  }
  return { elements, datasetOffset: offset };
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
