/** SOP classes Gantry knows: Verification and the storage table of PS3.4. */
import { STORAGE_SOP_CLASS_ROWS, STORAGE_SOP_CLASSES_EDITION } from './storage-sop-classes.js';

export { STORAGE_SOP_CLASSES_EDITION };

export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';

/** Siemens CSA Non-Image Storage: a private storage class that Siemens scanners send. */
export const SIEMENS_CSA_NON_IMAGE_STORAGE = '1.3.12.2.1107.5.9.1';

const STANDARD_ROOT = '1.2.840.10008.';
/** The root of the composite storage SOP classes (PS3.6 Table A-1); retired ones and classes newer
 * than the table live here too. */
const STORAGE_ROOT = '1.2.840.10008.5.1.4.1.1.';

const STORAGE_NAMES = new Map(STORAGE_SOP_CLASS_ROWS.map(([uid, name]) => [uid, name]));

export function isStandardStorageSopClass(uid: string): boolean {
  return STORAGE_NAMES.has(uid);
}

export function storageSopClassName(uid: string): string | undefined {
  return STORAGE_NAMES.get(uid);
}

/**
 * A SOP class that may be storage although it is not in the table: a private class (outside the
 * DICOM root) or a retired or newer one under the storage root. Other standard UIDs name other
 * services (query/retrieve, worklist, print…) and are never taken for storage.
 */
export function mayBeUnlistedStorageSopClass(uid: string): boolean {
  return uid.startsWith(STORAGE_ROOT) || !uid.startsWith(STANDARD_ROOT);
}
