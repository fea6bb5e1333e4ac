/**
 * Metadata in JPEG streams (ITU-T T.81 B.2.4.5-6, and JPEG-LS, ITU-T T.87, which uses the same marker
 * segments) that is not image: EXIF and other application segments (APPn: camera serial numbers, dates,
 * owners, places, thumbnails) and comments (COM). The Basic Profile cleans the dataset, not the
 * codestream inside Pixel Data, so an instance whose pixels leave as they are (no burned-in text, or
 * passed by a rule) carried them out. Here a frame is rewritten without them, before its first scan
 * and between scans (T.81 B.2.4 lets the same segments come before any scan), and without whatever
 * follows its end (EOI), which no decoder reads and which can hold anything; what decoding needs
 * stays: tables, headers, restart interval, JFIF (without its thumbnail), Adobe (colour transform) and
 * JPEG-LS's colour transform (APP8 "mrfx").
 */
import { endedAt, endedEarly, segmentsToCleanIn, standaloneRunEnd, withCleanCodestream, type BodyOutcome, type HeaderGrammar } from './marker-segments.js';

const SOI = 0xffd8;
const SOS = 0xffda;
const EOI = 0xffd9;
const TEM = 0xff01;
const RST0 = 0xffd0;
const RST7 = 0xffd7;
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
  if (marker === APP14) return signature('Adobe') ? withoutTail(bytes, ADOBE_LENGTH) : 'drop';
  if (marker === APP8) return signature('mrfx') ? withTailZeroed(bytes, MRFX_LENGTH) : 'drop';
  if (marker > APP0 && marker <= 0xffef) return 'drop';
  return 'keep';
}

/** RSTn and TEM: markers that start no segment (T.81 Table B.1; T.87 uses the same). libjpeg's
 * read_markers passes a stray one outside a scan as parameterless, so the stream still decodes. */
function standalone(marker: number): boolean {
  return marker === TEM || (marker >= RST0 && marker <= RST7);
}

/** Adobe's APP14 body: "Adobe", version, flags0, flags1, colour transform. libjpeg's examine_app14
 * reads these 12 bytes and skips the rest, where text can be put. */
const ADOBE_LENGTH = 12;

/** JPEG-LS's colour transform (APP8): "mrfx" and the transform. Decoders differ on a longer segment
 * (CharLS 2 reads it only when it is 5 bytes long), so what follows is zeroed, not cut: the length
 * stays, and so does what each decoder makes of it. */
const MRFX_LENGTH = 5;

/** The segment with what follows a body of `length` bytes zeroed, or 'keep' when that is all zeros. */
function withTailZeroed(bytes: Buffer, length: number): Buffer | 'keep' {
  if (bytes.subarray(4 + length).every((byte) => byte === 0)) return 'keep';
  const zeroed = Buffer.from(bytes);
  zeroed.fill(0, 4 + length);
  return zeroed;
}

/** The segment cut to a body of `length` bytes, or 'keep' when it has no more. */
function withoutTail(bytes: Buffer, length: number): Buffer | 'keep' {
  if (bytes.length <= 4 + length) return 'keep';
  const cut = Buffer.from(bytes.subarray(0, 4 + length));
  cut.writeUInt16BE(2 + length, 2);
  return cut;
}

export const JPEG_HEADER: HeaderGrammar = { start: SOI, end: SOS, fillBytes: true, standalone, clean: cleanedSegment, cleanBody: cleanedScans };

/**
 * The stream from its first SOS on: each scan's header and entropy-coded data are kept, the segments
 * between scans are cleaned as the header's are, and the stream ends at EOI, without bytes after it
 * unless they are padding (endedAt). A stream that no EOI ends (a first fragment of a frame cut in
 * several, or a stream cut short, which decoders read as far as it goes) is cleaned as far as it goes.
 */
