/**
 * What ties an Encrypted Attributes Sequence's payload (PS3.3 C.12.1.1.4.1) to the instance that
 * carries it, and tells a payload changed on the way. CMS EnvelopedData with AES-CBC has no integrity
 * check, and the payload names no instance: a flipped byte restored a wrong StudyInstanceUID, and
 * another file's payload restored another patient over these pixels, both without an error (found in
 * the reversible pseudonymisation review). Inside the encrypted dataset, beside the Modified
 * Attributes Sequence, a private block of Gantry's holds the SOP Instance UID of the de-identified
 * instance and a SHA-256 digest of the encoded Modified Attributes Sequence. Other readers (OpenSSL
 * and a DICOM parser) see a private block they may ignore.
 */
import { createHash } from 'node:crypto';
import { header } from '../dicom/reencode.js';
import { padToEven } from '../dicom/values.js';
import type { ByteSource, ElementNode } from '../dicom/dataset-tree.js';

export const BINDING_CREATOR = 'GANTRY REIDENTIFICATION';
const CREATOR_TAG = 0x00090010;
const SOP_INSTANCE_UID_TAG = 0x00091001;
const DIGEST_TAG = 0x00091002;

type Encoding = 'explicit-le' | 'explicit-be';

/** The private block to encode before the Modified Attributes Sequence (its group, 0009, sorts first). */
export function bindingElements(sopInstanceUid: string, modifiedAttributes: Buffer, encoding: Encoding): Buffer {
  const element = (tag: number, vr: string, value: Buffer) => Buffer.concat([header(tag, vr, value.length, encoding), value]);
  return Buffer.concat([
    element(CREATOR_TAG, 'LO', padToEven(BINDING_CREATOR, ' ')),
    element(SOP_INSTANCE_UID_TAG, 'UI', padToEven(sopInstanceUid, '\0')),
    element(DIGEST_TAG, 'OB', digest(modifiedAttributes)),
  ]);
}

/**
 * Checks a decrypted payload against the instance carrying it: throws when it was made for another
 * instance or changed. Returns false for a payload made before Gantry bound them (nothing to check).
 */
export function checkBinding(elements: readonly ElementNode[], source: ByteSource, modifiedAttributes: ElementNode, carrierSopInstanceUid: string): boolean {
  const value = (tag: number) => {
    const element = elements.find((candidate) => candidate.tag === tag);
    return element ? Buffer.from(source.read(element.valueOffset, element.length)) : undefined;
  };
  if (value(CREATOR_TAG)?.toString('latin1').trim() !== BINDING_CREATOR) return false;
  const sopInstanceUid = value(SOP_INSTANCE_UID_TAG)?.toString('latin1').replace(/[\0 ]+$/, '');
  if (sopInstanceUid !== carrierSopInstanceUid) {
    throw new Error('the encrypted attributes were made for another instance than the one carrying them: nothing restored');
  }
  const recorded = value(DIGEST_TAG);
  const actual = digest(Buffer.from(source.read(modifiedAttributes.offset, modifiedAttributes.end - modifiedAttributes.offset)));
  if (!recorded || !recorded.equals(actual)) throw new Error('the encrypted attributes were changed since they were made: nothing restored');
  return true;
}

function digest(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}
