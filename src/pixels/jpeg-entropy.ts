/**
 * What the JPEG codecs share (ITU-T T.81): marker segments, Huffman tables as the stream defines them
 * (C.2, F.2.2.3), a bit reader that undoes byte stuffing and stops at markers (F.1.2.3), a bit writer
 * that stuffs, and Huffman code lengths built for measured symbol frequencies (K.2), so that a stream
 * encoded again has a code for every symbol it uses.
 */
import { PixelRedactionError } from './native.js';

/** A marker segment as found in a stream: its marker, its body (after the length) and where it lies. */
export interface MarkerSegment {
  marker: number;
  body: Buffer;
  /** The offset of the marker, and of the first byte after the segment. */
  start: number;
  end: number;
}

export const MARKER = {
  SOI: 0xffd8,
  EOI: 0xffd9,
  SOS: 0xffda,
  DHT: 0xffc4,
  DQT: 0xffdb,
  DRI: 0xffdd,
  DNL: 0xffdc,
  RST0: 0xffd0,
} as const;

/** The segment whose marker lies at `at` (skipping fill bytes 0xFF before it, B.1.1.2). */
export function segmentAt(data: Buffer, at: number): MarkerSegment {
  let start = at;
  while (data[start] === 0xff && data[start + 1] === 0xff) start += 1;
  if (start + 4 > data.length || data[start] !== 0xff) throw new PixelRedactionError('the JPEG stream ends or breaks before its scan');
  const marker = data.readUInt16BE(start);
  const length = data.readUInt16BE(start + 2);
  if (length < 2 || start + 2 + length > data.length) throw new PixelRedactionError(`a JPEG marker segment 0x${marker.toString(16)} runs past the stream`);
  return { marker, body: data.subarray(start + 4, start + 2 + length), start, end: start + 2 + length };
}

/** A marker segment's bytes. */
export function segment(marker: number, body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16BE(marker, 0);
  header.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([header, body]);
}

export interface HuffmanTable {
  maxCode: Int32Array;
  valPtr: Int32Array;
  minCode: Int32Array;
  values: Uint8Array;
  /** For codes of at most LOOKAHEAD bits: (length << 8) | symbol by the next LOOKAHEAD bits; 0 if longer. */
  fast: Uint16Array;
}

const LOOKAHEAD = 9;

export function buildTable(counts: Uint8Array, values: Uint8Array): HuffmanTable {
  const maxCode = new Int32Array(18).fill(-1);
  const valPtr = new Int32Array(17);
  const minCode = new Int32Array(17);
  const fast = new Uint16Array(1 << LOOKAHEAD);
  let code = 0;
  let k = 0;
  for (let length = 1; length <= 16; length += 1) {
    const count = counts[length - 1] as number;
    if (count > 0) {
      valPtr[length] = k;
      minCode[length] = code;
      for (let i = 0; i < count && length <= LOOKAHEAD; i += 1) {
        const first = (code + i) << (LOOKAHEAD - length);
        fast.fill((length << 8) | (values[k + i] as number), first, first + (1 << (LOOKAHEAD - length)));
      }
      code += count;
      k += count;
      maxCode[length] = code - 1;
    }
    code <<= 1;
  }
  if (k > values.length) throw new PixelRedactionError('a JPEG Huffman table counts more codes than it has values');
  maxCode[17] = 0x7fffffff;
  return { maxCode, valPtr, minCode, values, fast };
}

/** The tables of a DHT segment's body, by Tc << 4 | Th (0x0h DC or lossless, 0x1h AC). */
export function readHuffmanTables(body: Buffer, into: Map<number, HuffmanTable>): void {
  let p = 0;
  while (p < body.length) {
    const id = body[p] as number;
    const counts = body.subarray(p + 1, p + 17);
    const total = counts.reduce((sum, count) => sum + count, 0);
    if (p + 17 + total > body.length) throw new PixelRedactionError('a JPEG Huffman table runs past its segment');
    into.set(id, buildTable(Uint8Array.from(counts), Uint8Array.from(body.subarray(p + 17, p + 17 + total))));
    p += 17 + total;
  }
}

export class BitReader {
  /** Bits not consumed yet, the oldest highest; `count` of them are valid. */
  private buffer = 0;
  private count = 0;
  /** Zero bits supplied past a marker or the end of the data: never part of a whole stream's codes. */
  private padding = 0;
  constructor(
    private readonly data: Buffer,
    public at: number,
  ) {}

