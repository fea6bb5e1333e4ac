/**
 * Rules of the config that override or extend the profile, and named profiles chosen per instance.
 *
 *   deid:
 *     rules:
 *       - { attribute: StationName, action: keep }
 *       - { attribute: "(0008,1030)", action: replace, value: RESEARCH STUDY }
 *       - { attribute: AccessionNumber, action: hash }
 *       - { attribute: { creator: GEMS_ACQU_01, tag: "0019,xx23" }, action: keep }
 *       - { action: quarantine, reason: no consent, when: { attributes: { InstitutionName: "/Saint/" } } }
 *       - { action: pass, when: { callingAeTitle: US_SCANNER_3 } }   # lets burned-in text through
 *     profiles:
 *       - { name: trial-a, when: { callingAeTitle: [CT01, CT02] }, options: [...], rules: [...] }
 *
 * A condition matches attribute values of the instance (exact string or number, or a /regular
 * expression/) and the calling AE title. The first rule that names an attribute and matches wins.
 */
import { HIDDEN_ATTRIBUTE_KEY, HIDDEN_PATIENT_VALUE, hiddenInMessages, namesAttribute } from '../config/patient-values.js';
import { regexValue } from '../config/regex-value.js';
import { keywordOf, tagOfKeyword, vrOf } from '../dicom/dictionary.js';
import type { ProfileOption } from './profile-types.js';

export type RuleAction = 'keep' | 'remove' | 'empty' | 'replace' | 'hash' | 'shiftDate' | 'remapUid';

export interface ConditionConfig {
  callingAeTitle?: string | string[];
  attributes?: Record<string, string | number>;
}

export type AttributeRef = string | { creator: string; tag: string };

export type RuleConfig =
  | { attribute: AttributeRef; action: RuleAction; value?: string; when?: ConditionConfig }
  | { action: 'quarantine'; reason: string; when?: ConditionConfig }
  | { action: 'pass'; when?: ConditionConfig };

export interface ProfileConfig {
  name: string;
  /** Where the profile is in the config (deid, deid.profiles.0): problems name the key. */
  key?: string;
  options: ProfileOption[];
  /** PS3.15 Clean Pixel Data Option: burned-in text is blanked with the zones of deid.pixelZones. */
  cleanPixelData?: boolean;
  rules: RuleConfig[];
  when?: ConditionConfig;
}

/** What rules may ask about the instance. */
export interface InstanceFacts {
  callingAeTitle: string;
  /** The value of a top-level attribute by tag, as text (trimmed), or undefined. */
  attribute(tag: number): string | undefined;
}

export interface CompiledAttribute {
  /** A standard tag, or a private one given by group and element byte under a creator. */
  tag?: number;
  privateRef?: { creator: string; group: number; element: number };
}

export interface AttributeRule {
  kind: 'attribute';
  target: CompiledAttribute;
  action: RuleAction;
  value?: string;
  when?: CompiledCondition;
}

export interface InstanceRule {
  kind: 'quarantine' | 'pass';
  reason?: string;
  when?: CompiledCondition;
}

export interface CompiledCondition {
  callingAeTitles?: Set<string>;
  attributes: Array<{ tag: number; test: (value: string | undefined) => boolean }>;
}

export interface CompiledProfile {
  name: string;
  options: ReadonlySet<ProfileOption>;
  cleanPixelData: boolean;
  attributeRules: AttributeRule[];
  instanceRules: InstanceRule[];
  when?: CompiledCondition;
}

/** What is wrong with rules or profiles: every problem found, one line each (`problems`). */
export class RuleError extends Error {
  override name = 'RuleError';
  readonly problems: string[];
  constructor(problems: string | readonly string[]) {
    const list = typeof problems === 'string' ? [problems] : [...problems];
    super(list.join('; '));
    this.problems = list;
  }
}

/** The problems of a RuleError, or of another error its message. */
function problemsOf(error: unknown): string[] {
  return error instanceof RuleError ? error.problems : [(error as Error).message];
}

