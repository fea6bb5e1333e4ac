/**
 * A dataset as a tree of elements that remember where their bytes are (PS3.5 7.1, 7.5), so that a
 * changed dataset can be written element by element: untouched elements are copied byte for byte from
 * the source, large values (pixel data) are streamed through, and only what an edit touched is
 * encoded anew, with the lengths of the sequences and items around it recomputed.
 *
 * The reader is synchronous (it runs in worker threads) and reads through a window, so a 1 GB file
 * costs the memory of its header and the window.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { vrOf } from './dictionary.js';
import { DatasetFormatError, MAX_SEQUENCE_DEPTH, tagInError } from './header-scanner.js';
import { readFileMeta } from './part10.js';
import { findTransferSyntax, type DatasetEncoding } from './transfer-syntaxes.js';
import { LONG_VRS, SHORT_VRS } from './values.js';

export const UNDEFINED_LENGTH = 0xffffffff;
export const ITEM = 0xfffee000;
const ITEM_DELIMITER = 0xfffee00d;
export const SEQUENCE_DELIMITER = 0xfffee0dd;
export const PIXEL_DATA = 0x7fe00010;

/** Random access to the bytes of a dataset. */
export interface ByteSource {
  readonly length: number;
  /** The bytes at [offset, offset + length); the buffer may be reused by the next call, unless
   * `stable` says otherwise. */
  read(offset: number, length: number): Buffer;
  /** True when what read() returns stays valid and unchanged: values may then be kept as views. */
  readonly stable?: boolean;
}

/** A dataset in memory. Its views stay valid: the buffer must not be changed while they are used. */
export class BufferSource implements ByteSource {
  readonly stable = true;
  constructor(private readonly buffer: Buffer) {}
  get length(): number {
    return this.buffer.length;
  }
  read(offset: number, length: number): Buffer {
    if (offset < 0 || offset + length > this.buffer.length) throw new DatasetFormatError(`read past the end of the dataset at ${offset}`);
    return this.buffer.subarray(offset, offset + length);
  }
}

/** A region of a file, read through a window of WINDOW bytes. */
export class FileSource implements ByteSource {
  static readonly WINDOW = 1024 * 1024;
  private window: Buffer;
  private ownWindow: Buffer | undefined;
  private windowStart = 0;

  /** `windowBuffer`: a buffer of WINDOW bytes to read through (a worker reuses one for every file);
   * views of it returned by read() are valid until the next read of any source that shares it. */
  constructor(
    private readonly fd: number,
    private readonly start: number,
    readonly length: number,
    private readonly windowBuffer?: Buffer,
  ) {
    this.window = Buffer.alloc(0);
  }

  read(offset: number, length: number): Buffer {
    if (offset < 0 || offset + length > this.length) throw new DatasetFormatError(`read past the end of the dataset at ${offset}`);
    if (offset >= this.windowStart && offset + length <= this.windowStart + this.window.length) {
      return this.window.subarray(offset - this.windowStart, offset - this.windowStart + length);
    }
    if (length > FileSource.WINDOW) {
      const out = Buffer.allocUnsafe(length);
      readFully(this.fd, out, this.start + offset);
      return out;
    }
    const size = Math.min(FileSource.WINDOW, this.length - offset);
    this.ownWindow ??= this.windowBuffer ?? Buffer.allocUnsafe(FileSource.WINDOW);
    this.window = this.ownWindow.subarray(0, size);
    readFully(this.fd, this.window, this.start + offset);
    this.windowStart = offset;
    return this.window.subarray(0, length);
  }
}

function readFully(fd: number, into: Buffer, position: number): void {
  let done = 0;
  while (done < into.length) {
    const got = readSync(fd, into, done, into.length - done, position + done);
    if (got === 0) throw new DatasetFormatError('the file ends early');
    done += got;
  }
}

