/**
 * Values the de-identifier writes: dummies consistent with each VR (PS3.15 E.1.1 "D"), and dates
 * shifted by whole days (E.3.6 "modified dates"): DA and the date part of DT move, times of day and
 * UTC offsets stay, so TM values stay consistent with them.
 */
import { padToEven } from '../dicom/values.js';

/** A dummy value for a VR, encoded and padded (binary dummies are zeros: the same in either byte
 * order). UI has no dummy here: the engine gives it a keyed UID. */
export function dummyValue(vr: string): Buffer {
  const text = (value: string) => padToEven(value, vr === 'UI' ? '\0' : ' ');
  switch (vr) {
    case 'PN':
      return text('ANONYMOUS');
    case 'LO':
    case 'SH':
    case 'LT':
    case 'ST':
    case 'UT':
    case 'UC':
    case 'AE':
      return text('ANONYMIZED');
    case 'CS':
      return text('ANONYMIZED');
    case 'DA':
      return text('19000101');
    case 'TM':
      return text('000000.00');
    case 'DT':
      return text('19000101000000.000000');
    case 'AS':
      return text('000Y');
    case 'IS':
    case 'DS':
      return text('0');
    case 'UR':
      return text('http://anonymized.invalid');
    case 'US':
    case 'SS':
      return Buffer.alloc(2);
    case 'UL':
    case 'SL':
    case 'FL':
    case 'AT':
      return Buffer.alloc(4);
    case 'FD':
    case 'SV':
    case 'UV':
      return Buffer.alloc(8);
    case 'OF':
    case 'OL':
      return Buffer.alloc(4);
    case 'OD':
    case 'OV':
      return Buffer.alloc(8);
    default:
      // OB, OW, UN: one zeroed even-length unit, non-empty so that a Type 1 attribute stays valid.
      // Zeros read the same in either byte order.
      return Buffer.alloc(2);
  }
}

/** Shifts a DA value (possibly multi-valued, or a range "A-B") by `days`. Unparsable parts are
 * replaced by the dummy date rather than kept. */
export function shiftDate(value: string, days: number): string {
  return value
    .split('\\')
    .map((one) => one.split('-').map((part) => (part.trim() === '' ? '' : shiftOneDate(part.trim(), days))).join('-'))
    .join('\\');
}

function shiftOneDate(date: string, days: number): string {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(date) ?? /^(\d{4})\.(\d{2})\.(\d{2})$/.exec(date);
  if (!match) return '19000101';
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const time = Date.UTC(year, month - 1, day);
  // No such day (20230231, 20231301): Date.UTC would roll it into another month, and the shift would
  // carry a made-up date as if it were the patient's. It is unparsable like any other.
  if (Number.isNaN(time) || !isTheDay(new Date(time), year, month, day)) return '19000101';
  const shifted = new Date(time + days * 86_400_000);
  return `${shifted.getUTCFullYear().toString().padStart(4, '0')}${(shifted.getUTCMonth() + 1).toString().padStart(2, '0')}${shifted.getUTCDate().toString().padStart(2, '0')}`;
}