/** Resolves a keyword or a "(gggg,eeee)" / "gggg,eeee" tag. */
export function resolveAttribute(reference: AttributeRef): CompiledAttribute {
  if (typeof reference !== 'string') {
    const match = /^([0-9A-Fa-f]{4}),xx([0-9A-Fa-f]{2})$/.exec(reference.tag);
    if (!match) throw new RuleError(`private tag "${reference.tag}" is not "gggg,xxee"`);
    return { privateRef: { creator: reference.creator.trim(), group: Number.parseInt(match[1] as string, 16), element: Number.parseInt(match[2] as string, 16) } };
  }
  const tagMatch = /^\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?$/.exec(reference.trim());
  if (tagMatch) return { tag: ((Number.parseInt(tagMatch[1] as string, 16) << 16) | Number.parseInt(tagMatch[2] as string, 16)) >>> 0 };
  const tag = tagOfKeyword(reference.trim());
  if (tag === undefined) throw new RuleError(`"${reference}" is neither a DICOM keyword nor a tag like (0008,1030)`);
  return { tag };
}

export function compileCondition(condition: ConditionConfig | undefined): CompiledCondition | undefined {
  if (!condition) return undefined;
  const aeTitles = condition.callingAeTitle === undefined ? undefined : [condition.callingAeTitle].flat();
  // Every attribute is checked, and the condition refused with all that is wrong in it.
  const problems: string[] = [];
  const attributes: CompiledCondition['attributes'] = [];
  for (const [reference, expected] of Object.entries(condition.attributes ?? {})) {
    // A key that names no attribute is never echoed (patient-values.ts namesAttribute).
    if (!namesAttribute(reference)) {
      problems.push(`when.attributes.${HIDDEN_ATTRIBUTE_KEY}: name a DICOM keyword or a tag like (0008,1030); a list of values is written [a, b]`);
      continue;
    }
    let tag: number | undefined;
    try {
      tag = resolveAttribute(reference).tag;
    } catch (error) {
      problems.push(`when.attributes.${reference}: ${(error as Error).message}`);
      continue;
    }
    if (tag === undefined) {
      problems.push(`when.attributes.${reference}: a condition names a private attribute; name a standard one`);
      continue;
    }
    try {
      attributes.push({ tag, test: valueTest(expected, hiddenInMessages(reference) ? HIDDEN_PATIENT_VALUE : undefined) });
    } catch (error) {
      problems.push(`when.attributes.${reference}: ${(error as Error).message}`);
    }
  }
  if (problems.length > 0) throw new RuleError(problems);
  return { ...(aeTitles ? { callingAeTitles: new Set(aeTitles.map((ae) => ae.trim())) } : {}), attributes };
}

/** An exact string or number, or a /regular expression/ (PS3.5 values are compared trimmed). A
 * refused one is named `shown` when given (a value about the patient is not quoted). */
export function valueTest(expected: string | number, shown?: string): (value: string | undefined) => boolean {
  if (typeof expected === 'number') return (value) => value !== undefined && Number(value) === expected;
  const regex = regexValue(expected);
  if (regex?.kind === 'refused') throw new RuleError(`${shown ?? expected}: ${regex.why}`);
  if (regex?.kind === 'invalid') {
    throw new RuleError(`${shown ?? expected} is not a regular expression JavaScript reads (${regex.reason})`);
  }
  if (regex) {
    const { pattern } = regex;
    return (value) => value !== undefined && pattern.test(value);
  }
  return (value) => value !== undefined && value === expected;
}

export function conditionHolds(condition: CompiledCondition | undefined, facts: InstanceFacts): boolean {
  if (!condition) return true;
  if (condition.callingAeTitles && !condition.callingAeTitles.has(facts.callingAeTitle)) return false;
  return condition.attributes.every(({ tag, test }) => test(facts.attribute(tag)));
}

/**
 * Compiles a profile, or refuses it with every problem of its rules and its condition at once (an
 * operator mending a config sees all there is to mend in one run). Each problem names the profile and
 * the rule, and the config key when the profile has one (`key`, from settings.ts).
 */
