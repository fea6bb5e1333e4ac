/**
 * The patient's identifiers in free text: which name parts and IDs are looked for, and how text is
 * compared with them (PS3.15 E.3.5 leaves free text to the implementer). The engine scrubs text it
 * cleans and reports text it keeps that still quotes one (src/deid/engine.ts).
 *
 * Values arrive as Latin-1 strings of their stored bytes. Letters fold case as the dataset's
 * character set spells them: ASCII always; Latin-1 letters (MÜLLER and Müller) when the set is
 * ISO_IR 100 or the default repertoire, which devices fill with Latin-1 in practice; any letter for
 * UTF-8 (ISO_IR 192), whose text is decoded first, since an accented letter is two bytes there and
 * its upper and lower cases differ in the second; any letter for the other single-byte sets without
 * code extensions (Cyrillic, Greek, Arabic, Hebrew, Thai and the other ISO 8859 parts), whose text is
 * decoded byte for byte first (found in a review: "Иванов" was masked and "ИВАНОВ" kept, with no
 * finding). Other sets (multi-byte, and text with the escapes of code extensions) fold ASCII only:
 * folding their bytes as Latin-1 would match other characters. Text without escapes is in its first
 * set alone when that set has an upper half ("ISO 2022 IR 144" compares as ISO_IR 144).
 */
import { TextDecoder } from 'node:util';
import { gbCharacters, gbLabel, parseSpecificCharacterSet, singleByteBytes, singleByteLabel } from '../dicom/charset.js';

/** 'unicode': UTF-8; 'single-byte:LABEL': one byte, one character, decoded with that decoder label;
 * 'multi-byte:LABEL': GB18030 or GBK, decoded character by character (charset.ts gbCharacters);
 * 'euc': the default repertoire with KS X 1001 or GB 2312 among its code extensions: ISO 2022 text
 * whose upper half holds that set's two-byte characters before any escape too (EUC-KR, EUC-CN);
 * its letters fold as ASCII. */
export type TextFolding = 'ascii' | 'latin1' | 'unicode' | 'euc' | `single-byte:${string}` | `multi-byte:${'gb18030' | 'gbk'}`;

/**
 * How free text of a dataset whose Specific Character Set (0008,0005) is `value` is compared.
 * `withEscapes` false: text without escape sequences, which is in the first set alone (PS3.5 6.1.2.5:
 * only an escape brings in the others), so "ISO 2022 IR 144" compares as ISO_IR 144.
 */
export function textFolding(value: string | undefined, withEscapes = true): TextFolding {
  const all = parseSpecificCharacterSet(value?.trim() === '' ? undefined : value);
  // Only a first set with an upper half of its own stands alone: with the default repertoire first,
  // bytes above 0x7F in text without escapes are another set's written without them (Korean, as
  // devices write "\ISO 2022 IR 149"), not Latin-1 letters (found in the review of the session's diff).
  // Korean and Chinese devices write the G1 set's characters without their designation escape, as
  // EUC-KR and EUC-CN do: a name escaped in PatientName was not found in a comment written so, nor
  // a name written so in text that escapes it.
  // Only when no one-byte set shares the upper half: beside Latin-1 ("\ISO 2022 IR 100\ISO 2022 IR 149"),
  // "Hervé" read as a two-byte character was no longer found (found in the review of the session's diff).
  if (SEVEN_BIT_SETS.has(all[0] ?? '') && all.some((set) => TWO_BYTE_G1_SETS.has(set)) && all.every((set) => SEVEN_BIT_SETS.has(set) || TWO_BYTE_G1_SETS.has(set) || G0_SETS.has(set))) return 'euc';
  const sets = withEscapes || SEVEN_BIT_SETS.has(all[0] ?? '') ? all : [withoutCodeExtensions(all[0] ?? '')];
  if (sets[0] === 'ISO_IR 192') return 'unicode';
  const gb = sets.length === 1 ? gbLabel(sets[0] as string) : undefined;
  if (gb) return `multi-byte:${gb}`;
  // Every set, code extensions included ("\ISO 2022 IR 149" puts Korean in the upper half).
  if (sets.every((set) => LATIN1_SETS.has(set))) return 'latin1';
  const singleByte = sets.length === 1 ? singleByteLabel(sets[0] as string) : undefined;
  return singleByte ? `single-byte:${singleByte}` : 'ascii';
}

/** The code extensions that put a two-byte set in G1 (PS3.3 Table C.12-4: KS X 1001, GB 2312). */
const TWO_BYTE_G1_SETS: ReadonlySet<string> = new Set(['ISO 2022 IR 149', 'ISO 2022 IR 58']);

/** The code extensions whose sets go in G0 only (JIS X 0208 and 0212): they leave the upper half free. */
const G0_SETS: ReadonlySet<string> = new Set(['ISO 2022 IR 87', 'ISO 2022 IR 159']);

