/**
 * Presentation contexts for sending stored objects as they are (forwarding, C-MOVE sub-operations):
 * what to propose for a batch, and which accepted context carries an object.
 */
import { canDecompress } from '../pixels/decompress.js';
import type { RequestedContext } from './pdu.js';
import type { AcceptedPresentationContext, RequestorAssociation } from './requestor.js';
import { DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, LITTLE_ENDIAN_SYNTAXES } from '../dicom/transfer-syntaxes.js';

/** PS3.8 9.3.2.2: presentation context ids are odd numbers 1–255. */
const MAX_CONTEXTS = 128;

export interface StoredObject {
  sopClassUid: string;
  transferSyntaxUid: string;
}

/** Context proposals for a batch: per SOP class and stored syntax, that syntax alone; for uncompressed
 * little-endian objects also a context with both little-endian syntaxes (converted if chosen). Items
 * whose contexts do not fit in the 128 allowed wait for the next association. */
export function proposeContexts<T extends StoredObject>(items: readonly T[]): { contexts: RequestedContext[]; fitting: T[] } {
  const byKey = new Map<string, RequestedContext>();
  const fitting: T[] = [];
  for (const item of items) {
    const wanted = [[item.transferSyntaxUid], ...(hasLittleEndianForm(item.transferSyntaxUid) ? [[...LITTLE_ENDIAN_SYNTAXES]] : [])];
    const keys = wanted.map((syntaxes) => `${item.sopClassUid}|${syntaxes.join(',')}`);
    const missing = keys.filter((key) => !byKey.has(key));
    if (byKey.size + missing.length > MAX_CONTEXTS) continue;
    wanted.forEach((syntaxes, index) => {
      const key = keys[index] as string;
      if (!byKey.has(key)) byKey.set(key, { id: 2 * byKey.size + 1, abstractSyntax: item.sopClassUid, transferSyntaxes: syntaxes });
    });
    fitting.push(item);
  }
  return { contexts: [...byKey.values()], fitting };
}

/** The uncompressed syntaxes re-encoded into explicit or implicit VR little endian: those two, Deflated
 * Explicit VR Little Endian (inflated, PS3.5 A.5) and Explicit VR Big Endian (byte-swapped, PS3.5 A.3). */
const RE_ENCODED = new Set([EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN]);

/** Objects that can also go in explicit or implicit VR little endian: uncompressed ones (re-encoded),
 * and compressed ones Gantry decodes (decompressed, a fallback). Deflate is an option few archives
 * accept, and getscu, proposing both little and big endian, is answered little endian: an object
 * received deflated or big endian went nowhere else (found in the interop review). */
export function hasLittleEndianForm(uid: string): boolean {
  return RE_ENCODED.has(uid) || canDecompress(uid);
}

/** The syntaxes an object can go in, in order of preference: as stored, then little endian if it has
 * that form. */
export function candidateSyntaxes(transferSyntaxUid: string): string[] {
  return [transferSyntaxUid, ...(hasLittleEndianForm(transferSyntaxUid) ? LITTLE_ENDIAN_SYNTAXES : [])];
}

/** The stored syntax if accepted; else a little-endian one, for objects that have that form. */
export function chooseContext(association: RequestorAssociation, sopClassUid: string, transferSyntaxUid: string): AcceptedPresentationContext | undefined {
  return association.contextFor(sopClassUid, candidateSyntaxes(transferSyntaxUid));
}
