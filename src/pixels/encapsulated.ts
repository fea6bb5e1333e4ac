/**
 * Encapsulated Pixel Data (PS3.5 A.4): the frames of the stored value, and the writing of a new
 * value frame by frame. New frames go to a scratch file first, so that the Basic Offset Table, which
 * comes before them, can hold their offsets while memory holds one frame.
 */
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import type { ByteSource, ElementNode, ItemNode } from '../dicom/dataset-tree.js';
import { PixelRedactionError } from './native.js';

/** (7FE0,0001) Extended Offset Table and (7FE0,0002) its lengths, PS3.3 C.7.6.3. */
export const EXTENDED_OFFSET_TABLE = 0x7fe00001;
export const EXTENDED_OFFSET_TABLE_LENGTHS = 0x7fe00002;
/** (7FE0,0003) Encapsulated Pixel Data Value Total Length, PS3.3 C.7.6.3. */
const ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH = 0x7fe00003;
/** What describes an encapsulated value's fragments, and lies once the value is written anew or
 * decoded: the Extended Offset Table, its lengths and the value's total length (PS3.3 C.7.6.3). */
export const FRAGMENT_DESCRIPTIONS: readonly number[] = [EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS, ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH];

/**
 * The fragments of each frame (the Basic Offset Table item left out). Where the frames begin comes,
 * in this order, from one fragment per frame, the Basic Offset Table, the Extended Offset Table
 * (7FE0,0001) given as `extendedOffsetTable`, or the start of a codestream at the head of a fragment.
 */
export function framesOf(element: ElementNode, source: ByteSource, frames: number, extendedOffsetTable?: ElementNode): ItemNode[][] {
  const [table, ...fragments] = element.items ?? [];
  if (!table) throw new PixelRedactionError('encapsulated Pixel Data without items');
  if (fragments.length === frames) return fragments.map((fragment) => [fragment]);
  // One frame in several fragments; an offset table of several entries says NumberOfFrames is wrong,
  // and so do several fragments that open a codestream (PS3.5 A.4: a fragment holds one frame's data).
  if (frames === 1 && table.length <= 4) {
    const starts = fragments.length > 1 ? codestreamStarts(fragments, source).length : 0;
    if (starts > 1) throw new PixelRedactionError(`${starts} fragments begin a codestream for 1 frame`);
    return [fragments];
  }
  const offsets = tableOffsets(table, extendedOffsetTable, source);
  if (offsets) {
    if (offsets.length !== frames) throw new PixelRedactionError(`the ${offsets.name} has ${offsets.length} entries for ${frames} frames`);
    // PS3.5 A.4: offsets of each frame's first fragment, from the first byte of the first fragment.
    const first = fragments[0]?.offset ?? 0;
    return fragmentsFrom(fragments, offsets.values.map((offset) => first + offset));
  }
  const starts = codestreamStarts(fragments, source);
  if (starts.length !== frames) {
    throw new PixelRedactionError(`${fragments.length} fragments for ${frames} frames, no offset table, and ${starts.length} of the fragments begin a codestream`);
  }
  return fragmentsFrom(fragments, starts);
}

interface Offsets {
  name: string;
  values: number[];
  length: number;
}

/** The frames' offsets from the Basic Offset Table, or else from the Extended Offset Table, which
 * PS3.5 A.4 uses instead of a Basic Offset Table left empty (64-bit offsets, for values over 4 GiB). */
function tableOffsets(table: ItemNode, extendedOffsetTable: ElementNode | undefined, source: ByteSource): Offsets | undefined {
  if (table.length > 0) {
    const bytes = source.read(table.valueOffset, table.length);
    const values = Array.from({ length: Math.floor(bytes.length / 4) }, (_, index) => bytes.readUInt32LE(index * 4));
    return { name: 'Basic Offset Table', values, length: bytes.length / 4 };
  }
  if (!extendedOffsetTable || extendedOffsetTable.length === 0 || extendedOffsetTable.length === 0xffffffff) return undefined;
  const bytes = source.read(extendedOffsetTable.valueOffset, extendedOffsetTable.length);
  const values = Array.from({ length: Math.floor(bytes.length / 8) }, (_, index) => Number(bytes.readBigUInt64LE(index * 8)));
  return { name: 'Extended Offset Table', values, length: bytes.length / 8 };
}

/** Each frame's fragments: frame i holds those from its start up to the next frame's. */
function fragmentsFrom(fragments: ItemNode[], starts: number[]): ItemNode[][] {
  // PS3.5 A.4 lists the frames' offsets in order. Out of order, frame i "up to the next frame's
  // start" is empty or spans others' fragments, and seeking each frame's fragments on its own cost
  // frames × fragments (a 3 MB object of 200,000 frames held a thread for minutes).
  const back = starts.findIndex((start, index) => index > 0 && start < (starts[index - 1] as number));
  if (back > 0) throw new PixelRedactionError(`the offset table's entries are out of order (frame ${back + 1} starts before frame ${back})`);
  // One pass over the fragments (in file order): a pass per frame made reading every
  // frame of a long object cubic in its frames (each frame asked for works this out again).
  const out: ItemNode[][] = starts.map(() => []);
  let frame = 0;
  for (const fragment of fragments) {
    while (frame + 1 < starts.length && fragment.offset >= (starts[frame + 1] as number)) frame += 1;
    if (fragment.offset >= (starts[frame] as number)) out[frame]?.push(fragment);
  }
  return out;
}

