/**
 * Decoding of text values by Specific Character Set (0008,0005): PS3.3 C.12.1.1.2 and PS3.5 6.1,
 * single-byte sets, UTF-8, GB18030/GBK, and ISO 2022 code extensions with escape sequences.
 */

import { TextDecoder } from 'node:util';

type G1Set = 'none' | 'latin1' | 'iso-8859-2' | 'iso-8859-3' | 'iso-8859-4' | 'iso-8859-5' | 'iso-8859-6' | 'iso-8859-7' | 'iso-8859-8' | 'iso-8859-9' | 'iso-8859-15' | 'tis-620' | 'katakana' | 'ks-x-1001' | 'gb2312';
type G0Set = 'ascii' | 'romaji' | 'jis-x-0208' | 'jis-x-0212';

/** Defined Terms without code extensions (PS3.3 Table C.12-2) → decoder label. */
const SINGLE_SETS: Record<string, string> = {
  '': 'latin1',
  'ISO_IR 6': 'latin1',
  'ISO_IR 100': 'latin1',
  'ISO_IR 101': 'iso-8859-2',
  'ISO_IR 109': 'iso-8859-3',
  'ISO_IR 110': 'iso-8859-4',
  'ISO_IR 144': 'iso-8859-5',
  'ISO_IR 127': 'iso-8859-6',
  'ISO_IR 126': 'iso-8859-7',
  'ISO_IR 138': 'iso-8859-8',
  'ISO_IR 148': 'iso-8859-9',
  'ISO_IR 203': 'iso-8859-15',
  'ISO_IR 13': 'shift_jis',
  'ISO_IR 166': 'tis-620',
  'ISO_IR 192': 'utf-8',
  GB18030: 'gb18030',
  GBK: 'gbk',
};

/** The initial G0/G1 state of each ISO 2022 Defined Term (PS3.3 Tables C.12-3 and C.12-4). */
const ISO2022_INITIAL: Record<string, { g0: G0Set; g1: G1Set }> = {
  'ISO 2022 IR 6': { g0: 'ascii', g1: 'none' },
  'ISO 2022 IR 100': { g0: 'ascii', g1: 'latin1' },
  'ISO 2022 IR 101': { g0: 'ascii', g1: 'iso-8859-2' },
  'ISO 2022 IR 109': { g0: 'ascii', g1: 'iso-8859-3' },
  'ISO 2022 IR 110': { g0: 'ascii', g1: 'iso-8859-4' },
  'ISO 2022 IR 144': { g0: 'ascii', g1: 'iso-8859-5' },
  'ISO 2022 IR 127': { g0: 'ascii', g1: 'iso-8859-6' },
  'ISO 2022 IR 126': { g0: 'ascii', g1: 'iso-8859-7' },
  'ISO 2022 IR 138': { g0: 'ascii', g1: 'iso-8859-8' },
  'ISO 2022 IR 148': { g0: 'ascii', g1: 'iso-8859-9' },
  'ISO 2022 IR 203': { g0: 'ascii', g1: 'iso-8859-15' },
  'ISO 2022 IR 166': { g0: 'ascii', g1: 'tis-620' },
  'ISO 2022 IR 13': { g0: 'romaji', g1: 'katakana' },
  'ISO 2022 IR 87': { g0: 'jis-x-0208', g1: 'none' },
  'ISO 2022 IR 159': { g0: 'jis-x-0212', g1: 'none' },
  'ISO 2022 IR 149': { g0: 'ascii', g1: 'ks-x-1001' },
  'ISO 2022 IR 58': { g0: 'ascii', g1: 'gb2312' },
};

/** Escape sequences (after ESC) and the set each designates. */
const ESCAPES: ReadonlyArray<readonly [string, { g0?: G0Set; g1?: G1Set }]> = [
  ['(B', { g0: 'ascii' }],
  ['(J', { g0: 'romaji' }],
  [')I', { g1: 'katakana' }],
  ['$B', { g0: 'jis-x-0208' }],
  ['$(D', { g0: 'jis-x-0212' }],
  ['$)C', { g1: 'ks-x-1001' }],
  ['$)A', { g1: 'gb2312' }],
  ['-A', { g1: 'latin1' }],
  ['-B', { g1: 'iso-8859-2' }],
  ['-C', { g1: 'iso-8859-3' }],
  ['-D', { g1: 'iso-8859-4' }],
  ['-L', { g1: 'iso-8859-5' }],
  ['-G', { g1: 'iso-8859-6' }],
  ['-F', { g1: 'iso-8859-7' }],
  ['-H', { g1: 'iso-8859-8' }],
  ['-M', { g1: 'iso-8859-9' }],
  ['-b', { g1: 'iso-8859-15' }],
  ['-T', { g1: 'tis-620' }],
];

