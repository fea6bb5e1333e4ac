/**
 * JPEG-LS (CharLS) and JPEG 2000 (OpenJPEG) frames redacted without loss: each frame is decoded, the
 * zone set to black, and the frame encoded again losslessly (near-lossless 0; reversible wavelet).
 * Lossy input (.81, .91) thus gains no further loss. Both codecs are WebAssembly modules, loaded once
 * per thread (loadCodecs) before any frame is touched, with their console output silenced (the logs
 * are pino JSON only); every decoder and encoder is deleted after use, and a module that trapped is
 * loaded afresh for the next instance.
 */
import { createRequire } from 'node:module';
import { blackSamples, blankFrame, PixelRedactionError, type PixelGeometry, type RowMask } from './native.js';
import { segmentAt } from './jpeg-entropy.js';

interface FrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
}

interface CodecObject {
  getEncodedBuffer(length?: number): Uint8Array;
  getDecodedBuffer(frameInfo?: FrameInfo): Uint8Array;
  delete(): void;
}

interface JpegLsDecoder extends CodecObject {
  decode(): void;
  getFrameInfo(): FrameInfo;
  getInterleaveMode(): number;
}
interface JpegLsEncoder extends CodecObject {
  setNearLossless(near: number): void;
  setInterleaveMode(mode: number): void;
  encode(): void;
}
interface J2kDecoder extends CodecObject {
  decode(): void;
  getFrameInfo(): FrameInfo;
}
interface J2kEncoder extends CodecObject {
  /** Lossless or not, and the number of quality layers. */
  setQuality(lossless: boolean, layers: number): void;
  setDecompositions(levels: number): void;
  encode(): void;
}

interface CharLs {
  JpegLSDecoder: new () => JpegLsDecoder;
  JpegLSEncoder: new () => JpegLsEncoder;
}
interface OpenJpeg {
  J2KDecoder: new () => J2kDecoder;
  J2KEncoder: new () => J2kEncoder;
}

type Factory<T> = (options: { print(line: string): void; printErr(line: string): void }) => Promise<T>;

const require = createRequire(import.meta.url);
let charls: CharLs | undefined;
let openjpeg: OpenJpeg | undefined;

/** What OpenJPEG printed since the last clear that says a frame is damaged: its errors, and the
 * warnings of a truncated codestream (decoded in part, with only a warning). Warnings about benign
 * non-conformance (GDCM's tile-part counts) do not count. */
const openjpegMessages: string[] = [];

/** Loads both codecs if they are not loaded (again, after a trap). Call before redacting. */
export async function loadCodecs(): Promise<void> {
  // Emscripten makes the object it is given the module itself: one object per module.
  charls ??= await (require('@cornerstonejs/codec-charls/wasmjs') as Factory<CharLs>)({ print: () => undefined, printErr: () => undefined });
  const keep = (line: string) => {
    if (/^\[ERROR\]/.test(line) || (/^\[WARNING\]/.test(line) && /truncat|too short|end with EOC|incomplete|premature/i.test(line))) openjpegMessages.push(line.trim());
  };
  openjpeg ??= await (require('@cornerstonejs/codec-openjpeg/wasmjs') as Factory<OpenJpeg>)({ print: keep, printErr: keep });
}

function loaded<T>(module: T | undefined, name: string): T {
  if (!module) throw new PixelRedactionError(`the ${name} codec could not be loaded`);
  return module;
}

/** Runs codec work. Anything unexpected (a WebAssembly trap, a C++ exception, which reaches
 * JavaScript as a number) drops the module, so the next instance gets a fresh one. */
function guarded<T>(drop: () => void, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof PixelRedactionError) throw error;
    drop();
    throw new PixelRedactionError(`the frame cannot be decoded or encoded: ${error instanceof Error ? error.message : `codec error ${String(error)}`}`);
  }
}

function checkFrame(info: FrameInfo, g: PixelGeometry, decodedBytes: number, codec: string): number {
  if (info.width !== g.columns || info.height !== g.rows || info.componentCount !== g.samplesPerPixel) {
    throw new PixelRedactionError(`a ${codec} frame of ${info.width}×${info.height}×${info.componentCount} in an image of ${g.columns}×${g.rows}×${g.samplesPerPixel}`);
  }
  const bytes = info.bitsPerSample > 8 ? 2 : 1;
  if (decodedBytes !== info.width * info.height * info.componentCount * bytes) throw new PixelRedactionError(`a ${codec} frame decoded to ${decodedBytes} bytes`);
  return bytes;
}

/** The geometry of a decoded frame: little endian, one frame, samples of the codec's size. */
function decodedGeometry(g: PixelGeometry, info: FrameInfo, bytes: number, planar: boolean): PixelGeometry {
  return { ...g, bitsAllocated: bytes * 8, bitsStored: info.bitsPerSample, highBit: info.bitsPerSample - 1, planar, bigEndian: false, frames: 1 };
}