/** First sets without an upper half (PS3.3 Table C.12-3: the default repertoire). */
const SEVEN_BIT_SETS: ReadonlySet<string> = new Set(['', 'ISO_IR 6', 'ISO 2022 IR 6']);

/** The Defined Term without code extensions of the set an ISO 2022 term starts in ("ISO 2022 IR 144"
 * gives "ISO_IR 144"); others as they are. */
function withoutCodeExtensions(term: string): string {
  const number = /^ISO 2022 IR (\d+)$/.exec(term)?.[1];
  return number === undefined ? term : `ISO_IR ${number}`;
}

/** A text's characters as compared, and how a text of them is written back as the stored bytes'
 * Latin-1 string: UTF-8, or a single-byte set byte for byte. */
interface Decoded {
  value: string;
  decode: (latin1: string) => string;
  encode: (characters: string) => string;
}

const UTF8: Omit<Decoded, 'value'> = {
  decode: (latin1) => Buffer.from(latin1, 'latin1').toString('utf8'),
  encode: (characters) => Buffer.from(characters, 'utf8').toString('latin1'),
};

/** A single-byte set's decoding of its 256 bytes and the way back (none for a byte it leaves undefined). */
function singleByteCodec(label: string): Omit<Decoded, 'value'> {
  let codec = singleByteCodecs.get(label);
  if (!codec) {
    const decoder = new TextDecoder(label);
    const back = singleByteBytes(label);
    codec = {
      decode: (latin1) => decoder.decode(Buffer.from(latin1, 'latin1')),
      // Only characters decoded from these bytes, or "X" masks, are written back.
      encode: (characters) => Array.from(characters, (character) => back.get(character) ?? '?').join(''),
    };
    singleByteCodecs.set(label, codec);
  }
  return codec;
}

const singleByteCodecs = new Map<string, Omit<Decoded, 'value'>>();

/**
 * GB18030 or GBK text decoded character by character, and written back from the same characters'
 * bytes (or ASCII: the masks). Compared byte-wise, a name's two bytes matched across two characters
 * ("王" is CD F5, found inside "和跆") and the mask cut both in half (found in the character set review).
 */
function multiByteDecoded(text: string, label: 'gb18030' | 'gbk'): Decoded | undefined {
  const decode = multiByteDecoders[label];
  const bytesOf = new Map<string, string>();
  let value = '';
  for (const bytes of gbCharacters(text)) {
    const character = bytes < '\x80' ? bytes : decode(bytes);
    if (character.includes('\ufffd')) return undefined;
    bytesOf.set(character, bytes);
    value += character;
  }
  return { value, decode, encode: (characters) => Array.from(characters, (character) => bytesOf.get(character) ?? (character < '\x80' ? character : '?')).join('') };
}

const multiByteDecoders = {
  gb18030: decoderOf(new TextDecoder('gb18030')),
  gbk: decoderOf(new TextDecoder('gbk')),
};

function decoderOf(decoder: TextDecoder): (latin1: string) => string {
  return (latin1) => decoder.decode(Buffer.from(latin1, 'latin1'));
}

/**
 * Splitting a GB18030 or GBK name or ID on "^", "\\", "=" or "_" must not split a character whose
 * second byte is one of them (繼 is C0 5E): each multi-byte character stands as one private-use
 * character while the text is split, and is put back after.
 */
interface SplitGuard {
  protect(text: string): string;
  restore(text: string): string;
}

const NO_GUARD: SplitGuard = { protect: (text) => text, restore: (text) => text };
const PRIVATE_USE = 0xe000;
const PRIVATE_USE_COUNT = 0x1900;

function splitGuard(folding: TextFolding): SplitGuard {
  if (!folding.startsWith('multi-byte:')) return NO_GUARD;
  const table: string[] = [];
  const marks = new Map<string, string>();
  const mark = (bytes: string) => {
    if (bytes.length === 1) return bytes;
    let found = marks.get(bytes);
    if (found === undefined) {
      if (table.length >= PRIVATE_USE_COUNT) return bytes;
      found = String.fromCharCode(PRIVATE_USE + table.length);
      table.push(bytes);
      marks.set(bytes, found);
    }
    return found;
  };
  return {
    protect: (text) => gbCharacters(text).map(mark).join(''),
    restore: (text) => text.replace(/[\ue000-\uf8ff]/g, (found) => table[found.charCodeAt(0) - PRIVATE_USE] ?? found),
  };
}

/** The character sets whose bytes are ASCII or Latin-1 letters (the default repertoire as devices fill it). */
const LATIN1_SETS: ReadonlySet<string> = new Set(['', 'ISO_IR 6', 'ISO 2022 IR 6', 'ISO_IR 100', 'ISO 2022 IR 100']);

/**
 * The name's parts and the IDs worth looking for in free text. A part of three characters or more
 * counts; a name component of two (the family names Li, Ng, Wu, Xu, Ho, Le) counts when it is the
 * whole family, given or middle name, not one word of several ("DE LA CRUZ": particles that would
 * mask every "la" and "de"); a hyphenated or apostrophed word by its parts of three or more and run
 * together too. An ID is split only where a name's parts are (spaces, ^ and =): "12-345" is looked for
 * whole, and without its separators ("12345"). Longest first, so that a longer identifier is masked
 * whole.
 */
