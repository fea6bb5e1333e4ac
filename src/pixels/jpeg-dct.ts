/**
 * JPEG baseline and extended sequential (ITU-T T.81 processes 1, 2 and 4, Huffman coded; DICOM .50 and
 * .51), redacted in the DCT domain: the entropy-coded data is decoded to quantised coefficients, every
 * block of every MCU that a zone touches is set to a flat black (DC only), and the coefficients are
 * Huffman coded again with tables built for them (K.2). No coefficient of any other MCU changes, so a
 * decoder gives the same pixels outside the touched MCUs, and no loss is added. Quantisation tables,
 * APPn and COM segments, restart intervals and the scan structure are kept as they were.
 *
 * The same decoding, with dequantisation and an inverse DCT (A.3.3), gives previews and the
 * decompression fallback their pixels.
 */
import { BitReader, BitWriter, category, extend, extraBits, huffmanCodes, huffmanLengths, huffmanTableBytes, MARKER, readHuffmanTables, segment, segmentAt, type HuffmanCodes, type HuffmanTable } from './jpeg-entropy.js';
import { blackSamples, PixelRedactionError, type PixelGeometry, type RowMask } from './native.js';
import { cleanedSegment } from './jpeg-metadata.js';

interface DctComponent {
  id: number;
  h: number;
  v: number;
  /** Quantisation table values in zig-zag order, as they stood when the component's scan began. */
  quantisation: Uint16Array;
  tq: number;
  /** Blocks per line and per column of the MCU-padded grid. */
  blocksPerLine: number;
  blocksPerColumn: number;
  /** 64 coefficients per block in zig-zag order, blocks in raster order of the padded grid. */
  coefficients: Int16Array;
}

interface Scan {
  header: Buffer;
  /** Indexes into the frame's components, in scan order, with each one's DC and AC table. */
  components: Array<{ index: number; dc: number; ac: number }>;
  restartInterval: number;
}

/** What the stream holds, in order: segments kept as they are, and scans (decoded). */
type Part = { kind: 'segment'; bytes: Buffer } | { kind: 'scan'; scan: Scan };

export interface DctFrame {
  precision: number;
  width: number;
  height: number;
  hMax: number;
  vMax: number;
  mcusPerLine: number;
  mcusPerColumn: number;
  components: DctComponent[];
  parts: Part[];
  /** Whether three components are YCbCr (true) or RGB (false); see colourTransformed. */
  ycc: boolean;
}

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

/** Decodes a whole stream to its quantised coefficients. The image's Photometric Interpretation settles
 * RGB against YCbCr when the stream's own markers do not. Given the image, the frame header must fit it
 * before any coefficient is allocated or decoded: a header claiming 65000×65000 in a frame of a few
 * bytes had 8 GB allocated and decoded from nothing before the size was compared. */