  /** Tops the buffer up to at least 24 bits, undoing byte stuffing (0xFF 0x00). A marker ends the data:
   * past it, zeros come (a well-formed stream never reads them). */
  private fill(): void {
    while (this.count <= 24) {
      let byte = 0;
      if (this.at < this.data.length) {
        byte = this.data[this.at] as number;
        if (byte === 0xff) {
          const next = this.data[this.at + 1];
          if (next === 0x00) this.at += 2;
          else {
            byte = 0; // a marker: the entropy-coded segment has ended
            this.padding += 8;
          }
        } else this.at += 1;
      } else this.padding += 8;
      this.buffer = ((this.buffer << 8) | byte) >>> 0;
      this.count += 8;
    }
  }

  bits(count: number): number {
    if (count === 0) return 0;
    if (this.count < count) this.fill();
    this.count -= count;
    return (this.buffer >>> this.count) & ((1 << count) - 1);
  }

  decode(table: HuffmanTable): number {
    if (this.count < LOOKAHEAD) this.fill();
    const entry = table.fast[(this.buffer >>> (this.count - LOOKAHEAD)) & ((1 << LOOKAHEAD) - 1)] as number;
    if (entry !== 0) {
      this.count -= entry >> 8;
      return entry & 0xff;
    }
    let code = this.bits(1);
    let length = 1;
    while (code > (table.maxCode[length] as number)) {
      code = (code << 1) | this.bits(1);
      length += 1;
      if (length > 16) throw new PixelRedactionError('a JPEG Huffman code that the table does not define');
    }
    return table.values[(table.valPtr[length] as number) + code - (table.minCode[length] as number)] as number;
  }

  /** At a restart interval's end: drops the padding bits and reads the expected RSTm marker (F.2.2.5 in
   * reverse). */
  restart(expected: number): void {
    this.ensureComplete();
    this.buffer = 0;
    this.count = 0;
    this.padding = 0;
    while (this.data[this.at] === 0xff && this.data[this.at + 1] === 0xff) this.at += 1; // fill bytes (B.1.1.2)
    if (this.data[this.at] !== 0xff || this.data[this.at + 1] !== 0xd0 + expected) {
      throw new PixelRedactionError(`JPEG restart marker RST${expected} missing at byte ${this.at}`);
    }
    this.at += 2;
  }

  /** Throws when the codes read ran into a marker or the end of the data: the entropy-coded segment was
   * cut short (or is corrupt), and what was decoded from the zeros after it is not the image. */
  ensureComplete(): void {
    if (this.padding > this.count) throw new PixelRedactionError('the JPEG entropy-coded data is cut short or corrupt (its codes run into a marker or the end)');
  }

  /** The offset just past the entropy-coded data read: the next marker. */
  get end(): number {
    let at = this.at;
    // A stuffed 0xFF 0x00 is data; 0xFF 0xFF is a fill byte before a marker (B.1.1.2): step one byte,
    // so that the marker after it is found.
    while (at + 1 < this.data.length && !(this.data[at] === 0xff && this.data[at + 1] !== 0x00 && this.data[at + 1] !== 0xff)) at += this.data[at] === 0xff && this.data[at + 1] === 0x00 ? 2 : 1;
    return at;
  }
}

/** The value coded by category `size` and its extra bits (F.2.2.1, H.1.2.2; lossless 16 means 32768). */
export function extend(bits: number, size: number): number {
  if (size === 0) return 0;
  if (size === 16) return 32768;
  return bits < 1 << (size - 1) ? bits - (1 << size) + 1 : bits;
}

/** The category (SSSS) of a value: how many bits its magnitude needs (F.1.2.1.1). */
export function category(value: number): number {
  if (value === 32768 || value === -32768) return 16;
  let magnitude = value < 0 ? -value : value;
  let bits = 0;
  while (magnitude > 0) {
    bits += 1;
    magnitude >>= 1;
  }
  return bits;
}

/** A value's extra bits after its category's code (F.1.2.1.1: negative values one less, low bits). */
export function extraBits(value: number, size: number): number {
  return value < 0 ? value - 1 + (1 << size) : value;
}

