/**
 * An instance's attributes read from its file, once and only when first asked: the index answers the
 * common ones without touching the disk, and iterating a million instances must not open a million
 * files. The header is parsed, the values a caller may ask for are kept, and the file is closed again
 * at once, so an instance object never holds a file descriptor.
 */
import { statSync } from 'node:fs';
import { parseFile, type ElementNode, type ParsedFile, type ParseOptions } from '../dicom/dataset-tree.js';
import { DatasetFormatError } from '../dicom/header-scanner.js';
import { decodeText, isMultiValuedText, parseSpecificCharacterSet } from '../dicom/charset.js';
import { tagOfKeyword, vrOf } from '../dicom/dictionary.js';
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

/** The VRs of numbers (PS3.5 6.2), binary or as text. */
const NUMERIC_VRS: ReadonlySet<string> = new Set(['US', 'SS', 'UL', 'SL', 'FL', 'FD', 'IS', 'DS', 'SV', 'UV']);
/** Text VRs whose leading spaces are part of the value (PS3.5 6.2). */
const LEADING_SPACES_SIGNIFICANT: ReadonlySet<string> = new Set(['ST', 'LT', 'UT']);

/** The tag a key names; an unknown keyword is an error (a typo must not read as "absent"). */
export function tagOf(key: AttributeKey): number {
  // Untyped callers: attribute(null) threw "Cannot read properties of null" (found in a review).
  if (typeof key !== 'number' && typeof key !== 'string') throw new TypeError(`an attribute is named by a keyword, a tag such as "(0010,0010)" or a number, not ${String(key)}`);
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
  constructor(
    private readonly path: () => string,
    /** Throws when the parsed file is not the instance it should be (before anything is kept). */
    private readonly check: (file: ParsedFile) => void,
  ) {}

  /** The value of a top-level attribute as text (several values joined by "\"; binary numbers in
   * decimal, tags (AT) as "ggggeeee"; padding removed, but the leading spaces of ST, LT and UT, which are part of the value): "" when it is present without a value, undefined when it is absent, a
   * sequence, binary bulk data, or longer than 64 KiB. */
  text(key: AttributeKey): string | undefined {
    const tag = tagOf(key);
    const header = this.header();
    if (tag >>> 16 === 0x0002) return metaText(tag & 0xffff, header.meta.get(tag & 0xffff));
    const stored = header.byTag.get(tag);
    const element = stored && withDictionaryVr(stored);
    if (!element || NO_TEXT_VRS.has(element.vr)) return undefined;
    const binary = BINARY_TEXT[element.vr];
    if (binary) return element.value ? binary(element.value, header.bigEndian) : undefined;
    // Values were loaded with the header; the file is closed, so nothing else can be read.
    if (CHARACTER_SET_VRS.has(element.vr)) {
      const text = element.value ? decodeText(element.value, header.charsets, element.vr === 'PN', isMultiValuedText(element.vr)) : undefined;
      // PS3.5 6.2: in ST, LT and UT leading spaces are significant (found in the library review: cut).
      return LEADING_SPACES_SIGNIFICANT.has(element.vr) ? text?.replace(/[ \0]+$/, '') : trimPadding(text);
    }
    return elementText(element, undefined, header.bigEndian);
  }

  /**
   * The first value of a numeric attribute (US, SS, UL, SL, FL, FD, IS, DS, SV, UV), or of an AT as
   * its tag's number; undefined for any other VR. A date or an AT read as decimal text gave numbers
   * that mean nothing ((0010,0010) as 100010; found in the library review).
   */
  number(key: AttributeKey): number | undefined {
    const vr = this.vrOf(key);
    if (vr === undefined || !(NUMERIC_VRS.has(vr) || vr === 'AT')) return undefined;
    const first = (this.text(key)?.split('\\')[0] ?? '').trim();
    if (first === '') return undefined;
    const value = vr === 'AT' ? (/^[0-9A-Fa-f]{8}$/.test(first) ? Number.parseInt(first, 16) : Number.NaN) : Number(first);
    return Number.isFinite(value) ? value : undefined;
  }

  /** The VR a top-level attribute is read with (the dictionary's, for a standard one sent as UN). */
  private vrOf(key: AttributeKey): string | undefined {
    const tag = tagOf(key);
    if (tag >>> 16 === 0x0002) return tag === 0x00020000 ? 'UL' : undefined;
    const stored = this.header().byTag.get(tag);
    return stored && withDictionaryVr(stored).vr;
  }

  private header(): ParsedHeader {
    this.parsed ??= readHeader(this.path(), this.check);
    return this.parsed;
  }
}

