/**
 * Transfer syntaxes Gantry accepts (PS3.5 Section 10 and Annex A, PS3.6 Table A-1). Gantry stores the
 * dataset bytes as they were received, so it accepts every standard syntax whose dataset encoding it
 * can read: the native ones, deflate, and every encapsulated one (all explicit VR little endian).
 */

/** How the elements of a dataset are encoded on the wire. */
export type DatasetEncoding = 'implicit-le' | 'explicit-le' | 'explicit-be' | 'deflated-explicit-le';

export interface TransferSyntax {
  uid: string;
  name: string;
  encoding: DatasetEncoding;
  /** Pixel Data is encapsulated (PS3.5 A.4). */
  encapsulated: boolean;
}

export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
/** The uncompressed little-endian syntaxes, explicit first: what every object with a little-endian form
 * can go in (PS3.5 A.2, A.1). */
export const LITTLE_ENDIAN_SYNTAXES: readonly string[] = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN];
export const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1.99';
export const EXPLICIT_VR_BIG_ENDIAN = '1.2.840.10008.1.2.2';

const native = (uid: string, name: string, encoding: DatasetEncoding): TransferSyntax => ({
  uid,
  name,
  encoding,
  encapsulated: false,
});
const encapsulated = (uid: string, name: string): TransferSyntax => ({
  uid,
  name,
  encoding: 'explicit-le',
  encapsulated: true,
});

export const TRANSFER_SYNTAXES: readonly TransferSyntax[] = [
  native(IMPLICIT_VR_LITTLE_ENDIAN, 'Implicit VR Little Endian', 'implicit-le'),
  native(EXPLICIT_VR_LITTLE_ENDIAN, 'Explicit VR Little Endian', 'explicit-le'),
  native(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, 'Deflated Explicit VR Little Endian', 'deflated-explicit-le'),
  native(EXPLICIT_VR_BIG_ENDIAN, 'Explicit VR Big Endian (retired)', 'explicit-be'),
  encapsulated('1.2.840.10008.1.2.1.98', 'Encapsulated Uncompressed Explicit VR Little Endian'),
  encapsulated('1.2.840.10008.1.2.4.50', 'JPEG Baseline (Process 1)'),
  encapsulated('1.2.840.10008.1.2.4.51', 'JPEG Extended (Process 2 & 4)'),
  encapsulated('1.2.840.10008.1.2.4.57', 'JPEG Lossless, Non-Hierarchical (Process 14)'),
  encapsulated('1.2.840.10008.1.2.4.70', 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)'),
  encapsulated('1.2.840.10008.1.2.4.80', 'JPEG-LS Lossless Image Compression'),
  encapsulated('1.2.840.10008.1.2.4.81', 'JPEG-LS Lossy (Near-Lossless) Image Compression'),
  encapsulated('1.2.840.10008.1.2.4.90', 'JPEG 2000 Image Compression (Lossless Only)'),
  encapsulated('1.2.840.10008.1.2.4.91', 'JPEG 2000 Image Compression'),
  encapsulated('1.2.840.10008.1.2.4.92', 'JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)'),
  encapsulated('1.2.840.10008.1.2.4.93', 'JPEG 2000 Part 2 Multi-component Image Compression'),
  encapsulated('1.2.840.10008.1.2.4.201', 'High-Throughput JPEG 2000 Image Compression (Lossless Only)'),
  encapsulated('1.2.840.10008.1.2.4.202', 'High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)'),
  encapsulated('1.2.840.10008.1.2.4.203', 'High-Throughput JPEG 2000 Image Compression'),
  encapsulated('1.2.840.10008.1.2.4.100', 'MPEG2 Main Profile / Main Level'),
  encapsulated('1.2.840.10008.1.2.4.101', 'MPEG2 Main Profile / High Level'),
  encapsulated('1.2.840.10008.1.2.4.102', 'MPEG-4 AVC/H.264 High Profile / Level 4.1'),
  encapsulated('1.2.840.10008.1.2.4.103', 'MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1'),
  encapsulated('1.2.840.10008.1.2.4.104', 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video'),
  encapsulated('1.2.840.10008.1.2.4.105', 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video'),
  encapsulated('1.2.840.10008.1.2.4.106', 'MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2'),
  encapsulated('1.2.840.10008.1.2.4.107', 'HEVC/H.265 Main Profile / Level 5.1'),
  encapsulated('1.2.840.10008.1.2.4.108', 'HEVC/H.265 Main 10 Profile / Level 5.1'),
  encapsulated('1.2.840.10008.1.2.5', 'RLE Lossless'),
];

const BY_UID = new Map(TRANSFER_SYNTAXES.map((syntax) => [syntax.uid, syntax]));

export function findTransferSyntax(uid: string): TransferSyntax | undefined {
  return BY_UID.get(uid);
}