export interface ElementNode {
  tag: number;
  vr: string;
  /** Where the element's header starts, in dataset coordinates. */
  offset: number;
  headerLength: number;
  /** The value length field (UNDEFINED_LENGTH for undefined). */
  length: number;
  valueOffset: number;
  /** After the value (and the sequence delimiter, for undefined length). */
  end: number;
  /** The value, for values up to the reader's load limit (not for sequences). */
  value?: Buffer;
  /** Items of a sequence (or of a UN / pixel data of undefined length). */
  items?: ItemNode[];
  /** True when the items are encapsulated pixel data fragments, not datasets. */
  encapsulated?: boolean;
  /** Nested datasets are implicit VR little endian (a UN of undefined length, PS3.5 6.2.2). */
  implicitInside?: boolean;
}

export interface ItemNode {
  offset: number;
  length: number;
  valueOffset: number;
  end: number;
  elements: ElementNode[];
}

export interface ParseOptions {
  /** Values up to this length are loaded into memory; longer ones are streamed when written. */
  loadLimit?: number;
  /** A buffer of FileSource.WINDOW bytes to read files through (see FileSource). */
  window?: Buffer;
  /** Copy values even when the dataset is in memory: for a tree kept long after the parse (a cached
   * header), whose values would otherwise keep the whole file's bytes alive. */
  copyValues?: boolean;
}

interface Context {
  source: ByteSource;
  implicit: boolean;
  bigEndian: boolean;
  loadLimit: number;
  /** Values may be views of the source (stable, and not asked to copy). */
  viewValues: boolean;
  /** How many sequences hold the elements being read. */
  depth: number;
}

/** Parses the whole dataset of `source` in the given encoding. */
export function parseDataset(source: ByteSource, encoding: Exclude<DatasetEncoding, 'deflated-explicit-le'>, options: ParseOptions = {}): ElementNode[] {
  const context: Context = {
    source,
    implicit: encoding === 'implicit-le',
    bigEndian: encoding === 'explicit-be',
    loadLimit: options.loadLimit ?? 1024 * 1024,
    viewValues: source.stable === true && !options.copyValues,
    depth: 0,
  };
  const { elements } = parseElements(context, 0, source.length, false);
  return elements;
}

function parseElements(context: Context, start: number, end: number, untilItemDelimiter: boolean): { elements: ElementNode[]; next: number } {
  const elements: ElementNode[] = [];
  let offset = start;
  while (offset < end) {
    const header = readElementHeader(context, offset);
    if (header.tag === ITEM_DELIMITER) {
      if (!untilItemDelimiter) throw new DatasetFormatError(`item delimiter outside an item at ${offset}`);
      return { elements: exactly(elements), next: offset + 8 };
    }
    if (header.tag === ITEM || header.tag === SEQUENCE_DELIMITER) {
      throw new DatasetFormatError(`${tagInError(header.tag)} where a data element was expected at ${offset}`);
    }
    const element = parseElementBody(context, offset, header, end);
    // PS3.5 7.5.1: an item of defined length holds its elements whole. One that runs past would be
    // read twice (its tail also as what follows the item) and copied whole when its item is edited.
    if (element.end > end) throw new DatasetFormatError(`${tagInError(header.tag)} runs past the item holding it at ${offset}`);
    elements.push(element);
    offset = element.end;
  }
  if (untilItemDelimiter) throw new DatasetFormatError('an item of undefined length has no delimiter');
  return { elements: exactly(elements), next: offset };
}

/**
 * The list with room for its entries only (a copy by slice). An array grown by push from empty has
 * room for 16 entries (V8), and most items hold a few elements: in an RT Structure Set of 9 data
 * elements per contour the spare room was 40 of the 342 bytes of heap each element cost, in a thread
 * whose heap is 96 MB (docs/operations.md, "Large headers").
 */
function exactly<T>(list: T[]): T[] {
  return list.slice();
}

interface Header {
  tag: number;
  vr: string;
  length: number;
  headerLength: number;
}