export function identifiersToScrub(personNames: readonly string[], ids: readonly string[], folding: TextFolding = 'latin1'): readonly string[] {
  // The instances of a series come one after the other with the same patient: the same answer.
  const key = `${folding}|${lengthPrefixed(personNames)}|${lengthPrefixed(ids)}`;
  if (key !== lastScrubbed.key) lastScrubbed = { key, identifiers: Object.freeze(newIdentifiersToScrub(personNames, ids, splitGuard(folding))) };
  return lastScrubbed.identifiers;
}

let lastScrubbed: { key: string; identifiers: readonly string[] } = { key: '', identifiers: [] };

/** The values as one key that no other list gives. */
function lengthPrefixed(values: readonly string[]): string {
  let key = '';
  for (const value of values) key += `${value.length}:${value}`;
  return key;
}

function newIdentifiersToScrub(personNames: readonly string[], ids: readonly string[], guard: SplitGuard): string[] {
  const trim = (part: string) => part.replace(/^[,.;:]+|[,.;:]+$/g, '').trim();
  const parts: string[] = [];
  for (const name of personNames) {
    if (name.includes(ESC)) {
      parts.push(...iso2022NameWords(name));
      continue;
    }
    // Several values (Other Patient Names) are several names; an ISO 2022 name's "\\" was read above.
    for (const group of guard.protect(name).split('\\').flatMap((value) => value.split('='))) {
      group.split('^').forEach((component, index) => {
        // Back to bytes: lengths count bytes, and "-" and "'" are never part of a GB character.
        const words = component.split(/\s+/).map(trim).filter((word) => word !== '').map(guard.restore);
        for (const word of words) {
          if (word.length >= 3 || (word.length === 2 && words.length === 1 && index <= 2)) parts.push(word);
          // A double-barrelled or apostrophed name is written by its parts too, or run together:
          // "Garcia" and "Lopez" of GARCIA-LOPEZ, "OBrien" of O'BRIEN.
          const pieces = word.split(/[-']+/).filter((piece) => piece !== '');
          if (pieces.length < 2) continue;
          for (const piece of pieces) if (piece.length >= 3) parts.push(piece);
          if (pieces.join('').length >= 3) parts.push(pieces.join(''));
        }
      });
    }
  }
  for (const id of ids) {
    const pieces = guard.protect(id).split(/[\^=\s]+/).map(trim).filter((part) => guard.restore(part).length >= 3);
    parts.push(...pieces.map(guard.restore));
    // "AB-12345" is written "AB12345" too (its parts alone are not looked for: "12" is anything),
    // when that is still an ID: five characters or more, or a letter among them ("12-3" is no "123").
    for (const piece of pieces) {
      const bare = guard.restore(piece.replace(/[-./_]+/g, ''));
      if (bare !== guard.restore(piece) && (bare.length >= 5 || (bare.length >= 3 && /[A-Za-z]/.test(bare)))) parts.push(bare);
    }
  }
  return [...new Set(parts)].sort((a, b) => b.length - a.length);
}

/** Whether free text quotes one of the identifiers. `multiValued`: a VR whose values "\\" separates
 * (every text VR but LT, ST and UT), where ISO 2022 text returns to its initial sets at each "\\". */
export function quotesIdentifier(text: string, identifiers: readonly string[], folding: TextFolding = 'latin1', multiValued = false): boolean {
  const byCharacters = identifiers.filter((identifier) => readByCharacters(text, identifier, folding));
  const tokens = byCharacters.length > 0 ? iso2022Tokens(text, false, multiValued, folding === 'euc') : [];
  if (byCharacters.some((identifier) => iso2022Matches(tokens, iso2022Characters(identifier, folding === 'euc')).length > 0)) return true;
  const decoded = comparable(text, folding);
  return identifiers.some((identifier) => !readByCharacters(text, identifier, folding) && patternIn(decoded, identifier, folding).test(decoded?.value ?? text));
}

/** Removes quoted identifiers and date-like strings from free text; the result is again a Latin-1
 * string of the bytes to store. */
/** `cleaning`: the text is cleaned (C), and dates that read as versions too are masked (YEAR_FIRST_LOOSE);
 * false for the findings scan's question whether kept text holds a date. */
export function scrubText(text: string, identifiers: readonly string[], folding: TextFolding = 'latin1', multiValued = false, cleaning = true): string {
  let masked = text;
  for (const identifier of identifiers) if (readByCharacters(text, identifier, folding)) masked = maskIso2022(masked, iso2022Characters(identifier, folding === 'euc'), multiValued, folding === 'euc');
  const decoded = comparable(masked, folding);
  let out = decoded?.value ?? masked;
  for (const identifier of identifiers.filter((one) => !readByCharacters(text, one, folding))) out = out.replace(patternIn(decoded, identifier, folding), 'XXXXXX');
  // In ISO 2022 text dates are ASCII digits between escapes, never the bytes of a two-byte character.
  out = !decoded && out.includes(ESC) ? mapSingleByteRuns(out, (run) => maskDates(run, cleaning), multiValued) : maskDates(out, cleaning);
  return decoded ? decoded.encode(out) : out;
}

/**
 * UIDs quoted in free text ("derived from 1.2.826.0.1.3680043.2.1125.1.5"), each given `replace`'s
 * UID: left as they came they link the output to the original objects (PS3.15 E.3.9), replaced by the
 * keyed UIDs they still name what they named. A UID here is one as registration authorities give them
 * (PS3.5 9.1: first arc 0, 1 or 2) of five components or more, 64 characters at most: a version
 * ("1.2.3.4") or a number is left alone, and so are the standard's own UIDs (1.2.840.10008...).
 */
export function replaceUidsInText(text: string, replace: (uid: string) => string, multiValued = false): string {
  const inRun = (run: string) => run.replace(UID_IN_TEXT, (uid) => (uid.length > 64 || uid.startsWith('1.2.840.10008.') ? uid : replace(uid)));
  // In ISO 2022 text a UID is ASCII between escapes; digits and dots in two-byte sets are characters.
  return text.includes(ESC) ? mapSingleByteRuns(text, inRun, multiValued) : inRun(text);
}

/** Not inside a longer number or dotted run; a sentence's full stop after it is no component. */
const UID_IN_TEXT = /(?<![\d.])[0-2](?:\.(?:0|[1-9]\d*)){4,}(?!\.?\d)/g;

/**
 * Dates in free text: YYYYMMDD (with or without separators, and with a DT's time of day after it),
 * DD.MM.YYYY and MM/DD/YYYY and the like, and dates with a month's English name ("12 Jan 1960", "Jan 12, 1960").
 * Bounded by what is not a digit (or, for names, a letter): "DOB19600112" and "Scout_20200315" are
 * dates too. Two-digit years are left alone: "12/01/60" reads as many things.
 */
function maskDates(text: string, cleaning: boolean): string {
  const masked = DATE_PATTERNS.reduce((out, pattern) => out.replace(pattern, 'XXXXXXXX'), text);
  return cleaning ? masked.replace(YEAR_FIRST_LOOSE, 'XXXXXXXX') : masked;
}

/** A date as Japan, China and Korea write it (in Unicode text). */
const CJK_DATE = /(19|20)\d{2}\s*[年년]\s*(0?[1-9]|1[0-2])\s*[月월](\s*(0?[1-9]|[12]\d|3[01])\s*[日일])?/g;

/** Whether decoded text holds a date as Japan, China and Korea write it: for text whose two-byte sets
 * the patterns cannot read as it is stored (ISO 2022, EUC), decoded by the caller. */
export function holdsCjkDate(decoded: string): boolean {
  CJK_DATE.lastIndex = 0;
  return CJK_DATE.test(decoded);
}

/** A month's English name or its three-letter abbreviation; and in German, French, Spanish, Italian
 * and Dutch, the languages of the sites that send Latin-1 text ("15. Januar 2023" was kept: found in
 * the dates review). */
const MONTH_NAME =
  '(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sep(t(ember)?)?|oct(ober)?|nov(ember)?|dec(ember)?' +
  '|januar|februar|märz|maerz|mai|juni|juli|oktober|dezember' +
  '|janvier|février|fevrier|mars|avril|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre' +
  '|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre' +
  '|gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre' +
  '|januari|februari|maart|mei|augustus)';
const DAY = '(0?[1-9]|[12]\\d|3[01])(st|nd|rd|th|er|e)?';
/**
 * Year first with dots or spaces and one-digit parts ("born 1960.1.12", "2023 01 15"): masked where text
 * is cleaned, not looked for by the findings scan in text kept as it is, where "VX 2019.1.1" and
 * "RadiAnt 2020.2.3" in SoftwareVersions are versions, and every instance of such a device waited for an
 * operator (found in the reviews of these patterns: leaving them out of cleaning leaked the dates).
 */
const YEAR_FIRST_LOOSE = /(?<![\d.])(19|20)\d{2}([. ])(0?[1-9]|1[0-2])\2(0?[1-9]|[12]\d|3[01])(?!\.?\d)/g;

/** Made once: maskDates runs for every text value an instance keeps (global patterns: replace()
 * starts each from the beginning). */
const DATE_PATTERNS: readonly RegExp[] = [
  // Not after a dot: a UID's component ("...543.20200315103000.1") is no date.
  /(?<![\d.])(19|20)\d{2}[-./]?(0[1-9]|1[0-2])[-./]?(0[1-9]|[12]\d|3[01])(?:([01]\d|2[0-3])(?:[0-5]\d){0,2}(?:\.\d{1,6})?)?(?!\d)/g,
  /(?<!\d)(0?[1-9]|[12]\d|3[01])[-./](0?[1-9]|1[0-2])[-./](19|20)\d{2}(?!\d)/g,
  // Month first, as the US writes it: "11/23/1967" was kept, cleaned or not (found in the PHI review).
  /(?<!\d)(0?[1-9]|1[0-2])[-./](0?[1-9]|[12]\d|3[01])[-./](19|20)\d{2}(?!\d)/g,
  // Year first, month and day of one or two digits, one separator: "2023/1/15", "2023-1-5." (a full
  // stop after it ends a sentence).
  /(?<![\d.])(19|20)\d{2}([-/])(0?[1-9]|1[0-2])\2(0?[1-9]|[12]\d|3[01])(?!\.?\d)/g,
  // As Japan, China and Korea write them: "2023年1月15日", "2023년 1월 15일", the day left out too.
  CJK_DATE,
  new RegExp(`(?<![\\p{L}\\d])${DAY}[ .-]*(of\\s+|de\\s+)?${MONTH_NAME}[ .,-]*(de\\s+)?(19|20)\\d{2}(?!\\d)`, 'giu'),
  new RegExp(`(?<![\\p{L}\\d])${MONTH_NAME}[ .-]*${DAY}[ .,-]*(19|20)\\d{2}(?!\\d)`, 'giu'),
];

/**
 * Whether an identifier is looked for character by character (below): an ISO 2022 name, or any
 * identifier in text with escapes whose sets are not Latin-1, where an escape (ESC ( B ends in a
 * letter) must not bound a name and a kanji's bytes must not read as ASCII letters or digits; and
 * in EUC text, an identifier with two-byte characters, which as bytes matched across two (C8 AB in
 * B0C8 ABA1).
 */
function readByCharacters(text: string, identifier: string, folding: TextFolding): boolean {
  if (identifier.includes(ESC)) return true;
  if (folding === 'euc') return text.includes(ESC) || /[\x80-\xff]/.test(identifier);
  return folding === 'ascii' && text.includes(ESC);
}

/** The text as compared, decoded, when it is UTF-8 or a single-byte set other than Latin-1 that
 * decodes cleanly; undefined: compared as its bytes are. */
function comparable(text: string, folding: TextFolding): Decoded | undefined {
  if (folding === 'multi-byte:gb18030' || folding === 'multi-byte:gbk') return multiByteDecoded(text, folding === 'multi-byte:gbk' ? 'gbk' : 'gb18030');
  const codec = folding === 'unicode' ? UTF8 : folding.startsWith('single-byte:') ? singleByteCodec(folding.slice('single-byte:'.length)) : undefined;
  if (!codec) return undefined;
  const value = codec.decode(text);
  return value.includes('\ufffd') ? undefined : { value, ...codec };
}

/** The pattern of an identifier in a text compared as `decoded` gives it (or as its bytes). */
function patternIn(decoded: Decoded | undefined, identifier: string, folding: TextFolding): RegExp {
  return decoded ? identifierPattern(decoded.decode(identifier), folding, true) : identifierPattern(identifier, folding, false);
}

/**
 * A letter of a script that bounds words: Han, kana and Hangul are left out, and so are Thai, Lao,
 * Khmer and Myanmar, Hebrew and Arabic. Chinese, Japanese and the Southeast Asian scripts write words
 * together ("山田太郎の画像", "ผลตรวจของสมชาย"), Korean joins particles to names ("홍길동님"), Hebrew
 * and Arabic prefix them with one letter ("לכהן", "ومحمد"): a name in them is found wherever its
 * characters are (found in a review: decoded, Hebrew, Arabic and Thai names in ISO_IR 138, 127 and
 * 166 text were no longer found, which their bytes had been).
 */
const SPACED_LETTER = '(?:(?![\\p{Script=Han}\\p{Script=Hiragana}\\p{Script=Katakana}\\p{Script=Hangul}\\p{Script=Thai}\\p{Script=Lao}\\p{Script=Khmer}\\p{Script=Myanmar}\\p{Script=Hebrew}\\p{Script=Arabic}])\\p{L})';

const LATIN1_LETTER = 'A-Za-z\\u00aa\\u00b5\\u00ba\\u00c0-\\u00d6\\u00d8-\\u00f6\\u00f8-\\u00ff';

/**
 * An identifier where it stands on its own: a run of letters or of digits is not cut, so "ANN" is
 * found in "Ann Lee" but not in "annular", and "12345" in "MRN12345" but not in "123456".
 */
function identifierPattern(identifier: string, folding: TextFolding, unicode: boolean): RegExp {
  const key = `${folding}${unicode ? 'u' : ''}:${identifier}`;
  let pattern = patterns.get(key);
  if (pattern === undefined) {
    pattern = newIdentifierPattern(identifier, folding, unicode);
    // A name or ID is short; a long one (a malformed value) is not kept in a worker's small heap.
    if (identifier.length <= MAX_REMEMBERED_IDENTIFIER) {
      if (patterns.size >= MAX_PATTERNS) patterns.clear();
      patterns.set(key, pattern);
    }
  }
  // Global: test() leaves lastIndex after a match, where the next test() would start.
  pattern.lastIndex = 0;
  return pattern;
}

/**
 * Patterns made lately: every text element of an instance is compared with the same patient's
 * identifiers, and so are the instances after it. Made anew each time, patterns and identifier lists
 * (below) took 187 of 4,071 ms of a one-thread export of 10,000 small files (CPU profile), 22 ms
 * remembered. Cleared when full.
 */
const patterns = new Map<string, RegExp>();
const MAX_PATTERNS = 1024;
const MAX_REMEMBERED_IDENTIFIER = 128;

function newIdentifierPattern(identifier: string, folding: TextFolding, unicode: boolean): RegExp {
  const escaped = unicode || folding === 'latin1' ? withoutAccents(identifier, unicode ? 0xffff : 0xff) : escapedText(identifier);
  const letters = unicode ? SPACED_LETTER : folding === 'latin1' ? `[${LATIN1_LETTER}]` : '[A-Za-z]';
  const digits = unicode ? '\\p{Nd}' : '[0-9]';
  const isLetter = new RegExp(`^${letters}$`, unicode ? 'u' : '');
  const isDigit = new RegExp(`^${digits}$`, unicode ? 'u' : '');
  const run = (char: string | undefined) => (char === undefined ? undefined : isDigit.test(char) ? digits : isLetter.test(char) ? letters : undefined);
  const characters = [...identifier];
  const before = run(characters[0]);
  const after = run(characters[characters.length - 1]);
  const pattern = `${before ? `(?<!${before})` : ''}${escaped}${after ? `(?!${after})` : ''}`;
  if (unicode) return new RegExp(pattern, 'giu');
  const folds = folding === 'latin1' || /^[\x20-\x7e]*$/.test(identifier);
  return new RegExp(pattern, folds ? 'gi' : 'g');
}

function escapedText(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The identifier as a pattern whose letters match with or without their accents: Greek capitals are
 * written without their tonos ("ΠΑΠΑΔΗΜΗΤΡΙΟΥ" for Παπαδημητρίου), and a keyboard without "ü" writes
 * "Muller" (found in the pseudonymisation review). Each letter with variants becomes the class of the
 * letters up to `highest` that are it with or without marks; case is the pattern's flag's.
 */
function withoutAccents(identifier: string, highest: number): string {
  let pattern = '';
  for (const character of identifier) {
    const variants = ACCENT_VARIANTS.get(baseLetter(character))?.filter((variant) => variant.charCodeAt(0) <= highest);
    pattern += variants && variants.length > 1 ? `[${variants.join('')}]` : escapedText(character);
  }
  return pattern;
}

/** A letter without its marks, in lower case ("Ü" gives "u", "ί" gives "ι"). */
function baseLetter(character: string): string {
  return character.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

/** The letters of Latin (with its extensions), Greek and Cyrillic by their base letter. */
const ACCENT_VARIANTS: ReadonlyMap<string, string[]> = (() => {
  const byBase = new Map<string, string[]>();
  for (const [first, last] of [[0x41, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff]] as const) {
    for (let code = first; code <= last; code += 1) {
      const character = String.fromCharCode(code);
      if (!/\p{L}/u.test(character)) continue;
      const base = baseLetter(character);
      if (base.length !== 1) continue;
      const variants = byBase.get(base);
      if (variants) variants.push(character);
      else byBase.set(base, [character]);
    }
  }
  return byBase;
})();

/*
 * ISO 2022 text (PS3.5 6.1.2.5): escape sequences designate the sets of the characters that follow, in
 * G0 (bytes 21-7E) or G1 (bytes A1-FE), some of them two bytes a character (JIS X 0208 and 0212 in G0,
 * KS X 1001 and GB 2312 in G1). A name and the free text that quotes it escape differently (a person
 * name escapes per component, PS3.5 6.1.2.5.3; text once per run), and a two-byte character may hold
 * the bytes of "^", "=" or "\\" (春 is 3D 55): names are compared character by character, with the
 * escapes read, not as bytes.
 */
const ESC = '\x1b';

interface Iso2022Character {
  kind: 'character';
  /** The character's bytes (Latin-1 string). */
  bytes: string;
  twoByte: boolean;
  /** In G0 (bytes 21-7E and controls) rather than G1. */
  inG0: boolean;
  /** The escape sequence that designated G0 here ('' for the initial set). */
  g0: string;
}

type Iso2022Token = Iso2022Character | { kind: 'escape'; bytes: string; g0?: string; twoByteG0?: boolean };

/** CR, LF, FF and TAB return the sets to their initial state (PS3.5 6.1.2.5.3). */
const RESETTING_CONTROLS = new Set(['\r', '\n', '\f', '\t']);

/**
 * The escapes and characters of ISO 2022 text. `personName`: "^" and "=" are delimiters in a
 * single-byte G0, after which the sets are initial again (PS3.5 6.1.2.5.3); `multiValued` (a PN, and
 * every text VR but LT, ST and UT): so is "\\" between values, as charset.ts decodes it.
 * The initial sets are single-byte: PS3.3 C.12.1.1.2 allows multi-byte sets only as code extensions;
 * `euc`: but text written without escapes holds a two-byte G1 set from its start (TextFolding 'euc').
 */
function iso2022Tokens(text: string, personName = false, multiValued = personName, euc = false): Iso2022Token[] {
  const tokens: Iso2022Token[] = [];
  let g0 = '';
  let twoByteG0 = false;
  let twoByteG1 = euc;
  let index = 0;
  while (index < text.length) {
    const char = text[index] as string;
    if (char === ESC) {
      const escape = /^\x1b([\x20-\x2f]+)[\x30-\x7e]/.exec(text.slice(index, index + 5));
      if (escape) {
        const intermediates = escape[1] as string;
        const designatesG0 = intermediates === '(' || intermediates === '$' || intermediates === '$(';
        if (designatesG0) {
          g0 = escape[0];
          twoByteG0 = intermediates.startsWith('$');
        } else if (/^\$?[)-]$/.test(intermediates)) {
          twoByteG1 = intermediates.startsWith('$');
        }
        tokens.push({ kind: 'escape', bytes: escape[0], ...(designatesG0 ? { g0, twoByteG0 } : {}) });
        index += escape[0].length;
        continue;
      }
    }
    const code = char.charCodeAt(0);
    const inG0 = code < 0x80;
    const twoByte = inG0 ? twoByteG0 && code >= 0x21 && code <= 0x7e : twoByteG1 && code >= 0xa1;
    const bytes = text.slice(index, twoByte ? index + 2 : index + 1);
    tokens.push({ kind: 'character', bytes, twoByte, inG0, g0 });
    index += bytes.length;
    // Control characters reset in any set (they are never half a character, as in charset.ts).
    const delimiter = RESETTING_CONTROLS.has(char) || (!twoByteG0 && ((personName && (char === '^' || char === '=')) || (multiValued && char === '\\')));
    if (delimiter) {
      g0 = '';
      twoByteG0 = false;
      twoByteG1 = euc;
    }
  }
  return tokens;
}

function iso2022Characters(text: string, euc = false): Iso2022Character[] {
  return iso2022Tokens(text, false, false, euc).filter((token): token is Iso2022Character => token.kind === 'character');
}

/** Whether a character is an ASCII letter or digit (single-byte, in G0), for the edges of a name. */
function runOf(character: Iso2022Character | undefined): 'letter' | 'digit' | undefined {
  if (!character || character.twoByte || !character.inG0) return undefined;
  return /^[A-Za-z]$/.test(character.bytes) ? 'letter' : /^[0-9]$/.test(character.bytes) ? 'digit' : undefined;
}

/** `text` with each run of single-byte G0 characters (between escapes and two-byte characters) mapped. */
function mapSingleByteRuns(text: string, map: (run: string) => string, multiValued: boolean): string {
  let out = '';
  let run = '';
  for (const token of iso2022Tokens(text, false, multiValued)) {
    if (token.kind === 'character' && token.inG0 && !token.twoByte) {
      run += token.bytes;
      continue;
    }
    out += map(run) + token.bytes;
    run = '';
  }
  return out + map(run);
}

function sameCharacter(a: Iso2022Character, b: Iso2022Character): boolean {
  if (a.twoByte !== b.twoByte || a.inG0 !== b.inG0) return false;
  return a.twoByte || !/^[A-Za-z]$/.test(a.bytes) ? a.bytes === b.bytes : a.bytes.toUpperCase() === b.bytes.toUpperCase();
}

/** Where `identifier` stands in the tokens (start and end token indexes, not overlapping). Ideographic
 * text has no spaces between words: a name is found wherever its characters are. */
function iso2022Matches(tokens: readonly Iso2022Token[], identifier: readonly Iso2022Character[]): Array<[number, number]> {
  const matches: Array<[number, number]> = [];
  if (identifier.length === 0) return matches;
  const positions = tokens.flatMap((token, index) => (token.kind === 'character' ? [index] : []));
  const character = (at: number) => (at < 0 || at >= positions.length ? undefined : (tokens[positions[at] as number] as Iso2022Character));
  const before = runOf(identifier[0]);
  const after = runOf(identifier[identifier.length - 1]);
  for (let at = 0; at + identifier.length <= positions.length; at += 1) {
    const matched = identifier.every((wanted, offset) => sameCharacter(character(at + offset) as Iso2022Character, wanted));
    // A run of ASCII letters or digits is not cut (as identifierPattern does), escapes between or not.
    if (!matched || (before && runOf(character(at - 1)) === before) || (after && runOf(character(at + identifier.length)) === after)) continue;
    matches.push([positions[at] as number, positions[at + identifier.length - 1] as number]);
    at += identifier.length - 1;
  }
  return matches;
}

/**
 * `text` with each occurrence of `identifier` masked by XXXXXX in the single-byte set: before the mask,
 * an escape back to it where the text was in a two-byte G0; after it, the two-byte set designated again
 * before the next character that needs it. The result is again valid ISO 2022.
 */
function maskIso2022(text: string, identifier: readonly Iso2022Character[], multiValued: boolean, euc: boolean): string {
  const tokens = iso2022Tokens(text, false, multiValued, euc);
  const matches = iso2022Matches(tokens, identifier);
  if (matches.length === 0) return text;
  let out = '';
  let outG0 = '';
  let outTwoByteG0 = false;
  let singleByteG0 = '\x1b(B';
  let next = 0;
  tokens.forEach((token, index) => {
    const match = matches[next];
    if (match && index >= match[0] && index <= match[1]) {
      if (index === match[0]) {
        if (outTwoByteG0) out += singleByteG0;
        outG0 = singleByteG0;
        outTwoByteG0 = false;
        out += 'XXXXXX';
      }
      if (index === match[1]) next += 1;
      return;
    }
    if (token.kind === 'escape') {
      out += token.bytes;
      if (token.g0 !== undefined) {
        outG0 = token.g0;
        outTwoByteG0 = token.twoByteG0 === true;
        if (!outTwoByteG0) singleByteG0 = token.g0;
      }
      return;
    }
    if (token.inG0 && token.twoByte && outG0 !== token.g0) {
      out += token.g0;
      outG0 = token.g0;
      outTwoByteG0 = true;
    }
    out += token.bytes;
    if ((RESETTING_CONTROLS.has(token.bytes) || (multiValued && token.bytes === '\\' && token.inG0)) && !token.twoByte) {
      outG0 = '';
      outTwoByteG0 = false;
    }
  });
  return out;
}

/**
 * ISO 2022 text cut to at most `max` characters a value (PS3.5 Table 6.2-1 counts characters; escapes
 * are none, a kanji is one of two bytes), never inside a character: the escapes all stay, so each set
 * designated is designated as in the original, and the value ends in the state it ended in. Values
 * are separated by the single-byte characters of `separators` ("\\", and "=" between a name's groups).
 */
export function fitIso2022(text: string, max: number, separators: string, euc = false): string {
  let out = '';
  let count = 0;
  // A name's "^" and "=", and "\\" between values, return the sets to their initial state (PS3.5 6.1.2.5.3).
  for (const token of iso2022Tokens(text, separators.includes('='), separators.includes('\\'), euc)) {
    if (token.kind === 'escape') {
      out += token.bytes;
      continue;
    }
    if (!token.twoByte && token.inG0 && separators.includes(token.bytes)) {
      out += token.bytes;
      count = 0;
      continue;
    }
    if (count < max) out += token.bytes;
    count += 1;
  }
  return out;
}

/**
 * The words of an ISO 2022 person name worth looking for, each with the escapes that designate its
 * characters' sets, so that it reads alone as it read in the name. A word of two-byte characters
 * counts from two characters, or as the whole family, given or middle name (a one-kanji given name).
 */
function iso2022NameWords(name: string): string[] {
  const tokens = iso2022Tokens(name, true);
  const words: string[] = [];
  let component = 0;
  let componentWords: Array<{ text: string; characters: Iso2022Character[] }> = [];
  let word: Iso2022Character[] = [];
  let wordText = '';
  let designation = '';
  const endWord = () => {
    if (word.length > 0) componentWords.push({ text: wordText, characters: word });
    word = [];
    wordText = '';
  };
  const endComponent = () => {
    endWord();
    for (const { text, characters } of componentWords) {
      const length = characters.length;
      const twoByte = characters.some((character) => character.twoByte);
      const whole = componentWords.length === 1 && component <= 2;
      if (twoByte ? length >= 2 || whole : length >= 3 || (length === 2 && whole)) words.push(text);
    }
    componentWords = [];
  };
  let g1 = '';
  for (const token of tokens) {
    if (token.kind === 'escape') {
      if (token.g0 !== undefined) designation = token.g0;
      else g1 = token.bytes;
      if (word.length > 0) wordText += token.bytes;
      continue;
    }
    const delimiter = !token.twoByte && token.inG0 && (token.bytes === '^' || token.bytes === '=' || token.bytes === '\\');
    if (delimiter) {
      endComponent();
      component = token.bytes === '^' ? component + 1 : 0;
      designation = '';
      g1 = '';
      continue;
    }
    if (!token.twoByte && /^\s$/.test(token.bytes)) {
      endWord();
      continue;
    }
    if (word.length === 0) wordText = `${token.inG0 && token.twoByte ? designation : ''}${!token.inG0 ? g1 : ''}`;
    word.push(token);
    wordText += token.bytes;
  }
  endComponent();
  return words.map((text) => text.replace(/^[,.;:]+|[,.;:]+$/g, ''));
}
