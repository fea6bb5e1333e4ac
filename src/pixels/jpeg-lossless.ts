/**
 * JPEG lossless (ITU-T T.81 Annex H, process 14; DICOM .57 and .70): a frame decoded to its samples and
 * encoded again, losslessly. Encoding uses first-order prediction (selection value 1, what .70 requires
 * and .57 allows), the frame's point transform, no restart intervals, and Huffman tables built for the
 * frame (T.81 K.2), so that every difference has a code. Every frame encoded is decoded again and
 * compared before use (codecs.ts does so for the other codecs; here the redactor does).
 */
import { blackSamples, PixelRedactionError, type PixelGeometry, type RowMask } from './native.js';

export interface LosslessFrame {
  width: number;
  height: number;
  components: number;
  precision: number;
  pointTransform: number;
  /** Samples, pixel-interleaved, one number per sample (unsigned, P bits). */
  samples: Uint16Array;
}

interface HuffmanTable {
  /** code length → first code, count, index of its first symbol */
  maxCode: Int32Array;
  valPtr: Int32Array;
  minCode: Int32Array;
  values: Uint8Array;
}

function buildTable(counts: Uint8Array, values: Uint8Array): HuffmanTable {
  const maxCode = new Int32Array(18).fill(-1);
  const valPtr = new Int32Array(17);
  const minCode = new Int32Array(17);
  let code = 0;
  let k = 0;
  for (let length = 1; length <= 16; length += 1) {
    const count = counts[length - 1] as number;
    if (count > 0) {
      valPtr[length] = k;
      minCode[length] = code;
      code += count;
      k += count;
      maxCode[length] = code - 1;
    }
    code <<= 1;
  }
  maxCode[17] = 0x7fffffff;
  return { maxCode, valPtr, minCode, values };
}

class BitReader {
  /** Bits not consumed yet, the oldest highest; `count` of them are valid. */
  private buffer = 0;
  private count = 0;
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
          else byte = 0; // a marker (EOI): the data has ended
        } else this.at += 1;
      }
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
    let code = this.bits(1);
    let length = 1;
    while (code > (table.maxCode[length] as number)) {
      code = (code << 1) | this.bits(1);
      length += 1;
      if (length > 16) throw new PixelRedactionError('a Huffman code longer than 16 bits');
    }
    return table.values[(table.valPtr[length] as number) + code - (table.minCode[length] as number)] as number;
  }
}

/** The difference coded by category `size` and its extra bits (T.81 H.1.2.2; 16 means 32768). */
function extend(bits: number, size: number): number {
  if (size === 0) return 0;
  if (size === 16) return 32768;
  return bits < 1 << (size - 1) ? bits - (1 << size) + 1 : bits;
}

function predict(selection: number, a: number, b: number, c: number): number {
  switch (selection) {
    case 1:
      return a;
    case 2:
      return b;
    case 3:
      return c;
    case 4:
      return a + b - c;
    case 5:
      return a + ((b - c) >> 1);
    case 6:
      return b + ((a - c) >> 1);
    default:
      return (a + b) >> 1;
  }
}

export function decodeJpegLossless(data: Buffer): LosslessFrame {
  const tables = new Map<number, HuffmanTable>();
  let frame: { width: number; height: number; precision: number; ids: number[] } | undefined;
  let at = 2;
  if (data.readUInt16BE(0) !== 0xffd8) throw new PixelRedactionError('not a JPEG stream (no SOI)');
  for (;;) {
    if (at + 4 > data.length) throw new PixelRedactionError('the JPEG stream ends before its scan');
    const marker = data.readUInt16BE(at);
    const length = data.readUInt16BE(at + 2);
    const body = data.subarray(at + 4, at + 2 + length);
    if (marker === 0xffc3) {
      const ids: number[] = [];
      for (let i = 0; i < (body[5] as number); i += 1) {
        ids.push(body[6 + i * 3] as number);
        if (body[7 + i * 3] !== 0x11) throw new PixelRedactionError('JPEG lossless with subsampled components');
      }
      frame = { precision: body[0] as number, height: body.readUInt16BE(1), width: body.readUInt16BE(3), ids };
    } else if ((marker & 0xfff0) === 0xffc0 && marker !== 0xffc4 && marker !== 0xffc8 && marker !== 0xffcc) {
      throw new PixelRedactionError(`JPEG process of marker 0x${marker.toString(16)} is not lossless (SOF3)`);
    } else if (marker === 0xffc4) {
      let p = 0;
      while (p < body.length) {
        const id = body[p] as number;
        const counts = body.subarray(p + 1, p + 17);
        const total = counts.reduce((sum, count) => sum + count, 0);
        tables.set(id, buildTable(Uint8Array.from(counts), Uint8Array.from(body.subarray(p + 17, p + 17 + total))));
        p += 17 + total;
      }
    } else if (marker === 0xffdd) {
      // Not checked against a reference decoder here (no tool at hand writes them): hold, not guess.
      if (body.readUInt16BE(0) > 0) throw new PixelRedactionError('JPEG lossless with restart intervals is not supported');
    } else if (marker === 0xffda) {
      if (!frame) throw new PixelRedactionError('a JPEG scan before its frame header');
      return decodeScan(data, at + 2 + length, body, frame, tables);
    }
    at += 2 + length;
  }
}

