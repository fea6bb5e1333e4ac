/**
 * Writes elements of one dataset into another encoding of the same byte order: implicit VR little
 * endian and explicit VR little endian either way, or explicit big endian as it is. Values are copied
 * from the source (they need no change within one byte order); element headers are written anew, and
 * sequences and items with undefined length (always allowed, PS3.5 7.5.2), so nothing has to be
 * counted in advance.
 */
import type { ByteSource, ElementNode, ItemNode } from './dataset-tree.js';
import { isSignedWithPixelRepresentation } from './dictionary.js';
import type { DatasetEncoding } from './transfer-syntaxes.js';
import { LONG_VRS } from './values.js';

type Encoding = Exclude<DatasetEncoding, 'deflated-explicit-le'>;

/**
 * `signed` says whether the pixels of the dataset the elements belong to are signed, for "US or SS"
 * elements read in implicit VR when the list does not hold Pixel Representation itself.
 */
export function reencodeElements(elements: readonly ElementNode[], source: ByteSource, from: Encoding, to: Encoding, emit: (bytes: Buffer) => void, signed = false): void {
  if ((from === 'explicit-be') !== (to === 'explicit-be')) throw new Error('re-encoding between byte orders is not supported');
  if (from === to) {
    // The same encoding: the bytes are right as they are.
    for (const element of elements) emit(Buffer.from(source.read(element.offset, element.end - element.offset)));
    return;
  }
  reencodeList(elements, source, from, to, emit, signed);
}

/** The elements of a dataset or an item, with the value of each Group Length (gggg,0000) counted
 * again: PS3.5 7.2 makes it the number of bytes of its group's elements after it, and the other
 * encoding gives them other headers (and sequences undefined lengths). */
function reencodeList(elements: readonly ElementNode[], source: ByteSource, from: Encoding, to: Encoding, emit: (bytes: Buffer) => void, signed: boolean): void {
  // A dataset or an item with pixels of its own (an icon, a functional group) says its own Pixel Representation.
  const signedHere = signedPixels(elements, source) ?? signed;
  for (let index = 0; index < elements.length; index += 1) {
    const element = elements[index] as ElementNode;
    if ((element.tag & 0xffff) !== 0) {
      reencodeElement(element, source, from, to, emit, signedHere);
      continue;
    }
    const group = element.tag >>> 16;
    const members: Buffer[] = [];
    let next = index + 1;
    for (; next < elements.length && (elements[next] as ElementNode).tag >>> 16 === group; next += 1) {
      reencodeElement(elements[next] as ElementNode, source, from, to, (bytes) => members.push(bytes), signedHere);
    }
    // Little endian: between byte orders nothing is re-encoded (reencodeElements).
    const groupLength = Buffer.alloc(4);
    groupLength.writeUInt32LE(members.reduce((sum, bytes) => sum + bytes.length, 0));
    emit(header(element.tag, 'UL', 4, to));
    emit(groupLength);
    for (const bytes of members) emit(bytes);
    index = next - 1;
  }
}

function reencodeElement(element: ElementNode, source: ByteSource, from: Encoding, to: Encoding, emit: (bytes: Buffer) => void, signed: boolean): void {
  const bigEndian = to === 'explicit-be';
  if (element.items && !element.encapsulated) {
    emit(header(element.tag, element.implicitInside ? 'UN' : 'SQ', 0xffffffff, to));
    // A UN sequence holds implicit VR little endian, and keeps it (PS3.5 6.2.2).
    for (const item of element.items) {
      if (element.implicitInside) reencodeItem(item, source, 'implicit-le', 'implicit-le', emit, signed);
      else reencodeItem(item, source, from, to, emit, signed);
    }
    emit(delimiter(0xfffee0dd, bigEndian));
    return;
  }
  if (element.items && element.encapsulated) {
    // Encapsulated pixel data keeps its fragments; only the element header changes.
    emit(header(element.tag, 'OB', 0xffffffff, to));
    emit(Buffer.from(source.read(element.valueOffset, element.end - element.valueOffset)));
    return;
  }
  emit(header(element.tag, explicitVr(element, from, to, signed), element.length, to));
  if (element.length > 0) emit(element.value ?? Buffer.from(source.read(element.valueOffset, element.length)));
}

/** The VR to write: implicit VR writes none; a "US or SS" element read in implicit VR (as US) is SS
 * in a dataset of signed pixels, as PS3.3 C.7.6.1.1.4 rules, or its value would be read as unsigned. */
function explicitVr(element: ElementNode, from: Encoding, to: Encoding, signed: boolean): string {
  if (to === 'implicit-le') return element.vr;
  if (element.vr === '') return 'UN';
  if (from === 'implicit-le' && signed && element.vr === 'US' && isSignedWithPixelRepresentation(element.tag)) return 'SS';
  return element.vr;
}

function reencodeItem(item: ItemNode, source: ByteSource, from: Encoding, to: Encoding, emit: (bytes: Buffer) => void, signed: boolean): void {
  const bigEndian = to === 'explicit-be';
  emit(delimiterWithLength(0xfffee000, 0xffffffff, bigEndian));
  reencodeList(item.elements, source, from, to, emit, signed);
  emit(delimiter(0xfffee00d, bigEndian));
}

const PIXEL_REPRESENTATION = 0x00280103;

/** Whether Pixel Representation among `elements` says signed; undefined when it is not there. */
function signedPixels(elements: readonly ElementNode[], source: ByteSource): boolean | undefined {
  const element = elements.find((candidate) => candidate.tag === PIXEL_REPRESENTATION);
  if (!element || element.length < 2) return undefined;
  const value = element.value ?? source.read(element.valueOffset, 2);
  return value.readUInt16LE(0) === 1;
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
