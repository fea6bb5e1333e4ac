/**
 * The attributes the index keeps, read from the dataset header as it arrives: what a C-FIND at each
 * level needs (PS3.4 C.6 required and unique keys), and what later stages decide on (Manufacturer,
 * model and serial number for redaction rules, burned-in annotation flags).
 */
import { decodeText, parseSpecificCharacterSet } from '../dicom/charset.js';
import type { ScannedValue } from '../dicom/header-scanner.js';
import { trimUid } from '../dicom/values.js';

type Vr = 'PN' | 'LO' | 'SH' | 'CS' | 'DA' | 'TM' | 'UI' | 'IS' | 'US';

/** keyword → [tag, VR]. Keywords as PS3.6 spells them. */
const INDEXED = {
  SpecificCharacterSet: [0x00080005, 'CS'],
  ImageType: [0x00080008, 'CS'],
  SOPClassUID: [0x00080016, 'UI'],
  SOPInstanceUID: [0x00080018, 'UI'],
  StudyDate: [0x00080020, 'DA'],
  SeriesDate: [0x00080021, 'DA'],
  ContentDate: [0x00080023, 'DA'],
  StudyTime: [0x00080030, 'TM'],
  SeriesTime: [0x00080031, 'TM'],
  ContentTime: [0x00080033, 'TM'],
  AccessionNumber: [0x00080050, 'SH'],
  Modality: [0x00080060, 'CS'],
  Manufacturer: [0x00080070, 'LO'],
  InstitutionName: [0x00080080, 'LO'],
  ReferringPhysicianName: [0x00080090, 'PN'],
  StationName: [0x00081010, 'SH'],
  StudyDescription: [0x00081030, 'LO'],
  SeriesDescription: [0x0008103e, 'LO'],
  ManufacturerModelName: [0x00081090, 'LO'],
  PatientName: [0x00100010, 'PN'],
  PatientID: [0x00100020, 'LO'],
  IssuerOfPatientID: [0x00100021, 'LO'],
  PatientBirthDate: [0x00100030, 'DA'],
  PatientSex: [0x00100040, 'CS'],
  BodyPartExamined: [0x00180015, 'CS'],
  DeviceSerialNumber: [0x00181000, 'LO'],
  StudyInstanceUID: [0x0020000d, 'UI'],
  SeriesInstanceUID: [0x0020000e, 'UI'],
  StudyID: [0x00200010, 'SH'],
  SeriesNumber: [0x00200011, 'IS'],
  InstanceNumber: [0x00200013, 'IS'],
  NumberOfFrames: [0x00280008, 'IS'],
  Rows: [0x00280010, 'US'],
  Columns: [0x00280011, 'US'],
  BurnedInAnnotation: [0x00280301, 'CS'],
  RecognizableVisualFeatures: [0x00280302, 'CS'],
} as const satisfies Record<string, readonly [number, Vr]>;

export type IndexedKeyword = keyof typeof INDEXED;

/** The tags the header scanner keeps for the index. */
export const INDEXED_TAGS: ReadonlySet<number> = new Set(Object.values(INDEXED).map(([tag]) => tag));

/** Decoded attribute values: text as Unicode with insignificant padding removed; US and IS as numbers. */
export type IndexedAttributes = { [K in IndexedKeyword]?: (typeof INDEXED)[K][1] extends 'US' | 'IS' ? number : string };

/** INDEXED as a list, made once: every received and exported instance is decoded through it. */
const INDEXED_ENTRIES = Object.entries(INDEXED) as Array<[IndexedKeyword, readonly [number, Vr]]>;

export function decodeIndexedAttributes(values: ReadonlyMap<number, ScannedValue>): IndexedAttributes {
  const charsetValue = values.get(INDEXED.SpecificCharacterSet[0]);
  const charsets = parseSpecificCharacterSet(charsetValue ? trimText(charsetValue.bytes.toString('latin1')) : undefined);
  const out: Record<string, string | number> = {};
  for (const [keyword, [tag, vr]] of INDEXED_ENTRIES) {
    const scanned = values.get(tag);
    if (!scanned || scanned.bytes.length === 0) continue;
    const decoded = decodeValue(scanned, vr, charsets);
    if (decoded !== undefined && decoded !== '') out[keyword] = decoded;
  }
  return out as IndexedAttributes;
}

function decodeValue(scanned: ScannedValue, vr: Vr, charsets: readonly string[]): string | number | undefined {
  const { bytes } = scanned;
  switch (vr) {
    case 'US':
      if (bytes.length < 2) return undefined;
      return scanned.bigEndian ? bytes.readUInt16BE(0) : bytes.readUInt16LE(0);
    case 'IS': {
      const first = trimText(bytes.toString('latin1')).split('\\')[0] ?? '';
      const number = Number.parseInt(first, 10);
      return Number.isFinite(number) ? number : undefined;
    }
    case 'UI':
      return trimUid(bytes.toString('latin1')).trim();
    case 'PN':
    case 'LO':
    case 'SH':
      return trimText(decodeText(bytes.length > MAX_DECODED_TEXT_BYTES ? bytes.subarray(0, MAX_DECODED_TEXT_BYTES) : bytes, charsets, vr === 'PN', true));
    default:
      return trimText(bytes.toString('latin1'));
  }
}

/**
 * Text decoded for the index, at most: PS3.5 6.2 allows 16 (SH) or 64 (LO, PN per component group)
 * characters. A value of the 64 KiB the scanner keeps, in ISO 2022 escapes or bytes alternating
 * between G0 and G1, took 85 ms to decode, on the main thread, for each of the 13 attributes.
 */
const MAX_DECODED_TEXT_BYTES = 4096;

/** PS3.5 6.2: leading and trailing spaces (and NUL padding) are not significant in these VRs. */
function trimText(text: string): string {
  return text.replace(/^[ \0]+|[ \0]+$/g, '');
}