/**
 * Where frames begin when no table says so: in PS3.5 A.4 a fragment holds data of one frame only, so
 * every frame starts a fragment, and a fragment that opens with the marker the first fragment opens with begins a frame. JPEG, JPEG
 * Lossless and JPEG-LS open with SOI and a marker (FFD8 FF); JPEG 2000 and HTJ2K codestreams with SOC
 * and SIZ (FF4F FF51). Neither can occur at the head of a continuation: entropy-coded data escapes
 * every FF (ITU-T T.81 B.1.1.5, T.800 A.1.1), and a frame cut inside a marker segment that happens to
 * hold the bytes makes more frames than NumberOfFrames, which the caller refuses. Other codestreams
 * (RLE, which PS3.5 A.4.2 keeps to one fragment per frame) give no starts.
 */
function codestreamStarts(fragments: ItemNode[], source: ByteSource): number[] {
  const head = (fragment: ItemNode) => (fragment.length >= 4 ? source.read(fragment.valueOffset, 4) : Buffer.alloc(0));
  const first = fragments[0] ? head(fragments[0]) : Buffer.alloc(0);
  const marker = CODESTREAM_STARTS.find((start) => start.equals(first.subarray(0, start.length)));
  if (!marker) return [];
  return fragments.filter((fragment) => marker.equals(head(fragment).subarray(0, marker.length))).map((fragment) => fragment.offset);
}

const CODESTREAM_STARTS = [Buffer.from([0xff, 0xd8, 0xff]), Buffer.from([0xff, 0x4f, 0xff, 0x51])];

/** The bytes of one frame, its fragments joined: copied into one buffer as each is read (what a read
 * returns is valid until the next), so that a frame takes its size and one fragment at most, not a
 * copy of each fragment and then their concatenation (three times its size). */
export function frameBytes(fragments: readonly ItemNode[], source: ByteSource): Buffer {
  const frame = Buffer.allocUnsafe(fragments.reduce((size, fragment) => size + fragment.length, 0));
  let at = 0;
  for (const fragment of fragments) at += source.read(fragment.valueOffset, fragment.length).copy(frame, at);
  if (at !== frame.length) throw new Error(`a frame's fragments read ${at} bytes of ${frame.length}`);
  return frame;
}

const ITEM = 0xfffee000;
const SEQUENCE_DELIMITER = 0xfffee0dd;

function itemHeader(tag: number, length: number): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.writeUInt32LE(length, 4);
  return header;
}

/**
 * Emits the items of a new encapsulated value: a Basic Offset Table with every frame's offset, one
 * fragment per frame (padded to even length), and the sequence delimiter. `frame(index)` gives the
 * encoded frames in order; they wait in `scratch` until the table is written.
 */
export function writeEncapsulatedFrames(frames: number, frame: (index: number) => Buffer, scratch: string, emit: (bytes: Buffer) => void): void {
  const fd = openSync(scratch, 'w+', 0o600);
  try {
    const sizes: number[] = [];
    let position = 0;
    for (let index = 0; index < frames; index += 1) {
      let encoded = frame(index);
      if (encoded.length % 2 === 1) encoded = Buffer.concat([encoded, Buffer.from([0])]);
      writeFully(fd, encoded, position);
      position += encoded.length;
      sizes.push(encoded.length);
    }
    const table = basicOffsetTable(sizes);
    emit(itemHeader(ITEM, table.length));
    if (table.length > 0) emit(table);
    const piece = Buffer.allocUnsafe(1024 * 1024);
    let read = 0;
    for (const size of sizes) {
      emit(itemHeader(ITEM, size));
      for (let done = 0; done < size; ) {
        const want = Math.min(piece.length, size - done);
        const got = readSync(fd, piece, 0, want, read);
        if (got <= 0) throw new Error('the scratch file of redacted frames ended early');
        emit(piece.subarray(0, got));
        done += got;
        read += got;
      }
    }
    emit(itemHeader(SEQUENCE_DELIMITER, 0));
  } finally {
    closeSync(fd);
    unlinkSync(scratch);
  }
}

/**
 * The Basic Offset Table of frames of these sizes, one fragment each: where each frame's item starts,
 * after the table's own item. Empty for one frame, and when an offset passes 32 bits (PS3.5 A.4: the
 * table is then left empty; each frame is still one fragment, which is how readers find them).
 */
export function basicOffsetTable(sizes: readonly number[]): Buffer {
  if (sizes.length <= 1) return Buffer.alloc(0);
  const table = Buffer.alloc(sizes.length * 4);
  let offset = 0;
  for (const [index, size] of sizes.entries()) {
    if (offset > 0xffffffff) return Buffer.alloc(0);
    table.writeUInt32LE(offset, index * 4);
    offset += size + 8;
  }
  return table;
}

function writeFully(fd: number, bytes: Buffer, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}
