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
import { tagOfKeyword } from '../dicom/dictionary.js';
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
  options: ProfileOption[];
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
  attributeRules: AttributeRule[];
  instanceRules: InstanceRule[];
  when?: CompiledCondition;
}

export class RuleError extends Error {
  override name = 'RuleError';
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

function compileCondition(condition: ConditionConfig | undefined): CompiledCondition | undefined {
  if (!condition) return undefined;
  const aeTitles = condition.callingAeTitle === undefined ? undefined : [condition.callingAeTitle].flat();
  return {
    ...(aeTitles ? { callingAeTitles: new Set(aeTitles.map((ae) => ae.trim())) } : {}),
    attributes: Object.entries(condition.attributes ?? {}).map(([reference, expected]) => {
      const { tag } = resolveAttribute(reference);
      if (tag === undefined) throw new RuleError(`a condition names a private attribute ${reference}; name a standard one`);
      return { tag, test: valueTest(expected) };
    }),
  };
}

/** An exact string or number, or a /regular expression/ (PS3.5 values are compared trimmed). */
export function valueTest(expected: string | number): (value: string | undefined) => boolean {
  if (typeof expected === 'number') return (value) => value !== undefined && Number(value) === expected;
  const regex = /^\/(.*)\/([a-z]*)$/s.exec(expected);
  if (regex) {
    const pattern = new RegExp(regex[1] as string, regex[2]);
    return (value) => value !== undefined && pattern.test(value);
  }
  return (value) => value !== undefined && value === expected;
}

export function conditionHolds(condition: CompiledCondition | undefined, facts: InstanceFacts): boolean {
  if (!condition) return true;
  if (condition.callingAeTitles && !condition.callingAeTitles.has(facts.callingAeTitle)) return false;
  return condition.attributes.every(({ tag, test }) => test(facts.attribute(tag)));
}

export function compileProfile(profile: ProfileConfig): CompiledProfile {
  const attributeRules: AttributeRule[] = [];
  const instanceRules: InstanceRule[] = [];
  profile.rules.forEach((rule, index) => {
    try {
      const when = compileCondition(rule.when);
      if (rule.action === 'quarantine' || rule.action === 'pass') {
        instanceRules.push({ kind: rule.action, ...(rule.action === 'quarantine' ? { reason: rule.reason } : {}), ...(when ? { when } : {}) });
        return;
      }
      if (rule.action === 'replace' && rule.value === undefined) throw new RuleError('a replace rule needs a value');
      attributeRules.push({ kind: 'attribute', target: resolveAttribute(rule.attribute), action: rule.action, ...(rule.value !== undefined ? { value: rule.value } : {}), ...(when ? { when } : {}) });
    } catch (error) {
      throw new RuleError(`profile ${profile.name}, rule ${index + 1}: ${(error as Error).message}`);
    }
  });
  const when = compileCondition(profile.when);
  return { name: profile.name, options: new Set(profile.options), attributeRules, instanceRules, ...(when ? { when } : {}) };
}

/** The first named profile whose condition holds, else the default (the last of the list). */
export function chooseProfile(profiles: readonly CompiledProfile[], facts: InstanceFacts): CompiledProfile {
  const named = profiles.slice(0, -1).find((profile) => profile.when && conditionHolds(profile.when, facts));
  return named ?? (profiles[profiles.length - 1] as CompiledProfile);
}
