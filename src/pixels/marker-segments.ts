/**
 * The header of a marker-segment codestream, JPEG (ITU-T T.81 B.1.1) and JPEG-LS, or JPEG 2000
 * (T.800 A.1): a start marker, then segments of a marker and a two-byte length (itself included), up
 * to the marker after which the image data follows. Walked to rewrite the header without the segments
 * that carry metadata (jpeg-metadata.ts, j2k-metadata.ts); what follows the header is copied as it is.
 */

export interface HeaderGrammar {
  /** The marker a stream starts with (JPEG SOI, JPEG 2000 SOC). */
  start: number;
  /** The marker that ends the header (JPEG's first SOS, JPEG 2000's first SOT). */
  end: number;
  /** Whether fill bytes (0xFF) may precede a marker (T.81 B.1.1.2). */
  fillBytes: boolean;
  /** What becomes of one segment (`bytes`: marker and length included): kept, dropped, or replaced. */
  clean(marker: number, bytes: Buffer): Buffer | 'keep' | 'drop';
}

type Walked = { kind: 'cleaned'; frame: Buffer } | { kind: 'clean' } | { kind: 'unreadable' };

/** The frame with its header cleaned, or undefined when nothing changed or the header cannot be
 * walked to its end (the frame is then left as it was). */
export function withCleanHeader(frame: Buffer, grammar: HeaderGrammar): Buffer | undefined {
  const walked = walkHeader(frame, grammar);
  return walked.kind === 'cleaned' ? walked.frame : undefined;
}

/** Whether the start of a frame (its first fragment, say) has segments to clean: 'unknown' when the
 * bytes end before the header does, so that only the whole frame can tell. */
export function segmentsToCleanIn(start: Buffer, grammar: HeaderGrammar): 'none' | 'present' | 'unknown' {
  const walked = walkHeader(start, grammar);
  return walked.kind === 'cleaned' ? 'present' : walked.kind === 'clean' ? 'none' : 'unknown';
}

function walkHeader(frame: Buffer, grammar: HeaderGrammar): Walked {
  if (frame.length < 4 || frame.readUInt16BE(0) !== grammar.start) return { kind: 'unreadable' };
  const parts: Buffer[] = [frame.subarray(0, 2)];
  let changed = false;
  let at = 2;
  while (at + 4 <= frame.length) {
    const marker = frame.readUInt16BE(at);
    if (grammar.fillBytes && marker === 0xffff) {
      at += 1;
      continue;
    }
    if (marker >>> 8 !== 0xff) return { kind: 'unreadable' };
    if (marker === grammar.end) {
      parts.push(frame.subarray(at));
      return changed ? { kind: 'cleaned', frame: Buffer.concat(parts) } : { kind: 'clean' };
    }
    const length = frame.readUInt16BE(at + 2);
    const end = at + 2 + length;
    if (length < 2 || end > frame.length) return { kind: 'unreadable' };
    const bytes = frame.subarray(at, end);
    const outcome = grammar.clean(marker, bytes);
    if (outcome === 'keep') parts.push(bytes);
    else {
      changed = true;
      if (outcome !== 'drop') parts.push(outcome);
    }
    at = end;
  }
  return { kind: 'unreadable' };
}