function cleanedScans(body: Buffer): BodyOutcome {
  const parts: Buffer[] = [];
  let changed = false;
  let at = 0;
  const endedHere = () => endedWithoutEoi(endedEarly(body, at, parts, changed));
  while (at + 2 <= body.length) {
    if (body[at] !== 0xff) {
      // Bytes where a marker should be: decoders skip them to the next marker (libjpeg warns of
      // "extraneous bytes") and decode on, so they go, as bytes after EOI do.
      const next = body.indexOf(0xff, at);
      if (next < 0) return endedWithoutEoi({ cleaned: Buffer.concat(parts), complete: false });
      changed = true;
      at = next;
      continue;
    }
    if (body[at + 1] === 0xff) {
      // Fill bytes before a marker (T.81 B.1.1.2), kept as one run: a view each took some 130 bytes of
      // heap per byte of the frame.
      let run = at + 1;
      while (run + 1 < body.length && body[run + 1] === 0xff) run += 1;
      parts.push(body.subarray(at, run));
      at = run;
      continue;
    }
    const marker = body.readUInt16BE(at);
    if (marker === EOI) return endedAt(body, at, parts, changed);
    if (standalone(marker)) {
      const end = standaloneRunEnd(body, at, standalone);
      parts.push(body.subarray(at, end));
      at = end;
      continue;
    }
    if (at + 4 > body.length) return endedHere();
    const end = at + 2 + body.readUInt16BE(at + 2);
    if (end < at + 4) return endedHere();
    // A segment cut by the end of the bytes: one that goes goes now (in a first fragment, that says
    // the frame has metadata; in a whole frame, nothing follows it).
    if (end > body.length) {
      const goes = marker !== SOS && cleanedSegment(marker, body.subarray(at)) !== 'keep';
      return goes ? endedWithoutEoi({ cleaned: Buffer.concat(parts), complete: false }) : endedHere();
    }
    const segment = body.subarray(at, end);
    const outcome = marker === SOS ? 'keep' : cleanedSegment(marker, segment);
    if (outcome === 'keep') parts.push(segment);
    else {
      changed = true;
      if (outcome !== 'drop') parts.push(outcome);
    }
    at = end;
    if (marker === SOS) {
      const next = nextMarkerAfterScan(body, at);
      if (next === undefined) return endedHere();
      parts.push(body.subarray(at, next));
      at = next;
    }
  }
  return endedHere();
}

/**
 * A stream that no EOI ends, cleaned, ends with one: with what followed its last scan taken out, its
 * scan data would be its last bytes, which gdcmconv does not decode (the review helper's finding, with
 * pydicom's SC_rgb_jpeg_dcmtk.dcm and a comment in place of its EOI, which decodes).
 */
function endedWithoutEoi(outcome: BodyOutcome): BodyOutcome {
  return outcome.cleaned ? { cleaned: Buffer.concat([outcome.cleaned, EOI_BYTES]), complete: false } : outcome;
}

const EOI_BYTES = Buffer.from([0xff, 0xd9]);

/**
 * Where the entropy-coded data that starts at `from` ends: at the first 0xFF that begins a marker.
 * In JPEG a data 0xFF is followed by a stuffed 0x00 (T.81 B.1.1.5), in JPEG-LS by a byte whose high bit
 * is 0 (T.87 A.1); restart markers (RSTn) belong to the scan. Markers that can follow a scan are all
 * 0xFFC0 or above.
 */
function nextMarkerAfterScan(body: Buffer, from: number): number | undefined {
  let at = from;
  for (;;) {
    const ff = body.indexOf(0xff, at);
    if (ff < 0 || ff + 1 >= body.length) return undefined;
    const next = body[ff + 1] as number;
    if (next === 0xff) return ff; // fill bytes, then the marker
    if (next < 0xc0 || (next >= 0xd0 && next <= 0xd7)) {
      at = ff + 2;
      continue;
    }
    return ff;
  }
}

/**
 * The frame without its metadata segments and without what follows its end, or undefined when it has
 * neither, or is not a marker stream this reader can walk to its first scan (it is then left as it
 * was, as before). A stream that cannot be walked to its EOI loses only its header's metadata.
 */
export function withoutJpegMetadata(frame: Buffer): Buffer | undefined {
  return withCleanCodestream(frame, JPEG_HEADER);
}

/**
 * Whether the start of a frame (its first fragment, say) shows metadata segments or bytes after its
 * end: 'unknown' when the bytes end before EOI, so that only the whole frame can tell.
 */
export function jpegMetadataIn(start: Buffer): 'none' | 'present' | 'unknown' {
  return segmentsToCleanIn(start, JPEG_HEADER);
}
