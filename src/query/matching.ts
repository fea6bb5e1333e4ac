/**
 * The attribute matching of C-FIND (PS3.4 C.2.2.2) as SQL conditions on one index column: single
 * value, list of UIDs, universal, wild card, range and empty value matching. Pure: it builds the
 * condition and its parameters; the query module runs it against either view of the index.
 */

export interface ColumnCondition {
  /** An SQL expression over the column, with `?` placeholders. */
  sql: string;
  params: Array<string | number>;
}

export class MatchingError extends Error {
  override name = 'MatchingError';
}

const DATE_TIME_VRS = new Set(['DA', 'TM', 'DT']);

export interface MatchOptions {
  /** The stored attribute may hold several values ("\\"-separated, e.g. ImageType): an entity matches when
   * any of them matches (PS3.4 C.2.2.3). */
  multiValued?: boolean | undefined;
}

/**
 * The condition a key puts on `column`, or undefined when the key matches everything (universal
 * matching: an empty value, or "*", "**", ...). Values are compared as the index stores them: text without its
 * padding.
 *
 * - PN: group by group, insensitive to case and to empty trailing components (personNameCondition).
 * - DA, TM, DT: "a-b", "a-", "-b" are ranges (C.2.2.2.5), compared as strings, which orders DICOM
 *   dates and times correctly; a TM or DT range bound covers every value it is a prefix of.
 * - UI: a backslash-separated list matches any of its UIDs (C.2.2.2.2).
 * - A stored attribute of several values (options.multiValued) matches when any value does (C.2.2.3).
 * - `""` matches an empty or absent value (C.2.2.2.1, empty value matching).
 */
export function matchCondition(column: string, vr: string, rawValue: string, options: MatchOptions = {}): ColumnCondition | undefined {
  const value = rawValue.replace(/[\0 ]+$/, '').replace(/^ +/, '');
  // "*" matches any run of characters, none too (C.2.2.2.4): a key of "*" alone, however many, is
  // universal matching, and finds entities without the attribute, which GLOB and LIKE never would.
  if (/^\**$/.test(value)) return undefined;
  if (value === '""') return { sql: `(${column} IS NULL OR ${column} = '')`, params: [] };
  if (vr === 'PN') return personNameCondition(column, value);
  if (vr === 'UI') return uidCondition(column, value);
  if (DATE_TIME_VRS.has(vr)) return dateTimeCondition(column, vr, value);
  if (value.includes('\\')) {
    // Only UIDs take lists in C-FIND keys (C.2.2.2.2); other multi-valued keys are matched whole.
    return singleValue(column, vr, value);
  }
  if (options.multiValued) return anyValue(column, '\\', MATCHED_VALUES, (one) => valueCondition(one, vr, value));
  return valueCondition(column, vr, value);
}

function valueCondition(column: string, vr: string, value: string): ColumnCondition {
  return /[*?]/.test(value) ? wildcard(column, value) : singleValue(column, vr, value);
}

/**
 * An entity matches when one of the parts of `column` split at `separator` (its values, or a name's
 * component groups) meets `condition`; each part without the spaces around it (PS3.5 6.2: not
 * significant). A wild card then never runs from one value into the next.
 */
function anyValue(column: string, separator: string, maxParts: number, condition: (part: string) => ColumnCondition): ColumnCondition {
  const inner = condition('key_parts.part');
  return { sql: `EXISTS (${splitParts(column, separator, maxParts)} SELECT 1 FROM key_parts WHERE key_parts.n > 0 AND ${inner.sql})`, params: inner.params };
}

/** The part `position` (from 1) of `column` split at `separator` meets `condition`. */
function partAt(column: string, separator: string, position: number, condition: (part: string) => ColumnCondition): ColumnCondition {
  const inner = condition('key_parts.part');
  return { sql: `EXISTS (${splitParts(column, separator, position)} SELECT 1 FROM key_parts WHERE key_parts.n = ${position} AND ${inner.sql})`, params: inner.params };
}

/** A person name's component groups: three at most (PS3.5 6.2.1.2); an "=" after the third is not split at. */
const NAME_GROUPS = 3;
/** The values of a multi-valued attribute matched one by one (ImageType has a handful); those after
 * the 16th are not. */
const MATCHED_VALUES = 16;

/**
 * A recursive table key_parts(n, part, rest) of the first `maxParts` parts of `column`, numbered from 1.
 * Bounded: each step copies the rest of the value, and a stored name of 2,048 "=" (4,096 bytes, all
 * the index keeps) took 3.7 ms a row, every query on names of such rows stopping the node's main
 * thread for seconds (found in the injection review).
 */
function splitParts(column: string, separator: string, maxParts: number): string {
  return `WITH RECURSIVE key_parts(n, part, rest) AS (SELECT 0, NULL, ${column} || '${separator}'
    UNION ALL SELECT n + 1, trim(substr(rest, 1, instr(rest, '${separator}') - 1)), substr(rest, instr(rest, '${separator}') + 1) FROM key_parts WHERE rest != '' AND n < ${maxParts})`;
}