/**
 * A standard attribute written as UN (by a device or archive that did not know it, PS3.5 6.2.2) read
 * in the VR the data dictionary gives it, as the index reads it; a private one has none and stays UN.
 */
function withDictionaryVr(element: ElementNode): ElementNode {
  if (element.vr !== 'UN' || element.items !== undefined) return element;
  const vr = vrOf(element.tag);
  return vr === 'UN' ? element : { ...element, vr };
}

/**
 * The original cannot be parsed: it ends early (an element runs past the end of the file, a header is
 * cut) or its structure is damaged. The message names the file, how it fails and where the file
 * ends; DatasetFormatError never quotes a value, so it carries no patient data.
 */
export class OriginalUnreadableError extends Error {
  constructor(
    /** The original's path, absolute. */
    readonly filePath: string,
    /** The file's size now: where it ends. */
    readonly fileSize: number | undefined,
    /** What the parser found wrong (tags and offsets, never values). */
    readonly reason: string,
  ) {
    super(`the original ${filePath} cannot be read: ${reason}${fileSize === undefined ? '' : ` (the file ends at byte ${fileSize})`}`);
    this.name = 'OriginalUnreadableError';
  }
}

/**
 * parseFile for the session: a file that ends early or is damaged fails with the file's name and
 * where it ends, not the parser's bare "runs past the end of the dataset", which named neither (a
 * file imported in place is indexed from its header alone, so one cut inside Pixel Data is indexed).
 */
export function parseOriginal(path: string, options: ParseOptions): ParsedFile {
  try {
    return parseFile(path, options);
  } catch (error) {
    if (!(error instanceof DatasetFormatError)) throw error;
    throw new OriginalUnreadableError(path, statSync(path, { throwIfNoEntry: false })?.size, error.message);
  }
}

function readHeader(path: string, check: (file: ParsedFile) => void): ParsedHeader {
  // Copied values: the header is cached with its instance, and views would keep the whole file.
  const file = parseOriginal(path, { loadLimit: MAX_VALUE_BYTES, copyValues: true });
  try {
    check(file);
    const byTag = new Map(file.elements.map((element) => [element.tag, element]));
    const bigEndian = file.encoding === 'explicit-be';
    const charsetValue = elementText(byTag.get(SPECIFIC_CHARACTER_SET), undefined, bigEndian);
    return { byTag, meta: file.meta, bigEndian, charsets: parseSpecificCharacterSet(charsetValue) };
  } finally {
    file.close();
  }
}

/** Binary VRs that elementText does not know: AT as PS3.18 F.2.3 writes a tag ("ggggeeee"), SV and
 * UV (64 bits) in decimal, exactly. */
const BINARY_TEXT: Readonly<Record<string, (bytes: Buffer, bigEndian: boolean) => string>> = {
  AT: (bytes, bigEndian) =>
    values(bytes, 4, (offset) => {
      const group = bigEndian ? bytes.readUInt16BE(offset) : bytes.readUInt16LE(offset);
      const element = bigEndian ? bytes.readUInt16BE(offset + 2) : bytes.readUInt16LE(offset + 2);
      return `${hex4(group)}${hex4(element)}`;
    }),
  SV: (bytes, bigEndian) => values(bytes, 8, (offset) => String(bigEndian ? bytes.readBigInt64BE(offset) : bytes.readBigInt64LE(offset))),
  UV: (bytes, bigEndian) => values(bytes, 8, (offset) => String(bigEndian ? bytes.readBigUInt64BE(offset) : bytes.readBigUInt64LE(offset))),
};

function values(bytes: Buffer, size: number, read: (offset: number) => string): string {
  const out: string[] = [];
  for (let offset = 0; offset + size <= bytes.length; offset += size) out.push(read(offset));
  return out.join('\\');
}

function hex4(value: number): string {
  return value.toString(16).toUpperCase().padStart(4, '0');
}

/** A File Meta Information value (always explicit VR little endian, PS3.10 7.1): its group length
 * (UL) in decimal, its OB values (version, private information) binary, the rest text. */
function metaText(element: number, value: Buffer | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (element === 0x0000) return value.length >= 4 ? String(value.readUInt32LE(0)) : undefined;
  if (element === 0x0001 || element === 0x0102) return undefined;
  return trimPadding(value.toString('latin1'));
}

/** PS3.5 6.2: leading and trailing spaces (and NUL padding) are not significant. */
function trimPadding(text: string | undefined): string | undefined {
  return text?.replace(/^[ \0]+|[ \0]+$/g, '');
}