function decodeScan(
  data: Buffer,
  start: number,
  header: Buffer,
  frame: { width: number; height: number; precision: number; ids: number[] },
  tables: Map<number, HuffmanTable>,
): LosslessFrame {
  const components = header[0] as number;
  if (components !== frame.ids.length) throw new PixelRedactionError('a JPEG lossless frame in several scans');
  const scanTables = Array.from({ length: components }, (_, i) => {
    const table = tables.get((header[2 + i * 2] as number) >> 4);
    if (!table) throw new PixelRedactionError('a JPEG scan names a Huffman table it does not define');
    return table;
  });
  const selection = header[1 + components * 2] as number;
  const pointTransform = (header[3 + components * 2] as number) & 0x0f;
  const { width, height, precision } = frame;
  const samples = new Uint16Array(width * height * components);
  const reader = new BitReader(data, start);
  const initial = 1 << (precision - pointTransform - 1);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      for (let c = 0; c < components; c += 1) {
        const index = (y * width + x) * components + c;
        const size = reader.decode(scanTables[c] as HuffmanTable);
        const difference = extend(reader.bits(size === 16 ? 0 : size), size);
        let prediction: number;
        if (x === 0 && y === 0) prediction = initial;
        else if (y === 0) prediction = samples[index - components] as number;
        else if (x === 0) prediction = samples[index - width * components] as number;
        else prediction = predict(selection, samples[index - components] as number, samples[index - width * components] as number, samples[index - (width + 1) * components] as number);
        samples[index] = (prediction + difference) & 0xffff;
      }
    }
  }
  return { width, height, components, precision, pointTransform, samples };
}

/** T.81 K.2: code lengths of at most 16 bits for the symbols' frequencies. */
function huffmanLengths(frequencies: number[]): { counts: Uint8Array; values: Uint8Array } {
  const freq = [...frequencies, 1]; // a reserved symbol, so that no code is all ones
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
  const bits = new Array<number>(33).fill(0);
  for (const length of size) if (length > 0) bits[length] = (bits[length] as number) + 1;
  for (let i = 32; i > 16; i -= 1) {
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
  const symbols = frequencies
    .map((frequency, symbol) => ({ symbol, length: size[symbol] as number, frequency }))
    .filter((entry) => entry.frequency > 0)
    .sort((a, b) => a.length - b.length || a.symbol - b.symbol)
    .map((entry) => entry.symbol);
  return { counts: Uint8Array.from(bits.slice(1, 17)), values: Uint8Array.from(symbols) };
}

class BitWriter {
  private out: Buffer;
  private length = 0;
  private buffer = 0;
  private used = 0;

  constructor(capacity: number) {
    this.out = Buffer.allocUnsafe(capacity);
  }

  /** Appends the low `count` bits of `value` (count ≤ 16). */
  write(value: number, count: number): void {
    this.buffer = ((this.buffer << count) | (value & ((1 << count) - 1))) >>> 0;
    this.used += count;
    while (this.used >= 8) {
      this.used -= 8;
      this.push((this.buffer >>> this.used) & 0xff);
    }
    this.buffer &= (1 << this.used) - 1;
  }

  private push(byte: number): void {
    if (this.length + 2 > this.out.length) {
      const larger = Buffer.allocUnsafe(this.out.length * 2);
      this.out.copy(larger, 0, 0, this.length);
      this.out = larger;
    }
    this.out[this.length++] = byte;
    if (byte === 0xff) this.out[this.length++] = 0x00;
  }

  finish(): Buffer {
    if (this.used > 0) this.write(0xff, 8 - this.used); // pad with ones
    return this.out.subarray(0, this.length);
  }
}

function category(difference: number): number {
  if (difference === 32768 || difference === -32768) return 16;
  let magnitude = Math.abs(difference);
  let bits = 0;
  while (magnitude > 0) {
    bits += 1;
    magnitude >>= 1;
  }
  return bits;
}

/** Encodes samples with selection value 1; the result decodes to exactly `frame.samples`. */
export function encodeJpegLossless(frame: LosslessFrame): Buffer {
  const { width, height, components, precision, pointTransform, samples } = frame;
  const differences = new Int32Array(samples.length);
  const initial = 1 << (precision - pointTransform - 1);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      for (let c = 0; c < components; c += 1) {
        const index = (y * width + x) * components + c;
        const prediction = x === 0 && y === 0 ? initial : y === 0 ? (samples[index - components] as number) : x === 0 ? (samples[index - width * components] as number) : (samples[index - components] as number);
        // Differences are taken modulo 2^16 (T.81 H.1.2.1) and coded in the range −32767..32768.
        let difference = ((samples[index] as number) - prediction) & 0xffff;
        if (difference > 32768) difference -= 65536;
        differences[index] = difference;
      }
    }
  }
  const frequencies = new Array<number>(17).fill(0);
  for (const difference of differences) frequencies[category(difference)] = (frequencies[category(difference)] as number) + 1;
  const { counts, values } = huffmanLengths(frequencies);
  const codes = new Map<number, { code: number; length: number }>();
  let code = 0;
  let k = 0;
  for (let length = 1; length <= 16; length += 1) {
    for (let i = 0; i < (counts[length - 1] as number); i += 1) codes.set(values[k++] as number, { code: code++, length });
    code <<= 1;
  }
  const writer = new BitWriter(Math.max(1024, samples.length * 2));
  for (const difference of differences) {
    const size = category(difference);
    const entry = codes.get(size) as { code: number; length: number };
    writer.write(entry.code, entry.length);
    if (size > 0 && size < 16) writer.write(difference < 0 ? difference - 1 + (1 << size) : difference, size);
  }
  const scan = writer.finish();
  const segment = (marker: number, body: Buffer) => {
    const header = Buffer.alloc(4);
    header.writeUInt16BE(marker, 0);
    header.writeUInt16BE(body.length + 2, 2);
    return Buffer.concat([header, body]);
  };
  const sof = Buffer.alloc(6 + components * 3);
  sof[0] = precision;
  sof.writeUInt16BE(height, 1);
  sof.writeUInt16BE(width, 3);
  sof[5] = components;
  for (let c = 0; c < components; c += 1) sof.set([c + 1, 0x11, 0], 6 + c * 3);
  const dht = Buffer.concat([Buffer.from([0x00]), Buffer.from(counts), Buffer.from(values)]);
  const sos = Buffer.alloc(4 + components * 2);
  sos[0] = components;
  for (let c = 0; c < components; c += 1) sos.set([c + 1, 0x00], 1 + c * 2);
  sos[1 + components * 2] = 1; // selection value 1
  sos[2 + components * 2] = 0;
  sos[3 + components * 2] = pointTransform;
  return Buffer.concat([Buffer.from([0xff, 0xd8]), segment(0xffc3, sof), segment(0xffc4, dht), segment(0xffda, sos), scan, Buffer.from([0xff, 0xd9])]);
}

