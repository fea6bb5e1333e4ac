/**
 * The patient's identifiers in free text: which name parts and IDs are looked for, and how text is
 * compared with them (PS3.15 E.3.5 leaves free text to the implementer). The engine scrubs text it
 * cleans and reports text it keeps that still quotes one (src/deid/engine.ts).
 *
 * Values arrive as Latin-1 strings of their stored bytes. Letters fold case as the dataset's
 * character set spells them: ASCII always; Latin-1 letters (MÜLLER and Müller) when the set is
 * ISO_IR 100 or the default repertoire, which devices fill with Latin-1 in practice; any letter for
 * UTF-8 (ISO_IR 192), whose text is decoded first, since an accented letter is two bytes there and
 * its upper and lower cases differ in the second. Other sets (multi-byte, or letters elsewhere than
 * Latin-1 puts them) fold ASCII only: folding their bytes as Latin-1 would match other characters.
 */
import { parseSpecificCharacterSet } from '../dicom/charset.js';

export type TextFolding = 'ascii' | 'latin1' | 'unicode';

/** How free text of a dataset whose Specific Character Set (0008,0005) is `value` is compared. */
export function textFolding(value: string | undefined): TextFolding {
  const sets = parseSpecificCharacterSet(value?.trim() === '' ? undefined : value);
  if (sets[0] === 'ISO_IR 192') return 'unicode';
  // Every set, code extensions included ("\ISO 2022 IR 149" puts Korean in the upper half).
  if (sets.every((set) => LATIN1_SETS.has(set))) return 'latin1';
  return 'ascii';
}

/** The character sets whose bytes are ASCII or Latin-1 letters (the default repertoire as devices fill it). */
const LATIN1_SETS: ReadonlySet<string> = new Set(['', 'ISO_IR 6', 'ISO 2022 IR 6', 'ISO_IR 100', 'ISO 2022 IR 100']);

/**
 * The name's parts and the IDs worth looking for in free text. A part of three characters or more
 * counts; a name component of two (the family names Li, Ng, Wu, Xu, Ho, Le) counts when it is the
 * whole family, given or middle name, not one word of several ("DE LA CRUZ": particles that would
 * mask every "la" and "de"). An ID is split only where a name's parts are (spaces, ^ and =):
 * "12-345" is looked for whole. Longest first, so that a longer identifier is masked whole.
 */
export function identifiersToScrub(personNames: readonly string[], ids: readonly string[]): string[] {
  const trim = (part: string) => part.replace(/^[,.;:]+|[,.;:]+$/g, '').trim();
  const parts: string[] = [];
  for (const name of personNames) {
    for (const group of name.split('=')) {
      group.split('^').forEach((component, index) => {
        const words = component.split(/\s+/).map(trim).filter((word) => word !== '');
        for (const word of words) if (word.length >= 3 || (word.length === 2 && words.length === 1 && index <= 2)) parts.push(word);
      });
    }
  }
  for (const id of ids) parts.push(...id.split(/[\^=\s]+/).map(trim).filter((part) => part.length >= 3));
  return [...new Set(parts)].sort((a, b) => b.length - a.length);
}

/** Whether free text quotes one of the identifiers. */
export function quotesIdentifier(text: string, identifiers: readonly string[], folding: TextFolding = 'latin1'): boolean {
  const { value, unicode } = comparable(text, folding);
  return identifiers.some((identifier) => identifierPattern(unicode ? decodedUtf8(identifier) : identifier, folding, unicode).test(value));
}

/** Removes quoted identifiers and date-like strings from free text; the result is again a Latin-1
 * string of the bytes to store. */
export function scrubText(text: string, identifiers: readonly string[], folding: TextFolding = 'latin1'): string {
  const { value, unicode } = comparable(text, folding);
  let out = value;
  for (const identifier of identifiers) out = out.replace(identifierPattern(unicode ? decodedUtf8(identifier) : identifier, folding, unicode), 'XXXXXX');
  out = out
    .replace(/\b(19|20)\d{2}[-./]?(0[1-9]|1[0-2])[-./]?(0[1-9]|[12]\d|3[01])\b/g, 'XXXXXXXX')
    .replace(/\b(0?[1-9]|[12]\d|3[01])[-./](0?[1-9]|1[0-2])[-./](19|20)\d{2}\b/g, 'XXXXXXXX');
  return unicode ? Buffer.from(out, 'utf8').toString('latin1') : out;
}

/** The text as compared: decoded when it is UTF-8 that decodes cleanly, else its bytes as they are. */
function comparable(text: string, folding: TextFolding): { value: string; unicode: boolean } {
  if (folding !== 'unicode') return { value: text, unicode: false };
  const decoded = decodedUtf8(text);
  return decoded.includes('\ufffd') ? { value: text, unicode: false } : { value: decoded, unicode: true };
}

function decodedUtf8(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

const LATIN1_LETTER = 'A-Za-z\\u00aa\\u00b5\\u00ba\\u00c0-\\u00d6\\u00d8-\\u00f6\\u00f8-\\u00ff';

/**
 * An identifier where it stands on its own: a run of letters or of digits is not cut, so "ANN" is
 * found in "Ann Lee" but not in "annular", and "12345" in "MRN12345" but not in "123456".
 */
function identifierPattern(identifier: string, folding: TextFolding, unicode: boolean): RegExp {
  const escaped = identifier.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const letters = unicode ? '\\p{L}' : folding === 'latin1' ? `[${LATIN1_LETTER}]` : '[A-Za-z]';
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
