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

interface FrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
  isUsingColorTransform?: boolean;
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
  setQuality(lossless: boolean, quality: number): void;
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

type Factory<T> = (options: { print(): void; printErr(): void }) => Promise<T>;

const require = createRequire(import.meta.url);
let charls: CharLs | undefined;
let openjpeg: OpenJpeg | undefined;

/** Loads both codecs if they are not loaded (again, after a trap). Call before redacting. */
export async function loadCodecs(): Promise<void> {
  // Emscripten makes the object it is given the module itself: one object per module.
  const quiet = () => ({ print: () => undefined, printErr: () => undefined });
  charls ??= await (require('@cornerstonejs/codec-charls/wasmjs') as Factory<CharLs>)(quiet());
  openjpeg ??= await (require('@cornerstonejs/codec-openjpeg/wasmjs') as Factory<OpenJpeg>)(quiet());
}

function loaded<T>(module: T | undefined, name: string): T {
  if (!module) throw new Error(`the ${name} codec is not loaded (loadCodecs)`);
  return module;
}

/** Runs codec work; a WebAssembly trap drops the module so the next instance gets a fresh one. */
function guarded<T>(drop: () => void, work: () => T): T {
  try {
    return work();
  } catch (error) {
    // WebAssembly.RuntimeError: the module's memory may be broken.
    if ((error as Error).name === 'RuntimeError') drop();
    throw new PixelRedactionError(`the frame cannot be decoded or encoded: ${(error as Error).message ?? String(error)}`);
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

export function decodeJpegLsFrame(frame: Buffer, g: PixelGeometry): DecodedFrame {
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
  return guarded(
    () => (openjpeg = undefined),
    () => {
      const decoder = new (loaded(openjpeg, 'JPEG 2000').J2KDecoder)();
      try {
        decoder.getEncodedBuffer(frame.length).set(frame);
        decoder.decode();
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

export function jpegLsFrameRedactor(g: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer {
  if (g.photometric === 'YBR_FULL_422' || g.bitsAllocated === 1) throw new PixelRedactionError(`JPEG-LS with ${g.photometric}, BitsAllocated ${g.bitsAllocated}`);
  return (frame) => {
    const { pixels, info, interleave, geometry } = decodeJpegLsFrame(frame, g);
    // JPEG-LS codes the stored bits without sign extension: black is the stored bit pattern.
    const black = blackSamples({ ...geometry, highBit: geometry.bitsStored - 1 }).map((value) => (value < 0 ? value + 2 ** geometry.bitsStored : value));
    blankFrame(pixels, { ...geometry, signed: false }, mask, black);
    return guarded(
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
  };
}

/** JPEG 2000: decoded samples are pixel-interleaved, signed ones sign-extended in their container;
 * frames are encoded again with the reversible transforms (the caller writes YBR_RCT for YBR_ICT). */
export function jpeg2000FrameRedactor(g: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer {
  if (g.samplesPerPixel > 1 && g.bitsStored > 8) throw new PixelRedactionError('JPEG 2000 colour above 8 bits cannot be encoded again (OpenJPEG)');
  const colourTransform = g.photometric === 'YBR_RCT' || g.photometric === 'YBR_ICT';
  return (frame) => {
    const { pixels, info, geometry } = decodeJpeg2000Frame(frame, g);
    blankFrame(pixels, geometry, mask);
    return guarded(
      () => (openjpeg = undefined),
      () => {
        const encoder = new (loaded(openjpeg, 'JPEG 2000').J2KEncoder)();
        try {
          encoder
            .getDecodedBuffer({
              width: info.width,
              height: info.height,
              bitsPerSample: info.bitsPerSample,
              componentCount: info.componentCount,
              isSigned: info.isSigned === true,
              isUsingColorTransform: colourTransform,
            })
            .set(pixels);
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
  };
}
