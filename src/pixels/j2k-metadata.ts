/**
 * Comments in JPEG 2000 codestreams (ITU-T T.800 A.9.2, COM, 0xFF64; HTJ2K, T.814, uses the same
 * markers): free text or binary data that an encoder or a device put beside the image, which the
 * Basic Profile's cleaning of the dataset never reaches, so an instance whose pixels leave as they are
 * carried it out. Here a frame's main header (from SOC to the first tile-part, SOT) is rewritten without
 * its comments; the comments of tile-part headers are blanked in place (removing one would change the
 * tile-part's length, which SOT's Psot and the main header's TLM record); bytes after the codestream's
 * end (EOC), which no decoder reads, go. Everything decoding needs stays.
 */
import { endedAt, endedEarly, segmentsToCleanIn, withCleanCodestream, type BodyOutcome, type HeaderGrammar } from './marker-segments.js';

const SOC = 0xff4f;
const SOT = 0xff90;
const COM = 0xff64;
const SOD = 0xff93;
const EOC = 0xffd9;

/** Transfer syntaxes whose frames are JPEG 2000 codestreams (Part 1, Part 2 and High-Throughput). */
export const J2K_STREAM_SYNTAXES = new Set([
  '1.2.840.10008.1.2.4.90',
  '1.2.840.10008.1.2.4.91',
  '1.2.840.10008.1.2.4.92',
  '1.2.840.10008.1.2.4.93',
  '1.2.840.10008.1.2.4.201',
  '1.2.840.10008.1.2.4.202',
  '1.2.840.10008.1.2.4.203',
]);

/**
 * The header markers JPEG 2000 defines: T.800 Table A.2 (SIZ, COD, COC, TLM, PRF, PLM, PLT, QCD, QCC,
 * RGN, POC, PPM, PPT, CRG; CAP and CPF, which HTJ2K, T.814, needs), JPSEC's SEC (T.807) and Part 2's
 * (T.801 A.2: DCO, VMS, DFS, ADS, MCT, MCC, NLT, MCO, CBD, ATK). A segment of any other marker is
 * nothing a decoder reads (OpenJPEG and Kakadu pass over it) and can hold anything.
 */
const HEADER_MARKERS = new Set([
  0xff50, 0xff51, 0xff52, 0xff53, 0xff55, 0xff56, 0xff57, 0xff58, 0xff59, 0xff5c, 0xff5d, 0xff5e, 0xff5f, 0xff60, 0xff61, 0xff63, 0xff65,
  0xff70, 0xff71, 0xff72, 0xff73, 0xff74, 0xff75, 0xff76, 0xff77, 0xff78, 0xff79,
]);

/** Markers 0xFF30 to 0xFF3F have no segment, no length after them (T.800 A.1.3): decoders skip their
 * two bytes. Read as a segment's start, the two bytes after one (a comment's marker, say) were taken
 * for a length. The conformance codestream p0_02.j2k holds one. */
function markerOnly(marker: number): boolean {
  return marker >= 0xff30 && marker <= 0xff3f;
}

/** Comments and segments of markers JPEG 2000 does not define go; every other segment of the main
 * header stays; the tile-parts are cleaned (below). */
export const J2K_MAIN_HEADER: HeaderGrammar = {
  start: SOC,
  end: SOT,
  fillBytes: false,
  standalone: markerOnly,
  clean: (marker) => (HEADER_MARKERS.has(marker) ? 'keep' : 'drop'),
  cleanBody: cleanedTileParts,
  container: { opens: opensJp2File, streamIn: codestreamOfJp2File },
};

/** The JP2 file format's signature box (T.800 I.5.1), which some writers leave around the codestream. */
const JP2_SIGNATURE = Buffer.from([0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]);

function opensJp2File(start: Buffer): boolean {
  return start.subarray(0, JP2_SIGNATURE.length).equals(JP2_SIGNATURE);
}

/**
 * The codestream of a JP2 file: the content of its contiguous codestream box (jp2c, T.800 I.5.4).
 * PS3.5 A.4.4 wants the codestream alone; the boxes beside it (XML, UUID boxes such as XMP, the
 * header) can hold anything, and go with the container. Undefined when no jp2c box is found.
 */
function codestreamOfJp2File(frame: Buffer): Buffer | undefined {
  let at = 0;
  while (at + 8 <= frame.length) {
    let length = frame.readUInt32BE(at);
    let header = 8;
    if (length === 1) {
      if (at + 16 > frame.length) return undefined;
      length = Number(frame.readBigUInt64BE(at + 8));
      header = 16;
    } else if (length === 0) length = frame.length - at; // the last box, to the end (I.4)
    if (length < header || at + length > frame.length) return undefined;
    if (frame.toString('latin1', at + 4, at + 8) === 'jp2c') return frame.subarray(at + header, at + length);
    at += length;
  }
  return undefined;
}

