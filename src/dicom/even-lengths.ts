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
    if (padElement(element, source, bigEndian)) padded += 1;
  }
  return padded;
}

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
  element.stream = {
    length: UNDEFINED_LENGTH,
    write: (emit) => {
      for (const item of items) {
        if (item.removed) continue;
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

function copy(source: ByteSource, offset: number, length: number, emit: (bytes: Buffer) => void): void {
  for (let at = 0; at < length; at += PIECE) emit(source.read(offset + at, Math.min(PIECE, length - at)));
}