export function decodeDct(data: Buffer, image?: PixelGeometry): DctFrame {
  const photometric = image?.photometric ?? '';
  if (data.length < 4 || data.readUInt16BE(0) !== MARKER.SOI) throw new PixelRedactionError('not a JPEG stream (no SOI)');
  const huffman = new Map<number, HuffmanTable>();
  const quantisation = new Map<number, Uint16Array>();
  const parts: Part[] = [];
  let frame: DctFrame | undefined;
  let restartInterval = 0;
  let jfif = false;
  let adobeTransform: number | undefined;
  let at = 2;
  for (;;) {
    const found = segmentAtOrEnd(data, at);
    if (found === 'EOI') break;
    const { marker, body, start, end } = found;
    if (marker === MARKER.SOS) {
      if (!frame) throw new PixelRedactionError('a JPEG scan before its frame header');
      const scan = readScanHeader(body, frame, quantisation, restartInterval);
      const reader = new BitReader(data, end);
      decodeScan(reader, frame, scan, huffman);
      reader.ensureComplete();
      parts.push({ kind: 'scan', scan });
      at = reader.end;
      continue;
    }
    if (marker === MARKER.DHT) readHuffmanTables(body, huffman); // kept in parts, dropped when coding again
    else if (marker === MARKER.DQT) readQuantisationTables(body, quantisation);
    else if (marker === MARKER.DRI) restartInterval = body.readUInt16BE(0);
    else if (marker === MARKER.DNL) throw new PixelRedactionError('a JPEG stream whose height comes in a DNL segment');
    else if (marker === 0xffe0 && body.subarray(0, 5).toString('latin1') === 'JFIF\0') jfif = true;
    else if (marker === 0xffee && body.subarray(0, 5).toString('latin1') === 'Adobe' && body.length >= 12) adobeTransform = body[11];
    else if (marker === 0xffc0 || marker === 0xffc1) {
      if (frame) throw new PixelRedactionError('a JPEG stream with two frames');
      frame = readFrameHeader(body, quantisation, image, data.length - end);
    } else if ((marker & 0xfff0) === 0xffc0 && marker !== 0xffc4 && marker !== 0xffc8 && marker !== 0xffcc) {
      throw new PixelRedactionError(`JPEG process of marker 0x${marker.toString(16)} is not baseline or extended sequential with Huffman coding`);
    }
    parts.push({ kind: 'segment', bytes: data.subarray(start, end) });
    at = end;
  }
  if (!frame) throw new PixelRedactionError('a JPEG stream without a frame header');
  if (!parts.some((part) => part.kind === 'scan')) throw new PixelRedactionError('a JPEG stream without a scan');
  frame.parts = parts;
  frame.ycc = colourTransformed(frame, jfif, adobeTransform, photometric);
  return frame;
}

function segmentAtOrEnd(data: Buffer, at: number): ReturnType<typeof segmentAt> | 'EOI' {
  let start = at;
  while (data[start] === 0xff && data[start + 1] === 0xff) start += 1;
  // A stream cut short after its last scan is read as ended; its scans were complete.
  if (start + 2 > data.length || data.readUInt16BE(start) === MARKER.EOI) return 'EOI';
  return segmentAt(data, start);
}

function readQuantisationTables(body: Buffer, into: Map<number, Uint16Array>): void {
  let p = 0;
  while (p < body.length) {
    const precision = (body[p] as number) >> 4;
    const id = (body[p] as number) & 0x0f;
    const table = new Uint16Array(64);
    for (let k = 0; k < 64; k += 1) table[k] = precision ? body.readUInt16BE(p + 1 + k * 2) : (body[p + 1 + k] as number);
    into.set(id, table);
    p += 1 + 64 * (precision ? 2 : 1);
  }
}

/**
 * The frame header, and the frame's coefficients allocated. `available`: the bytes after the header,
 * which must hold at least two bits a block (a DC code and an AC code, each one bit at the least,
 * B.2.4 and F.1.2) for every block of every component (A.2.3: each coded once in sequential DCT).
 * A header and Rows and Columns that agree on 30000×30000 in a frame of 140 bytes had 5 GB allocated,
 * outside the thread's heap limit, and decoded from padding (found in the pixel robustness review).
 */
