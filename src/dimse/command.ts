/**
 * PS3.7 Section 9.3 and 10.3, Annex E: DIMSE command sets, always implicit VR little endian, group 0000.
 */

import { padToEven, trimUid } from '../dicom/values.js';

export const CommandField = {
  CStoreRq: 0x0001,
  CStoreRsp: 0x8001,
  CGetRq: 0x0010,
  CGetRsp: 0x8010,
  CFindRq: 0x0020,
  CFindRsp: 0x8020,
  CMoveRq: 0x0021,
  CMoveRsp: 0x8021,
  CEchoRq: 0x0030,
  CEchoRsp: 0x8030,
  NEventReportRq: 0x0100,
  NGetRq: 0x0110,
  NSetRq: 0x0120,
  NActionRq: 0x0130,
  NCreateRq: 0x0140,
  NDeleteRq: 0x0150,
  CCancelRq: 0x0fff,
} as const;

/** PS3.7 E.1: CommandDataSetType 0x0101 means no dataset follows; any other value means one does. */
export const NO_DATASET = 0x0101;
export const DATASET_PRESENT = 0x0000;

export interface DimseCommand {
  commandField: number;
  commandDataSetType: number;
  messageId?: number;
  messageIdBeingRespondedTo?: number;
  affectedSopClassUid?: string;
  requestedSopClassUid?: string;
  affectedSopInstanceUid?: string;
  requestedSopInstanceUid?: string;
  priority?: number;
  status?: number;
  errorComment?: string;
  errorId?: number;
  offendingElements?: number[];
  moveDestination?: string;
  moveOriginatorAeTitle?: string;
  moveOriginatorMessageId?: number;
  numberOfRemainingSuboperations?: number;
  numberOfCompletedSuboperations?: number;
  numberOfFailedSuboperations?: number;
  numberOfWarningSuboperations?: number;
}

type Vr = 'UL' | 'US' | 'UI' | 'AE' | 'LO' | 'AT';

/** Command elements by tag (element number of group 0000), their VR and their field. */
const ELEMENTS: ReadonlyArray<readonly [number, Vr, keyof DimseCommand]> = [
  [0x0002, 'UI', 'affectedSopClassUid'],
  [0x0003, 'UI', 'requestedSopClassUid'],
  [0x0100, 'US', 'commandField'],
  [0x0110, 'US', 'messageId'],
  [0x0120, 'US', 'messageIdBeingRespondedTo'],
  [0x0600, 'AE', 'moveDestination'],
  [0x0700, 'US', 'priority'],
  [0x0800, 'US', 'commandDataSetType'],
  [0x0900, 'US', 'status'],
  [0x0901, 'AT', 'offendingElements'],
  [0x0902, 'LO', 'errorComment'],
  [0x0903, 'US', 'errorId'],
  [0x1000, 'UI', 'affectedSopInstanceUid'],
  [0x1001, 'UI', 'requestedSopInstanceUid'],
  [0x1020, 'US', 'numberOfRemainingSuboperations'],
  [0x1021, 'US', 'numberOfCompletedSuboperations'],
  [0x1022, 'US', 'numberOfFailedSuboperations'],
  [0x1023, 'US', 'numberOfWarningSuboperations'],
  [0x1030, 'AE', 'moveOriginatorAeTitle'],
  [0x1031, 'US', 'moveOriginatorMessageId'],
];

const BY_ELEMENT = new Map(ELEMENTS.map(([element, vr, field]) => [element, { vr, field }]));

export class CommandError extends Error {
  override name = 'CommandError';
}

export function decodeCommand(buffer: Buffer): DimseCommand {
  const fields: Record<string, unknown> = {};
  let offset = 0;
  let previous = -1;
  while (offset < buffer.length) {
    if (offset + 8 > buffer.length) throw new CommandError('command set ends inside an element header');
    const group = buffer.readUInt16LE(offset);
    const element = buffer.readUInt16LE(offset + 2);
    const length = buffer.readUInt32LE(offset + 4);
    offset += 8;
    if (group !== 0x0000) throw new CommandError(`command set holds an element of group ${group.toString(16).padStart(4, '0')}`);
    // PS3.5 7.1: elements in ascending order, each once. Two command sets run together (a peer that
    // left the last-fragment bit clear) read as one, the second's fields over the first's, and the
    // first request was never answered (found in the hostile-peer review).
    if (element <= previous) throw new CommandError(`command element (0000,${hex(element)}) follows (0000,${hex(previous)}): elements must be in ascending order, each once (PS3.5 7.1)`);
    previous = element;
    if (length === 0xffffffff || offset + length > buffer.length) throw new CommandError(`command element (0000,${hex(element)}) runs past the command set`);
    const value = buffer.subarray(offset, offset + length);
    offset += length;
    const known = BY_ELEMENT.get(element);
    if (!known) continue; // group length and retired or unknown elements
    fields[known.field] = decodeValue(known.vr, value, element);
  }
  if (typeof fields.commandField !== 'number') throw new CommandError('command set has no CommandField (0000,0100)');
  if (typeof fields.commandDataSetType !== 'number') throw new CommandError('command set has no CommandDataSetType (0000,0800)');
  return fields as unknown as DimseCommand;
}

