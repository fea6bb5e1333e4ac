/**
 * Reads the top-level elements of a dataset as its bytes stream in, up to Pixel Data, and keeps the
 * values of the elements asked for. Everything else — nested sequences, large values — is skipped
 * without being held, so a dataset of any size costs a few kilobytes.
 *
 * Encodings: PS3.5 7.1 (explicit and implicit VR), 7.3 (big endian), 7.5 (sequences and items of
 * defined and undefined length), 6.2.2 (UN of undefined length holds implicit VR little endian),
 * A.5 (deflate: see DeflatedHeaderScanner).
 */
import { createInflateRaw, type InflateRaw } from 'node:zlib';
import type { DatasetEncoding } from './transfer-syntaxes.js';
import { keywordOf } from './dictionary.js';
import { LONG_VRS, SHORT_VRS } from './values.js';

export class DatasetFormatError extends Error {
  override name = 'DatasetFormatError';
}

export interface ScannedValue {
  /** The VR from the stream (explicit VR) or undefined (implicit VR). */
  vr: string | undefined;
  bytes: Buffer;
  bigEndian: boolean;
}

export interface HeaderScan {
  values: Map<number, ScannedValue>;
  /** True when the scan reached Pixel Data or another element at or past `stopAtTag`. */
  reachedStop: boolean;
  /** The element the scan stopped at: where it starts in the dataset's bytes (inflated ones, for a
   * deflated dataset), its header's length and its value's (0xFFFFFFFF: undefined). */
  stopElement?: StopElement;
}

export interface StopElement {
  tag: number;
  offset: number;
  headerLength: number;
  length: number;
}

const ITEM = 0xfffee000;
const ITEM_DELIMITER = 0xfffee00d;
const SEQUENCE_DELIMITER = 0xfffee0dd;
const UNDEFINED = 0xffffffff;
/** Values larger than this are never kept, even when asked for. */
const MAX_KEPT_VALUE = 64 * 1024;
/**
 * Sequences nested deeper than this are refused as a format error, here and by the dataset reader
 * (dataset-tree.ts). Structured reports nest their Content Sequences tens of levels deep; a few
 * thousand levels (48 KB of empty sequences) would overflow the call stack of the recursive reader,
 * and without a bound here each 20 bytes of nesting cost this scanner two frames: a few hundred MB
 * of them exhausted the heap of the receiving process.
 */
export const MAX_SEQUENCE_DEPTH = 256;

interface Frame {
  /** 'dataset' and 'item' hold elements; 'sequence' holds items. */
  kind: 'dataset' | 'item' | 'sequence';
  implicit: boolean;
  bigEndian: boolean;
}

export interface ByteScanner {
  push(chunk: Buffer): void;
  /** Resolves when the scanner can take more: a reader of a file, which can push faster than the
   * scanner works, waits for it between chunks. */
  ready(): Promise<void>;
  /** True when the next push should wait for ready() (a stream applies back-pressure then). */
  readonly busy: boolean;
  /** The dataset is complete. Resolves with what was found. */
  finish(): Promise<HeaderScan>;
  readonly done: boolean;
}

export class HeaderScanner implements ByteScanner {
  private pending: Buffer = Buffer.alloc(0);
  private skip = 0;
  private keep: { tag: number; vr: string | undefined; length: number; bigEndian: boolean } | undefined;
  /** The value being kept, filled as its bytes arrive (`keepFilled` of them so far): joined to what
   * was pending at each push instead, a value that came in PDVs of a byte each was copied once per
   * byte (65 KB of value: 2 GB of copying on the main thread). */
  private keepBuffer: Buffer | undefined;
  private keepFilled = 0;
  private readonly stack: Frame[];
  private readonly values = new Map<number, ScannedValue>();
  /** How many sequences hold the elements being read. */
  private sequenceDepth = 0;
  private stopped = false;
  /** With `readToEnd`: the scan is past `stopAtTag`, where it only follows the framing (and fills
   * wanted values still missing). */
  private pastStop = false;
  private stopElement: StopElement | undefined;
  private totalBytes = 0;