const decoders = new Map<string, TextDecoder>();
function decoder(label: string): TextDecoder {
  let found = decoders.get(label);
  if (!found) {
    found = new TextDecoder(label);
    decoders.set(label, found);
  }
  return found;
}

/** The labels of SINGLE_SETS whose decoders read a byte as one character; Latin-1 is read as it is. */
const BYTE_PER_CHARACTER = new Set(['iso-8859-2', 'iso-8859-3', 'iso-8859-4', 'iso-8859-5', 'iso-8859-6', 'iso-8859-7', 'iso-8859-8', 'iso-8859-9', 'iso-8859-15', 'tis-620']);

/** The decoder label of a Defined Term without code extensions whose letters are not Latin-1's and
 * whose every byte is one character (not ISO_IR 13: its decoder, Shift JIS, reads two bytes as one). */
export function singleByteLabel(term: string): string | undefined {
  const label = SINGLE_SETS[term];
  return label !== undefined && BYTE_PER_CHARACTER.has(label) ? label : undefined;
}

/** The decoder label of a multi-byte set without code extensions whose bytes may read as "^", "\\"
 * or "_" inside a character (GB18030 and GBK: a second byte runs from 0x40). */
export function gbLabel(term: string): 'gb18030' | 'gbk' | undefined {
  return term === 'GB18030' ? 'gb18030' : term === 'GBK' ? 'gbk' : undefined;
}

/**
 * GB18030 or GBK text (its bytes as a Latin-1 string) cut into its characters' bytes: one byte below
 * 0x81, else a lead byte and one more, or three more where the second is a digit (GB 18030's four-byte
 * form). Never half a character, which a byte-wise cut or match makes (a name's "^" may be the second
 * byte of 繼).
 */
export function gbCharacters(text: string): string[] {
  const characters: string[] = [];
  let at = 0;
  while (at < text.length) {
    const lead = text.charCodeAt(at);
    const second = text.charCodeAt(at + 1);
    const length = lead < 0x81 || lead > 0xfe || at + 1 >= text.length ? 1 : second >= 0x30 && second <= 0x39 ? 4 : 2;
    characters.push(text.slice(at, at + length));
    at += length;
  }
  return characters;
}

/**
 * Text written in a character set without code extensions (its bytes as a Latin-1 string): UTF-8,
 * Latin-1 (and the default repertoire as devices fill it), or a single-byte set whose every byte is a
 * character. undefined: the set is another, or cannot write one of the characters.
 */
export function encodeText(text: string, charsets: readonly string[]): string | undefined {
  if (/^[\x00-\x7f]*$/.test(text)) return text;
  if (charsets.length !== 1) return undefined;
  const label = SINGLE_SETS[charsets[0] as string];
  if (label === 'utf-8') return Buffer.from(text, 'utf8').toString('latin1');
  if (label === 'latin1') return /^[\x00-\xff]*$/.test(text) ? text : undefined;
  if (label === undefined || !BYTE_PER_CHARACTER.has(label)) return undefined;
  const bytesOf = singleByteBytes(label);
  let out = '';
  for (const character of text) {
    const byte = bytesOf.get(character);
    if (byte === undefined) return undefined;
    out += byte;
  }
  return out;
}

const singleByteTables = new Map<string, Map<string, string>>();
/** A single-byte set's characters (of decoder `label`) and the byte of each, as a Latin-1 character;
 * a byte the set leaves undefined has none. */
export function singleByteBytes(label: string): ReadonlyMap<string, string> {
  let table = singleByteTables.get(label);
  if (!table) {
    table = new Map();
    const characters = decoder(label).decode(Buffer.from(Array.from({ length: 256 }, (_, byte) => byte)));
    for (let byte = 255; byte >= 0; byte -= 1) table.set(characters[byte] as string, String.fromCharCode(byte));
    singleByteTables.set(label, table);
  }
  return table;
}

function decodeWith(label: string, bytes: Buffer): string {
  // WHATWG's "iso-8859-1" is windows-1252; DICOM's ISO_IR 100 is true Latin-1.
  return label === 'latin1' ? bytes.toString('latin1') : decoder(label).decode(bytes);
}

/** Parses the value of Specific Character Set: backslash-separated Defined Terms. */
export function parseSpecificCharacterSet(value: string | undefined): string[] {
  if (value === undefined) return [''];
  const terms = value.split('\\').map((term) => term.trim());
  return terms.length === 0 ? [''] : terms;
}

/**
 * Decodes a text value. `personName` marks PN values, in which "^" and "=" also return the
 * character sets to their initial state (PS3.5 6.1.2.5.3); `multiValued` a VR whose values "\\"
 * separates (every text VR but LT, ST and UT; PN is one), each of which starts in the initial state too.
 */
