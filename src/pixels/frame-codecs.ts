/**
 * The encapsulated transfer syntaxes whose frames Gantry decodes: each one's redactor (decode, blank,
 * encode again losslessly; for JPEG baseline and extended, blank in the DCT domain) and its decoder (for
 * previews and decompression). One table, so that what can be redacted and what can be previewed never
 * differ.
 */
import { decodeJpeg2000Frame, decodeJpegLsFrame, jpeg2000FrameRedactor, jpegLsFrameRedactor } from './codecs.js';
import { PixelRedactionError, type PixelGeometry, type RowMask } from './native.js';
import { decodeRleFrameSamples, rleFrameRedactor } from './rle.js';
import { decodeJpegLosslessFrame, jpegLosslessFrameRedactor } from './jpeg-lossless.js';
import { decodeJpegDctFrame, jpegDctFrameRedactor } from './jpeg-dct.js';

export interface FrameCodec {
  redactor(geometry: PixelGeometry, mask: RowMask): (frame: Buffer) => Buffer;
  /** One frame as samples, and how they lie. */
  decode(frame: Buffer, geometry: PixelGeometry): { samples: Buffer; layout: PixelGeometry };
  /** OpenJPEG writes colour with the reversible colour transform (PhotometricInterpretation YBR_RCT). */
  colourBecomesYbrRct?: boolean;
}

const rle: FrameCodec = {
  redactor: rleFrameRedactor,
  decode: (frame, g) => ({ samples: decodeRleFrameSamples(frame, g), layout: { ...g, planar: false, bigEndian: false } }),
};
const jpegLs: FrameCodec = {
  redactor: jpegLsFrameRedactor,
  decode: (frame, g) => {
    const decoded = decodeJpegLsFrame(frame, g);
    return { samples: decoded.pixels, layout: decoded.geometry };
  },
};
const jpegLossless: FrameCodec = {
  redactor: jpegLosslessFrameRedactor,
  decode: decodeJpegLosslessFrame,
};
const jpegDct: FrameCodec = {
  redactor: jpegDctFrameRedactor,
  decode: decodeJpegDctFrame,
};
const jpeg2000: FrameCodec = {
  redactor: jpeg2000FrameRedactor,
  decode: (frame, g) => {
    const decoded = decodeJpeg2000Frame(frame, g);
    return { samples: decoded.pixels, layout: decoded.geometry };
  },
  colourBecomesYbrRct: true,
};

/**
 * The codec with reading past the end of a damaged frame (a marker segment longer than the stream, a
 * header cut short: Node's RangeError) turned into the PixelRedactionError every other damage gives,
 * so that redaction holds the instance with the reason and decompression refuses the frame. It
 * escaped as an unexpected error: a failed de-identification with no reason, a transcoding thrown.
 */
function damageReported(codec: FrameCodec): FrameCodec {
  return {
    ...codec,
    redactor: (geometry, mask) => {
      const redact = codec.redactor(geometry, mask);
      return (frame) => asRedactionError(() => redact(frame));
    },
    decode: (frame, geometry) => asRedactionError(() => codec.decode(frame, geometry)),
  };
}

function asRedactionError<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof RangeError) throw new PixelRedactionError(`the frame is damaged: ${error.message}`);
    throw error;
  }
}

export const FRAME_CODECS: ReadonlyMap<string, FrameCodec> = new Map([
  ['1.2.840.10008.1.2.5', damageReported(rle)], // RLE Lossless
  ['1.2.840.10008.1.2.4.80', damageReported(jpegLs)], // JPEG-LS Lossless
  ['1.2.840.10008.1.2.4.81', damageReported(jpegLs)], // JPEG-LS Near-Lossless: encoded again losslessly
  ['1.2.840.10008.1.2.4.50', damageReported(jpegDct)], // JPEG Baseline: redacted in the DCT domain, no loss added
  ['1.2.840.10008.1.2.4.51', damageReported(jpegDct)], // JPEG Extended (8 and 12 bits, Huffman): likewise
  ['1.2.840.10008.1.2.4.57', damageReported(jpegLossless)], // JPEG Lossless, process 14: encoded again with selection value 1
  ['1.2.840.10008.1.2.4.70', damageReported(jpegLossless)], // JPEG Lossless, first-order prediction (selection value 1)
  ['1.2.840.10008.1.2.4.90', damageReported(jpeg2000)], // JPEG 2000 Lossless Only
  ['1.2.840.10008.1.2.4.91', damageReported(jpeg2000)], // JPEG 2000: encoded again losslessly
]);