  constructor(
    encoding: Exclude<DatasetEncoding, 'deflated-explicit-le'>,
    private readonly wanted: ReadonlySet<number>,
    private readonly stopAtTag: number = 0x7fe00000,
    /**
     * Follow the dataset's framing to its end past `stopAtTag` (reading no values but wanted ones still
     * missing), so that finish() refuses a dataset that ends inside an element or holds bytes that are
     * no element: the receive path, which has every byte anyway. Found in the quirks review: Pixel Data
     * cut short, bytes of garbage or a padding element cut short after it were acknowledged as stored,
     * then failed de-identification for good (the dataset reader refuses them), the sender never told.
     */
    private readonly readToEnd = false,
  ) {
    this.stack = [{ kind: 'dataset', implicit: encoding === 'implicit-le', bigEndian: encoding === 'explicit-be' }];
  }

  get done(): boolean {
    return this.stopped;
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  get busy(): boolean {
    return false;
  }

  push(chunk: Buffer): void {
    if (this.stopped) return;
    this.totalBytes += chunk.length;
    let data = chunk;
    if (this.skip > 0) {
      const skipped = Math.min(this.skip, data.length);
      this.skip -= skipped;
      data = data.subarray(skipped);
      if (data.length === 0) return;
    }
    if (this.keep && this.keepBuffer) {
      const taken = Math.min(this.keep.length - this.keepFilled, data.length);
      data.copy(this.keepBuffer, this.keepFilled, 0, taken);
      this.keepFilled += taken;
      data = data.subarray(taken);
      if (this.keepFilled < this.keep.length) return;
      const { tag, vr, bigEndian } = this.keep;
      this.values.set(tag, { vr, bytes: this.keepBuffer, bigEndian });
      this.keep = undefined;
      this.keepBuffer = undefined;
      if (data.length === 0) return;
    }
    this.pending = this.pending.length === 0 ? data : Buffer.concat([this.pending, data]);
    this.consume();
  }

  finish(): Promise<HeaderScan> {
    if (!this.stopped) {
      if (this.skip > 0 || this.keep || this.pending.length > 0) {
        return Promise.reject(new DatasetFormatError(`dataset ends inside an element (after ${this.totalBytes} bytes)`));
      }
      if (this.stack.length > 1) {
        return Promise.reject(new DatasetFormatError('dataset ends inside a sequence of undefined length'));
      }
    }
    return Promise.resolve({ values: this.values, reachedStop: this.stopped || this.pastStop, ...(this.stopElement ? { stopElement: this.stopElement } : {}) });
  }

  /** What was kept so far, for a scan abandoned before its end. */
  valuesSoFar(): Map<number, ScannedValue> {
    return this.values;
  }

  private consume(): void {
    let offset = 0;
    const buffer = this.pending;
    while (!this.stopped) {
      if (this.keep) {
        if (buffer.length - offset < this.keep.length) {
          // The rest of the value comes with later pushes, straight into its own buffer.
          this.keepBuffer = Buffer.allocUnsafe(this.keep.length);
          this.keepFilled = buffer.copy(this.keepBuffer, 0, offset);
          offset = buffer.length;
          break;
        }
        const { tag, vr, length, bigEndian } = this.keep;
        this.values.set(tag, { vr, bytes: Buffer.from(buffer.subarray(offset, offset + length)), bigEndian });
        offset += length;
        this.keep = undefined;
        continue;
      }
      const frame = this.stack[this.stack.length - 1] as Frame;
      const header = this.readHeader(buffer, offset, frame);
      if (header === undefined) break;
      // Everything before `pending` was consumed: it starts that far into the dataset.
      const elementOffset = this.totalBytes - buffer.length + offset;
      offset += header.headerLength;
      const wasPastStop = this.pastStop;
      this.onElement(frame, header.tag, header.vr, header.length);
      if (this.stopped || this.pastStop !== wasPastStop) this.stopElement = { tag: header.tag, offset: elementOffset, headerLength: header.headerLength, length: header.length };
      if (this.stopped) break;
      if (this.skip > 0) {
        const skipped = Math.min(this.skip, buffer.length - offset);
        this.skip -= skipped;
        offset += skipped;
        if (this.skip > 0) break;
      }
    }
    this.pending = offset >= buffer.length ? Buffer.alloc(0) : buffer.subarray(offset);
    if (this.pending.length > 0 && offset > 0 && this.pending.length < 256) this.pending = Buffer.from(this.pending);
  }

  private onElement(frame: Frame, tag: number, vr: string | undefined, length: number): void {
    const depth = this.stack.length;
    if (frame.kind === 'sequence') {
      if (tag === SEQUENCE_DELIMITER) {
        this.stack.pop();
        this.sequenceDepth -= 1;
        return;
      }
      if (tag !== ITEM) throw new DatasetFormatError(`expected an item in a sequence, found ${tagInError(tag)}`);
      if (length === UNDEFINED) this.stack.push({ kind: 'item', implicit: frame.implicit, bigEndian: frame.bigEndian });
      else this.skip = length;
      return;
    }
    if (tag === ITEM_DELIMITER) {
      if (frame.kind !== 'item') throw new DatasetFormatError('item delimiter outside an item');
      this.stack.pop();
      return;
    }
    if (tag === ITEM || tag === SEQUENCE_DELIMITER) {
      throw new DatasetFormatError(`${tagInError(tag)} where a data element was expected`);
    }
    if (depth === 1 && tag >= this.stopAtTag && !this.pastStop) {
      if (!this.readToEnd) {
        this.stopped = true;
        return;
      }
      this.pastStop = true;
    }
    if (length === UNDEFINED) {
      // A sequence, or a UN/OB/OW element of undefined length: items until a sequence delimiter.
      // PS3.5 6.2.2: the content of a UN of undefined length is implicit VR little endian.
      const implicit = vr === 'UN' ? true : frame.implicit;
      const bigEndian = vr === 'UN' ? false : frame.bigEndian;
      if (this.sequenceDepth >= MAX_SEQUENCE_DEPTH) throw new DatasetFormatError(`sequences nested more than ${MAX_SEQUENCE_DEPTH} deep (after ${this.totalBytes} bytes)`);
      this.sequenceDepth += 1;
      this.stack.push({ kind: 'sequence', implicit, bigEndian });
      return;
    }
    // The first of a tag given twice, as DCMTK shows it (the index named the patient of the second,
    // found in the quirks review; de-identification holds such a dataset, burned-in.ts).
    if (depth === 1 && this.wanted.has(tag) && length <= MAX_KEPT_VALUE && !this.values.has(tag)) {
      this.keep = { tag, vr, length, bigEndian: frame.bigEndian };
      return;
    }
    this.skip = length;
  }

  private readHeader(buffer: Buffer, offset: number, frame: Frame): { tag: number; vr: string | undefined; length: number; headerLength: number } | undefined {
    const available = buffer.length - offset;
    if (available < 8) return undefined;
    const group = frame.bigEndian ? buffer.readUInt16BE(offset) : buffer.readUInt16LE(offset);
    const element = frame.bigEndian ? buffer.readUInt16BE(offset + 2) : buffer.readUInt16LE(offset + 2);
    const tag = ((group << 16) | element) >>> 0;
    // Items and delimiters have no VR, in every transfer syntax (PS3.5 7.5).
    if (group === 0xfffe || frame.implicit) {
      const length = readUInt32(buffer, offset + 4, frame.bigEndian);
      return { tag, vr: undefined, length, headerLength: 8 };
    }
    const vr = buffer.toString('latin1', offset + 4, offset + 6);
    if (SHORT_VRS.has(vr)) {
      const length = frame.bigEndian ? buffer.readUInt16BE(offset + 6) : buffer.readUInt16LE(offset + 6);
      return { tag, vr, length, headerLength: 8 };
    }
    // PS3.5 7.1.2: a VR not known yet has the 12-byte header of OB and the like.
    if (LONG_VRS.has(vr) || /^[A-Z]{2}$/.test(vr)) {
      if (available < 12) return undefined;
      return { tag, vr, length: readUInt32(buffer, offset + 8, frame.bigEndian), headerLength: 12 };
    }
    throw new DatasetFormatError(`${tagInError(tag)} has no valid VR (not two letters: implicit VR data under an explicit VR transfer syntax, or a wrong length before it)`);
  }
}

function readUInt32(buffer: Buffer, offset: number, bigEndian: boolean): number {
  return bigEndian ? buffer.readUInt32BE(offset) : buffer.readUInt32LE(offset);
}

export function tagText(tag: number): string {
  let text = TAG_TEXTS.get(tag);
  if (text === undefined) {
    const hex = tag.toString(16).toUpperCase().padStart(8, '0');
    text = `${hex.slice(0, 4)},${hex.slice(4)}`;
    // The de-identification writes the path of every element it visits (a few hundred an instance,
    // most of them the same tags again): made once each. Private tags vary without end: bounded.
    if (TAG_TEXTS.size >= MAX_TAG_TEXTS) TAG_TEXTS.clear();
    TAG_TEXTS.set(tag, text);
  }
  return text;
}

const TAG_TEXTS = new Map<number, string>();
const MAX_TAG_TEXTS = 4096;

/**
 * A tag read where the data broke, for an error message that operators, logs and the sender see: shown
 * only when the dictionary knows it (or it is an item or delimiter). Read at the wrong place (after a
 * wrong length, or implicit VR data sent as explicit), its four bytes, and a VR's two, may be part of a
 * value: a patient's name.
 */
export function tagInError(tag: number): string {
  return tag >>> 16 === 0xfffe || keywordOf(tag) !== undefined ? `element (${tagText(tag)})` : 'an element of an unknown tag';
}

/**
 * PS3.5 A.5: a deflated dataset is raw deflate of explicit VR little endian. The scanner inflates only
 * as far as the header it needs, then stops inflating.
 */
export class DeflatedHeaderScanner implements ByteScanner {
  private readonly inner: HeaderScanner;
  private readonly inflater: InflateRaw;
  private failure: Error | undefined;
  private readonly drained: Promise<void>;
  private inflatedBytes = 0;
  private gaveUp = false;

