/**
 * An instance's attributes read from its file, once and only when first asked: the index answers the
 * common ones without touching the disk, and iterating a million instances must not open a million
 * files. The header is parsed, the values a caller may ask for are kept, and the file is closed again
 * at once, so an instance object never holds a file descriptor.
 */
import { parseFile, type ElementNode } from '../dicom/dataset-tree.js';
import { decodeText, parseSpecificCharacterSet } from '../dicom/charset.js';
import { tagOfKeyword } from '../dicom/dictionary.js';
import { elementText } from '../dicom/element-value.js';

/** A DICOM keyword as PS3.6 spells it ("PatientName"), a tag as a number (0x00100010), or a tag as
 * text ("(0010,0010)", "0010,0010" or "00100010"). */
export type AttributeKey = string | number;

/** Values longer than this are not kept: they are pixel data, documents or waveforms, not attributes
 * a caller reads as text (the same bound as element-value.ts). */
const MAX_VALUE_BYTES = 64 * 1024;

/** VRs whose text follows Specific Character Set (PS3.5 6.1.2.3); the rest is ASCII. */
const CHARACTER_SET_VRS = new Set(['SH', 'LO', 'ST', 'LT', 'UT', 'PN', 'UC']);

/** Binary bulk values and sequences have no text form. */
const NO_TEXT_VRS = new Set(['OB', 'OW', 'OD', 'OF', 'OL', 'OV', 'UN', 'SQ']);

const SPECIFIC_CHARACTER_SET = 0x00080005;

/** The tag a key names; an unknown keyword is an error (a typo must not read as "absent"). */
export function tagOf(key: AttributeKey): number {
  if (typeof key === 'number') {
    if (!Number.isInteger(key) || key < 0 || key > 0xffffffff) throw new RangeError(`${key} is not a DICOM tag`);
    return key;
  }
  const hex = /^\(?([0-9a-f]{4}),?([0-9a-f]{4})\)?$/i.exec(key.trim());
  if (hex) return Number.parseInt(`${hex[1]}${hex[2]}`, 16) >>> 0;
  const tag = tagOfKeyword(key);
  if (tag === undefined) throw new RangeError(`"${key}" is not a DICOM keyword (PS3.6) or a tag such as "(0010,0010)"`);
  return tag;
}

interface ParsedHeader {
  byTag: ReadonlyMap<number, ElementNode>;
  /** File Meta Information values by element number (group 0002). */
  meta: ReadonlyMap<number, Buffer>;
  bigEndian: boolean;
  charsets: string[];
}

export class LazyHeader {
  private parsed: ParsedHeader | undefined;

  /** `path()` says where the file is, or throws why it cannot be read (asked only when needed). */
  constructor(private readonly path: () => string) {}

  /** The value of a top-level attribute as text (several values joined by "\"; binary numbers in
   * decimal; padding removed): "" when it is present without a value, undefined when it is absent, a
   * sequence, binary bulk data, or longer than 64 KiB. */
  text(key: AttributeKey): string | undefined {
    const tag = tagOf(key);
    const header = this.header();
    if (tag >>> 16 === 0x0002) return trimPadding(header.meta.get(tag & 0xffff)?.toString('latin1'));
    const element = header.byTag.get(tag);
    if (!element || NO_TEXT_VRS.has(element.vr)) return undefined;
    // Values were loaded with the header; the file is closed, so nothing else can be read.
    if (CHARACTER_SET_VRS.has(element.vr)) {
      return element.value ? trimPadding(decodeText(element.value, header.charsets, element.vr === 'PN')) : undefined;
    }
    return elementText(element, undefined, header.bigEndian);
  }

  /** The first value of a numeric attribute (US, SS, UL, SL, FL, FD, IS, DS), or undefined. */
  number(key: AttributeKey): number | undefined {
    const text = this.text(key);
    if (text === undefined || text.trim() === '') return undefined;
    const value = Number((text.split('\\')[0] ?? '').trim());
    return Number.isFinite(value) ? value : undefined;
  }

  private header(): ParsedHeader {
    this.parsed ??= readHeader(this.path());
    return this.parsed;
  }
}

function readHeader(path: string): ParsedHeader {
  // Copied values: the header is cached with its instance, and views would keep the whole file.
  const file = parseFile(path, { loadLimit: MAX_VALUE_BYTES, copyValues: true });
  try {
    const byTag = new Map(file.elements.map((element) => [element.tag, element]));
    const bigEndian = file.encoding === 'explicit-be';
    const charsetValue = elementText(byTag.get(SPECIFIC_CHARACTER_SET), undefined, bigEndian);
    return { byTag, meta: file.meta, bigEndian, charsets: parseSpecificCharacterSet(charsetValue) };
  } finally {
    file.close();
  }
}

/** PS3.5 6.2: leading and trailing spaces (and NUL padding) are not significant. */
function trimPadding(text: string | undefined): string | undefined {
  return text?.replace(/^[ \0]+|[ \0]+$/g, '');
}
