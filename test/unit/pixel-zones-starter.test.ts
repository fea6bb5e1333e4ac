/**
 * The starter zones converted from RSNA CTP's DicomPixelAnonymizer.script (config/zones/ctp-starter.yaml):
 * the file loads as deid.pixelZones does, every entry cites its CTP signature, and every entry matches a
 * generated image of its device: attributes made from the entry's own match (the exact value, the number,
 * a string that the regular expression accepts, a number that satisfies the comparison). First match
 * wins, so an entry may be shadowed by an earlier one; that happens exactly where it happens in CTP.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tagOfKeyword } from '../../src/dicom/dictionary.js';
import { compileZones, findZone, type ZoneRule } from '../../src/pixels/zones.js';
import { loadZonesFile } from '../../src/pixels/zones-file.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const STARTER = join(ROOT, 'config', 'zones', 'ctp-starter.yaml');

/** Signatures ({ ... } conditions) in johnperry/CTP source/files/scripts/DicomPixelAnonymizer.script. */
const SIGNATURES = 52;
/** Signatures left out (none: 17, on File Meta Information, converts since zones see group 0002). */
const LEFT_OUT: number[] = [];
const CONVERTED = SIGNATURES - LEFT_OUT.length; // 52
/** Signature -> the earlier signature that shadows it (it tests a subset of the same conditions), as in CTP. */
const SHADOWED = new Map([
  [6, 5],
  [51, 50],
]);

const SOURCE = /^CTP DicomPixelAnonymizer\.script, johnperry\/CTP@[0-9a-f]{40}, signature (\d+) \(line (\d+)\)$/;
const REGULAR_EXPRESSION = /^\/(.*)\/([a-z]*)$/s;
const COMPARISON = /^\s*(<=|>=|<|>|!=|=)\s*(-?\d+(?:\.\d+)?)\s*$/;

const zones = loadZonesFile(STARTER);
const compiled = compileZones(zones);

function signatureOf(zone: ZoneRule): number {
  const found = SOURCE.exec(zone.source ?? '');
  assert.ok(found, `${zone.name}: source "${zone.source ?? ''}" does not cite a CTP signature`);
  return Number(found[1]);
}

/**
 * The alternatives of a regular expression of the shapes the conversion writes: regex-escaped literals,
 * optionally anchored with ^ and $, joined by |. Anything else is refused, so that a new shape needs a generator.
 */
function alternativesOf(source: string): Array<{ literal: string; start: boolean; end: boolean }> {
  const alternatives: Array<{ literal: string; start: boolean; end: boolean }> = [];
  let current = { literal: '', start: false, end: false };
  for (let index = 0; index < source.length; index++) {
    const c = source[index] ?? '';
    if (c === '\\') {
      const next = source[++index];
      assert.ok(next !== undefined && !/[A-Za-z0-9]/.test(next), `/${source}/: escape \\${next ?? ''} is not a literal`);
      current.literal += next;
    } else if (c === '^' && current.literal === '' && !current.start) current.start = true;
    else if (c === '$' && (source[index + 1] === undefined || source[index + 1] === '|')) current.end = true;
    else if (c === '|') {
      alternatives.push(current);
      current = { literal: '', start: false, end: false };
    } else {
      assert.ok(!/[.*+?()[\]{}^$]/.test(c), `/${source}/: "${c}" is not a shape the generator knows`);
      current.literal += c;
    }
  }
  alternatives.push(current);
  return alternatives;
}

const swapCase = (text: string) => [...text].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join('');

/**
 * A value that satisfies `expected`. Variant 0 is the plain value; variant 1 puts text around an unanchored
 * literal and swaps its case where the test ignores case (CTP's contains/containsIgnoreCase), and picks the
 * next alternative of an alternation.
 */
function exampleOf(expected: string | number, variant: number): string {
  if (typeof expected === 'number') return String(expected);
  const expression = REGULAR_EXPRESSION.exec(expected);
  if (expression) {
    const [, source = '', flags = ''] = expression;
    const alternatives = alternativesOf(source);
    const chosen = alternatives[variant % alternatives.length];
    assert.ok(chosen && chosen.literal !== '', `${expected}: an empty alternative`);
    if (variant === 0) return chosen.literal;
    const literal = flags.includes('i') ? swapCase(chosen.literal) : chosen.literal;
    return `${chosen.start ? '' : '~ '}${literal}${chosen.end ? '' : ' ~'}`;
  }
  const comparison = COMPARISON.exec(expected);
  if (comparison) {
    const operand = Number(comparison[2]);
    const offset = { '<': -1, '<=': 0, '>': 1, '>=': 0, '=': 0, '!=': 1 }[comparison[1] as '<' | '<=' | '>' | '>=' | '=' | '!='];
    return String(operand + offset);
  }
  return expected;
}