/** A frame decoded by a codec: its samples (little endian) and how they lie. */
export interface DecodedFrame {
  pixels: Buffer;
  info: FrameInfo;
  /** JPEG-LS interleave mode (0: one plane per sample); JPEG 2000 frames are always pixel-interleaved. */
  interleave: number;
  /** The geometry of `pixels`: one frame, little endian, samples of the codec's size. */
  geometry: PixelGeometry;
}

/**
 * The size a codestream's header claims, compared with the image's before the codec decodes anything:
 * the codecs allocate and decode what the header says, and a frame of a few hundred bytes whose SIZ
 * said 20000×20000 in a 4×4 image kept OpenJPEG busy 17 s and took 2.9 GB before checkFrame could
 * compare. A header this cannot find is left to the codec (which then fails or is compared after).
 */
function checkClaimedSize(claimed: { width: number; height: number; components: number } | undefined, g: PixelGeometry, codec: string): void {
  if (claimed && (claimed.width !== g.columns || claimed.height !== g.rows || claimed.components !== g.samplesPerPixel)) {
    throw new PixelRedactionError(`a ${codec} frame of ${claimed.width}×${claimed.height}×${claimed.components} in an image of ${g.columns}×${g.rows}×${g.samplesPerPixel}`);
  }
}

/** JPEG 2000 (T.800 A.5.1): SOC, then SIZ with Xsiz, Ysiz, XOsiz, YOsiz and, after the tile sizes, Csiz. */
function j2kClaimedSize(frame: Buffer): { width: number; height: number; components: number } | undefined {
  if (frame.length < 42 || frame.readUInt16BE(0) !== 0xff4f || frame.readUInt16BE(2) !== 0xff51) return undefined;
  return { width: frame.readUInt32BE(8) - frame.readUInt32BE(16), height: frame.readUInt32BE(12) - frame.readUInt32BE(20), components: frame.readUInt16BE(40) };
}

/** JPEG-LS (T.87 C.2.2): the SOF55 segment's Y, X and Nf, after SOI and the segments before it. */
function jpegLsClaimedSize(frame: Buffer): { width: number; height: number; components: number } | undefined {
  if (frame.length < 4 || frame.readUInt16BE(0) !== 0xffd8) return undefined;
  let at = 2;
  try {
    for (;;) {
      const { marker, body, end } = segmentAt(frame, at);
      if (marker === 0xfff7) return body.length >= 6 ? { height: body.readUInt16BE(1), width: body.readUInt16BE(3), components: body[5] as number } : undefined;
      if (marker === 0xffda) return undefined;
      at = end;
    }
  } catch (error) {
    if (error instanceof PixelRedactionError) return undefined;
    throw error;
  }
}

export function decodeJpegLsFrame(frame: Buffer, g: PixelGeometry): DecodedFrame {
  checkClaimedSize(jpegLsClaimedSize(frame), g, 'JPEG-LS');
  return guarded(
    () => (charls = undefined),
    () => {
      const decoder = new (loaded(charls, 'JPEG-LS').JpegLSDecoder)();
      try {
        decoder.getEncodedBuffer(frame.length).set(frame);
        decoder.decode();
        const info = decoder.getFrameInfo();
        const interleave = decoder.getInterleaveMode();
        const pixels = Buffer.from(decoder.getDecodedBuffer());
        const bytes = checkFrame(info, g, pixels.length, 'JPEG-LS');
        return { pixels, info, interleave, geometry: decodedGeometry(g, info, bytes, interleave === 0 && info.componentCount > 1) };
      } finally {
        decoder.delete();
      }
    },
  );
}

export function decodeJpeg2000Frame(frame: Buffer, g: PixelGeometry): DecodedFrame {
  checkClaimedSize(j2kClaimedSize(frame), g, 'JPEG 2000');
  return guarded(
    () => (openjpeg = undefined),
    () => {
      const decoder = new (loaded(openjpeg, 'JPEG 2000').J2KDecoder)();
      try {
        openjpegMessages.length = 0;
        decoder.getEncodedBuffer(frame.length).set(frame);
        decoder.decode();
        if (openjpegMessages.length > 0) throw new PixelRedactionError(`the JPEG 2000 frame is damaged: ${openjpegMessages.slice(0, 3).join('; ')}`);
        const info = decoder.getFrameInfo();
        const pixels = Buffer.from(decoder.getDecodedBuffer());
        const bytes = checkFrame(info, g, pixels.length, 'JPEG 2000');
        // A colour transform (YBR_RCT, YBR_ICT) is undone by the decoder: the samples are RGB.
        const photometric = g.photometric === 'YBR_RCT' || g.photometric === 'YBR_ICT' ? 'RGB' : g.photometric;
        return { pixels, info, interleave: 2, geometry: { ...decodedGeometry(g, info, bytes, false), photometric, signed: info.isSigned === true } };
      } finally {
        decoder.delete();
      }
    },
  );
}