function readFrameHeader(body: Buffer, quantisation: Map<number, Uint16Array>, image: PixelGeometry | undefined, available: number): DctFrame {
  const precision = body[0] as number;
  const height = body.readUInt16BE(1);
  const width = body.readUInt16BE(3);
  const count = body[5] as number;
  if (image) checkFits({ width, height, components: count, precision }, image);
  if (precision !== 8 && precision !== 12) throw new PixelRedactionError(`JPEG sample precision ${precision}`);
  if (height === 0) throw new PixelRedactionError('a JPEG stream whose height comes in a DNL segment');
  if (width === 0 || count < 1 || count > 4) throw new PixelRedactionError('a JPEG frame header without width or components');
  const raw = Array.from({ length: count }, (_, i) => ({ id: body[6 + i * 3] as number, h: (body[7 + i * 3] as number) >> 4, v: (body[7 + i * 3] as number) & 15, tq: body[8 + i * 3] as number }));
  // One component is never interleaved: its MCU is one block whatever its sampling factors (A.2.2).
  if (count === 1) Object.assign(raw[0] as object, { h: 1, v: 1 });
  if (raw.some((c) => c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4)) throw new PixelRedactionError('JPEG sampling factors outside 1 to 4');
  const hMax = Math.max(...raw.map((c) => c.h));
  const vMax = Math.max(...raw.map((c) => c.v));
  // Each component's own blocks (A.1.1: its size from the sampling factors), not the MCUs' padding.
  const codedBlocks = raw.reduce((sum, c) => sum + ceilDiv(ceilDiv(width * c.h, hMax), 8) * ceilDiv(ceilDiv(height * c.v, vMax), 8), 0);
  if (codedBlocks * 2 > available * 8) {
    throw new PixelRedactionError(`the JPEG stream is too short for its frame: ${width}x${height} in ${codedBlocks} blocks needs at least ${Math.ceil(codedBlocks / 4)} bytes of scans, and ${available} follow its frame header`);
  }
  const mcusPerLine = ceilDiv(width, 8 * hMax);
  const mcusPerColumn = ceilDiv(height, 8 * vMax);
  const components = raw.map((c) => {
    const blocksPerLine = mcusPerLine * c.h;
    const blocksPerColumn = mcusPerColumn * c.v;
    return { ...c, quantisation: quantisation.get(c.tq) ?? new Uint16Array(64), blocksPerLine, blocksPerColumn, coefficients: new Int16Array(blocksPerLine * blocksPerColumn * 64) };
  });
  return { precision, width, height, hMax, vMax, mcusPerLine, mcusPerColumn, components, parts: [], ycc: false };
}

function readScanHeader(body: Buffer, frame: DctFrame, quantisation: Map<number, Uint16Array>, restartInterval: number): Scan {
  const count = body[0] as number;
  const components = Array.from({ length: count }, (_, i) => {
    const id = body[1 + i * 2] as number;
    const index = frame.components.findIndex((c) => c.id === id);
    if (index < 0) throw new PixelRedactionError(`a JPEG scan names component ${id}, which the frame does not have`);
    const tables = body[2 + i * 2] as number;
    const component = frame.components[index] as DctComponent;
    const table = quantisation.get(component.tq);
    if (!table) throw new PixelRedactionError(`a JPEG component uses quantisation table ${component.tq}, which is not defined`);
    component.quantisation = table;
    return { index, dc: tables >> 4, ac: tables & 15 };
  });
  // A sequential frame's scans cover all 64 coefficients whatever Ss and Se say (some encoders write
  // Se = 0); libjpeg reads them so, with a warning, and so does this.
  return { header: body, components, restartInterval };
}

/**
 * Visits a scan's blocks in their coded order (A.2): for one component, its blocks in raster order over
 * the component's own extent; for several, MCU after MCU. `restart` runs between restart intervals.
 */
function forEachBlock(frame: DctFrame, scan: Scan, visit: (slot: number, component: DctComponent, offset: number) => void, restart: (m: number) => void): void {
  const interval = scan.restartInterval;
  let units = 0;
  let m = 0;
  const unitDone = (last: boolean) => {
    units += 1;
    if (interval > 0 && units % interval === 0 && !last) {
      restart(m);
      m = (m + 1) & 7;
    }
  };
  if (scan.components.length === 1) {
    const { index } = scan.components[0] as Scan['components'][number];
    const component = frame.components[index] as DctComponent;
    const across = ceilDiv(ceilDiv(frame.width * component.h, frame.hMax), 8);
    const down = ceilDiv(ceilDiv(frame.height * component.v, frame.vMax), 8);
    for (let row = 0; row < down; row += 1) {
      for (let column = 0; column < across; column += 1) {
        visit(0, component, (row * component.blocksPerLine + column) * 64);
        unitDone(row === down - 1 && column === across - 1);
      }
    }
    return;
  }
  for (let my = 0; my < frame.mcusPerColumn; my += 1) {
    for (let mx = 0; mx < frame.mcusPerLine; mx += 1) {
      scan.components.forEach(({ index }, slot) => {
        const component = frame.components[index] as DctComponent;
        for (let v = 0; v < component.v; v += 1) {
          for (let h = 0; h < component.h; h += 1) visit(slot, component, ((my * component.v + v) * component.blocksPerLine + mx * component.h + h) * 64);
        }
      });
      unitDone(my === frame.mcusPerColumn - 1 && mx === frame.mcusPerLine - 1);
    }
  }
}