export function decodeText(bytes: Buffer, charsets: readonly string[], personName = false, multiValued = personName): string {
  const first = charsets[0] ?? '';
  const single = SINGLE_SETS[first];
  if (charsets.length <= 1 && single !== undefined) return decodeWith(single, bytes);
  if (!bytes.includes(0x1b) && single !== undefined) return decodeWith(single, bytes);
  return decodeIso2022(bytes, charsets, personName, multiValued);
}

/** The text VRs of one value, in which "\\" is a character (PS3.5 6.2). */
const SINGLE_VALUED_TEXT_VRS: ReadonlySet<string> = new Set(['LT', 'ST', 'UT']);

/** Whether values of this VR are separated by "\\" (decodeText's `multiValued`). */
export function isMultiValuedText(vr: string): boolean {
  return !SINGLE_VALUED_TEXT_VRS.has(vr);
}

function decodeIso2022(bytes: Buffer, charsets: readonly string[], personName: boolean, multiValued: boolean): string {
  const initial = ISO2022_INITIAL[charsets[0] ?? ''] ?? { g0: 'ascii' as G0Set, g1: 'none' as G1Set };
  let g0 = initial.g0;
  let g1 = initial.g1;
  let out = '';
  let index = 0;
  while (index < bytes.length) {
    const byte = bytes[index] as number;
    if (byte === 0x1b) {
      const escape = ESCAPES.find(([sequence]) => escapeAt(bytes, index + 1, sequence));
      if (escape) {
        g0 = escape[1].g0 ?? g0;
        g1 = escape[1].g1 ?? g1;
        index += 1 + escape[0].length;
        continue;
      }
      index += 1; // an escape Gantry does not know: drop the ESC byte, keep going
      continue;
    }
    // In a two-byte G0 set, "^", "=" and "\\" bytes are halves of characters, not delimiters.
    const singleByteG0 = g0 !== 'jis-x-0208' && g0 !== 'jis-x-0212';
    const nameDelimiters = personName && singleByteG0;
    const valueDelimiter = multiValued && singleByteG0;
    if (isDelimiter(byte, nameDelimiters, valueDelimiter)) {
      out += String.fromCharCode(byte);
      g0 = initial.g0;
      g1 = initial.g1;
      index += 1;
      continue;
    }
    // A run of bytes in one set, up to the next escape or delimiter.
    let end = index;
    const high = byte >= 0x80;
    while (end < bytes.length) {
      const next = bytes[end] as number;
      if (next === 0x1b || isDelimiter(next, nameDelimiters, valueDelimiter) || next >= 0x80 !== high) break;
      end += 1;
    }
    out += high ? decodeG1(bytes.subarray(index, end), g1) : decodeG0(bytes.subarray(index, end), g0);
    index = end;
  }
  return out;
}

/** Whether the bytes at `at` are the escape sequence `sequence` (compared byte by byte: a string made
 * for each of the 18 sequences at every ESC made a value of 64 KiB of ESC bytes take 250 ms to read,
 * on the main thread when the receive path indexes it). */
function escapeAt(bytes: Buffer, at: number, sequence: string): boolean {
  for (let i = 0; i < sequence.length; i += 1) if (bytes[at + i] !== sequence.charCodeAt(i)) return false;
  return true;
}

function isDelimiter(byte: number, personName: boolean, multiValued: boolean): boolean {
  // CR, LF, FF, TAB always; "^" and "=" in person names; "\\" between values (PS3.5 6.1.2.5.3).
  return byte === 0x0d || byte === 0x0a || byte === 0x0c || byte === 0x09 || (personName && (byte === 0x5e || byte === 0x3d)) || (multiValued && byte === 0x5c);
}

function decodeG0(run: Buffer, set: G0Set): string {
  switch (set) {
    case 'ascii':
    case 'romaji':
      return run.toString('latin1');
    case 'jis-x-0208':
      // 7-bit JIS X 0208 pairs are EUC-JP with the high bit set.
      return decodeWith('euc-jp', Buffer.from(run.map((b) => b | 0x80)));
    case 'jis-x-0212': {
      // In EUC-JP, JIS X 0212 characters are SS3 (0x8F) and the pair with the high bit set.
      const euc: number[] = [];
      for (let i = 0; i + 1 < run.length; i += 2) euc.push(0x8f, (run[i] as number) | 0x80, (run[i + 1] as number) | 0x80);
      return decodeWith('euc-jp', Buffer.from(euc));
    }
  }
}

function decodeG1(run: Buffer, set: G1Set): string {
  switch (set) {
    case 'none':
      return run.toString('latin1');
    case 'katakana':
      return decodeWith('shift_jis', run);
    case 'ks-x-1001':
      return decodeWith('euc-kr', run);
    case 'gb2312':
      return decodeWith('gbk', run);
    default:
      return decodeWith(set, run);
  }
}
