/**
 * PS3.15 E.1.1 and E.3.1: pixel data may carry identity that the Basic Profile does not touch. An
 * instance that says so, or is of a kind that usually carries burned-in text, is held in quarantine
 * rather than sent on, unless a zone of deid.pixelZones cleans it (Clean Pixel Data, decide.ts).
 */
import { tagText } from '../dicom/header-scanner.js';
import { storageSopClassName } from '../dicom/sop-classes.js';

/** Modalities whose images usually carry burned-in text or a recognisable face (ultrasound,
 * endoscopy, photography including the eye's, scans). */
const MODALITIES = new Set(['US', 'ES', 'XC', 'GM', 'SM', 'OP', 'OT', 'SC', 'DOC']);

/** Kinds of SOP class that usually carry burned-in text, by their PS3.4 names. Ophthalmic and
 * dermoscopic photographs are photographs (the eye's surroundings, the skin), often with the patient's
 * name in the corner as the camera printed it. */
const SOP_CLASS_NAMES = /Secondary Capture|Ultrasound|Video|^VL |Visible Light|Ophthalmic Photography|Dermoscopic Photography|Encapsulated PDF/;

/** Retired ultrasound classes, not in the current table, that old machines still send. */
const RETIRED_ULTRASOUND = new Set(['1.2.840.10008.5.1.4.1.1.6', '1.2.840.10008.5.1.4.1.1.3']);

export interface PixelIdentityFacts {
  sopClassUid: string;
  modality: string | null;
  burnedInAnnotation: string | null;
  recognizableVisualFeatures: string | null;
  /** The group (0x6000 to 0x601E) of an overlay held in the unused bits of Pixel Data, if any. */
  embeddedOverlayGroup?: number;
}

/**
 * PS3.5 8.1.2 and PS3.3 C.9.2 (retired usage, still in old archives): an overlay plane may lie in the
 * bits of Pixel Data above BitsStored, which its group says by OverlayBitsAllocated above 1 or an
 * OverlayBitPosition other than 0 (an overlay of its own, 60xx,3000, has 1 and 0). Viewers draw it, and
 * Table E.1-1 removes only Overlay Data: such an overlay's text would leave with the pixels. The first
 * such group, or undefined; `attribute` gives a top-level value as text.
 */
export function embeddedOverlayGroup(attribute: (tag: number) => string | undefined): number | undefined {
  const differs = (tag: number, standard: number) => {
    const value = attribute(tag)?.trim();
    return value !== undefined && value !== '' && Number(value) !== standard;
  };
  for (let group = 0x6000; group <= 0x601e; group += 2) {
    if (differs(((group << 16) | 0x0100) >>> 0, 1) || differs(((group << 16) | 0x0102) >>> 0, 0)) return group;
  }
  return undefined;
}

/** Why an overlay of `group` embedded in Pixel Data escapes the profile, as reasons give it. */
export function embeddedOverlayText(group: number): string {
  return `an overlay (group ${group.toString(16).toUpperCase()}) lies in the unused bits of Pixel Data`;
}

/**
 * Why a dataset is held whatever its zones and rules, or undefined: a top-level tag given twice
 * (PS3.5 7.1 has each element once). DCMTK shows the first of two, while the decision and the
 * redaction (maps by tag) read the last: a second BurnedInAnnotation NO let a CT whose readers see YES
 * leave unredacted, and of two Pixel Data elements the first, which readers show, was copied as it was.
 */
export function repeatedTagReason(elements: ReadonlyArray<{ tag: number }>): string | undefined {
  const seen = new Set<number>();
  for (const { tag } of elements) {
    if (seen.has(tag)) return `the dataset has (${tagText(tag)}) more than once (PS3.5 7.1): the decision reads one value, a reader may show the other`;
    seen.add(tag);
  }
  return undefined;
}

/**
 * The values of a code string, trimmed and in upper case. These attributes have one value (VM 1), but
 * a sender may give several, and a reader shows each: "NO\\YES" compared whole let an image whose
 * readers see YES leave unredacted (found in the PHI fuzz review).
 */
export function codeValues(value: string | null | undefined): string[] {
  return (value ?? '').split('\\').map((one) => one.trim().toUpperCase());
}

/** Why an instance may show identity in its pixels, or undefined. */
export function burnedInTextReason(facts: PixelIdentityFacts): string | undefined {
  if (codeValues(facts.burnedInAnnotation).includes('YES')) return 'BurnedInAnnotation is YES';
  if (codeValues(facts.recognizableVisualFeatures).includes('YES')) return 'RecognizableVisualFeatures is YES';
  if (facts.embeddedOverlayGroup !== undefined) {
    return `${embeddedOverlayText(facts.embeddedOverlayGroup)}, where removing Overlay Data does not reach`;
  }
  const modality = codeValues(facts.modality).find((value) => MODALITIES.has(value));
  if (modality) return `modality ${modality} usually carries burned-in text`;
  const name = storageSopClassName(facts.sopClassUid);
  if ((name && SOP_CLASS_NAMES.test(name)) || RETIRED_ULTRASOUND.has(facts.sopClassUid)) {
    return `${name ?? 'Ultrasound Image Storage (retired)'} usually carries burned-in text`;
  }
  return undefined;
}
