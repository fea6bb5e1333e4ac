/**
 * The value of an element of a parsed dataset as text, as rules and zone signatures compare it:
 * binary numbers (US, SS, UL, SL, FL, FD) as decimal, several values joined by a backslash as in text
 * VRs, text with its insignificant padding removed (PS3.5 6.2).
 */
import type { ByteSource, ElementNode } from './dataset-tree.js';
import { UNDEFINED_LENGTH } from './dataset-tree.js';
import { decodeText, isMultiValuedText, parseSpecificCharacterSet } from './charset.js';

/** Values longer than this are not read for matching (they are pixel data or documents, not signatures). */
const MAX_TEXT_BYTES = 64 * 1024;

const BINARY: Readonly<Record<string, [size: number, read: (bytes: Buffer, offset: number, bigEndian: boolean) => number]>> = {
  US: [2, (b, o, be) => (be ? b.readUInt16BE(o) : b.readUInt16LE(o))],
  SS: [2, (b, o, be) => (be ? b.readInt16BE(o) : b.readInt16LE(o))],
  UL: [4, (b, o, be) => (be ? b.readUInt32BE(o) : b.readUInt32LE(o))],
  SL: [4, (b, o, be) => (be ? b.readInt32BE(o) : b.readInt32LE(o))],
  FL: [4, (b, o, be) => shortestFloat32(be ? b.readFloatBE(o) : b.readFloatLE(o))],
  FD: [8, (b, o, be) => (be ? b.readDoubleBE(o) : b.readDoubleLE(o))],
};

/**
 * The number with the fewest significant digits that is the same single-precision value: an FL of 3.1
 * is read as 3.0999999046325684 in double precision, which a rule "below 3.1" would take as below.
 */
export function shortestFloat32(value: number): number {
  for (let digits = 1; digits <= 9; digits += 1) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === value) return candidate;
  }
  return value;
}

export function elementText(element: ElementNode | undefined, source: ByteSource | undefined, bigEndian: boolean): string | undefined {
  const bytes = elementBytes(element, source);
  if (!element || !bytes) return undefined;
  const binary = BINARY[element.vr];
  if (binary) {
    const [size, read] = binary;
    const values: number[] = [];
    for (let offset = 0; offset + size <= bytes.length; offset += size) values.push(read(bytes, offset, bigEndian));
    return values.join('\\');
  }
  return bytes.toString('latin1').replace(/^[ \0]+|[ \0]+$/g, '');
}

/** The first value of a numeric element (binary or IS/DS text), or undefined. */
export function elementNumber(element: ElementNode | undefined, source: ByteSource | undefined, bigEndian: boolean): number | undefined {
  const text = elementText(element, source, bigEndian);
  if (text === undefined || text === '') return undefined;
  const number = Number((text.split('\\')[0] ?? '').trim());
  return Number.isFinite(number) ? number : undefined;
}

function elementBytes(element: ElementNode | undefined, source: ByteSource | undefined): Buffer | undefined {
  if (!element) return undefined;
  if (element.value) return element.value;
  if (!source || element.length === UNDEFINED_LENGTH || element.length > MAX_TEXT_BYTES) return undefined;
  return source.read(element.valueOffset, element.length);
}

/**
 * A reader of top-level attributes as text (for rules and zone signatures), File Meta Information
 * included (group 0002, e.g. ImplementationVersionName): `meta` holds its values by element number.
 */
export function attributeReader(elements: readonly ElementNode[], source: ByteSource, bigEndian: boolean, meta?: ReadonlyMap<number, Buffer>): (tag: number) => string | undefined {
  const byTag = new Map(elements.map((element) => [element.tag, element]));
  const declared = elementText(byTag.get(SPECIFIC_CHARACTER_SET), source, bigEndian);
  const charsets = declared ? parseSpecificCharacterSet(declared) : undefined;
  return (tag) => {
    if (tag >>> 16 === 0x0002) return meta?.get(tag & 0xffff)?.toString('latin1').replace(/^[ \0]+|[ \0]+$/g, '');
    const element = byTag.get(tag);
    // Text beyond ASCII is read in the dataset's character set (PS3.5 6.1), as the rule or zone that
    // names it was written (YAML is Unicode): read as Latin-1, a UTF-8 device name matched nothing.
    if (charsets && element && CHARACTER_STRING_VRS.has(element.vr)) {
      const bytes = elementBytes(element, source);
      if (bytes?.some((byte) => byte >= 0x80 || byte === ESC)) {
        return decodeText(bytes, charsets, element.vr === 'PN', isMultiValuedText(element.vr)).replace(/^[ \0]+|[ \0]+$/g, '').trim();
      }
    }
    return elementText(element, source, bigEndian)?.trim();
  };
}

const SPECIFIC_CHARACTER_SET = 0x00080005;
const ESC = 0x1b;
/** VRs whose text Specific Character Set governs (PS3.5 6.1.2.3). */
const CHARACTER_STRING_VRS = new Set(['SH', 'LO', 'ST', 'LT', 'UT', 'UC', 'PN']);