function isTheDay(date: Date, year: number, month: number, day: number): boolean {
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/**
 * The VR a value of unknown VR (UN, PS3.5 6.2.2) reads as when it is a date: 'DA' when every value is
 * YYYYMMDD, 'DT' when every value is a date with a time of day (and an optional UTC offset), each a
 * real month and day, in 1900-2099; otherwise undefined. Shorter DT forms (a year alone) are left
 * out: four digits are a count as often as a year.
 */
export function dateVrOfText(value: string): 'DA' | 'DT' | undefined {
  // A list of dates is short and opens with a digit: anything else is not read further.
  if (value.length > MAX_DATE_LIST_LENGTH || !/^\s*\d/.test(value)) return undefined;
  // Empty values of a list are no reason to read the rest as something else: "20230115\\" kept its
  // date as it came (found in the dates review).
  const values = value.split('\\').map((one) => one.trim()).filter((one) => one !== '');
  if (values.length === 0) return undefined;
  if (values.every((one) => UNKNOWN_VR_DATE.test(one) && realDay(one))) return 'DA';
  if (values.every((one) => UNKNOWN_VR_DATE_TIME.test(one) && realDay(one))) return 'DT';
  return undefined;
}

/** Years 1900-2099 only: an eight-digit counter or ID reads as a date of some year far more often. */
const UNKNOWN_VR_DATE = /^(19|20)\d{6}$/;
const UNKNOWN_VR_DATE_TIME = /^(19|20)\d{6}([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?([+-](0\d|1[0-4])[0-5]\d)?$/;
const MAX_DATE_LIST_LENGTH = 4096;

function realDay(value: string): boolean {
  const month = Number(value.slice(4, 6));
  const day = Number(value.slice(6, 8));
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

/** One DT value: YYYY[MM[DD[HH[MM[SS[.F]]]]]] and an optional UTC offset &ZZXX, -1200 to +1400 (PS3.5
 * 6.2, Table 6.2-1): "2020-2021" is a range of years, not 2020 at offset -2021. */
const DATE_TIME = String.raw`\d{4}[\d.]*(?:[+-](?:0\d|1[0-4])[0-5]\d)?`;
const ONE_DATE_TIME = new RegExp(`^${DATE_TIME}$`);
/** A range "A-B" (either side may be empty) of such values, as a query key holds one (PS3.4 C.2.2.2.5). */
const DATE_TIME_RANGE = new RegExp(`^(${DATE_TIME})?-(${DATE_TIME})?$`);

/** Shifts the date part of DT values (possibly multi-valued, or a range "A-B"); times and UTC offsets
 * stay as they are ("-0500" is an offset, not the end of a range). Unparsable values are replaced by
 * the dummy date-time rather than kept. */
export function shiftDateTime(value: string, days: number): string {
  return value
    .split('\\')
    .map((one) => {
      const trimmed = one.trim();
      if (trimmed === '') return '';
      if (ONE_DATE_TIME.test(trimmed)) return shiftOneDateTime(trimmed, days);
      const range = DATE_TIME_RANGE.exec(trimmed);
      if (!range) return '19000101000000';
      return `${range[1] ? shiftOneDateTime(range[1], days) : ''}-${range[2] ? shiftOneDateTime(range[2], days) : ''}`;
    })
    .join('\\');
}

/** A DT with only a year or a year and month keeps its precision after the shift of its first day. */
function shiftOneDateTime(dateTime: string, days: number): string {
  // The dotted date of ACR-NEMA (YYYY.MM.DD) that shiftOneDate reads: shifted whole, not by its year.
  const dotted = /^(\d{4})\.(\d{2})\.(\d{2})(.*)$/.exec(dateTime);
  if (dotted) return `${shiftOneDate(`${dotted[1]}${dotted[2]}${dotted[3]}`, days)}${dotted[4] ?? ''}`;
  const match = /^(\d{4})(\d{2})?(\d{2})?(.*)$/.exec(dateTime);
  if (!match) return '19000101000000';
  const shifted = shiftOneDate(`${match[1]}${match[2] ?? '01'}${match[3] ?? '01'}`, days);
  const precision = match[3] !== undefined ? 8 : match[2] !== undefined ? 6 : 4;
  return `${shifted.slice(0, precision)}${match[4] ?? ''}`;
}

/** HIPAA Safe Harbor: ages over 89 are reported as 90 (AS cannot say "90 or older"). Values written
 * loosely ("95Y", "95", "095y", "95 years", "95.5Y") are read as senders mean them (a unit by its
 * first letter; a missing or unknown one is years), and a number in a value that is no age at all
 * counts as years, so that none passes uncapped. */
export function capAge(value: string, maxYears = 89): string {
  const cap = `${String(maxYears + 1).padStart(3, '0')}Y`;
  const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)\.?$/.exec(value.trim());
  if (!match) return (value.match(/\d+(?:\.\d+)?/g) ?? []).some((number) => Number(number) > maxYears) ? cap : value;
  const amount = Number(match[1]);
  const unit = (match[2] ?? '').charAt(0).toUpperCase();
  const years = unit === 'M' ? amount / 12 : unit === 'W' ? amount / 52 : unit === 'D' ? amount / 365 : amount;
  return years > maxYears ? cap : value.trim();
}
