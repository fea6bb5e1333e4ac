/**
 * Encodes small datasets of text values (C-FIND identifiers and responses) in implicit or explicit VR
 * little endian (PS3.5 7.1), with the VRs of the dictionary. Text is written in UTF-8 when the dataset
 * says ISO_IR 192, else in the default repertoire's bytes (latin1); values are padded to even length as
 * PS3.5 6.2 says (UI with NUL, text with a space). A value of `[]` is an empty sequence.
 */
import { vrOf } from './dictionary.js';
import { LONG_VRS } from './values.js';

export interface TextElement {
  tag: number;
  /** Backslash-separated values, or an empty list for an empty sequence (SQ). */
  value: string | [];
}

const SPECIFIC_CHARACTER_SET = 0x00080005;
const BINARY_NUMBER_VRS: Readonly<Record<string, number>> = { US: 2, SS: 2, UL: 4, SL: 4 };

export function encodeTextDataset(elements: readonly TextElement[], encoding: 'implicit-le' | 'explicit-le'): Buffer {
  const charset = elements.find((element) => element.tag === SPECIFIC_CHARACTER_SET)?.value;
  const utf8 = typeof charset === 'string' && charset.includes('ISO_IR 192');
  const parts: Buffer[] = [];
  for (const element of [...elements].sort((a, b) => a.tag - b.tag)) {
    const vr = Array.isArray(element.value) ? 'SQ' : vrOf(element.tag);
    const value = Array.isArray(element.value) ? Buffer.alloc(0) : valueBytes(vr, element.value, utf8);
    parts.push(elementHeader(element.tag, vr, value.length, encoding), value);
  }
  return Buffer.concat(parts);
}

function valueBytes(vr: string, text: string, utf8: boolean): Buffer {
  const size = BINARY_NUMBER_VRS[vr];
  if (size !== undefined) {
    if (text === '') return Buffer.alloc(0);
    const numbers = text.split('\\').map(Number);
    const out = Buffer.alloc(size * numbers.length);
    numbers.forEach((number, index) => {
      if (vr === 'US') out.writeUInt16LE(number, index * 2);
      else if (vr === 'SS') out.writeInt16LE(number, index * 2);
      else if (vr === 'UL') out.writeUInt32LE(number, index * 4);
      else out.writeInt32LE(number, index * 4);
    });
    return out;
  }
  const bytes = Buffer.from(text, utf8 ? 'utf8' : 'latin1');
  if (bytes.length % 2 === 0) return bytes;
  return Buffer.concat([bytes, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
}

function elementHeader(tag: number, vr: string, length: number, encoding: 'implicit-le' | 'explicit-le'): Buffer {
  const long = LONG_VRS.has(vr);
  const header = Buffer.alloc(encoding === 'explicit-le' && long ? 12 : 8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  if (encoding === 'implicit-le') {
    header.writeUInt32LE(length, 4);
  } else if (long) {
    header.write(vr, 4, 'latin1');
    header.writeUInt32LE(length, 8);
  } else {
    header.write(vr, 4, 'latin1');
    header.writeUInt16LE(length, 6);
  }
  return header;
}