function uidCondition(column: string, value: string): ColumnCondition {
  const uids = value
    .split('\\')
    .map((uid) => uid.replace(/[\0 ]+$/, '').trim())
    .filter((uid) => uid !== '');
  if (uids.some((uid) => !/^[0-9]+(\.[0-9]+)*$/.test(uid))) throw new MatchingError('the value is not a UID or a list of UIDs');
  if (uids.length === 1) return { sql: `${column} = ?`, params: uids };
  // One parameter for the whole list: one each passed SQLite's limit on parameters at 32,766 UIDs and
  // the query failed 0x0110 (found in the injection review); PS3.4 C.2.2.2.2 sets no limit.
  return { sql: `${column} IN (SELECT value FROM json_each(?))`, params: [JSON.stringify(uids)] };
}

function singleValue(column: string, vr: string, value: string): ColumnCondition {
  // Numbers match as numbers ("007" matches 7; PS3.4 C.2.2.2.1 leaves IS matching to the SCP), also
  // against computed counts, which have no column affinity.
  if ((vr === 'IS' || vr === 'US') && /^[+-]?\d+$/.test(value)) return { sql: `${column} = CAST(? AS INTEGER)`, params: [value] };
  return { sql: `${column} = ?`, params: [value] };
}

/**
 * PN keys, group by group. A name has up to three component groups, alphabetic=ideographic=phonetic
 * (PS3.5 6.2.1.2); how a key with "=" matches is left to the SCP (PS3.4 C.2.2.2.1, C.2.2.2.4 notes).
 * A key of one group matches a name any of whose groups matches it (the caller seldom knows which
 * groups a site fills: found in a review, Yamada^Tarou did not find Yamada^Tarou=山田^太郎=やまだ^たろう);
 * a key of several groups matches each of its groups against the name's group in that place, an empty
 * or "*" group matching any. A wild card never runs from one group into the next.
 */
function personNameCondition(column: string, value: string): ColumnCondition | undefined {
  const groups = withoutEmptyTrailingComponents(value).split('=');
  // "^", "=", "*=*": no group asks for anything (PS3.4 C.2.2.2.3, universal matching).
  if (groups.every(isUniversalGroup)) return undefined;
  const [only] = groups;
  if (groups.length === 1 && only !== undefined) return anyNameGroup(column, only);
  // A name has no group past the third: a key that asks for one matches nothing, and the split never
  // goes further (found in the review of the session's diff: a key of 2,048 groups split every stored
  // name as far, and stalled the node for seconds again).
  if (groups.slice(NAME_GROUPS).some((group) => !isUniversalGroup(group))) return { sql: '0', params: [] };
  const conditions = groups
    .slice(0, NAME_GROUPS)
    .flatMap((group, index) => (isUniversalGroup(group) ? [] : [partAt(column, '=', index + 1, (part) => nameGroupCondition(part, group))]));
  return { sql: `(${conditions.map((condition) => condition.sql).join(' AND ')})`, params: conditions.flatMap((condition) => condition.params) };
}

function isUniversalGroup(group: string): boolean {
  return /^\**$/.test(group);
}

/** One key group against every group of the name; a name of one group (most) without the split. */
function anyNameGroup(column: string, group: string): ColumnCondition {
  const whole = nameGroupCondition(column, group);
  const split = anyValue(column, '=', NAME_GROUPS, (part) => nameGroupCondition(part, group));
  return { sql: `(CASE WHEN instr(${column}, '=') = 0 THEN ${whole.sql} ELSE ${split.sql} END)`, params: [...whole.params, ...split.params] };
}

/**
 * One group of a name: without regard to the case of ASCII letters (PS3.4 C.2.2.2.1 allows it for PN
 * only; names are entered by hand in many spellings of case) and to empty trailing components (PS3.5
 * 6.2.1.1: "Doe^John^^" and "Doe^John" are one name; found in a review: neither matched the other).
 * "*" and "?" as C.2.2.2.4 says, through LIKE, which SQLite compares without case for ASCII letters.
 */
function nameGroupCondition(part: string, group: string): ColumnCondition {
  const stored = `rtrim(${part}, '^')`;
  if (!/[*?]/.test(group)) return { sql: `${stored} = ? COLLATE NOCASE`, params: [group] };
  const pattern = group.replace(/[\\%_]/g, (character) => `\\${character}`).replace(/\*/g, '%').replace(/\?/g, '_');
  return { sql: `${stored} LIKE ? ESCAPE '\\'`, params: [pattern] };
}

/** The key without the empty trailing components of each group, and without empty trailing groups. */
function withoutEmptyTrailingComponents(name: string): string {
  return name
    .split('=')
    .map((group) => group.replace(/\^+$/, ''))
    .join('=')
    .replace(/=+$/, '');
}