export function compileProfile(profile: ProfileConfig): CompiledProfile {
  const attributeRules: AttributeRule[] = [];
  const instanceRules: InstanceRule[] = [];
  const problems: string[] = [];
  profile.rules.forEach((rule, index) => {
    const where = profile.key !== undefined ? `${profile.key}.rules.${index} (profile ${profile.name}, rule ${index + 1})` : `profile ${profile.name}, rule ${index + 1}`;
    const found: string[] = [];
    let when: CompiledCondition | undefined;
    try {
      when = compileCondition(rule.when);
    } catch (error) {
      found.push(...problemsOf(error));
    }
    if (rule.action === 'quarantine' || rule.action === 'pass') {
      instanceRules.push({ kind: rule.action, ...(rule.action === 'quarantine' ? { reason: rule.reason } : {}), ...(when ? { when } : {}) });
    } else {
      try {
        if (rule.action === 'replace' && rule.value === undefined) throw new RuleError('a replace rule needs a value');
        const target = resolveAttribute(rule.attribute);
        if (rule.action === 'replace') checkReplacementIsAscii(rule.value ?? '', target.tag === undefined ? undefined : vrOf(target.tag));
        if (target.tag !== undefined) checkPrivateTagNamesCreator(rule.action, target.tag);
        if (target.tag !== undefined) checkRuleFitsVr(rule.action, target.tag, rule.value);
        attributeRules.push({ kind: 'attribute', target, action: rule.action, ...(rule.value !== undefined ? { value: rule.value } : {}), ...(when ? { when } : {}) });
      } catch (error) {
        found.push(...problemsOf(error));
      }
    }
    problems.push(...found.map((problem) => `${where}: ${problem}`));
  });
  let when;
  try {
    when = compileCondition(profile.when);
  } catch (error) {
    const where = profile.key !== undefined ? `${profile.key} (profile ${profile.name})` : `profile ${profile.name}`;
    problems.push(...problemsOf(error).map((problem) => `${where}: ${problem}`));
  }
  if (problems.length > 0) throw new RuleError(problems);
  return { name: profile.name, options: new Set(profile.options), cleanPixelData: profile.cleanPixelData ?? false, attributeRules, instanceRules, ...(when ? { when } : {}) };
}

/** Compiles every profile, or refuses them with the problems of all of them. */
export function compileProfileList(profiles: readonly ProfileConfig[]): CompiledProfile[] {
  const compiled: CompiledProfile[] = [];
  const problems: string[] = [];
  for (const profile of profiles) {
    try {
      compiled.push(compileProfile(profile));
    } catch (error) {
      problems.push(...problemsOf(error));
    }
  }
  if (problems.length > 0) throw new RuleError(problems);
  return compiled;
}

/**
 * A private data element is known only by its creator (PS3.5 7.8.1): (0019,1023) is whatever the
 * creator that reserved block 10 of group 0019 put there, another vendor's in another instance. A rule
 * that keeps one by its bare tag would keep any vendor's element there; removing one is harmless.
 */
function checkPrivateTagNamesCreator(action: RuleAction, tag: number): void {
  const group = tag >>> 16;
  const element = tag & 0xffff;
  if (action === 'remove' || action === 'empty' || group % 2 === 0 || element < 0x1000) return;
  const hex = (value: number) => value.toString(16).toUpperCase().padStart(4, '0');
  throw new RuleError(
    `(${hex(group)},${hex(element)}) is a private element, which only its creator names: write { creator: NAME, tag: "${hex(group)},xx${hex(element & 0xff).slice(2)}" } for ${action}`,
  );
}

/** The first named profile whose condition holds, else the default (the last of the list). */
export function chooseProfile(profiles: readonly CompiledProfile[], facts: InstanceFacts): CompiledProfile {
  const named = profiles.slice(0, -1).find((profile) => profile.when && conditionHolds(profile.when, facts));
  return named ?? (profiles[profiles.length - 1] as CompiledProfile);
}

