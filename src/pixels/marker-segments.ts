/**
 * The header of a marker-segment codestream, JPEG (ITU-T T.81 B.1.1) and JPEG-LS, or JPEG 2000
 * (T.800 A.1): a start marker, then segments of a marker and a two-byte length (itself included), up
 * to the marker after which the image data follows. Walked to rewrite the header without the segments
 * that carry metadata (jpeg-metadata.ts, j2k-metadata.ts); what follows the header is copied as it is,
 * or cleaned by the grammar's `cleanBody` (segments between scans, bytes after the end marker).
 */

export interface HeaderGrammar {
  /** The marker a stream starts with (JPEG SOI, JPEG 2000 SOC). */
  start: number;
  /** The marker that ends the header (JPEG's first SOS, JPEG 2000's first SOT). */
  end: number;
  /** Whether fill bytes (0xFF) may precede a marker (T.81 B.1.1.2), and decoders skip other bytes
   * where a marker should be (JPEG's, not JPEG 2000's). */
  fillBytes: boolean;
  /** Whether a marker stands alone, with no length after it (JPEG's RSTn and TEM, T.81 Table B.1): kept
   * as its two bytes. A decoder passes a stray one wherever it is; read as a segment's start, the two
   * bytes after it (a comment's marker, say) would be taken for a length. */
  standalone?(marker: number): boolean;
  /** What becomes of one segment (`bytes`: marker and length included): kept, dropped, or replaced. */
  clean(marker: number, bytes: Buffer): Buffer | 'keep' | 'drop';
  /** What follows the header (`body` starts at the `end` marker), cleaned. */
  cleanBody?(body: Buffer): BodyOutcome;
  /** A container some writers put the stream in: whether `start` opens one, and the stream inside a
   * whole frame's (undefined when it holds none). The container goes, with what it holds beside. */
  container?: { opens(start: Buffer): boolean; streamIn(frame: Buffer): Buffer | undefined };
}

/**
 * `cleaned`: the body rewritten, when something went (undefined: nothing did). `complete`: whether it
 * was walked to its end marker; a body that ends early (a first fragment of a frame cut in several, a
 * stream cut short) or cannot be walked further is cleaned as far as it was walked and copied as it is
 * from there.
 */
export interface BodyOutcome {
  cleaned: Buffer | undefined;
  complete: boolean;
}

type Walked = { kind: 'cleaned'; frame: Buffer } | { kind: 'clean'; bodyUnread: boolean } | { kind: 'unreadable' };

/** The frame with its header (and body, when the grammar cleans one) cleaned, or undefined when
 * nothing changed or the header cannot be walked to its end (the frame is then left as it was). */
export function withCleanCodestream(frame: Buffer, grammar: HeaderGrammar): Buffer | undefined {
  const outcome = cleanedCodestream(frame, grammar);
  return typeof outcome === 'string' ? undefined : outcome;
}

/**
 * A whole frame cleaned: the stream without its metadata; 'clean' when nothing goes; 'unreadable' when
 * it does not start with the start marker (nor a container holding a stream) or its header cannot be
 * walked to its end, so that what it carries cannot be told (no decoder reads such a frame either).
 */
export function cleanedCodestream(frame: Buffer, grammar: HeaderGrammar): Buffer | 'clean' | 'unreadable' {
  if (grammar.container?.opens(frame)) {
    const stream = grammar.container.streamIn(frame);
    if (stream === undefined) return 'unreadable';
    const inner = cleanedCodestream(stream, grammar);
    return inner === 'clean' ? stream : inner;
  }
  const walked = walkHeader(frame, grammar);
  return walked.kind === 'cleaned' ? walked.frame : walked.kind;
}

/** Whether the start of a frame (its first fragment, say) has segments to clean: 'unknown' when the
 * bytes end before the header does, or before a body the grammar cleans does, so that only the whole
 * frame can tell. */
export function segmentsToCleanIn(start: Buffer, grammar: HeaderGrammar): 'none' | 'present' | 'unknown' {
  if (grammar.container?.opens(start)) return 'present';
  const walked = walkHeader(start, grammar);
  if (walked.kind === 'cleaned') return 'present';
  return walked.kind === 'clean' && !walked.bodyUnread ? 'none' : 'unknown';
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
    if (marker >>> 8 !== 0xff && grammar.fillBytes) {
      // Bytes where a marker should be: JPEG decoders skip them to the next marker (libjpeg warns of
      // "extraneous bytes") and decode on, so they go.
      const next = frame.indexOf(0xff, at);
      if (next < 0) return { kind: 'unreadable' };
      changed = true;
      at = next;
      continue;
    }
    if (marker >>> 8 !== 0xff) return { kind: 'unreadable' };
    if (marker === grammar.end) {
      const body = frame.subarray(at);
      const outcome = grammar.cleanBody?.(body) ?? { cleaned: undefined, complete: true };
      parts.push(outcome.cleaned ?? body);
      if (outcome.cleaned) changed = true;
      return changed ? { kind: 'cleaned', frame: Buffer.concat(parts) } : { kind: 'clean', bodyUnread: !outcome.complete };
    }
    if (grammar.standalone?.(marker)) {
      const end = standaloneRunEnd(frame, at, grammar.standalone);
      parts.push(frame.subarray(at, end));
      at = end;
      continue;
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

/**
 * A stream that ends with its end marker at `at` (JPEG's EOI and JPEG 2000's EOC are both 0xFFD9),
 * `parts` holding what comes before it: the stream cleaned, when anything went. What
 * follows the marker, which no decoder reads, is dropped unless each byte is 0x00 or 0xFF: padding,
 * which says nothing (PS3.5 A.4 pads an odd frame with one 0x00; some encoders wrote a fill byte,
 * 0xFF, as pydicom's JPEG-lossy.dcm shows).
 */
export function endedAt(body: Buffer, at: number, parts: Buffer[], changed: boolean): BodyOutcome {
  parts.push(body.subarray(at, at + 2));
  const after = body.subarray(at + 2);
  const padding = after.every((byte) => byte === 0 || byte === 0xff);
  if (padding) parts.push(after);
  return { cleaned: changed || !padding ? Buffer.concat(parts) : undefined, complete: true };
}

/** A body walked up to `at` and no further (it ends early, or cannot be walked on): what was walked,
 * cleaned, then the rest as it is. */
export function endedEarly(body: Buffer, at: number, parts: Buffer[], changed: boolean): BodyOutcome {
  return { cleaned: changed ? Buffer.concat([...parts, body.subarray(at)]) : undefined, complete: false };
}

/**
 * Where the run of markers without a length (JPEG's RSTn and TEM, JPEG 2000's markers alone) that
 * starts at `at` ends: kept as one view. A view each took some 130 bytes of heap per 2 bytes of the
 * frame, and 2 million of them (a 4 MB frame) ran a thread out of its heap (found in the pixel
 * robustness review), as fill bytes one by one had.
 */
export function standaloneRunEnd(bytes: Buffer, at: number, standalone: (marker: number) => boolean): number {
  let end = at + 2;
  while (end + 2 <= bytes.length && bytes[end] === 0xff && standalone(bytes.readUInt16BE(end))) end += 2;
  return end;
}