function tableOf(tables: Map<number, HuffmanTable>, id: number): HuffmanTable {
  const table = tables.get(id);
  if (!table) throw new PixelRedactionError(`a JPEG scan uses Huffman table ${id & 15}, which is not defined`);
  return table;
}

/** F.2.2: DC difference, then run/size pairs of AC coefficients until EOB. */
function decodeScan(reader: BitReader, frame: DctFrame, scan: Scan, huffman: Map<number, HuffmanTable>): void {
  const dcTables = scan.components.map((c) => tableOf(huffman, c.dc));
  const acTables = scan.components.map((c) => tableOf(huffman, 0x10 | c.ac));
  const predictions = new Int32Array(scan.components.length);
  const limit = frame.precision === 8 ? 2047 : 32767;
  forEachBlock(
    frame,
    scan,
    (slot, component, offset) => {
      const out = component.coefficients;
      const size = reader.decode(dcTables[slot] as HuffmanTable);
      const prediction = (predictions[slot] as number) + extend(reader.bits(size), size);
      if (prediction > limit || prediction < -limit - 1) throw new PixelRedactionError('a JPEG DC coefficient out of range (corrupt data)');
      predictions[slot] = prediction;
      out[offset] = prediction;
      const ac = acTables[slot] as HuffmanTable;
      for (let k = 1; k < 64; ) {
        const rs = reader.decode(ac);
        const run = rs >> 4;
        const bits = rs & 15;
        if (bits === 0) {
          if (run !== 15) break; // EOB
          k += 16;
          continue;
        }
        k += run;
        if (k > 63) throw new PixelRedactionError('a JPEG block with more than 64 coefficients (corrupt data)');
        out[offset + k] = extend(reader.bits(bits), bits);
        k += 1;
      }
    },
    (m) => {
      reader.restart(m);
      predictions.fill(0);
    },
  );
}

/** Codes one block, or counts the symbols it would use when `codes` is undefined (F.1.2). */
function codeBlock(
  coefficients: Int16Array,
  offset: number,
  prediction: number,
  dc: { frequencies: Uint32Array; codes?: HuffmanCodes },
  ac: { frequencies: Uint32Array; codes?: HuffmanCodes },
  writer: BitWriter | undefined,
): void {
  const emit = (table: { frequencies: Uint32Array; codes?: HuffmanCodes }, symbol: number, extra: number, extraLength: number) => {
    if (!writer || !table.codes) {
      table.frequencies[symbol] = (table.frequencies[symbol] as number) + 1;
      return;
    }
    writer.write(table.codes.code[symbol] as number, table.codes.length[symbol] as number);
    writer.write(extra, extraLength);
  };
  const difference = (coefficients[offset] as number) - prediction;
  const size = category(difference);
  emit(dc, size, extraBits(difference, size), size);
  let run = 0;
  for (let k = 1; k < 64; k += 1) {
    const value = coefficients[offset + k] as number;
    if (value === 0) {
      run += 1;
      continue;
    }
    while (run > 15) {
      emit(ac, 0xf0, 0, 0); // ZRL
      run -= 16;
    }
    const bits = category(value);
    emit(ac, (run << 4) | bits, extraBits(value, bits), bits);
    run = 0;
  }
  if (run > 0) emit(ac, 0x00, 0, 0); // EOB
}

