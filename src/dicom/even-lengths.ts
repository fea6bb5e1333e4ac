/**
 * PS3.5 7.1.1: every value has an even length (padded with a space for text, a NUL otherwise), and
 * PS3.5 A.4 every fragment of encapsulated pixel data. Gantry stores what it receives byte for byte,
 * odd lengths included; what it writes anew (a de-identified copy) is padded, element by element.
 * Found in the quirks review: a copy that kept an odd value was refused by DCMTK destinations ("Odd
 * Fragment Length"), the association aborted at every attempt, and the destination backed off with
 * it the instances queued behind.
 */
import type { ByteSource } from './dataset-tree.js';
import { UNDEFINED_LENGTH } from './dataset-tree.js';
import type { EditableElement, EditableItem } from './dataset-writer.js';

/** VRs padded with a space (PS3.5 Table 6.2-1); every other VR, UI and the binary ones, with a NUL. */
const SPACE_PADDED_VRS: ReadonlySet<string> = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UR', 'UT']);

const PIECE = 1024 * 1024;

/** Gives every odd value, and every odd fragment, of the tree one pad byte. Returns how many. */
export function padOddValues(elements: readonly EditableElement[], source: ByteSource, bigEndian: boolean): number {
  let padded = 0;
  for (const element of elements) {
    if (element.removed) continue;
    if (element.items && !element.encapsulated) {
      for (const item of element.items as EditableItem[]) if (!item.removed) padded += padOddValues(item.elements, source, bigEndian);
      continue;
    }
    if (padElement(element, source, bigEndian)) {
      padded += 1;
      // Fragments moved: what describes them by byte (the group length of a value now of undefined
      // length, the Extended Offset Table) goes, as redaction drops it; the Basic Offset Table is
      // written anew (padFragments). Left, the writer could not size the group, and the instance
      // failed de-identification for good (found in the review of the session's diff).
      if (element.encapsulated) for (const stale of elements) if (STALE_WHEN_FRAGMENTS_MOVE.has(stale.tag)) stale.removed = true;
    }
  }
  return padded;
}

/** Pixel Data's group length, Extended Offset Table, its lengths, and the encapsulated total length. */
const STALE_WHEN_FRAGMENTS_MOVE: ReadonlySet<number> = new Set([0x7fe00000, 0x7fe00001, 0x7fe00002, 0x7fe00003]);

function padElement(element: EditableElement, source: ByteSource, bigEndian: boolean): boolean {
  const pad = Buffer.from([SPACE_PADDED_VRS.has(element.vr) ? 0x20 : 0x00]);
  if (element.replacement) {
    if (element.replacement.value.length % 2 === 0) return false;
    element.replacement = { ...element.replacement, value: Buffer.concat([element.replacement.value, pad]) };
    return true;
  }
  if (element.stream) {
    const stream = element.stream;
    if (stream.length === UNDEFINED_LENGTH || stream.length % 2 === 0) return false;
    element.stream = { length: stream.length + 1, write: (emit) => (stream.write(emit), emit(pad)) };
    return true;
  }
  if (element.encapsulated) return padFragments(element, source, bigEndian);
  if (element.length === UNDEFINED_LENGTH || element.length % 2 === 0) return false;
  element.stream = { length: element.length + 1, write: (emit) => (copy(source, element.valueOffset, element.length, emit), emit(pad)) };
  return true;
}

/** Encapsulated pixel data whose fragments are not all of even length: written again, each odd one
 * with a NUL after it (a JPEG decoder stops at its end marker; PS3.5 A.4 allows the trailing NUL). */
function padFragments(element: EditableElement, source: ByteSource, bigEndian: boolean): boolean {
  const items = (element.items ?? []) as EditableItem[];
  if (items.every((item) => item.removed || item.length % 2 === 0)) return false;
  const header = (tag: number, length: number) => {
    const bytes = Buffer.alloc(8);
    if (bigEndian) {
      bytes.writeUInt16BE(tag >>> 16, 0);
      bytes.writeUInt16BE(tag & 0xffff, 2);
      bytes.writeUInt32BE(length, 4);
    } else {
      bytes.writeUInt16LE(tag >>> 16, 0);
      bytes.writeUInt16LE(tag & 0xffff, 2);
      bytes.writeUInt32LE(length, 4);
    }
    return bytes;
  };
  const [offsetTable, ...fragments] = items.filter((item) => !item.removed);
  const offsets = shiftedOffsets(offsetTable, fragments, source, bigEndian);
  element.stream = {
    length: UNDEFINED_LENGTH,
    write: (emit) => {
      emit(header(0xfffee000, offsets.length));
      emit(offsets);
      for (const item of fragments) {
        const odd = item.length % 2 === 1;
        emit(header(0xfffee000, item.length + (odd ? 1 : 0)));
        copy(source, item.valueOffset, item.length, emit);
        if (odd) emit(Buffer.alloc(1));
      }
      emit(header(0xfffee0dd, 0));
    },
  };
  return true;
}

/**
 * The Basic Offset Table (PS3.5 A.4: each frame's first fragment, in bytes from the first fragment)
 * with the offsets the padded fragments move to; empty (allowed) when an offset names no fragment's
 * start, rather than offsets that lead into a fragment.
 */
function shiftedOffsets(table: EditableItem | undefined, fragments: readonly EditableItem[], source: ByteSource, bigEndian: boolean): Buffer {
  if (!table || table.length === 0 || table.length % 4 !== 0) return Buffer.alloc(0);
  const moved = new Map<number, number>();
  let before = 0;
  let after = 0;
  for (const fragment of fragments) {
    moved.set(before, after);
    before += 8 + fragment.length;
    after += 8 + fragment.length + (fragment.length % 2);
  }
  const old = Buffer.from(source.read(table.valueOffset, table.length));
  const out = Buffer.alloc(table.length);
  for (let at = 0; at < old.length; at += 4) {
    const shifted = moved.get(bigEndian ? old.readUInt32BE(at) : old.readUInt32LE(at));
    if (shifted === undefined) return Buffer.alloc(0);
    if (bigEndian) out.writeUInt32BE(shifted, at);
    else out.writeUInt32LE(shifted, at);
  }
  return out;
}

function copy(source: ByteSource, offset: number, length: number, emit: (bytes: Buffer) => void): void {
  for (let at = 0; at < length; at += PIECE) emit(source.read(offset + at, Math.min(PIECE, length - at)));
}
