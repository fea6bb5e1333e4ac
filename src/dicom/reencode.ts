/**
 * Writes elements of one dataset into another encoding: implicit VR little endian and explicit VR
 * little endian either way, explicit big endian as it is, or explicit big endian into either little
 * endian one. Values are copied from the source (they need no change within one byte order; from big
 * endian, the values of the binary VRs are byte-swapped, PS3.5 7.3); element headers are written anew,
 * and sequences and items with undefined length (always allowed, PS3.5 7.5.2), so nothing has to be
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
  if (to === 'explicit-be' && from !== 'explicit-be') throw new Error('re-encoding into big endian is not supported');
  if (from === to) {
    // The same encoding: the bytes are right as they are.
    for (const element of elements) emit(Buffer.from(source.read(element.offset, element.end - element.offset)));
    return;
  }
  reencodeList(elements, source, from, to, emit, { signed, bitsAllocated: undefined });
}

/** A value that cannot be written in the other byte order: no later attempt would do better. */
export class ByteOrderError extends Error {
  override name = 'ByteOrderError';
}

/** What the pixel module of the dataset (or item) says about the values in it. */
interface PixelFacts {
  /** Pixel Representation 1: "US or SS" elements read in implicit VR are SS. */
  signed: boolean;
  /** Bits Allocated: how Pixel Data in OW is byte-swapped out of big endian. */
  bitsAllocated: number | undefined;
}

/** The elements of a dataset or an item, with the value of each Group Length (gggg,0000) counted
 * again: PS3.5 7.2 makes it the number of bytes of its group's elements after it, and the other
 * encoding gives them other headers (and sequences undefined lengths). */
function reencodeList(elements: readonly ElementNode[], source: ByteSource, from: Encoding, to: Encoding, emit: (bytes: Buffer) => void, pixels: PixelFacts): void {
  // A dataset or an item with pixels of its own (an icon, a functional group) says its own Pixel
  // Representation and Bits Allocated.
  const representation = unsignedShortOf(elements, PIXEL_REPRESENTATION, source, from);
  const pixelsHere: PixelFacts = {
    signed: representation === undefined ? pixels.signed : representation === 1,
    bitsAllocated: unsignedShortOf(elements, BITS_ALLOCATED, source, from) ?? pixels.bitsAllocated,
  };
  for (let index = 0; index < elements.length; index += 1) {
    const element = elements[index] as ElementNode;
    if ((element.tag & 0xffff) !== 0) {
      reencodeElement(element, source, from, to, emit, pixelsHere);
      continue;
    }
    const group = element.tag >>> 16;
    const members: Buffer[] = [];
    let next = index + 1;
    for (; next < elements.length && (elements[next] as ElementNode).tag >>> 16 === group; next += 1) {
      reencodeElement(elements[next] as ElementNode, source, from, to, (bytes) => members.push(bytes), pixelsHere);
    }
    // Little endian: nothing is re-encoded into big endian (reencodeElements).
    const groupLength = Buffer.alloc(4);
    groupLength.writeUInt32LE(members.reduce((sum, bytes) => sum + bytes.length, 0));
    emit(header(element.tag, 'UL', 4, to));
    emit(groupLength);
    for (const bytes of members) emit(bytes);
    index = next - 1;
  }
}

function reencodeElement(element: ElementNode, source: ByteSource, from: Encoding, to: Encoding, emit: (bytes: Buffer) => void, pixels: PixelFacts): void {
  const bigEndian = to === 'explicit-be';
  if (element.items && !element.encapsulated) {
    emit(header(element.tag, element.implicitInside ? 'UN' : 'SQ', 0xffffffff, to));
    // A UN sequence holds implicit VR little endian, and keeps it (PS3.5 6.2.2).
    for (const item of element.items) {
      if (element.implicitInside) reencodeItem(item, source, 'implicit-le', 'implicit-le', emit, pixels);
      else reencodeItem(item, source, from, to, emit, pixels);
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
  emit(header(element.tag, explicitVr(element, from, to, pixels.signed), element.length, to));
  if (element.length === 0) return;
  const value = element.value ?? Buffer.from(source.read(element.valueOffset, element.length));
  emit(from === 'explicit-be' && !bigEndian ? littleEndianValue(element, value, pixels.bitsAllocated) : value);
}

/** PS3.5 7.3: the VRs whose values byte order applies to, and the size of each value's unit (AT is
 * two 16-bit numbers); the others are bytes or text, the same in either byte order. */
const BYTES_SWAPPED: Readonly<Record<string, 2 | 4 | 8>> = { AT: 2, OW: 2, SS: 2, US: 2, FL: 4, OF: 4, OL: 4, SL: 4, UL: 4, FD: 8, OD: 8, OV: 8, SV: 8, UV: 8 };
const PIXEL_DATA = 0x7fe00010;

/**
 * A value read in big endian, in little endian. Pixel Data in OW with more than 16 bits allocated is
 * refused: whether its 32-bit samples are big-endian words or 16-bit words in big endian (DCMTK swaps
 * words, pydicom samples) the standard leaves unsaid, and a wrong guess would change every pixel.
 */
function littleEndianValue(element: ElementNode, value: Buffer, bitsAllocated: number | undefined): Buffer {
  const unit = BYTES_SWAPPED[element.vr];
  if (!unit) return value;
  if (element.tag === PIXEL_DATA && element.vr === 'OW' && (bitsAllocated ?? 16) > 16) {
    throw new ByteOrderError(`cannot convert Pixel Data of ${bitsAllocated} bits allocated out of big endian`);
  }
  const swapped = Buffer.from(value);
  const whole = swapped.subarray(0, swapped.length - (swapped.length % unit));
  if (unit === 2) whole.swap16();
  else if (unit === 4) whole.swap32();
  else whole.swap64();
  return swapped;
}

/** The VR to write: implicit VR writes none; a "US or SS" element read in implicit VR (as US) is SS
 * in a dataset of signed pixels, as PS3.3 C.7.6.1.1.4 rules, or its value would be read as unsigned. */
function explicitVr(element: ElementNode, from: Encoding, to: Encoding, signed: boolean): string {
  if (to === 'implicit-le') return element.vr;
  if (element.vr === '') return 'UN';
  if (from === 'implicit-le' && signed && element.vr === 'US' && isSignedWithPixelRepresentation(element.tag)) return 'SS';
  return element.vr;
}

function reencodeItem(item: ItemNode, source: ByteSource, from: Encoding, to: Encoding, emit: (bytes: Buffer) => void, pixels: PixelFacts): void {
  const bigEndian = to === 'explicit-be';
  emit(delimiterWithLength(0xfffee000, 0xffffffff, bigEndian));
  reencodeList(item.elements, source, from, to, emit, pixels);
  emit(delimiter(0xfffee00d, bigEndian));
}

const PIXEL_REPRESENTATION = 0x00280103;
const BITS_ALLOCATED = 0x00280100;

/** The US value of `tag` among `elements`, in the byte order it was read in; undefined when absent. */
function unsignedShortOf(elements: readonly ElementNode[], tag: number, source: ByteSource, from: Encoding): number | undefined {
  const element = elements.find((candidate) => candidate.tag === tag);
  if (!element || element.length < 2) return undefined;
  const value = element.value ?? source.read(element.valueOffset, 2);
  return from === 'explicit-be' ? value.readUInt16BE(0) : value.readUInt16LE(0);
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