/** The scan's entropy-coded data, and the DHT segment with the tables built for it. */
function encodeScan(frame: DctFrame, scan: Scan): { dht: Buffer; data: Buffer } {
  const dcTables = new Map<number, { frequencies: Uint32Array; codes?: HuffmanCodes }>();
  const acTables = new Map<number, { frequencies: Uint32Array; codes?: HuffmanCodes }>();
  for (const c of scan.components) {
    if (!dcTables.has(c.dc)) dcTables.set(c.dc, { frequencies: new Uint32Array(256) });
    if (!acTables.has(c.ac)) acTables.set(c.ac, { frequencies: new Uint32Array(256) });
  }
  const pass = (writer: BitWriter | undefined) => {
    const predictions = new Int32Array(scan.components.length);
    forEachBlock(
      frame,
      scan,
      (slot, component, offset) => {
        const c = scan.components[slot] as Scan['components'][number];
        codeBlock(component.coefficients, offset, predictions[slot] as number, dcTables.get(c.dc) as { frequencies: Uint32Array }, acTables.get(c.ac) as { frequencies: Uint32Array }, writer);
        predictions[slot] = component.coefficients[offset] as number;
      },
      (m) => {
        writer?.restartMarker(m);
        predictions.fill(0);
      },
    );
  };
  pass(undefined);
  const dht: Buffer[] = [];
  for (const [kind, tables] of [[0x00, dcTables], [0x10, acTables]] as const) {
    for (const [id, table] of tables) {
      const lengths = huffmanLengths(table.frequencies);
      table.codes = huffmanCodes(lengths.counts, lengths.values);
      dht.push(huffmanTableBytes(kind | id, lengths));
    }
  }
  const blocks = frame.components.reduce((sum, c) => sum + c.coefficients.length / 64, 0);
  const writer = new BitWriter(blocks * 16);
  pass(writer);
  return { dht: segment(MARKER.DHT, Buffer.concat(dht)), data: writer.finish() };
}

/** The stream again: its segments as they were (Huffman tables replaced by the scans' own). */
export function encodeDct(frame: DctFrame): Buffer {
  const out: Buffer[] = [Buffer.from([0xff, 0xd8])];
  for (const part of frame.parts) {
    if (part.kind === 'segment') {
      if (part.bytes.readUInt16BE(0) !== MARKER.DHT) out.push(part.bytes);
      continue;
    }
    const { dht, data } = encodeScan(frame, part.scan);
    out.push(dht, segment(MARKER.SOS, part.scan.header), data);
  }
  out.push(Buffer.from([0xff, 0xd9]));
  return Buffer.concat(out);
}

/**
 * Whether three components carry YCbCr, as libjpeg reads a stream (jdapimin.c): an Adobe segment's
 * transform flag rules, then a JFIF segment (always YCbCr), then component identifiers 1, 2, 3 (YCbCr)
 * or 'R', 'G', 'B' (RGB); with none of them, the DICOM Photometric Interpretation (PS3.5 8.2.1: RGB
 * means no colour transform). Encoders that label YCbCr data RGB exist (GDCM's, in pydicom's files):
 * the stream's own word comes first, as it does for DCMTK, which decodes with libjpeg.
 */
function colourTransformed(frame: DctFrame, jfif: boolean, adobeTransform: number | undefined, photometric: string): boolean {
  if (frame.components.length !== 3) return false;
  if (adobeTransform !== undefined) return adobeTransform !== 0;
  if (jfif) return true;
  const ids = frame.components.map((c) => c.id).join(',');
  if (ids === '1,2,3') return true;
  if (ids === '82,71,66') return false;
  return photometric !== 'RGB';
}

/** The quantised DC of a flat block of sample value `value` (A.3.3: F(0,0) = 8 × the mean of the level-
 * shifted samples), rounded away from the middle so that the block decodes at least as dark. */