/** Black by the image's BitsStored and signedness (not the codec's precision), for decoded samples:
 * no HighBit shift (codecs keep the stored bits at the bottom), colour as the decoder gives it. */
function blackOfImage(g: PixelGeometry, decoded: PixelGeometry): number[] {
  return blackSamples({ ...g, photometric: decoded.photometric, highBit: g.bitsStored - 1 });
}

export function jpegLsFrameRedactor(g: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer {
  if (!['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR', 'RGB', 'YBR_FULL'].includes(g.photometric) || g.bitsAllocated === 1) {
    throw new PixelRedactionError(`JPEG-LS with ${g.photometric}, BitsAllocated ${g.bitsAllocated}`);
  }
  return (frame) => {
    const { pixels, info, interleave, geometry } = decodeJpegLsFrame(frame, g);
    // Black in the image's own terms (BitsStored, signedness), written as the codec's P-bit pattern.
    const precision = 2 ** info.bitsPerSample;
    const black = blackOfImage(g, geometry).map((value) => ((value % precision) + precision) % precision);
    blankFrame(pixels, { ...geometry, signed: false }, mask, black);
    const encoded = guarded(
      () => (charls = undefined),
      () => {
        const encoder = new (loaded(charls, 'JPEG-LS').JpegLSEncoder)();
        try {
          encoder.getDecodedBuffer({ width: info.width, height: info.height, bitsPerSample: info.bitsPerSample, componentCount: info.componentCount }).set(pixels);
          encoder.setNearLossless(0);
          encoder.setInterleaveMode(info.componentCount > 1 ? interleave : 0);
          encoder.encode();
          return Buffer.from(encoder.getEncodedBuffer());
        } finally {
          encoder.delete();
        }
      },
    );
    // Lossless means the frame decodes to exactly what was encoded: checked, not assumed.
    if (!decodeJpegLsFrame(encoded, g).pixels.equals(pixels)) throw new PixelRedactionError('the JPEG-LS frame encoded again does not decode to the redacted pixels');
    return encoded;
  };
}

/**
 * JPEG 2000: decoded samples are pixel-interleaved, signed ones sign-extended in their container.
 * Frames are encoded again reversibly; OpenJPEG applies the reversible colour transform to every
 * three-component image, so the caller writes YBR_RCT for colour (PS3.5 A.4.4).
 */
export function jpeg2000FrameRedactor(g: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer {
  if (!['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR', 'RGB', 'YBR_RCT', 'YBR_ICT'].includes(g.photometric)) {
    throw new PixelRedactionError(`JPEG 2000 with ${g.photometric} cannot be encoded again as it was`);
  }
  if (g.samplesPerPixel > 1 && g.bitsStored > 8) throw new PixelRedactionError('JPEG 2000 colour above 8 bits cannot be encoded again (OpenJPEG)');
  if (g.signed && g.bitsStored <= 8) throw new PixelRedactionError('signed JPEG 2000 of 8 bits or fewer cannot be encoded again without loss (OpenJPEG)');
  return (frame) => {
    const { pixels, info, geometry } = decodeJpeg2000Frame(frame, g);
    // The decoder sign-extends signed samples: black in the image's terms fits the container as is.
    // A codestream that is unsigned (or narrower than BitsStored) where the image says otherwise, as
    // real files have (PixelRepresentation 1 over an unsigned codestream), takes black as its own
    // P-bit pattern, as JPEG-LS does: -4096 over 13 unsigned bits is 0x1000, which readers show as -4096.
    const precision = 2 ** info.bitsPerSample;
    const black = blackOfImage(g, geometry).map((value) => (info.isSigned === true ? value : ((value % precision) + precision) % precision));
    blankFrame(pixels, geometry, mask, black);
    const encoded = guarded(
      () => (openjpeg = undefined),
      () => {
        const encoder = new (loaded(openjpeg, 'JPEG 2000').J2KEncoder)();
        try {
          encoder.getDecodedBuffer({ width: info.width, height: info.height, bitsPerSample: info.bitsPerSample, componentCount: info.componentCount, isSigned: info.isSigned === true }).set(pixels);
          encoder.setQuality(true, 0);
          // OpenJPEG refuses more resolution levels than the smaller side allows.
          encoder.setDecompositions(Math.max(0, Math.min(5, Math.floor(Math.log2(Math.min(info.width, info.height))) - 1)));
          encoder.encode();
          return Buffer.from(encoder.getEncodedBuffer());
        } finally {
          encoder.delete();
        }
      },
    );
    if (!decodeJpeg2000Frame(encoded, g).pixels.equals(pixels)) throw new PixelRedactionError('the JPEG 2000 frame encoded again does not decode to the redacted pixels');
    return encoded;
  };
}
