/**
 * Before an instance is de-identified: which profile applies (the first named one whose condition
 * holds, else the default), whether a rule quarantines it, and whether its pixels may show identity
 * (then it is quarantined too, unless a `pass` rule of its profile lets it through).
 */
import { burnedInTextReason, codeValues, embeddedOverlayGroup } from './burned-in.js';
import { storageSopClassName } from '../dicom/sop-classes.js';
import type { DeidSettings } from './engine.js';
import { chooseProfile, compileProfileList, conditionHolds, type CompiledProfile, type InstanceFacts, type ProfileConfig } from './rules.js';
import { compileZones, findZone, type CompiledZone, type ZoneRule } from '../pixels/zones.js';

export type Decision =
  | { kind: 'deidentify'; settings: DeidSettings; profile: string; redact?: CompiledZone }
  | { kind: 'quarantine'; reason: string };

export interface DecisionFacts extends InstanceFacts {
  sopClassUid: string;
}

/** Shared settings of every profile (the profile adds its options and rules), and the pixel zones. */
export type BaseSettings = Omit<DeidSettings, 'options' | 'rules' | 'cleanedPixels'> & { pixelZones?: readonly ZoneRule[] };

const compiled = new Map<string, CompiledProfile[]>();

/** Compiles profiles once per distinct configuration (workers see the same list task after task). */
export function compileProfiles(profiles: readonly ProfileConfig[]): CompiledProfile[] {
  const key = JSON.stringify(profiles);
  let found = compiled.get(key);
  if (!found) {
    found = compileProfileList(profiles);
    if (compiled.size > 16) compiled.clear();
    compiled.set(key, found);
  }
  return found;
}

const TAG = { SOPClassUID: 0x00080016, Modality: 0x00080060, BurnedInAnnotation: 0x00280301, RecognizableVisualFeatures: 0x00280302 };

/**
 * PS3.15 E.3.1 (Clean Pixel Data): with the option, the first zone of deid.pixelZones whose signature
 * matches is redacted, and that clears the instance of the burned-in text risk. Faces
 * (RecognizableVisualFeatures YES) cannot be cleaned by zones: they stay quarantined unless a rule
 * passes them. Without a matching zone, an instance whose pixels may show identity stays quarantined.
 */
export function decide(profiles: readonly CompiledProfile[], facts: DecisionFacts, base: BaseSettings): Decision {
  const profile = chooseProfile(profiles, facts);
  const active = profile.instanceRules.filter((rule) => conditionHolds(rule.when, facts));
  const quarantine = active.find((rule) => rule.kind === 'quarantine');
  if (quarantine) return { kind: 'quarantine', reason: `rule of profile ${profile.name}: ${quarantine.reason ?? 'quarantine'}` };
  const passed = active.some((rule) => rule.kind === 'pass');
  const { pixelZones, ...shared } = base;
  const settings: DeidSettings = { ...shared, options: profile.options, rules: profile.attributeRules.filter((rule) => conditionHolds(rule.when, facts)) };
  // A matching zone is applied whatever pass rules say: a pass only lifts the holds below.
  const zone = profile.cleanPixelData ? findZone(compileZones(pixelZones ?? []), (tag) => facts.attribute(tag)) : undefined;
  const faces = codeValues(facts.attribute(TAG.RecognizableVisualFeatures)).includes('YES');
  if (zone && (!faces || passed)) return { kind: 'deidentify', profile: profile.name, settings, redact: zone };
  // The class the sender named (the File Meta Information's) and the one the dataset says: a sender
  // that names CT Image for a Secondary Capture must not carry its text past the check.
  const classes = new Set([facts.sopClassUid, facts.attribute(TAG.SOPClassUID)?.replace(/\0/g, '').trim() || facts.sopClassUid]);
  const overlayGroup = embeddedOverlayGroup(facts.attribute);
  const pixels = [...classes]
    .map((sopClassUid) =>
      burnedInTextReason({
        ...(overlayGroup !== undefined ? { embeddedOverlayGroup: overlayGroup } : {}),
        sopClassUid,
        modality: facts.attribute(TAG.Modality) ?? null,
        burnedInAnnotation: facts.attribute(TAG.BurnedInAnnotation) ?? null,
        recognizableVisualFeatures: facts.attribute(TAG.RecognizableVisualFeatures) ?? null,
      }),
    )
    .find((reason) => reason !== undefined);
  if (pixels !== undefined && !passed) {
    // An encapsulated document (PDF, CDA) has no pixels a zone could clean: said as what it is, with
    // what lets it through (found in the SR review: "pixel data: modality DOC usually carries
    // burned-in text (cleanPixelData is not among the options)" sent operators to an option that
    // cannot help).
    const document = [...classes].map((sopClassUid) => storageSopClassName(sopClassUid)).find((name) => name?.startsWith('Encapsulated'));
    if (document !== undefined) {
      return { kind: 'quarantine', reason: `document: ${document} may show identity in its document, which Gantry cannot read or clean (a pass rule sends it with the document replaced)` };
    }
    const why = faces
      ? 'zones cannot clean faces'
      : !profile.cleanPixelData
        ? 'cleanPixelData is not among the options'
        : (pixelZones ?? []).length === 0
          ? 'deid.pixelZones names no zones'
          : 'no zone of deid.pixelZones matches';
    return { kind: 'quarantine', reason: `pixel data: ${pixels} (${why})` };
  }
  return { kind: 'deidentify', profile: profile.name, settings };
}
