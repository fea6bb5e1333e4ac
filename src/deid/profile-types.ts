/** Types of the de-identification profile table generated from PS3.15 Table E.1-1. */

/** PS3.15 E.1.1 action codes: D dummy, Z zero-length or dummy, X remove, K keep, C clean, U replace
 * UID; compound codes allow the actions named (resolved per attribute by the engine). */
export type ActionCode = 'D' | 'Z' | 'X' | 'K' | 'C' | 'U' | 'Z/D' | 'X/Z' | 'X/D' | 'X/Z/D' | 'X/Z/U*';

/** The options of PS3.15 Table E.1-1, by the names config uses in deid.options. */
export type ProfileOption =
  | 'retainSafePrivate'
  | 'retainUIDs'
  | 'retainDeviceIdentity'
  | 'retainInstitutionIdentity'
  | 'retainPatientCharacteristics'
  | 'retainLongitudinalFullDates'
  | 'retainLongitudinalModifiedDates'
  | 'cleanDescriptors'
  | 'cleanStructuredContent'
  | 'cleanGraphics';

export interface ProfileRow {
  /** Eight lower-case hex digits ("00100010"), with "x" for the digits a row leaves open
   * ("50xxxxxx" curves, "60xx3000" overlay data), or "private" for every odd-group element. */
  tag: string;
  /** The attribute's name in Table E.1-1. */
  name: string;
  /** The PS3.6 keyword, where the dictionary knows the tag. */
  keyword: string | undefined;
  /** The Basic Profile's action. */
  basic: ActionCode;
  /** The action of each option that changes it (K keep, C clean). */
  options: Partial<Record<ProfileOption, ActionCode>>;
  /** Table E.1-1's "in Std. Comp. IOD" column. */
  inStandardIod: boolean;
}