  constructor(wanted: ReadonlySet<number>, stopAtTag?: number) {
    this.inner = new HeaderScanner('explicit-le', wanted, stopAtTag);
    this.inflater = createInflateRaw();
    this.inflater.on('data', (chunk: Buffer) => {
      if (this.done) return;
      this.inflatedBytes += chunk.length;
      try {
        this.inner.push(chunk);
      } catch (error) {
        this.failure = error as Error;
      }
      // A deflated object with no Pixel Data (a report, a PDF) would be inflated to its end: the
      // header is long past after this much.
      if (this.inflatedBytes > MAX_INFLATED_FOR_HEADER) this.gaveUp = true;
    });
    this.drained = new Promise((resolve) => {
      this.inflater.on('end', resolve);
      this.inflater.on('close', resolve);
      this.inflater.on('error', (error) => {
        this.failure ??= new DatasetFormatError(`deflated dataset cannot be inflated: ${error.message}`);
        resolve();
      });
    });
  }

  get done(): boolean {
    return this.inner.done || this.failure !== undefined || this.gaveUp;
  }

  push(chunk: Buffer): void {
    // Inflating slower than the network: stop rather than queue the dataset in memory.
    // (The receive path waits while the scanner is busy; this bounds a caller that does not.)
    if (!this.done && this.inflater.writableLength > MAX_QUEUED_DEFLATED) this.gaveUp = true;
    if (this.done) {
      if (!this.inflater.destroyed) this.inflater.destroy();
      return;
    }
    this.inflater.write(chunk);
  }

