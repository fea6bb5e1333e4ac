/**
 * PS3.3 C.7.6.1.1.5: an image once compressed lossily says so for good. Its transfer syntax may be
 * all that says it (LossyImageCompression is Type 3 in the General Image module): JPEG baseline and
 * extended always, JPEG 2000 Image Compression (.91) always, and the frames themselves for JPEG-LS
 * near-lossless (a NEAR above 0) and a JPEG 2000 Lossless Only stream of the irreversible 9-7 wavelet. Decompressing such an object, or encoding its redacted frames again
 * losslessly, drops that: the dataset is marked instead.
 */
import { elementText } from '../dicom/element-value.js';
import { insertElement, type EditableElement } from '../dicom/dataset-writer.js';
import type { ByteSource } from '../dicom/dataset-tree.js';

const TAG = {
  LossyImageCompression: 0x00282110,
  LossyImageCompressionRatio: 0x00282112,
  LossyImageCompressionMethod: 0x00282114,
} as const;

const JPEG_LS_SYNTAXES = new Set(['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81']);
/** JPEG 2000 Image Compression (Lossless Only) and JPEG 2000 Image Compression, which may be lossy. */
const JPEG_2000_LOSSLESS = '1.2.840.10008.1.2.4.90';
const JPEG_2000 = '1.2.840.10008.1.2.4.91';

/**
 * The LossyImageCompressionMethod term (PS3.3 C.7.6.1.1.5.1) of the compression `frame` went
 * through, when it was lossy; undefined when it was not, or its header cannot tell.
 */
export function lossyMethodOf(transferSyntaxUid: string, frame: Buffer): string | undefined {
  if (transferSyntaxUid === '1.2.840.10008.1.2.4.50' || transferSyntaxUid === '1.2.840.10008.1.2.4.51') return 'ISO_10918_1';
  if (JPEG_LS_SYNTAXES.has(transferSyntaxUid)) return (jpegLsNear(frame) ?? 0) > 0 ? 'ISO_14495_1' : undefined;
  // .91 allows loss whatever the wavelet: a stream of the reversible 5-3 wavelet cut to a lower rate
  // is lossy too (gdcmconv --j2k --lossy makes one; found in the transfer syntax review), and its
  // header cannot tell. Marked lossy a lossless .91 image is the safe error. A .90 stream of the
  // irreversible wavelet is mislabelled, and lossy.
  if (transferSyntaxUid === JPEG_2000) return 'ISO_15444_1';
  if (transferSyntaxUid === JPEG_2000_LOSSLESS) return j2kIrreversible(frame) ? 'ISO_15444_1' : undefined;
  return undefined;
}

/**
 * The NEAR parameter of a JPEG-LS stream's first scan (T.87 C.2.3: SOS holds Ls, Ns, a component
 * selector and table selector per component, then NEAR), or undefined when no scan header is found.
 */
function jpegLsNear(frame: Buffer): number | undefined {
  if (frame.readUInt16BE(0) !== 0xffd8) return undefined;
  let at = 2;
  while (at + 4 <= frame.length) {
    if (frame[at] !== 0xff) return undefined;
    const marker = frame[at + 1] as number;
    if (marker === 0xff) {
      at += 1; // a fill byte (T.81 B.1.1.2)
      continue;
    }
    const length = frame.readUInt16BE(at + 2);
    if (marker === 0xda) {
      const components = frame[at + 4] ?? 0;
      return frame[at + 5 + 2 * components];
    }
    at += 2 + length;
  }
  return undefined;
}

/**
 * Whether a JPEG 2000 codestream uses the irreversible 9-7 wavelet (T.800 A.6.1: in COD, SPcod's
 * transformation byte, 0). The codestream may sit in a JP2 container: its main header is looked for.
 */
function j2kIrreversible(frame: Buffer): boolean {
  const start = frame.indexOf(SOC_SIZ);
  if (start < 0) return false;
  let at = start + 2;
  while (at + 4 <= frame.length) {
    const marker = frame.readUInt16BE(at);
    if (marker === 0xff90) return false; // SOT: the main header ended without a COD
    const length = frame.readUInt16BE(at + 2);
    // COD: marker, Lcod, Scod, SGcod (progression 1, layers 2, MCT 1), then SPcod (levels, code-block
    // width, height, style, transformation).
    if (marker === 0xff52) return frame[at + 13] === 0;
    at += 2 + length;
  }
  return false;
}

const SOC_SIZ = Buffer.from([0xff, 0x4f, 0xff, 0x51]);

/**
 * Marks the dataset lossy: LossyImageCompression 01, and the method and the ratio (`ratio`: native
 * bytes to compressed) where absent, as a compressor records them.
 */
export function markLossy(elements: EditableElement[], byTag: ReadonlyMap<number, EditableElement>, source: ByteSource, method: string, ratio: number): void {
  const text = (value: string) => Buffer.from(value.length % 2 ? `${value} ` : value, 'latin1');
  if (elementText(byTag.get(TAG.LossyImageCompression), source, false)?.trim() !== '01') insertElement(elements, TAG.LossyImageCompression, 'CS', text('01'));
  if (!byTag.has(TAG.LossyImageCompressionMethod)) insertElement(elements, TAG.LossyImageCompressionMethod, 'CS', text(method));
  // DS: at most 16 characters.
  if (!byTag.has(TAG.LossyImageCompressionRatio) && Number.isFinite(ratio) && ratio > 0) insertElement(elements, TAG.LossyImageCompressionRatio, 'DS', text(ratio.toFixed(2).slice(0, 16)));
}