function readElementHeader(context: Context, offset: number): Header {
  const { source, bigEndian } = context;
  const head = source.read(offset, Math.min(12, source.length - offset));
  if (head.length < 8) throw new DatasetFormatError(`the dataset ends inside an element header at ${offset}`);
  const group = bigEndian ? head.readUInt16BE(0) : head.readUInt16LE(0);
  const elementNumber = bigEndian ? head.readUInt16BE(2) : head.readUInt16LE(2);
  const tag = ((group << 16) | elementNumber) >>> 0;
  const u32 = (at: number) => (bigEndian ? head.readUInt32BE(at) : head.readUInt32LE(at));
  if (group === 0xfffe || context.implicit) {
    return { tag, vr: group === 0xfffe ? '' : vrOf(tag), length: u32(4), headerLength: 8 };
  }
  const known = KNOWN_VRS.get((head[4] as number) * 256 + (head[5] as number));
  if (known) {
    if (!known.long) return { tag, vr: known.vr, length: bigEndian ? head.readUInt16BE(6) : head.readUInt16LE(6), headerLength: 8 };
    if (head.length < 12) throw new DatasetFormatError(`the dataset ends inside an element header at ${offset}`);
    return { tag, vr: known.vr, length: u32(8), headerLength: 12 };
  }
  // A VR this dictionary does not know is read with a 4-byte length, as every VR added since (OV,
  // SV, UV) has.
  const vr = head.toString('latin1', 4, 6);
  if (/^[A-Z]{2}$/.test(vr)) {
    if (head.length < 12) throw new DatasetFormatError(`the dataset ends inside an element header at ${offset}`);
    return { tag, vr, length: u32(8), headerLength: 12 };
  }
  throw new DatasetFormatError(`${tagInError(tag)} has no valid VR at ${offset}`);
}

/** The VRs of PS3.5 6.2 by their two bytes, and whether their length field is 4 bytes (7.1.2). The
 * lookup spares each element a string and two regular expressions (this parse runs for every file
 * an export or the node de-identifies). */
const KNOWN_VRS: ReadonlyMap<number, { vr: string; long: boolean }> = new Map(
  [...SHORT_VRS, ...LONG_VRS].map((vr) => [vr.charCodeAt(0) * 256 + vr.charCodeAt(1), { vr, long: LONG_VRS.has(vr) }]),
);

/** `limit`: where the value holding this element ends (the dataset, an item, a sequence): an
 * element of undefined length ends before it (PS3.5 7.5.1). */
function parseElementBody(context: Context, offset: number, header: Header, limit: number): ElementNode {
  const valueOffset = offset + header.headerLength;
  // Every field named in one literal: one object shape for every element. Spreading the header and
  // adding fields later made each element cost microseconds (25 times this parse, measured).
  const node: ElementNode = {
    tag: header.tag,
    vr: header.vr,
    offset,
    headerLength: header.headerLength,
    length: header.length,
    valueOffset,
    end: 0,
    value: undefined,
    items: undefined,
    encapsulated: undefined,
    implicitInside: undefined,
  };
  const isSequence = header.vr === 'SQ';
  if (header.length === UNDEFINED_LENGTH) {
    if (header.tag === PIXEL_DATA) {
      node.encapsulated = true;
      const { items, next } = parseFragments(context, valueOffset);
      node.items = items;
      node.end = next;
      return node;
    }
    // A sequence, or a UN of undefined length that holds one in implicit VR (PS3.5 6.2.2).
    const inner = isSequence ? context : { ...context, implicit: true, bigEndian: false };
    if (!isSequence) node.implicitInside = true;
    const { items, next } = parseItems(inner, valueOffset, limit, true);
    node.items = items;
    node.end = next;
    return node;
  }
  node.end = valueOffset + header.length;
  if (node.end > context.source.length) {
    // How far past, not where: offsets here count from the dataset, not from the file a reader has.
    throw new DatasetFormatError(`${tagInError(header.tag)} runs past the end of the dataset: its value of ${header.length} bytes would end ${node.end - context.source.length} bytes after it`);
  }
  if (isSequence) {
    node.items = parseItems(context, valueOffset, node.end, false).items;
    return node;
  }
  if (header.vr === 'UN' && holdsSequence(context, node)) return node;
  if (header.length <= context.loadLimit) {
    const value = context.source.read(valueOffset, header.length);
    node.value = context.viewValues ? value : Buffer.from(value);
  }
  return node;
}

