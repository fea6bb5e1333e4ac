/**
 * Writes an RT Structure Set whose header is as large as asked: one ROI whose Contour Sequence
 * (3006,0040) has `contours` items, each as a planning system writes it (a Contour Image Sequence
 * naming one of the CT slices, geometric type, point count, number and a short Contour Data). Such an
 * object has 9 data elements per contour (items counted): what made de-identification threads run
 * out of heap (docs/operations.md, "Large headers"). Written in pieces, so the test's own memory stays
 * small.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { definedItem, elementHeader, encodeDataset, encodeElement, EXPLICIT_LE, newUid, type Element } from './synthetic-dicom.js';

export const RT_STRUCTURE_SET_STORAGE = '1.2.840.10008.5.1.4.1.1.481.3';
const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
/** Data elements per contour, its item and the Contour Image Sequence's item counted. */
export const ELEMENTS_PER_CONTOUR = 9;

export interface LargeStructureSet {
  contours: number;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  patientId: string;
  patientName: string;
  sopInstanceUid?: string;
}

/** Writes the structure set to `path`; returns its SOP Instance UID and size in bytes. */
export async function writeLargeStructureSet(path: string, spec: LargeStructureSet): Promise<{ sopInstanceUid: string; size: number }> {
  const sopInstanceUid = spec.sopInstanceUid ?? newUid();
  const slices = Array.from({ length: 100 }, () => newUid());
  const top: Element[] = [
    [0x00080005, 'CS', 'ISO_IR 100'],
    [0x00080016, 'UI', RT_STRUCTURE_SET_STORAGE],
    [0x00080018, 'UI', sopInstanceUid],
    [0x00080020, 'DA', '20240102'],
    [0x00080060, 'CS', 'RTSTRUCT'],
    [0x00100010, 'PN', spec.patientName],
    [0x00100020, 'LO', spec.patientId],
    [0x0020000d, 'UI', spec.studyInstanceUid],
    [0x0020000e, 'UI', spec.seriesInstanceUid],
    [0x30060002, 'SH', 'PLAN'],
  ];
  const out = createWriteStream(path);
  let size = 0;
  const write = async (bytes: Buffer) => {
    size += bytes.length;
    if (!out.write(bytes)) await once(out, 'drain');
  };
  await write(encodePart10Header({ mediaStorageSopClassUid: RT_STRUCTURE_SET_STORAGE, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: EXPLICIT_LE }));
  await write(encodeDataset(top));
  // ROI Contour Sequence (3006,0039), one item: its Contour Sequence, of undefined length, and its Referenced ROI Number.
  await write(undefinedLength(0x30060039));
  await write(itemOfUndefinedLength());
  await write(undefinedLength(0x30060040));
  for (let i = 0; i < spec.contours; i += 1) await write(contour(i, slices[i % slices.length] ?? ''));
  await write(SEQUENCE_DELIMITER);
  await write(encodeElement(0x30060084, 'IS', '1'));
  await write(ITEM_DELIMITER);
  await write(SEQUENCE_DELIMITER);
  out.end();
  await once(out, 'finish');
  return { sopInstanceUid, size };
}

function contour(index: number, slice: string): Buffer {
  const image = definedItem(Buffer.concat([encodeElement(0x00081150, 'UI', CT_IMAGE_STORAGE), encodeElement(0x00081155, 'UI', slice)]));
  const body = Buffer.concat([
    encodeElement(0x30060016, 'SQ', image),
    encodeElement(0x30060042, 'CS', 'CLOSED_PLANAR'),
    encodeElement(0x30060046, 'IS', '4'),
    encodeElement(0x30060048, 'IS', String(index + 1)),
    encodeElement(0x30060050, 'DS', '1.5\\2.5\\-30\\4.5\\2.5\\-30\\4.5\\5.5\\-30\\1.5\\5.5\\-30'),
  ]);
  return definedItem(body);
}

function undefinedLength(tag: number): Buffer {
  return elementHeader(tag, 'SQ', 0xffffffff);
}

function itemOfUndefinedLength(): Buffer {
  return Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
}

const ITEM_DELIMITER = Buffer.from([0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
const SEQUENCE_DELIMITER = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