/** The attributes of a generated image: one value per key of the match. */
function imageOf(zone: ZoneRule, variant: number): Map<number, string> {
  const attributes = new Map<number, string>();
  for (const [keyword, expected] of Object.entries(zone.match)) {
    const tag = tagOfKeyword(keyword);
    assert.ok(tag !== undefined, `${zone.name}: ${keyword} is not a keyword`);
    attributes.set(tag, exampleOf(expected, variant));
  }
  return attributes;
}

const find = (attributes: ReadonlyMap<number, string>) => findZone(compiled, (tag) => attributes.get(tag));

test(`the starter file loads as deid.pixelZones does, with ${CONVERTED} zones: the ${SIGNATURES} CTP signatures less ${LEFT_OUT.length} left out`, () => {
  assert.equal(zones.length, CONVERTED);
  assert.equal(compiled.length, CONVERTED);
});

test('every zone cites its CTP signature; the order is CTP\'s, each signature once, only the left out ones missing', () => {
  const numbers = zones.map(signatureOf);
  for (const [index, number] of numbers.entries()) {
    if (index > 0) assert.ok(number > (numbers[index - 1] ?? 0), `signature ${number} after ${numbers[index - 1]}: the order must be CTP's`);
    assert.ok(number >= 1 && number <= SIGNATURES, `signature ${number}`);
  }
  const expected = Array.from({ length: SIGNATURES }, (_, index) => index + 1).filter((number) => !LEFT_OUT.includes(number));
  assert.deepEqual(numbers, expected);
  assert.equal(new Set(zones.map((zone) => zone.name)).size, zones.length, 'zone names are unique (they name the zone in the audit)');
});

test('every zone has rectangles, and they lie within the Rows and Columns its match requires', () => {
  for (const zone of zones) {
    assert.ok(zone.rects.length > 0, zone.name);
    assert.equal(zone.outsideUltrasoundRegions, false, zone.name);
    const { Rows: rows, Columns: columns } = zone.match;
    for (const [x, y, width, height] of zone.rects) {
      if (typeof rows === 'number') assert.ok(y + height <= rows, `${zone.name}: [${x}, ${y}, ${width}, ${height}] runs past ${rows} rows`);
      if (typeof columns === 'number') assert.ok(x + width <= columns, `${zone.name}: [${x}, ${y}, ${width}, ${height}] runs past ${columns} columns`);
    }
  }
});

test('a generated image of each device finds its zone, or an earlier one that CTP also picks first', () => {
  const shadowed = new Map<number, number>();
  for (const variant of [0, 1]) {
    for (const [index, zone] of zones.entries()) {
      const found = find(imageOf(zone, variant));
      assert.ok(found, `${zone.name} (variant ${variant}): no zone matches its own image`);
      const at = compiled.indexOf(found);
      if (at === index) continue;
      assert.ok(at >= 0 && at < index, `${zone.name}: found "${found.rule.name}", which comes after it`);
      shadowed.set(signatureOf(zone), signatureOf(found.rule));
    }
  }
  assert.deepEqual(shadowed, SHADOWED, `shadowed entries (signature -> shadowing signature): ${[...shadowed].map(([a, b]) => `${a}->${b}`).join(', ')}`);
});

test('each condition counts: an image missing one attribute, or with another value, does not find that zone', () => {
  for (const zone of zones) {
    const image = imageOf(zone, 0);
    for (const [keyword, expected] of Object.entries(zone.match)) {
      const tag = tagOfKeyword(keyword) ?? -1;
      const missing = new Map(image);
      missing.delete(tag);
      assert.notEqual(find(missing)?.rule, zone, `${zone.name}: matches without ${keyword}`);
      const other = new Map(image).set(tag, typeof expected === 'number' ? String(expected + 1) : '~');
      assert.notEqual(find(other)?.rule, zone, `${zone.name}: matches with ${keyword} = ${other.get(tag)}`);
    }
  }
});

test('self-check: an image of no listed device matches nothing', () => {
  const nobody = new Map<number, string>();
  for (const [keyword, value] of Object.entries({
    Modality: 'OT',
    Manufacturer: 'NOBODY',
    ManufacturerModelName: 'NONE',
    SeriesDescription: 'nothing',
    ImageType: 'ORIGINAL\\PRIMARY',
    BurnedInAnnotation: 'NO',
    Rows: '1',
    Columns: '1',
  })) {
    nobody.set(tagOfKeyword(keyword) ?? -1, value);
  }
  assert.equal(find(nobody), undefined);
  assert.equal(find(new Map()), undefined);
});
