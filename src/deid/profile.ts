/**
 * The profile of PS3.15 Table E.1-1 as the engine uses it: the row of a tag, and the action that row
 * takes under the chosen options, resolved to one concrete action.
 */
import { PROFILE_EDITION, PROFILE_ROWS } from './profile-2024b.js';
import type { ActionCode, ProfileOption, ProfileRow } from './profile-types.js';

export { PROFILE_EDITION };

/** What the engine does to one element. */
export type ConcreteAction =
  | 'keep'
  | 'remove'
  /** zero-length value (an empty sequence for SQ) */
  | 'empty'
  /** a dummy value consistent with the VR (pseudonyms for the patient's name and ID) */
  | 'dummy'
  /** replace the UID with its keyed replacement */
  | 'uid'
  /** clean: shift dates, scrub text, recurse into sequences (per the option that asked for it) */
  | 'clean';

const exact = new Map<number, ProfileRow>();
const patterns: ProfileRow[] = [];
let privateRow: ProfileRow | undefined;
for (const row of PROFILE_ROWS) {
  if (row.tag === 'private') privateRow = row;
  else if (row.tag.includes('x')) patterns.push(row);
  else exact.set(Number.parseInt(row.tag, 16) >>> 0, row);
}

function matchesPattern(pattern: string, tag: number): boolean {
  const hex = tag.toString(16).padStart(8, '0');
  for (let i = 0; i < 8; i += 1) if (pattern[i] !== 'x' && pattern[i] !== hex[i]) return false;
  // Curves and overlays are repeating groups of even group numbers (PS3.5 7.6).
  return ((tag >>> 16) & 1) === 0;
}

/** The Table E.1-1 row that governs a tag, or undefined for attributes the table does not list. */
export function profileRowFor(tag: number): ProfileRow | undefined {
  if (((tag >>> 16) & 1) === 1) return privateRow;
  return exact.get(tag) ?? patterns.find((row) => matchesPattern(row.tag, tag));
}

/**
 * The action of a row under the enabled options. An enabled option that says K (keep) wins over one
 * that says C (clean), which wins over the Basic Profile: a retain option is the more specific wish.
 * Except for dates under the Modified Dates Option (E.3.6): a device date (calibration, installation)
 * that Retain Device Identity would keep is modified all the same, because the instance then says
 * MODIFIED (0028,0303), and one original date beside the shifted ones gives the shift away.
 */
export function actionCodeFor(row: ProfileRow, options: ReadonlySet<ProfileOption>): ActionCode {
  if (options.has('retainLongitudinalModifiedDates') && row.options.retainLongitudinalModifiedDates === 'C') return 'C';
  let clean = false;
  for (const [option, code] of Object.entries(row.options) as Array<[ProfileOption, ActionCode]>) {
    if (!options.has(option)) continue;
    if (code === 'K') return 'K';
    if (code === 'C') clean = true;
  }
  return clean ? 'C' : row.basic;
}

/**
 * One concrete action for a present element (PS3.15 E.1.1). Where a code allows a dummy or an empty
 * value, a present attribute gets one rather than removal, so that Type 1 and Type 2 attributes stay
 * (Gantry does not carry PS3.3's module tables to know which are Type 3): X/Z → empty, X/D and X/Z/D
 * and Z/D → dummy, X/Z/U* → a replaced UID for UI values and an empty value otherwise.
 */
export function concreteAction(code: ActionCode, vr: string): ConcreteAction {
  switch (code) {
    case 'K':
      return 'keep';
    case 'X':
      return 'remove';
    case 'Z':
    case 'X/Z':
      return 'empty';
    case 'D':
    case 'X/D':
    case 'X/Z/D':
    case 'Z/D':
      return 'dummy';
    case 'U':
      return 'uid';
    case 'X/Z/U*':
      return vr === 'UI' ? 'uid' : vr === 'SQ' ? 'clean' : 'empty';
    case 'C':
      return 'clean';
  }
}