function flatDc(value: number, precision: number, quantiser: number): number {
  const target = (value - 2 ** (precision - 1)) * 8;
  if (quantiser === 0) throw new PixelRedactionError('a JPEG quantisation table with a zero DC entry');
  return target < 0 ? Math.floor(target / quantiser) : Math.ceil(target / quantiser);
}

/** Sample values of black for each component, in the stream's own colour space and precision. */
function blackComponents(frame: DctFrame, g: PixelGeometry): number[] {
  const modulus = 2 ** frame.precision;
  if (frame.components.length === 3) return frame.ycc ? [0, modulus / 2, modulus / 2] : [0, 0, 0];
  const black = blackSamples({ ...g, highBit: g.bitsStored - 1 })[0] ?? 0;
  return frame.components.map(() => ((black % modulus) + modulus) % modulus);
}

/** The MCUs a mask touches, by MCU index (row-major over the MCU grid). */
function touchedMcus(frame: DctFrame, mask: RowMask): Uint8Array {
  const touched = new Uint8Array(frame.mcusPerLine * frame.mcusPerColumn);
  const mcuWidth = 8 * frame.hMax;
  const mcuHeight = 8 * frame.vMax;
  for (let row = 0; row < frame.height; row += 1) {
    const my = Math.floor(row / mcuHeight);
    for (const [from, to] of mask(row)) {
      if (to <= from) continue;
      for (let mx = Math.floor(from / mcuWidth); mx <= Math.floor((to - 1) / mcuWidth); mx += 1) touched[my * frame.mcusPerLine + mx] = 1;
    }
  }
  return touched;
}

/** Sets every block of every touched MCU to flat black; returns how many MCUs. */
export function blankMcus(frame: DctFrame, g: PixelGeometry, mask: RowMask): number {
  const touched = touchedMcus(frame, mask);
  const black = blackComponents(frame, g);
  let count = 0;
  frame.components.forEach((component, c) => {
    const dc = flatDc(black[c] as number, frame.precision, component.quantisation[0] as number);
    const coded = codedExtent(frame, c);
    for (let my = 0; my < frame.mcusPerColumn; my += 1) {
      for (let mx = 0; mx < frame.mcusPerLine; mx += 1) {
        if (!touched[my * frame.mcusPerLine + mx]) continue;
        if (c === 0) count += 1;
        for (let v = 0; v < component.v; v += 1) {
          for (let h = 0; h < component.h; h += 1) {
            const [row, column] = [my * component.v + v, mx * component.h + h];
            // A block no scan codes (the padding of a component scanned on its own) stays as it is.
            if (row >= coded.down || column >= coded.across) continue;
            const offset = (row * component.blocksPerLine + column) * 64;
            component.coefficients.fill(0, offset, offset + 64);
            component.coefficients[offset] = dc;
          }
        }
      }
    }
  });
  return count;
}

/** The blocks of a component that its scan codes (A.2): the whole MCU grid when interleaved, its own
 * extent when scanned alone. */
function codedExtent(frame: DctFrame, index: number): { across: number; down: number } {
  const component = frame.components[index] as DctComponent;
  const alone = frame.parts.some((part) => part.kind === 'scan' && part.scan.components.length === 1 && part.scan.components[0]?.index === index);
  if (!alone) return { across: component.blocksPerLine, down: component.blocksPerColumn };
  return { across: ceilDiv(ceilDiv(frame.width * component.h, frame.hMax), 8), down: ceilDiv(ceilDiv(frame.height * component.v, frame.vMax), 8) };
}

/**
 * A redacted frame keeps only the segments that say how to decode it: quantisation tables, restart
 * interval, frame header, JFIF (its thumbnail, a small copy of the unredacted image, removed) and
 * Adobe (colour transform). EXIF and other APPn segments (camera data, thumbnails) and comments,
 * which may name a patient or show the image, go.
 */