/**
 * A UN of defined length (an explicit VR file written by a node that did not know the attribute)
 * may be a sequence: its items are then implicit VR little endian (PS3.5 6.2.2). It is read as one
 * when the dictionary says SQ or the value starts with an item tag, so that the de-identifier sees
 * inside it; a value that does not parse as items stays an opaque value.
 */
function holdsSequence(context: Context, node: ElementNode): boolean {
  if (node.length < 8) return false;
  const start = context.source.read(node.valueOffset, 4);
  const startsWithItem = start.readUInt32LE(0) === 0xe000fffe;
  if (!startsWithItem && vrOf(node.tag) !== 'SQ') return false;
  try {
    node.items = parseItems({ ...context, implicit: true, bigEndian: false }, node.valueOffset, node.end, false).items;
    node.implicitInside = true;
    return true;
  } catch (error) {
    if (!(error instanceof DatasetFormatError)) throw error;
    return false;
  }
}

function parseItems(outer: Context, start: number, end: number, untilDelimiter: boolean): { items: ItemNode[]; next: number } {
  if (outer.depth >= MAX_SEQUENCE_DEPTH) throw new DatasetFormatError(`sequences nested more than ${MAX_SEQUENCE_DEPTH} deep at ${start}`);
  const context = { ...outer, depth: outer.depth + 1 };
  const items: ItemNode[] = [];
  let offset = start;
  while (offset < end) {
    const header = readElementHeader(context, offset);
    if (header.tag === SEQUENCE_DELIMITER) {
      if (!untilDelimiter) throw new DatasetFormatError(`sequence delimiter in a sequence of defined length at ${offset}`);
      return { items: exactly(items), next: offset + 8 };
    }
    if (header.tag !== ITEM) throw new DatasetFormatError(`${tagInError(header.tag)} where an item was expected at ${offset}`);
    const valueOffset = offset + 8;
    if (header.length === UNDEFINED_LENGTH) {
      // Within the sequence's value, as an item of defined length is (PS3.5 7.5.1): read to the end of
      // the dataset, an item of a UN of defined length ran on into the elements after it, each of which
      // could do the same, and every failure was read again one level up: time exponential in the
      // number of such elements (500 bytes of C-FIND identifier held the main thread for hours; found
      // in a review).
      const { elements, next } = parseElements(context, valueOffset, end, true);
      items.push({ offset, length: UNDEFINED_LENGTH, valueOffset, end: next, elements });
      offset = next;
    } else {
      const itemEnd = valueOffset + header.length;
      if (itemEnd > end) throw new DatasetFormatError(`an item runs past its sequence at ${offset}`);
      items.push({ offset, length: header.length, valueOffset, end: itemEnd, elements: parseElements(context, valueOffset, itemEnd, false).elements });
      offset = itemEnd;
    }
  }
  if (untilDelimiter) throw new DatasetFormatError('a sequence of undefined length has no delimiter');
  return { items: exactly(items), next: offset };
}

/** PS3.5 A.4: encapsulated pixel data is items of defined length (fragments) and a delimiter. */
function parseFragments(context: Context, start: number): { items: ItemNode[]; next: number } {
  const items: ItemNode[] = [];
  let offset = start;
  const fragments: Context = { ...context, implicit: true };
  for (;;) {
    const header = readElementHeader(fragments, offset);
    if (header.tag === SEQUENCE_DELIMITER) return { items, next: offset + 8 };
    if (header.tag !== ITEM || header.length === UNDEFINED_LENGTH) throw new DatasetFormatError(`bad fragment in encapsulated pixel data at ${offset}`);
    const end = offset + 8 + header.length;
    if (end > context.source.length) throw new DatasetFormatError('a pixel data fragment runs past the end of the dataset');
    items.push({ offset, length: header.length, valueOffset: offset + 8, end, elements: [] });
    offset = end;
  }
}

