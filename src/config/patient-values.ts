/**
 * Values of a config that may identify a patient: a condition on PatientID, PatientName or
 * AccessionNumber (a quarantine rule for the patients who gave no consent lists their identifiers).
 * A message about such a value names its key, never the value: a refused reload is logged.
 */

import { keywordOf, tagOfKeyword, vrOf } from '../dicom/dictionary.js';

/** A tag as conditions write one: (0008,1030) or 0008,1030. */
const TAG_REFERENCE = /^\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?$/;

/** What a message says instead of the value. */
export const HIDDEN_PATIENT_VALUE = '(hidden: it may identify a patient)';

/** What a message or `config show` says instead of a key under `when.attributes` that names no attribute. */
export const HIDDEN_ATTRIBUTE_KEY = '(a key hidden: neither a DICOM keyword nor a tag, it may be a value written as a key)';

/**
 * Whether a key under `when.attributes` names an attribute: a DICOM keyword, or a tag as conditions
 * write one. Anything else may be a patient's identifier: a list written without its brackets,
 * `{ PatientID: MRN1, MRN2 }`, is YAML for MRN2 as a key; echoed in the error, the identifiers of the
 * patients who gave no consent went to stderr and to the log of a refused reload (found in the config
 * review). Such a key is never shown.
 */
export function namesAttribute(key: string): boolean {
  return TAG_REFERENCE.test(key.trim()) || tagOfKeyword(key.trim()) !== undefined;
}

/** The attribute a condition names (a keyword or a tag as written) is about the patient: the patient
 * module's group 0010, or the accession number. */
export function identifiesPatient(reference: string): boolean {
  return /Patient|Accession/i.test(reference) || /^\(?(0010,[0-9A-F]{4}|0008,0050)\)?$/i.test(reference.trim());
}

/**
 * Whether a message about a condition's value on this attribute names the key only: the patient's
 * identifiers, and UIDs (a rule holding back studies withdrawn from research lists theirs; found in
 * the logs review, a refused reload logged them).
 */
export function hiddenInMessages(reference: string): boolean {
  if (identifiesPatient(reference)) return true;
  const written = TAG_REFERENCE.exec(reference.trim());
  const tag = written ? Number.parseInt(`${written[1]}${written[2]}`, 16) : (tagOfKeyword(reference.trim()) ?? 0);
  // A class or syntax UID names a kind of object, no one's (found in the review of the session's diff).
  return vrOf(tag) === 'UI' && !/ClassUID|TransferSyntaxUID/.test(keywordOf(tag) ?? '');
}

/**
 * The config with the values of conditions on the patient hidden (`when.attributes.PatientID: [...]`
 * becomes HIDDEN_PATIENT_VALUE), for `gantry config show`: its output gets pasted into tickets and
 * chats, and a quarantine rule may list the identifiers of every patient who refused consent.
 */
export function withPatientValuesHidden<T>(config: T): T {
  return hideUnder(config, false) as T;
}

function hideUnder(value: unknown, inAttributes: boolean): unknown {
  if (Array.isArray(value)) return value.map((item) => hideUnder(item, false));
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, item], index) => {
      if (inAttributes && !namesAttribute(key)) return [`${HIDDEN_ATTRIBUTE_KEY} ${index + 1}`, HIDDEN_PATIENT_VALUE];
      return [key, inAttributes && identifiesPatient(key) ? HIDDEN_PATIENT_VALUE : hideUnder(item, key === 'attributes')];
    }),
  );
}