function decodeValue(vr: Vr, value: Buffer, element: number): unknown {
  switch (vr) {
    case 'US':
      if (value.length !== 2) throw new CommandError(`US element (0000,${hex(element)}) has length ${value.length}`);
      return value.readUInt16LE(0);
    case 'UL':
      if (value.length !== 4) throw new CommandError(`UL element (0000,${hex(element)}) has length ${value.length}`);
      return value.readUInt32LE(0);
    case 'AT': {
      const tags: number[] = [];
      for (let i = 0; i + 4 <= value.length; i += 4) tags.push(((value.readUInt16LE(i) << 16) | value.readUInt16LE(i + 2)) >>> 0);
      return tags;
    }
    case 'UI':
      return trimUid(value.toString('latin1'));
    case 'AE':
    case 'LO':
      return value.toString('latin1').trim();
  }
}

/**
 * The sub-operation counts of C-MOVE and C-GET responses (PS3.7 9.3.4.2) are US: a retrieve of more
 * than 65535 instances reports 65535, the most it can say, instead of a count wrapped to a small one.
 * (A Message ID, also US, wraps as intended.)
 */
const SUBOPERATION_COUNTS = new Set([0x1020, 0x1021, 0x1022, 0x1023]);

export function encodeCommand(command: DimseCommand): Buffer {
  const parts: Buffer[] = [];
  for (const [element, vr, field] of ELEMENTS) {
    const value = command[field];
    if (value === undefined) continue;
    parts.push(encodeElement(element, encodeValue(vr, SUBOPERATION_COUNTS.has(element) ? Math.min(Number(value), 0xffff) : value)));
  }
  const body = Buffer.concat(parts);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(body.length);
  return Buffer.concat([encodeElement(0x0000, groupLength), body]);
}

function encodeElement(element: number, value: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt16LE(0x0000, 0);
  header.writeUInt16LE(element, 2);
  header.writeUInt32LE(value.length, 4);
  return Buffer.concat([header, value]);
}

function encodeValue(vr: Vr, value: unknown): Buffer {
  switch (vr) {
    case 'US': {
      const out = Buffer.alloc(2);
      out.writeUInt16LE(Number(value) & 0xffff);
      return out;
    }
    case 'UL': {
      const out = Buffer.alloc(4);
      out.writeUInt32LE(Number(value) >>> 0);
      return out;
    }
    case 'AT': {
      const tags = value as number[];
      const out = Buffer.alloc(tags.length * 4);
      tags.forEach((tag, i) => {
        out.writeUInt16LE(tag >>> 16, i * 4);
        out.writeUInt16LE(tag & 0xffff, i * 4 + 2);
      });
      return out;
    }
    case 'UI':
      return padToEven(String(value), '\0');
    case 'AE':
      return padToEven(String(value), ' ');
    case 'LO':
      return padToEven(errorCommentText(String(value)), ' ');
  }
}

/** PS3.5 6.2: an LO value holds at most 64 characters. */
const LO_MAX = 64;
const CUT_MARK = '...';

/**
 * The text of Error Comment (0000,0902), the one LO element of a command set (PS3.7 Annex E), as it
 * can go on the wire: at most 64 characters (PS3.5 6.2), of the default repertoire, since a command set
 * has no Specific Character Set (so ASCII; bytes were written as latin1, which turned "ü" into a byte
 * no peer may read and "山" into "q"), with no backslash (LO has one value) and no control characters.
 * A longer text is cut at a word and ends with "...", so that the reader knows it was cut; the full
 * text is what Gantry logs.
 */
export function errorCommentText(text: string): string {
  // Per code point (the u flag): a character outside the BMP becomes one "?", not two.
  const ascii = text.replace(/[^\x20-\x7e]|\\/gu, (character) => (character === '\\' ? '/' : /\s/.test(character) ? ' ' : '?'));
  if (ascii.length <= LO_MAX) return ascii;
  const room = ascii.slice(0, LO_MAX - CUT_MARK.length + 1);
  const space = room.lastIndexOf(' ');
  // At a space unless the last one is early (a long UID or path): then the word itself is cut.
  const kept = space >= LO_MAX / 2 ? room.slice(0, space) : room.slice(0, LO_MAX - CUT_MARK.length);
  return `${kept.replace(/[\s,:;(]+$/, '')}${CUT_MARK}`;
}

function hex(value: number): string {
  return value.toString(16).padStart(4, '0');
}

/** A UID as PS3.5 9.1 spells one: numeric components separated by periods, at most 64 characters
 * (leading zeros in a component are let through: real peers send them). */
export function isWellFormedUid(value: string): boolean {
  return value.length <= 64 && /^[0-9]+(\.[0-9]+)*$/.test(value);
}

/** True when the command is a request that has a response (its field has bit 15 clear). */
export function isRequest(commandField: number): boolean {
  return (commandField & 0x8000) === 0;
}
