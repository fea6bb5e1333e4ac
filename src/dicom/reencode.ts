/**
 * Writes elements of one dataset into another encoding of the same byte order: implicit VR little
 * endian and explicit VR little endian either way, or explicit big endian as it is. Values are copied
 * from the source (they need no change within one byte order); element headers are written anew, and
 * sequences and items with undefined length (always allowed, PS3.5 7.5.2), so nothing has to be
 * counted in advance.
 */
import type { ByteSource, ElementNode, ItemNode } from './dataset-tree.js';
import type { DatasetEncoding } from './transfer-syntaxes.js';
import { LONG_VRS } from './values.js';

type Encoding = Exclude<DatasetEncoding, 'deflated-explicit-le'>;

export function reencodeElements(elements: readonly ElementNode[], source: ByteSource, from: Encoding, to: Encoding, emit: (bytes: Buffer) => void): void {
  if ((from === 'explicit-be') !== (to === 'explicit-be')) throw new Error('re-encoding between byte orders is not supported');
  if (from === to) {
    // The same encoding: the bytes are right as they are.
    for (const element of elements) emit(Buffer.from(source.read(element.offset, element.end - element.offset)));
    return;
  }
  for (const element of elements) reencodeElement(element, source, to, emit);
}

function reencodeElement(element: ElementNode, source: ByteSource, to: Encoding, emit: (bytes: Buffer) => void): void {
  const bigEndian = to === 'explicit-be';
  if (element.items && !element.encapsulated) {
    emit(header(element.tag, element.implicitInside ? 'UN' : 'SQ', 0xffffffff, to));
    for (const item of element.items) reencodeItem(item, source, element.implicitInside ? 'implicit-le' : to, emit);
    emit(delimiter(0xfffee0dd, bigEndian));
    return;
  }
  if (element.items && element.encapsulated) {
    // Encapsulated pixel data keeps its fragments; only the element header changes.
    emit(header(element.tag, 'OB', 0xffffffff, to));
    emit(Buffer.from(source.read(element.valueOffset, element.end - element.valueOffset)));
    return;
  }
  const vr = to === 'implicit-le' ? element.vr : element.vr === '' ? 'UN' : element.vr;
  emit(header(element.tag, vr, element.length, to));
  if (element.length > 0) emit(element.value ?? Buffer.from(source.read(element.valueOffset, element.length)));
}

function reencodeItem(item: ItemNode, source: ByteSource, to: Encoding, emit: (bytes: Buffer) => void): void {
  const bigEndian = to === 'explicit-be';
  emit(delimiterWithLength(0xfffee000, 0xffffffff, bigEndian));
  for (const element of item.elements) reencodeElement(element, source, to, emit);
  emit(delimiter(0xfffee00d, bigEndian));
}

/** An element header in an encoding (a length of 0xFFFFFFFF: undefined). */
export function header(tag: number, vr: string, length: number, to: Encoding): Buffer {
  const bigEndian = to === 'explicit-be';
  const implicit = to === 'implicit-le';
  const long = implicit || LONG_VRS.has(vr) || length > 0xffff;
  const out = Buffer.alloc(implicit ? 8 : long ? 12 : 8);
  writeTag(out, tag, bigEndian);
  if (implicit) {
    out.writeUInt32LE(length >>> 0, 4);
    return out;
  }
  // A short-form VR whose value no longer fits 16 bits cannot be written; UN can hold anything.
  const writtenVr = !LONG_VRS.has(vr) && length > 0xffff ? 'UN' : vr;
  out.write(writtenVr, 4, 'latin1');
  if (out.length === 12) {
    if (bigEndian) out.writeUInt32BE(length >>> 0, 8);
    else out.writeUInt32LE(length >>> 0, 8);
  } else if (bigEndian) out.writeUInt16BE(length, 6);
  else out.writeUInt16LE(length, 6);
  return out;
}

/** An item or sequence delimitation item (PS3.5 7.5). */
export function delimiter(tag: number, bigEndian: boolean): Buffer {
  return delimiterWithLength(tag, 0, bigEndian);
}

/** An item tag with its length (0xFFFFFFFF: undefined). */
export function delimiterWithLength(tag: number, length: number, bigEndian: boolean): Buffer {
  const out = Buffer.alloc(8);
  writeTag(out, tag, bigEndian);
  if (bigEndian) out.writeUInt32BE(length >>> 0, 4);
  else out.writeUInt32LE(length >>> 0, 4);
  return out;
}

function writeTag(out: Buffer, tag: number, bigEndian: boolean): void {
  if (bigEndian) {
    out.writeUInt16BE(tag >>> 16, 0);
    out.writeUInt16BE(tag & 0xffff, 2);
  } else {
    out.writeUInt16LE(tag >>> 16, 0);
    out.writeUInt16LE(tag & 0xffff, 2);
  }
}
