/**
 * An export's layout: a path template whose {Keyword}s are filled from the de-identified copy, so
 * every name in it is a pseudonym or a de-identified UID, never an original value.
 */
import { createHash } from 'node:crypto';
import { tagOfKeyword } from '../dicom/dictionary.js';

export const DEFAULT_LAYOUT = '{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm';
export const LAYOUT_KEYWORDS = ['PatientID', 'PatientName', 'StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID', 'Modality', 'StudyDate', 'SeriesNumber', 'InstanceNumber', 'StudyID', 'AccessionNumber'] as const;
export type LayoutKeyword = (typeof LAYOUT_KEYWORDS)[number];
export type LayoutValues = Partial<Record<LayoutKeyword, string | number | null>>;
/** Each layout keyword's tag. */
export const LAYOUT_TAGS: ReadonlyMap<LayoutKeyword, number> = new Map(LAYOUT_KEYWORDS.map((keyword) => [keyword, tagOfKeyword(keyword) as number]));

/** What a layout names must be a keyword it knows: said at once, not after an hour of export. */
export function checkLayout(layout: string): void {
  const unknown = [...layout.matchAll(/\{([^}]*)\}/g)].map((match) => match[1] as string).filter((keyword) => !(LAYOUT_KEYWORDS as readonly string[]).includes(keyword));
  if (unknown.length > 0) throw new Error(`--layout: unknown ${unknown.map((keyword) => `{${keyword}}`).join(', ')}; allowed: ${LAYOUT_KEYWORDS.map((keyword) => `{${keyword}}`).join(' ')}`);
  if (!layout.includes('{SOPInstanceUID}')) throw new Error('--layout: must contain {SOPInstanceUID}, or instances would overwrite each other');
  if (layout.startsWith('/') || layout.split('/').some((part) => part === '..' || part === '.')) throw new Error('--layout: must be a relative path without "." or ".." segments');
  // A trailing or doubled slash passed, and then every instance failed ENOENT (found in the export review).
  if (layout.split('/').some((part) => part === '')) throw new Error('--layout: must not end in "/" or hold "//": every segment names a folder, the last one the file');
  // The names of half-written files, which a run again deletes (export.ts): exported files so named
  // would be deleted at each resume.
  if (/\.(partial|frames)$/.test(layout)) throw new Error('--layout: file names must not end in .partial or .frames (an export run again deletes such files as half-written)');
}

/** A layout filled in: each value made safe as one path segment (no separators, no leading dots, no
 * control characters), an empty one written as "_", at most MAX_VALUE_BYTES; a segment still longer
 * than a file name may be (several values in one) is cut, with a digest of it to keep it distinct. */
export function layoutPath(layout: string, values: LayoutValues): string {
  const filled = layout.replace(/\{([^}]*)\}/g, (_, keyword: string) => safeValue(String(values[keyword as LayoutKeyword] ?? '').trim()));
  return filled.split('/').map(fitSegment).join('/');
}

/** A value as one safe path segment. A value changed to be safe (a character replaced, a prefix cut)
 * carries a digest of what it was: two UIDs kept by retainUIDs that differ only in a character
 * replaced, "1.2/3" and "1.2:3", would otherwise share one name, and one export overwrite the other. */
function safeValue(raw: string): string {
  if (raw === '') return '_';
  const safe = raw.replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_').replace(/^\.+/, '_');
  if (safe === raw && Buffer.byteLength(safe) <= MAX_VALUE_BYTES) return safe;
  return `${cutToBytes(safe, MAX_VALUE_BYTES - DIGEST_CHARACTERS - 1)}~${digestOf(raw)}`;
}

/** Hex characters of a digest that keeps a changed name distinct (64 bits). */
const DIGEST_CHARACTERS = 16;

function digestOf(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, DIGEST_CHARACTERS);
}

/** A value's share of a path segment, in UTF-8 bytes (a CJK character is three). */
const MAX_VALUE_BYTES = 128;
/** NAME_MAX of Linux file systems: a file or folder name in bytes. */
const MAX_SEGMENT_BYTES = 255;

function fitSegment(segment: string): string {
  if (Buffer.byteLength(segment) <= MAX_SEGMENT_BYTES) return segment;
  const extension = /\.[A-Za-z0-9]{1,8}$/.exec(segment)?.[0] ?? '';
  const digest = digestOf(segment);
  const stem = cutToBytes(segment.slice(0, segment.length - extension.length), MAX_SEGMENT_BYTES - extension.length - digest.length - 1);
  return `${stem}~${digest}${extension}`;
}

/** The longest prefix of `text` of at most `max` UTF-8 bytes, whole characters only. */
function cutToBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text; // nearly always: one call per value of every file
  let out = '';
  let bytes = 0;
  for (const character of text) {
    const size = Buffer.byteLength(character);
    if (bytes + size > max) break;
    out += character;
    bytes += size;
  }
  return out;
}