/** The frame's samples as native bytes (little endian, BitsAllocated containers, pixel-interleaved). */
function toNative(frame: LosslessFrame, g: PixelGeometry): Buffer {
  const size = g.bitsAllocated / 8;
  const out = Buffer.alloc(frame.samples.length * size);
  frame.samples.forEach((value, index) => {
    const sample = value << frame.pointTransform;
    if (size === 1) out[index] = sample & 0xff;
    else out.writeUInt16LE(sample & 0xffff, index * 2);
  });
  return out;
}

function checkLossless(frame: LosslessFrame, g: PixelGeometry): void {
  if (frame.width !== g.columns || frame.height !== g.rows || frame.components !== g.samplesPerPixel) {
    throw new PixelRedactionError(`a JPEG lossless frame of ${frame.width}×${frame.height}×${frame.components} in an image of ${g.columns}×${g.rows}×${g.samplesPerPixel}`);
  }
  if (g.bitsAllocated !== 8 && g.bitsAllocated !== 16) throw new PixelRedactionError(`JPEG lossless with BitsAllocated ${g.bitsAllocated}`);
}

export function decodeJpegLosslessFrame(data: Buffer, g: PixelGeometry): { samples: Buffer; layout: PixelGeometry } {
  const frame = decodeJpegLossless(data);
  checkLossless(frame, g);
  return { samples: toNative(frame, g), layout: { ...g, planar: false, bigEndian: false, frames: 1 } };
}

/** Decodes, blanks (black as the image defines it, in the stored P bits), encodes with selection value
 * 1, and checks that the new frame decodes to exactly the redacted samples. */
export function jpegLosslessFrameRedactor(g: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer {
  if (!['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR', 'RGB', 'YBR_FULL'].includes(g.photometric)) throw new PixelRedactionError(`JPEG lossless with ${g.photometric}`);
  return (data) => {
    const frame = decodeJpegLossless(data);
    checkLossless(frame, g);
    const modulus = 2 ** frame.precision;
    const black = blackSamples({ ...g, highBit: g.bitsStored - 1 }).map((value) => (((value % modulus) + modulus) % modulus) >> frame.pointTransform);
    for (let row = 0; row < frame.height; row += 1) {
      for (const [from, to] of mask(row)) {
        for (let x = from; x < to; x += 1) {
          for (let c = 0; c < frame.components; c += 1) frame.samples[(row * frame.width + x) * frame.components + c] = black[c] as number;
        }
      }
    }
    const encoded = encodeJpegLossless(frame);
    const check = decodeJpegLossless(encoded).samples;
    if (check.length !== frame.samples.length || check.some((value, index) => value !== frame.samples[index])) {
      throw new PixelRedactionError('the JPEG lossless frame encoded again does not decode to the redacted samples');
    }
    return encoded;
  };
}