/** T.81 K.2: code lengths of at most 16 bits for the symbols' frequencies (index = symbol). */
export function huffmanLengths(frequencies: ArrayLike<number>): { counts: Uint8Array; values: Uint8Array } {
  const freq = [...Array.from(frequencies), 1]; // a reserved symbol, so that no code is all ones
  const size = new Array<number>(freq.length).fill(0);
  const others = new Array<number>(freq.length).fill(-1);
  for (;;) {
    let v1 = -1;
    let v2 = -1;
    for (let i = 0; i < freq.length; i += 1) {
      if ((freq[i] as number) === 0) continue;
      if (v1 < 0 || (freq[i] as number) <= (freq[v1] as number)) v1 = i;
    }
    for (let i = 0; i < freq.length; i += 1) {
      if ((freq[i] as number) === 0 || i === v1) continue;
      if (v2 < 0 || (freq[i] as number) <= (freq[v2] as number)) v2 = i;
    }
    if (v2 < 0) break;
    freq[v1] = (freq[v1] as number) + (freq[v2] as number);
    freq[v2] = 0;
    size[v1] = (size[v1] as number) + 1;
    let tail = v1;
    while ((others[tail] as number) >= 0) {
      tail = others[tail] as number;
      size[tail] = (size[tail] as number) + 1;
    }
    others[tail] = v2;
    size[v2] = (size[v2] as number) + 1;
    tail = v2;
    while ((others[tail] as number) >= 0) {
      tail = others[tail] as number;
      size[tail] = (size[tail] as number) + 1;
    }
  }
  const bits = new Array<number>(Math.max(33, freq.length + 1)).fill(0);
  for (const length of size) if (length > 0) bits[length] = (bits[length] as number) + 1;
  for (let i = bits.length - 1; i > 16; i -= 1) {
    while ((bits[i] as number) > 0) {
      let j = i - 2;
      while ((bits[j] as number) === 0) j -= 1;
      bits[i] = (bits[i] as number) - 2;
      bits[i - 1] = (bits[i - 1] as number) + 1;
      bits[j + 1] = (bits[j + 1] as number) + 2;
      bits[j] = (bits[j] as number) - 1;
    }
  }
  let longest = 16;
  while ((bits[longest] as number) === 0) longest -= 1;
  bits[longest] = (bits[longest] as number) - 1; // the reserved symbol goes
  const symbols = Array.from(frequencies)
    .map((frequency, symbol) => ({ symbol, length: size[symbol] as number, frequency }))
    .filter((entry) => entry.frequency > 0)
    .sort((a, b) => a.length - b.length || a.symbol - b.symbol)
    .map((entry) => entry.symbol);
  return { counts: Uint8Array.from(bits.slice(1, 17)), values: Uint8Array.from(symbols) };
}

/** Codes by symbol (C.2): code in the low bits of `code[symbol]`, its length in `length[symbol]` (0 for
 * symbols without a code). */
export interface HuffmanCodes {
  code: Uint16Array;
  length: Uint8Array;
}

export function huffmanCodes(counts: Uint8Array, values: Uint8Array): HuffmanCodes {
  const codes: HuffmanCodes = { code: new Uint16Array(256), length: new Uint8Array(256) };
  let code = 0;
  let k = 0;
  for (let length = 1; length <= 16; length += 1) {
    for (let i = 0; i < (counts[length - 1] as number); i += 1) {
      const symbol = values[k++] as number;
      codes.code[symbol] = code++;
      codes.length[symbol] = length;
    }
    code <<= 1;
  }
  return codes;
}

/** A DHT table's bytes: Tc/Th, the 16 counts, the values. */
export function huffmanTableBytes(id: number, table: { counts: Uint8Array; values: Uint8Array }): Buffer {
  return Buffer.concat([Buffer.from([id]), Buffer.from(table.counts), Buffer.from(table.values)]);
}

export class BitWriter {
  private out: Buffer;
  private length = 0;
  private buffer = 0;
  private used = 0;

  constructor(capacity: number) {
    this.out = Buffer.allocUnsafe(Math.max(1024, capacity));
  }

  /** Appends the low `count` bits of `value` (count ≤ 16). */
  write(value: number, count: number): void {
    if (count === 0) return;
    this.buffer = ((this.buffer << count) | (value & ((1 << count) - 1))) >>> 0;
    this.used += count;
    while (this.used >= 8) {
      this.used -= 8;
      this.push((this.buffer >>> this.used) & 0xff, true);
    }
    this.buffer &= (1 << this.used) - 1;
  }

  private push(byte: number, stuff: boolean): void {
    if (this.length + 2 > this.out.length) {
      const larger = Buffer.allocUnsafe(this.out.length * 2);
      this.out.copy(larger, 0, 0, this.length);
      this.out = larger;
    }
    this.out[this.length++] = byte;
    if (stuff && byte === 0xff) this.out[this.length++] = 0x00;
  }

  /** Pads the last byte with ones (F.1.2.3). */
  private pad(): void {
    if (this.used > 0) this.write(0xff, 8 - this.used);
  }

  /** Ends a restart interval: padding, then the marker RSTm. */
  restartMarker(m: number): void {
    this.pad();
    this.push(0xff, false);
    this.push(0xd0 + m, false);
  }

  finish(): Buffer {
    this.pad();
    return this.out.subarray(0, this.length);
  }
}
