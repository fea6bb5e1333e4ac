/**
 * Comments in JPEG 2000 codestreams (ITU-T T.800 A.9.2, COM, 0xFF64; HTJ2K, T.814, uses the same
 * main header): free text or binary data that an encoder or a device put beside the image, which the
 * Basic Profile's cleaning of the dataset never reaches, so an instance whose pixels leave as they are
 * carried it out. Here a frame's main header (from SOC to the first tile-part, SOT) is rewritten without
 * its comments; everything decoding needs stays. Comments in tile-part headers are left: removing one
 * changes the tile-part's length (SOT's Psot, and TLM's) and encoders put theirs in the main header.
 */

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

type Walked = { kind: 'cleaned'; frame: Buffer } | { kind: 'clean' } | { kind: 'unreadable' };

/**
 * The frame without the comments of its main header, or undefined when it has none, or is not a
 * codestream this reader can walk to its first tile-part (it is then left as it was).
 */
export function withoutJ2kComments(frame: Buffer): Buffer | undefined {
  const walked = walkMainHeader(frame);
  return walked.kind === 'cleaned' ? walked.frame : undefined;
}

/** Whether the start of a frame shows comments in the main header: 'unknown' when the bytes end
 * before the first tile-part, so that only the whole frame can tell. */
export function j2kCommentsIn(start: Buffer): 'none' | 'present' | 'unknown' {
  const walked = walkMainHeader(start);
  return walked.kind === 'cleaned' ? 'present' : walked.kind === 'clean' ? 'none' : 'unknown';
}

function walkMainHeader(frame: Buffer): Walked {
  if (frame.length < 4 || frame.readUInt16BE(0) !== SOC) return { kind: 'unreadable' };
  const parts: Buffer[] = [frame.subarray(0, 2)];
  let changed = false;
  let at = 2;
  // Every main header segment has a length (T.800 A.1.3); the first SOT ends the main header.
  while (at + 4 <= frame.length) {
    const marker = frame.readUInt16BE(at);
    if (marker >>> 8 !== 0xff) return { kind: 'unreadable' };
    if (marker === SOT) {
      parts.push(frame.subarray(at));
      return changed ? { kind: 'cleaned', frame: Buffer.concat(parts) } : { kind: 'clean' };
    }
    const length = frame.readUInt16BE(at + 2);
    const end = at + 2 + length;
    if (length < 2 || end > frame.length) return { kind: 'unreadable' };
    if (marker === COM) changed = true;
    else parts.push(frame.subarray(at, end));
    at = end;
  }
  return { kind: 'unreadable' };
}
