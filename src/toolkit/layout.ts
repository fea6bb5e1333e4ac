/**
 * An export's layout: a path template whose {Keyword}s are filled from the de-identified copy, so
 * every name in it is a pseudonym or a de-identified UID, never an original value.
 */
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
}

/** A layout filled in: each value made safe as one path segment (no separators, no leading dots, no
 * control characters), an empty one written as "_". */
export function layoutPath(layout: string, values: LayoutValues): string {
  return layout.replace(/\{([^}]*)\}/g, (_, keyword: string) => {
    const raw = String(values[keyword as LayoutKeyword] ?? '').trim();
    const safe = raw.replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_').replace(/^\.+/, '_');
    return safe === '' ? '_' : safe.slice(0, 128);
  });
}
