/**
 * Encapsulated Pixel Data (PS3.5 A.4): the frames of the stored value, and the writing of a new
 * value frame by frame. New frames go to a scratch file first, so that the Basic Offset Table, which
 * comes before them, can hold their offsets while memory holds one frame.
 */
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import type { ByteSource, ElementNode, ItemNode } from '../dicom/dataset-tree.js';
import { PixelRedactionError } from './native.js';

/** The fragments of each frame (the Basic Offset Table item left out). */
export function framesOf(element: ElementNode, source: ByteSource, frames: number): ItemNode[][] {
  const [table, ...fragments] = element.items ?? [];
  if (!table) throw new PixelRedactionError('encapsulated Pixel Data without items');
  if (fragments.length === frames) return fragments.map((fragment) => [fragment]);
  // One frame in several fragments; an offset table of several entries says NumberOfFrames is wrong.
  if (frames === 1 && table.length <= 4) return [fragments];
  if (table.length > 0) {
    // PS3.5 A.4: offsets of each frame's first fragment, from the first byte of the first fragment.
    const offsets = source.read(table.valueOffset, table.length);
    if (offsets.length / 4 !== frames) throw new PixelRedactionError(`the Basic Offset Table has ${offsets.length / 4} entries for ${frames} frames`);
    const first = fragments[0]?.offset ?? 0;
    const starts = Array.from({ length: frames }, (_, index) => first + offsets.readUInt32LE(index * 4));
    const byFrame = (start: number, index: number) => {
      const end = starts[index + 1] ?? Number.POSITIVE_INFINITY;
      return fragments.filter((fragment) => fragment.offset >= start && fragment.offset < end);
    };
    // Offsets out of order (not what PS3.5 A.4 allows): each frame's fragments sought as before.
    if (starts.some((start, index) => index > 0 && start < (starts[index - 1] as number))) return starts.map(byFrame);
    // Otherwise one pass over the fragments (in file order): a pass per frame made reading every
    // frame of a long object cubic in its frames (each frame asked for works this out again).
    // Frame i holds the fragments from its start up to the next frame's.
    const out: ItemNode[][] = starts.map(() => []);
    let frame = 0;
    for (const fragment of fragments) {
      while (frame + 1 < frames && fragment.offset >= (starts[frame + 1] as number)) frame += 1;
      if (fragment.offset >= (starts[frame] as number)) out[frame]?.push(fragment);
    }
    return out;
  }
  throw new PixelRedactionError(`${fragments.length} fragments for ${frames} frames and no Basic Offset Table to tell them apart`);
}

/** The bytes of one frame, its fragments joined. */
export function frameBytes(fragments: readonly ItemNode[], source: ByteSource): Buffer {
  return Buffer.concat(fragments.map((fragment) => Buffer.from(source.read(fragment.valueOffset, fragment.length))));
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
    const table = Buffer.alloc(frames > 1 ? frames * 4 : 0);
    let offset = 0;
    sizes.forEach((size, index) => {
      if (frames > 1) table.writeUInt32LE(offset, index * 4);
      offset += size + 8;
    });
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

function writeFully(fd: number, bytes: Buffer, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}