/** A parsed Part 10 file: its File Meta Information, the encoding of its (inflated) dataset, the
 * element tree, and a source that stays open for writing until closed. */
export interface ParsedFile {
  meta: Map<number, Buffer>;
  transferSyntaxUid: string;
  /** The encoding of `source`: a deflated dataset is inflated, so this is then explicit-le. */
  encoding: Exclude<DatasetEncoding, 'deflated-explicit-le'>;
  /** The dataset was deflated in the file (PS3.5 A.5). */
  deflated: boolean;
  source: ByteSource;
  elements: ElementNode[];
  close(): void;
}

/** Opens and parses a Part 10 file; a deflated dataset is inflated in memory (such objects are small:
 * their pixel data cannot be encapsulated). */
export function parseFile(path: string, options: ParseOptions = {}): ParsedFile {
  const fd = openSync(path, 'r');
  let open = true;
  const close = () => {
    if (open) closeSync(fd);
    open = false;
  };
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.allocUnsafe(Math.min(size, WHOLE_FILE_BYTES));
    readFully(fd, head, 0);
    const { elements: meta, datasetOffset } = readFileMeta(head, size);
    const transferSyntaxUid = (meta.get(0x0010)?.toString('latin1') ?? '').replace(/[\0 ]+$/, '');
    const syntax = findTransferSyntax(transferSyntaxUid);
    if (!syntax) throw new DatasetFormatError(`transfer syntax ${uidForMessage(transferSyntaxUid)} is not supported`);
    if (syntax.encoding === 'deflated-explicit-le') {
      const deflated = Buffer.allocUnsafe(size - datasetOffset);
      readFully(fd, deflated, datasetOffset);
      close();
      const source = new BufferSource(inflateDataset(deflated));
      return { meta, transferSyntaxUid, encoding: 'explicit-le', deflated: true, source, elements: parseDataset(source, 'explicit-le', options), close: () => undefined };
    }
    if (size === head.length) {
      // Read whole already: parsed from memory, its values views of it (one read, no copies).
      close();
      const source = new BufferSource(head.subarray(datasetOffset));
      return { meta, transferSyntaxUid, encoding: syntax.encoding, deflated: false, source, elements: parseDataset(source, syntax.encoding, options), close: () => undefined };
    }
    const source = new FileSource(fd, datasetOffset, size - datasetOffset, options.window);
    const elements = parseDataset(source, syntax.encoding, options);
    return { meta, transferSyntaxUid, encoding: syntax.encoding, deflated: false, source, elements, close };
  } catch (error) {
    close();
    throw error;
  }
}

/** A UID read from a file, for an error message: the file's bytes shown only when they are a UID
 * (PS3.5 9.1). Shown as they are, they went to the terminal of gantry deid and to the index's failure
 * reasons, control characters (ESC sequences) included. */
export function uidForMessage(uid: string): string {
  if (uid === '') return '(none)';
  return /^[0-9.]{1,64}$/.test(uid) ? uid : '(not a UID)';
}

/** Files up to this size are read whole (the File Meta Information is read from the same bytes). */
const WHOLE_FILE_BYTES = 64 * 1024;

/** A deflated dataset larger than this once inflated is refused: it is inflated in memory (twice its
 * size for a moment), a few KB of deflate can claim gigabytes (a "zip bomb"), and these objects are
 * small by nature. At 512 MiB, one 0.5 MB object sent by anyone took the node to 1.1-2.1 GB when it
 * was de-identified or retrieved (found in the resource review). */
export const MAX_INFLATED_BYTES = 64 * 1024 * 1024;

function inflateDataset(deflated: Buffer): Buffer {
  try {
    return inflateRawSync(deflated, { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw new DatasetFormatError(`the deflated dataset inflates to more than ${MAX_INFLATED_BYTES / 1024 / 1024} MiB, the most Gantry inflates`);
    throw new DatasetFormatError(`the deflated dataset does not inflate: ${(error as Error).message}`);
  }
}