/**
 * The tile-parts, from the first SOT, walked by their lengths (Psot; 0 for a last one that runs to
 * EOC, T.800 A.4.2): the comments of their headers blanked, their data kept, and the stream ended at
 * EOC, without bytes after it unless they are padding (endedAt). Cleaned as far as the lengths lead
 * when they do not lead to EOC (a first fragment of a frame cut in several, or a stream cut short).
 */
function cleanedTileParts(body: Buffer): BodyOutcome {
  const parts: Buffer[] = [];
  let changed = false;
  let at = 0;
  while (at + 2 <= body.length) {
    const marker = body.readUInt16BE(at);
    if (marker === EOC) return endedAt(body, at, parts, changed);
    if (marker !== SOT || at + 12 > body.length) return endedEarly(body, at, parts, changed);
    const length = body.readUInt32BE(at + 6);
    if (length !== 0 && (length < 12 || at + length > body.length)) return endedEarly(body, at, parts, changed);
    const header = withBlankComments(body.subarray(at, length === 0 ? body.length : at + length));
    if (header === 'unreadable') return endedEarly(body, at, parts, changed);
    // Psot 0: the last tile-part, up to EOC, the first 0xFFD9 after its header: packet data never holds
    // 0xFF followed by a byte above 0x8F (T.800's bit stuffing), and the last 0xFFD9 could be in bytes
    // after EOC.
    const end = length === 0 ? body.indexOf(EOC_BYTES, at + header.data) : at + length;
    if (end < 0) return endedEarly(body, at, parts, changed);
    if (header.blanked) changed = true;
    parts.push(header.blanked ? header.blanked.subarray(0, end - at) : body.subarray(at, end));
    at = end;
  }
  return endedEarly(body, at, parts, changed);
}

const EOC_BYTES = Buffer.from([0xff, 0xd9]);

/** The tile-part (or the rest of the stream, from its SOT) with the text of its header's comments
 * blanked (spaces for Latin text, else zeros), and the bodies of segments of markers JPEG 2000 does not
 * define (zeros), `blanked` undefined when none has anything in it;
 * `data`: where its data begins, after SOD. */
function withBlankComments(tilePart: Buffer): { blanked: Buffer | undefined; data: number } | 'unreadable' {
  let copy: Buffer | undefined;
  let at = 2 + tilePart.readUInt16BE(2); // after SOT's segment (Lsot)
  while (at + 2 <= tilePart.length) {
    const marker = tilePart.readUInt16BE(at);
    if (marker === SOD) return { blanked: copy, data: at + 2 };
    if (markerOnly(marker)) {
      at += 2;
      continue;
    }
    if (marker >>> 8 !== 0xff || at + 4 > tilePart.length) return 'unreadable';
    const end = at + 2 + tilePart.readUInt16BE(at + 2);
    if (end < at + 4 || end > tilePart.length) return 'unreadable';
    if (marker === COM && end > at + 6) {
      // Rcom 1: Latin text (T.800 A.9.2); anything else: binary.
      const blank = tilePart.readUInt16BE(at + 4) === 1 ? 0x20 : 0;
      const text = tilePart.subarray(at + 6, end);
      if (text.some((byte) => byte !== blank)) {
        copy ??= Buffer.from(tilePart);
        copy.fill(blank, at + 6, end);
      }
    } else if (marker !== COM && !HEADER_MARKERS.has(marker) && tilePart.subarray(at + 4, end).some((byte) => byte !== 0)) {
      copy ??= Buffer.from(tilePart);
      copy.fill(0, at + 4, end); // no decoder reads it (above)
    }
    at = end;
  }
  return 'unreadable';
}

/**
 * The frame without the comments of its main header, with those of its tile-parts blanked and without
 * bytes after EOC, or undefined when it has none of them, or is not a codestream this reader can walk
 * to its first tile-part (it is then left as it was). A stream whose tile-parts cannot be walked to EOC
 * loses only its main header's comments.
 */
export function withoutJ2kComments(frame: Buffer): Buffer | undefined {
  return withCleanCodestream(frame, J2K_MAIN_HEADER);
}

/** Whether the start of a frame shows comments, or bytes after its end: 'unknown' when the bytes end
 * before EOC, so that only the whole frame can tell. */
export function j2kCommentsIn(start: Buffer): 'none' | 'present' | 'unknown' {
  return segmentsToCleanIn(start, J2K_MAIN_HEADER);
}