  get busy(): boolean {
    return !this.done && !this.inflater.destroyed && this.inflater.writableNeedDrain;
  }

  /** Once what was pushed is inflated, but for less than the inflater's buffer: pushed without a
   * wait, as a file is read, more than MAX_QUEUED_DEFLATED waited and the scan gave up before it had
   * inflated a byte (a deflated file of 5 MB could not be imported). */
  ready(): Promise<void> {
    if (this.done || this.inflater.destroyed || !this.inflater.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const settle = () => {
        this.inflater.off('drain', settle).off('close', settle).off('error', settle);
        resolve();
      };
      this.inflater.on('drain', settle).on('close', settle).on('error', settle);
    });
  }

  async finish(): Promise<HeaderScan> {
    // Scanned far enough: the rest of the stream is not inflated (ended, a stream cut short there
    // would be an error).
    if (!this.inflater.destroyed) {
      if (this.done) this.inflater.destroy();
      else this.inflater.end();
    }
    await this.drained;
    if (this.failure) throw this.failure;
    if (this.gaveUp) return { values: this.inner.valuesSoFar(), reachedStop: false };
    return this.inner.finish();
  }
}

/** See DeflatedHeaderScanner: limits of the inflation done for the header. */
const MAX_INFLATED_FOR_HEADER = 16 * 1024 * 1024;
const MAX_QUEUED_DEFLATED = 4 * 1024 * 1024;

/** `readToEnd`: see HeaderScanner (a deflated dataset is read up to `stopAtTag` only: inflating all
 * of it to check its framing would cost what its header alone does not). */
export function createHeaderScanner(encoding: DatasetEncoding, wanted: ReadonlySet<number>, stopAtTag?: number, readToEnd = false): ByteScanner {
  return encoding === 'deflated-explicit-le'
    ? new DeflatedHeaderScanner(wanted, stopAtTag)
    : new HeaderScanner(encoding, wanted, stopAtTag, readToEnd);
}
