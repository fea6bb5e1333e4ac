/**
 * Keyed, deterministic pseudonyms (design.md): replacement UIDs, patient IDs and names, and date
 * offsets are derived from the original values with HMAC-SHA-256 under one secret. The same input
 * gives the same output after a restart, across studies months apart, and on every node that shares
 * the secret; without the secret nothing can be recomputed (unlike unkeyed hashing, which PS3.15 E.3.9
 * calls open to dictionary attacks).
 *
 * Every derivation has its own label, so a value never maps to the same bytes in two roles.
 */
import { createHmac } from 'node:crypto';

export class Pseudonymizer {
  private readonly key: Buffer;

  constructor(secret: string | Buffer) {
    this.key = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
    if (this.key.length < 16) throw new Error('the de-identification secret must be at least 16 bytes');
  }

  /**
   * UID and patient derivations computed lately, by label and parts: the instances of a series share
   * their patient and their study's and series' UIDs, so most of an instance's derivations were made
   * for the instance before (an HMAC cost ~4 µs, seven per small instance in an export). Cleared when
   * full. A rule's "hash" of a value is not remembered: such values may be long free text.
   */
  private readonly recent = new Map<string, Buffer>();

  private digest(label: string, ...parts: string[]): Buffer {
    if (label === 'value') return this.computeDigest(label, parts);
    // Length-prefixed, like the HMAC's input: no two label and part lists share a key.
    const key = `${label.length}:${label}${parts.map((part) => `${part.length}:${part}`).join('')}`;
    const known = this.recent.get(key);
    if (known) return known;
    const digest = this.computeDigest(label, parts);
    if (this.recent.size >= RECENT_DIGESTS) this.recent.clear();
    if (key.length <= MAX_REMEMBERED_KEY) this.recent.set(key, digest);
    return digest;
  }

  /** Callers read the digest and never change it (uid() copies before setting bits): it is shared. */
  private computeDigest(label: string, parts: string[]): Buffer {
    const hmac = createHmac('sha256', this.key);
    hmac.update(label);
    // Length-prefixed parts: ("ab","c") and ("a","bc") never collide.
    for (const part of parts) {
      const bytes = Buffer.from(part, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      hmac.update(length).update(bytes);
    }
    return hmac.digest();
  }

  /**
   * The replacement of an instance-identifying UID: "2.25." and the decimal value of a UUID (PS3.5
   * B.2, ISO/IEC 9834-8) made of the first 128 bits of the HMAC, with the version (4) and variant
   * (RFC 4122) bits set as for a random UUID, which keyed output is indistinguishable from.
   */
  uid(originalUid: string): string {
    const bytes = Buffer.from(this.digest('uid', originalUid).subarray(0, 16));
    bytes[6] = ((bytes[6] as number) & 0x0f) | 0x40;
    bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
    return `2.25.${BigInt(`0x${bytes.toString('hex')}`).toString(10)}`;
  }

  /** The pseudonymous PatientID of a patient key (IssuerOfPatientID, PatientID). */
  patientId(patientKey: PatientKey): string {
    return `GP${base32(this.digest('patient-id', ...keyParts(patientKey)).subarray(0, 10))}`;
  }

  /** The pseudonymous PatientName of a patient key: derived from the key, never from the spelling of
   * the name, so two spellings of one patient's name give one pseudonym. */
  patientName(patientKey: PatientKey): string {
    return `ANONYMOUS^${base32(this.digest('patient-name', ...keyParts(patientKey)).subarray(0, 5))}`;
  }

  /**
   * The date offset of a patient, in whole days, in [-maxDays, -minDays]: dates move back in time by
   * the same amount for every instance of the patient, so intervals between studies stay true.
   */
  dateOffsetDays(patientKey: PatientKey, minDays: number, maxDays: number): number {
    if (!(Number.isInteger(minDays) && Number.isInteger(maxDays) && minDays >= 0 && maxDays >= minDays)) {
      throw new Error(`bad date offset range [${minDays}, ${maxDays}]`);
    }
    const value = this.digest('date-offset', ...keyParts(patientKey)).readUInt32BE(0);
    return -(minDays + (value % (maxDays - minDays + 1)));
  }

  /** A keyed hash for a rule's "hash" action: the same value gives the same hash (base32, `length`
   * characters, at most 52). */
  hash(value: string, length = 16): string {
    return base32(this.digest('value', value)).slice(0, Math.min(length, 52));
  }
}

/**
 * The patient key: (IssuerOfPatientID, PatientID), so that two hospitals' MRN 12345 stay two
 * patients. An empty PatientID falls back to the study, which then stands for its own patient.
 */
export interface PatientKey {
  issuerOfPatientId: string;
  patientId: string;
  /** Used only when patientId is empty. */
  studyInstanceUid?: string;
}

function keyParts(key: PatientKey): string[] {
  if (key.patientId.trim() === '') return ['study', key.studyInstanceUid ?? ''];
  return ['patient', key.issuerOfPatientId.trim(), key.patientId.trim()];
}

/** Digests remembered per Pseudonymizer, and the longest key remembered (UIDs and patient IDs have
 * at most 64 characters): a few MB at most. */
const RECENT_DIGESTS = 4096;
const MAX_REMEMBERED_KEY = 256;

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The forms of patientId() and patientName(): 10 and 5 bytes of a digest in base32. */
export const PSEUDONYM_FORMS = { PatientID: /^GP[A-Z2-7]{16}$/, PatientName: /^ANONYMOUS\^[A-Z2-7]{8}$/ } as const;

/** RFC 4648 base32 without padding: letters and digits only, safe in LO, SH and PN values. */
function base32(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}
