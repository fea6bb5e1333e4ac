/**
 * JPEG lossless (ITU-T T.81 Annex H, process 14; DICOM .57 and .70): a frame decoded to its samples and
 * encoded again, losslessly. Encoding uses first-order prediction (selection value 1, what .70 requires
 * and .57 allows), the frame's point transform, no restart intervals, and Huffman tables built for the
 * frame (T.81 K.2), so that every difference has a code. Every frame encoded is decoded again and
 * compared before use (codecs.ts does so for the other codecs; here the redactor does).
 */
import { BitReader, BitWriter, category, extend, extraBits, huffmanCodes, huffmanLengths, huffmanTableBytes, readHuffmanTables, segment, type HuffmanTable } from './jpeg-entropy.js';
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

/** Decodes a lossless stream. Given the image, the frame header must fit it before the samples are
 * allocated and decoded (a few bytes claiming 65000×65000 would otherwise cost 8 GB and a decoding of
 * nothing that long). */
export function decodeJpegLossless(data: Buffer, image?: PixelGeometry): LosslessFrame {
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
      if (image) checkSize({ ...frame, components: ids.length }, image);
    } else if ((marker & 0xfff0) === 0xffc0 && marker !== 0xffc4 && marker !== 0xffc8 && marker !== 0xffcc) {
      throw new PixelRedactionError(`JPEG process of marker 0x${marker.toString(16)} is not lossless (SOF3)`);
    } else if (marker === 0xffc4) {
      readHuffmanTables(body, tables);
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
  // Every sample is coded with one Huffman code, one bit at the least (H.1.2.2): a few bytes claiming
  // 30000×30000 (Rows and Columns agreeing) had 1.8 GB allocated, outside the thread's heap limit, and
  // decoded from padding (found in the pixel robustness review).
  if (width * height * components > (data.length - start) * 8) {
    throw new PixelRedactionError(`the JPEG lossless stream is too short for its frame: ${width}x${height}x${components} samples need at least ${Math.ceil((width * height * components) / 8)} bytes, and ${data.length - start} follow its scan header`);
  }
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
  reader.ensureComplete();
  return { width, height, components, precision, pointTransform, samples };
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
  const table = huffmanLengths(frequencies);
  const codes = huffmanCodes(table.counts, table.values);
  const writer = new BitWriter(samples.length * 2);
  for (const difference of differences) {
    const size = category(difference);
    writer.write(codes.code[size] as number, codes.length[size] as number);
    if (size > 0 && size < 16) writer.write(extraBits(difference, size), size);
  }
  const scan = writer.finish();
  const sof = Buffer.alloc(6 + components * 3);
  sof[0] = precision;
  sof.writeUInt16BE(height, 1);
  sof.writeUInt16BE(width, 3);
  sof[5] = components;
  for (let c = 0; c < components; c += 1) sof.set([c + 1, 0x11, 0], 6 + c * 3);
  const dht = huffmanTableBytes(0x00, table);
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

function checkSize(frame: { width: number; height: number; components: number }, g: PixelGeometry): void {
  if (frame.width !== g.columns || frame.height !== g.rows || frame.components !== g.samplesPerPixel) {
    throw new PixelRedactionError(`a JPEG lossless frame of ${frame.width}×${frame.height}×${frame.components} in an image of ${g.columns}×${g.rows}×${g.samplesPerPixel}`);
  }
}

function checkLossless(frame: LosslessFrame, g: PixelGeometry): void {
  checkSize(frame, g);
  if (g.bitsAllocated !== 8 && g.bitsAllocated !== 16) throw new PixelRedactionError(`JPEG lossless with BitsAllocated ${g.bitsAllocated}`);
}

export function decodeJpegLosslessFrame(data: Buffer, g: PixelGeometry): { samples: Buffer; layout: PixelGeometry } {
  const frame = decodeJpegLossless(data, g);
  checkLossless(frame, g);
  return { samples: toNative(frame, g), layout: { ...g, planar: false, bigEndian: false, frames: 1 } };
}

/** Decodes, blanks (black as the image defines it, in the stored P bits), encodes with selection value
 * 1, and checks that the new frame decodes to exactly the redacted samples. */
export function jpegLosslessFrameRedactor(g: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer {
  if (!['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR', 'RGB', 'YBR_FULL'].includes(g.photometric)) throw new PixelRedactionError(`JPEG lossless with ${g.photometric}`);
  return (data) => {
    const frame = decodeJpegLossless(data, g);
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
    const check = decodeJpegLossless(encoded, g).samples;
    if (check.length !== frame.samples.length || check.some((value, index) => value !== frame.samples[index])) {
      throw new PixelRedactionError('the JPEG lossless frame encoded again does not decode to the redacted samples');
    }
    return encoded;
  };
}
