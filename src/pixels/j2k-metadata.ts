/**
 * Comments in JPEG 2000 codestreams (ITU-T T.800 A.9.2, COM, 0xFF64; HTJ2K, T.814, uses the same
 * main header): free text or binary data that an encoder or a device put beside the image, which the
 * Basic Profile's cleaning of the dataset never reaches, so an instance whose pixels leave as they are
 * carried it out. Here a frame's main header (from SOC to the first tile-part, SOT) is rewritten without
 * its comments; everything decoding needs stays. Comments in tile-part headers are left: removing one
 * changes the tile-part's length (SOT's Psot, and TLM's) and encoders put theirs in the main header.
 */
import { segmentsToCleanIn, withCleanCodestream, type HeaderGrammar } from './marker-segments.js';

const SOC = 0xff4f;
const SOT = 0xff90;
const COM = 0xff64;

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

/** Comments go; every other segment of the main header stays. */
export const J2K_MAIN_HEADER: HeaderGrammar = { start: SOC, end: SOT, fillBytes: false, clean: (marker) => (marker === COM ? 'drop' : 'keep') };

/**
 * The frame without the comments of its main header, or undefined when it has none, or is not a
 * codestream this reader can walk to its first tile-part (it is then left as it was).
 */
export function withoutJ2kComments(frame: Buffer): Buffer | undefined {
  return withCleanCodestream(frame, J2K_MAIN_HEADER);
}

/** Whether the start of a frame shows comments in the main header: 'unknown' when the bytes end
 * before the first tile-part, so that only the whole frame can tell. */
export function j2kCommentsIn(start: Buffer): 'none' | 'present' | 'unknown' {
  return segmentsToCleanIn(start, J2K_MAIN_HEADER);
}