function keepDecodingSegmentsOnly(frame: DctFrame): void {
  frame.parts = frame.parts.flatMap((part): Part[] => {
    if (part.kind === 'scan') return [part];
    const outcome = cleanedSegment(part.bytes.readUInt16BE(0), part.bytes);
    if (outcome === 'keep') return [part];
    return outcome === 'drop' ? [] : [{ kind: 'segment', bytes: outcome }];
  });
}

function checkFits(frame: { width: number; height: number; components: number; precision: number }, g: PixelGeometry): void {
  if (frame.width !== g.columns || frame.height !== g.rows || frame.components !== g.samplesPerPixel) {
    throw new PixelRedactionError(`a JPEG frame of ${frame.width}×${frame.height}×${frame.components} in an image of ${g.columns}×${g.rows}×${g.samplesPerPixel}`);
  }
  if (g.bitsAllocated !== (frame.precision === 8 ? 8 : 16)) throw new PixelRedactionError(`JPEG of ${frame.precision}-bit precision with BitsAllocated ${g.bitsAllocated}`);
}

/** Decodes to coefficients, blanks the touched MCUs, codes again, and checks that the new stream decodes
 * to exactly the redacted coefficients. */
export function jpegDctFrameRedactor(g: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer {
  return (data) => {
    const frame = decodeDct(data, g);
    blankMcus(frame, g, mask);
    keepDecodingSegmentsOnly(frame);
    const encoded = encodeDct(frame);
    const check = decodeDct(encoded, g);
    frame.components.forEach((component, c) => {
      const again = (check.components[c] as DctComponent).coefficients;
      if (again.length !== component.coefficients.length || !Buffer.from(again.buffer, again.byteOffset, again.byteLength).equals(Buffer.from(component.coefficients.buffer, component.coefficients.byteOffset, component.coefficients.byteLength))) {
        throw new PixelRedactionError('the JPEG frame coded again does not decode to the redacted coefficients');
      }
    });
    return encoded;
  };
}

/** Zig-zag position k → natural (row-major) index (F.1.1.5, Figure A.6). */
const NATURAL_ORDER = Uint8Array.from([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60,
  61, 54, 47, 55, 62, 63,
]);

/** cos((2x + 1)uπ/16) × C(u)/2, by u * 8 + x (A.3.3). */
const IDCT_BASIS = Float64Array.from({ length: 64 }, (_, i) => {
  const u = Math.floor(i / 8);
  const x = i % 8;
  return (u === 0 ? Math.SQRT1_2 : 1) * Math.cos(((2 * x + 1) * u * Math.PI) / 16) * 0.5;
});

/** One component's samples over its padded grid: dequantised, inverse DCT, level shift, clamped. */
function componentSamples(component: DctComponent, precision: number): Uint16Array {
  const width = component.blocksPerLine * 8;
  const out = new Uint16Array(width * component.blocksPerColumn * 8);
  const block = new Float64Array(64);
  const rows = new Float64Array(64);
  const shift = 2 ** (precision - 1);
  const max = 2 ** precision - 1;
  for (let b = 0; b < component.blocksPerLine * component.blocksPerColumn; b += 1) {
    block.fill(0);
    for (let k = 0; k < 64; k += 1) {
      const value = component.coefficients[b * 64 + k] as number;
      if (value !== 0) block[NATURAL_ORDER[k] as number] = value * (component.quantisation[k] as number);
    }
    // Separable: along each row of coefficients (u → x), then down each column (v → y).
    for (let v = 0; v < 8; v += 1) {
      for (let x = 0; x < 8; x += 1) {
        let sum = 0;
        for (let u = 0; u < 8; u += 1) sum += (IDCT_BASIS[u * 8 + x] as number) * (block[v * 8 + u] as number);
        rows[v * 8 + x] = sum;
      }
    }
    const top = Math.floor(b / component.blocksPerLine) * 8;
    const left = (b % component.blocksPerLine) * 8;
    for (let y = 0; y < 8; y += 1) {
      for (let x = 0; x < 8; x += 1) {
        let sum = 0;
        for (let v = 0; v < 8; v += 1) sum += (IDCT_BASIS[v * 8 + y] as number) * (rows[v * 8 + x] as number);
        out[(top + y) * width + left + x] = Math.max(0, Math.min(max, Math.round(sum + shift)));
      }
    }
  }
  return out;
}

/**
 * One component's samples at the image's full size. Chroma subsampled 2:1 across (and down) is
 * interpolated as libjpeg does by default ("fancy upsampling", jdsample.c: a triangle filter, the nearer
 * sample weighted 3 to 1, edge samples repeated), so that decompressed pixels match what DCMTK and most
 * viewers show; other ratios repeat samples.
 */
function fullSize(plane: Uint16Array, planeWidth: number, component: DctComponent, frame: DctFrame): Uint16Array {
  const width = Math.ceil((frame.width * component.h) / frame.hMax);
  const height = Math.ceil((frame.height * component.v) / frame.vMax);
  const hRatio = frame.hMax / component.h;
  const vRatio = frame.vMax / component.v;
  const out = new Uint16Array(frame.width * frame.height);
  const at = (x: number, y: number) => plane[Math.min(Math.max(y, 0), height - 1) * planeWidth + Math.min(Math.max(x, 0), width - 1)] as number;
  if (hRatio === 2 && (vRatio === 1 || vRatio === 2) && width > 2) {
    for (let y = 0; y < frame.height; y += 1) {
      const row = vRatio === 2 ? y >> 1 : y;
      // h2v2: each output row blends its own input row (×3) with the nearer neighbour row (×1).
      const neighbour = vRatio === 2 ? (y % 2 === 0 ? row - 1 : row + 1) : row;
      const column = (x: number) => (vRatio === 2 ? at(x, row) * 3 + at(x, neighbour) : at(x, row));
      const [scale, bias0, bias1] = vRatio === 2 ? [4, 8, 7] : [2, 1, 2];
      for (let x = 0; x < frame.width; x += 1) {
        const i = x >> 1;
        const here = column(i);
        let value: number;
        if (x % 2 === 0) value = i === 0 ? (here * 4 + bias0) >> scale : (here * 3 + column(i - 1) + bias0) >> scale;
        else value = i === width - 1 ? (here * 4 + bias1) >> scale : (here * 3 + column(i + 1) + bias1) >> scale;
        out[y * frame.width + x] = value;
      }
    }
    return out;
  }
  for (let y = 0; y < frame.height; y += 1) {
    for (let x = 0; x < frame.width; x += 1) out[y * frame.width + x] = at(Math.floor(x / hRatio), Math.floor(y / vRatio));
  }
  return out;
}

/**
 * A frame's pixels: components upsampled by replication to the full size and interleaved, in the
 * stream's colour space (YBR_FULL for YCbCr, RGB otherwise); 8-bit samples in bytes, 12-bit in 16-bit
 * little-endian words. The inverse DCT is exact floating point; decoders differ from it and from each
 * other by rounding (T.81 A.3.3 allows it).
 */
export function decodeJpegDctFrame(data: Buffer, g: PixelGeometry): { samples: Buffer; layout: PixelGeometry } {
  const frame = decodeDct(data, g);
  const planes = frame.components.map((component) => componentSamples(component, frame.precision));
  const count = frame.components.length;
  const size = frame.precision === 8 ? 1 : 2;
  const out = Buffer.alloc(frame.width * frame.height * count * size);
  frame.components.forEach((component, c) => {
    const plane = fullSize(planes[c] as Uint16Array, component.blocksPerLine * 8, component, frame);
    for (let p = 0; p < plane.length; p += 1) {
      const at = (p * count + c) * size;
      if (size === 1) out[at] = plane[p] as number;
      else out.writeUInt16LE(plane[p] as number, at);
    }
  });
  const photometric = count === 3 ? (frame.ycc ? 'YBR_FULL' : 'RGB') : g.photometric;
  return { samples: out, layout: { ...g, photometric, planar: false, bigEndian: false, frames: 1 } };
}