/** C.2.2.2.4: "*" any run of characters, "?" any one character. GLOB is case-sensitive. */
function wildcard(column: string, value: string): ColumnCondition {
  // GLOB knows [...] too: a literal "[" must not open a character class.
  const pattern = value.replace(/\[/g, '[[]');
  return { sql: `${column} GLOB ?`, params: [pattern] };
}

function dateTimeCondition(column: string, vr: string, value: string): ColumnCondition {
  checkForm(vr, value);
  if (vr === 'TM') return timeCondition(column, value);
  const dash = rangeDash(vr, value);
  if (dash < 0) {
    // A single date is exact; a time or date-time stands for every value it is a prefix of
    // (PS3.4 C.2.2.2.1 leaves precision to the SCP: "0930" matches 093000.000).
    if (vr === 'DA') return { sql: `${column} = ?`, params: [value] };
    return { sql: `${column} GLOB ?`, params: [`${value.replace(/\[/g, '[[]')}*`] };
  }
  const low = value.slice(0, dash);
  const high = value.slice(dash + 1);
  if (low === '' && high === '') throw new MatchingError('"-" alone is not a range');
  const parts: string[] = [];
  const params: string[] = [];
  if (low !== '') {
    parts.push(`${column} >= ?`);
    params.push(low);
  }
  if (high !== '') {
    // The upper bound includes every value it is a prefix of ("20240131" includes 20240131235959).
    parts.push(vr === 'DA' ? `${column} <= ?` : `${column} < ?`);
    params.push(vr === 'DA' ? high : `${high}\u{10FFFF}`);
  }
  return { sql: `(${column} IS NOT NULL AND ${column} != '' AND ${parts.join(' AND ')})`, params };
}

/**
 * TM single values and ranges, compared at one precision: stored value and key as HHMMSS.ffffff, a low
 * bound and a stored value padded with zeros, a high bound with nines, so that a bound covers every
 * value it is a prefix of and a stored 101112 is the instant 101112.000 (found in a review: the range
 * "101112.000-" left out a stored 101112). A single value is the range of the values it stands for.
 */
function timeCondition(column: string, value: string): ColumnCondition {
  const dash = value.indexOf('-');
  const low = dash < 0 ? value : value.slice(0, dash);
  const high = dash < 0 ? value : value.slice(dash + 1);
  if (low === '' && high === '') throw new MatchingError('"-" alone is not a range');
  const stored = fullPrecisionTime(column);
  const parts: string[] = [];
  const params: string[] = [];
  if (low !== '') {
    parts.push(`${stored} >= ?`);
    params.push(paddedTime(low, '0'));
  }
  if (high !== '') {
    parts.push(`${stored} <= ?`);
    params.push(paddedTime(high, '9'));
  }
  return { sql: `(${column} IS NOT NULL AND ${column} != '' AND ${parts.join(' AND ')})`, params };
}

/** A TM value as HHMMSS.ffffff, its missing digits `fill`. */
function paddedTime(time: string, fill: '0' | '9'): string {
  const [main = '', fraction = ''] = time.split('.');
  return `${main.padEnd(6, fill)}.${fraction.padEnd(6, fill)}`;
}

/** paddedTime(column, '0') in SQL. */
function fullPrecisionTime(column: string): string {
  return `(CASE WHEN instr(${column}, '.') > 0
    THEN substr(substr(${column}, 1, instr(${column}, '.') - 1) || '000000', 1, 6) || '.' || substr(substr(${column}, instr(${column}, '.') + 1) || '000000', 1, 6)
    ELSE substr(${column} || '000000', 1, 6) || '.000000' END)`;
}

/** Where the range's "-" is: a DT value can carry a UTC offset "-0500", which is not a range. */
function rangeDash(vr: string, value: string): number {
  if (vr !== 'DT') return value.indexOf('-');
  // In DT the range dash stands where a date-time cannot continue with an offset: at the start, at the
  // end, or before a digit run of at least 4 (a year) that follows one with no "+" or "-" offset yet.
  const match = /^([0-9.]*(?:[+-][0-9]{4})?)-([0-9.]*(?:[+-][0-9]{4})?)$/.exec(value);
  if (match) return (match[1] as string).length;
  return -1;
}

const FORMS: Record<string, RegExp> = {
  DA: /^(\d{8})?(-(\d{8})?)?$/,
  TM: /^(\d{2,6}(\.\d{1,6})?)?(-(\d{2,6}(\.\d{1,6})?)?)?$/,
  DT: /^[0-9.+-]+$/,
};

function checkForm(vr: string, value: string): void {
  const form = FORMS[vr];
  // The message never quotes the value: it is logged, and keys may be identifiers.
  if (form && !form.test(value)) throw new MatchingError(`the value is not a ${vr} value or range (PS3.4 C.2.2.2.5)`);
}
