/**
 * Pixel redaction zones per machine (deid.pixelZones): a signature of attribute values picks the
 * rectangles where a device burns text into its images. The first zone whose signature matches wins.
 *
 *   zones:
 *     - name: Acme Sono header band            # shown in the audit and the logs
 *       match: { Manufacturer: ACME, ManufacturerModelName: "/^Sono/", Rows: 480, Columns: 640 }
 *       rects: [[0, 0, 640, 48]]               # [x, y, width, height] in pixels, origin top left
 *     - name: any ultrasound, outside its regions
 *       match: { Modality: US }
 *       outsideUltrasoundRegions: true         # blank everything outside SequenceOfUltrasoundRegions
 *
 * A match value is a string or a number, a /regular expression/ (flags i, m, s, u), or a numeric
 * comparison written as text: "<= 600", "> 480", "!= 0". Multi-valued attributes (ImageType) are
 * compared as their whole value, backslashes included. A plain string matches whatever the case and
 * the spacing (ACME, "Acme ", "acme" alike; runs of spaces count as one): a zone that misses its
 * device's images for a spelling lets them out unredacted when nothing else says they carry text.
 *
 * Reading and checking a zones file is zones-file.ts: the YAML parser and the schema stay out of the
 * worker threads, which only test compiled zones.
 */
import { HIDDEN_ATTRIBUTE_KEY, HIDDEN_PATIENT_VALUE, hiddenInMessages } from '../config/patient-values.js';
import { createHash } from 'node:crypto';
import { regexValue } from '../config/regex-value.js';
import { tagOfKeyword } from '../dicom/dictionary.js';

export type Rect = readonly [x: number, y: number, width: number, height: number];

export interface ZoneRule {
  name: string;
  match: Record<string, string | number>;
  rects: Rect[];
  outsideUltrasoundRegions: boolean;
  /** Where the rule comes from (a starter entry cites its source). */
  source?: string;
}

/** What is wrong with zones: every problem found, one line each (`problems`). */
export class ZonesError extends Error {
  readonly problems: string[];
  constructor(problems: string | readonly string[]) {
    const list = typeof problems === 'string' ? [problems] : [...problems];
    super(list.join('; '));
    this.problems = list;
  }
}

/** A zone ready to test: each condition reads one attribute by tag. */
export interface CompiledZone {
  rule: ZoneRule;
  conditions: Array<{ tag: number; holds(value: string | undefined): boolean }>;
  /** Names the zone set in derived UIDs: the same rectangles give the same key. */
  key: string;
}

export function compileZone(rule: ZoneRule, where = `zone ${rule.name}`): CompiledZone {
  // Every condition is checked, and the zone refused with all that is wrong in it.
  const problems: string[] = [];
  const conditions: CompiledZone['conditions'] = [];
  for (const [keyword, expected] of Object.entries(rule.match)) {
    const tag = tagOfKeyword(keyword);
    if (tag === undefined) {
      problems.push(`${where}: match.${HIDDEN_ATTRIBUTE_KEY} is not a DICOM keyword (e.g. Manufacturer, ManufacturerModelName, Rows); a list of values is written [a, b]`);
      continue;
    }
    try {
      conditions.push({ tag, holds: valueTest(expected, `${where}: match.${keyword}`, hiddenInMessages(keyword)) });
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  if (problems.length > 0) throw new ZonesError(problems);
  const key = createHash('sha256')
    .update(JSON.stringify([rule.rects, rule.outsideUltrasoundRegions]))
    .digest('hex')
    .slice(0, 16);
  return { rule, conditions, key };
}

const COMPARISON = /^\s*(<=|>=|<|>|!=|=)\s*(-?\d+(?:\.\d+)?)\s*$/;

/** `aboutPatient`: the value may identify a patient, and a message names the key only (a refused
 * reload is logged; a RegExp's own message quotes its pattern). */
function valueTest(expected: string | number, where: string, aboutPatient: boolean): (value: string | undefined) => boolean {
  if (typeof expected === 'number') return (value) => value !== undefined && value !== '' && Number(value) === expected;
  const expression = regexValue(expected);
  if (expression && expression.kind !== 'pattern') throw new ZonesError(`${where}: ${expression.kind === 'invalid' && aboutPatient ? `not a valid regular expression ${HIDDEN_PATIENT_VALUE}: ${expression.reason}` : expression.why}`);
  if (expression) {
    const { pattern } = expression;
    return (value) => value !== undefined && pattern.test(value);
  }
  const comparison = COMPARISON.exec(expected);
  if (comparison) {
    const operand = Number(comparison[2]);
    const compare = COMPARATORS[comparison[1] as keyof typeof COMPARATORS];
    return (value) => {
      if (value === undefined || value.trim() === '') return false;
      const number = Number(value);
      return Number.isFinite(number) && compare(number, operand);
    };
  }
  const wanted = comparableText(expected);
  return (value) => value !== undefined && comparableText(value) === wanted;
}

/**
 * A value as plain strings are compared: each value of a multi-valued attribute trimmed (PS3.5 6.2:
 * leading and trailing spaces of CS, LO and SH are not significant), runs of spaces as one, upper
 * case (devices and their software versions write the same name in either case).
 */
function comparableText(text: string): string {
  return text
    .split('\\')
    .map((value) => value.trim().replace(/\s+/g, ' '))
    .join('\\')
    .toUpperCase();
}

const COMPARATORS = {
  '<': (a: number, b: number) => a < b,
  '<=': (a: number, b: number) => a <= b,
  '>': (a: number, b: number) => a > b,
  '>=': (a: number, b: number) => a >= b,
  '=': (a: number, b: number) => a === b,
  '!=': (a: number, b: number) => a !== b,
};

/** The first zone whose every condition holds; `attribute` gives a top-level value as trimmed text. */
export function findZone(zones: readonly CompiledZone[], attribute: (tag: number) => string | undefined): CompiledZone | undefined {
  return zones.find((zone) => zone.conditions.every((condition) => condition.holds(attribute(condition.tag))));
}

const compiledSets = new Map<string, CompiledZone[]>();

/** Compiles a zone list once per distinct list (a worker sees the same list task after task). */
export function compileZones(rules: readonly ZoneRule[]): CompiledZone[] {
  const key = JSON.stringify(rules);
  let found = compiledSets.get(key);
  if (!found) {
    found = rules.map((rule) => compileZone(rule));
    if (compiledSets.size > 8) compiledSets.clear();
    compiledSets.set(key, found);
  }
  return found;
}