/** PS3.5 Table 6.2-1: the longest value (in characters) of each VR a rule may write text into. */
export const MAX_VALUE_LENGTH: Readonly<Record<string, number>> = {
  AE: 16,
  AS: 4,
  CS: 16,
  DA: 8,
  DS: 16,
  DT: 26,
  IS: 12,
  LO: 64,
  LT: 10240,
  PN: 64,
  SH: 16,
  ST: 1024,
  TM: 14,
  UC: 0xfffffffe,
  UI: 64,
  UR: 0xfffffffe,
  UT: 0xfffffffe,
};

/** VRs a hash (a keyed text digest) can stand in for; UI values get a keyed UID instead. */
export const HASHABLE_VRS: ReadonlySet<string> = new Set(['AE', 'CS', 'SH', 'LO', 'PN', 'ST', 'LT', 'UT', 'UC', 'UI']);

/** The form each VR's values must have (PS3.5 6.2), for the VRs with one. */
const VALUE_FORM: Readonly<Record<string, RegExp>> = {
  UI: /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/,
  DA: /^[0-9]{8}$/,
  TM: /^[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?$/,
  IS: /^ *[+-]?[0-9]+ *$/,
  DS: /^ *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *$/,
  AS: /^[0-9]{3}[DWMY]$/,
};

/**
 * A replacement is written as it is into datasets of every character set: only the default repertoire
 * (PS3.5 6.1.2.1: printable ASCII) reads the same in all of them. "Étude" was written as Latin-1 bytes
 * into UTF-8, Cyrillic and GB18030 datasets alike (invalid or other letters there), and "研究" as
 * control bytes (found in the character set review).
 */
function checkReplacementIsAscii(value: string, vr: string | undefined): void {
  // The default repertoire's control characters CR, LF, FF and TAB are text in LT, ST and UT only (PS3.5 6.2).
  const allowed = vr !== undefined && ['LT', 'ST', 'UT'].includes(vr) ? /^[\x20-\x7e\r\n\f\t]$/ : /^[\x20-\x7e]$/;
  const other = [...value].find((character) => !allowed.test(character));
  if (other === undefined) return;
  throw new RuleError(`the value "${value}" holds ${JSON.stringify(other)}: replacement values are written into datasets of every character set, so only printable ASCII (PS3.5 6.1.2.1, the default repertoire) is allowed, and CR, LF, FF and TAB in LT, ST and UT`);
}

/**
 * A rule on a standard attribute must make sense for its VR: text goes only where text goes, and
 * fits (a replace of PixelData, or a 70-character SH, would write an invalid object that the
 * research PACS rejects or misreads).
 */
function checkRuleFitsVr(action: RuleAction, tag: number, value: string | undefined): void {
  const vr = vrOf(tag);
  const name = keywordOf(tag) ?? 'the attribute';
  switch (action) {
    case 'replace': {
      const max = MAX_VALUE_LENGTH[vr];
      if (max === undefined) throw new RuleError(`replace writes text, and ${name} has VR ${vr}; use keep, remove or empty`);
      for (const one of (value ?? '').split('\\')) {
        const longest = vr === 'PN' ? Math.max(...one.split('=').map((group) => group.length)) : one.length;
        if (longest > max) throw new RuleError(`the value "${one}" is longer than ${vr} allows (${max} characters)`);
        const form = VALUE_FORM[vr];
        if (form && one !== '' && !form.test(one)) throw new RuleError(`the value "${one}" is not a valid ${vr} (PS3.5 6.2)`);
      }
      return;
    }
    case 'hash':
      if (!HASHABLE_VRS.has(vr)) throw new RuleError(`hash applies to text attributes (${[...HASHABLE_VRS].join(', ')}), and ${name} has VR ${vr}`);
      return;
    case 'shiftDate':
      if (vr !== 'DA' && vr !== 'DT') throw new RuleError(`shiftDate applies to DA and DT attributes (dates move by whole days; times of day stay), and ${name} has VR ${vr}`);
      return;
    case 'remapUid':
      if (vr !== 'UI') throw new RuleError(`remapUid applies to UI attributes, and ${name} has VR ${vr}`);
      return;
    default:
      return;
  }
}
