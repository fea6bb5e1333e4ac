/**
 * Metadata in JPEG streams (ITU-T T.81 B.2.4.5-6, and JPEG-LS, ITU-T T.87, which uses the same marker
 * segments) that is not image: EXIF and other application segments (APPn: camera serial numbers, dates,
 * owners, places, thumbnails) and comments (COM). The Basic Profile cleans the dataset, not the
 * codestream inside Pixel Data, so an instance whose pixels leave as they are (no burned-in text, or
 * passed by a rule) carried them out. Here a frame's segments before its first scan are rewritten
 * without them; what decoding needs stays: tables, headers, restart interval, JFIF (without its
 * thumbnail), Adobe (colour transform) and JPEG-LS's colour transform (APP8 "mrfx").
 */
import { segmentsToCleanIn, withCleanHeader, type HeaderGrammar } from './marker-segments.js';

const SOI = 0xffd8;
const SOS = 0xffda;
const APP0 = 0xffe0;
const APP8 = 0xffe8;
const APP14 = 0xffee;
const COM = 0xfffe;

/** Transfer syntaxes whose frames are JPEG or JPEG-LS marker streams. */
export const JPEG_STREAM_SYNTAXES = new Set([
  '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.51',
  '1.2.840.10008.1.2.4.57',
  '1.2.840.10008.1.2.4.70',
  '1.2.840.10008.1.2.4.80',
  '1.2.840.10008.1.2.4.81',
]);

/**
 * What to do with one marker segment before the first scan: keep it, drop it, or keep it changed.
 * `bytes` is the whole segment, marker and length included.
 */
export function cleanedSegment(marker: number, bytes: Buffer): Buffer | 'keep' | 'drop' {
  const body = bytes.subarray(4);
  const signature = (text: string) => body.subarray(0, text.length).toString('latin1') === text;
  if (marker === COM) return 'drop';
  if (marker === APP0) {
    // JFIF says how to read the colours; its thumbnail (and a JFXX extension's) is a copy of the image.
    if (!signature('JFIF\0') || body.length < 14) return 'drop';
    if (body.length === 14 && body[12] === 0 && body[13] === 0) return 'keep';
    const withoutThumbnail = Buffer.from(bytes.subarray(0, 4 + 14));
    withoutThumbnail.writeUInt16BE(16, 2);
    withoutThumbnail[4 + 12] = 0;
    withoutThumbnail[4 + 13] = 0;
    return withoutThumbnail;
  }
  if (marker === APP14) return signature('Adobe') ? 'keep' : 'drop';
  if (marker === APP8) return signature('mrfx') ? 'keep' : 'drop';
  if (marker > APP0 && marker <= 0xffef) return 'drop';
  return 'keep';
}

export const JPEG_HEADER: HeaderGrammar = { start: SOI, end: SOS, fillBytes: true, clean: cleanedSegment };

/**
 * The frame without its metadata segments, or undefined when it has none, or is not a marker stream
 * this reader can walk to its first scan (it is then left as it was, as before).
 */
export function withoutJpegMetadata(frame: Buffer): Buffer | undefined {
  return withCleanHeader(frame, JPEG_HEADER);
}

/**
 * Whether the start of a frame (its first fragment, say) shows metadata segments: 'unknown' when the
 * bytes end before the first scan, so that only the whole frame can tell.
 */
export function jpegMetadataIn(start: Buffer): 'none' | 'present' | 'unknown' {
  return segmentsToCleanIn(start, JPEG_HEADER);
}
