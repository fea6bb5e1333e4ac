/**
 * The PS3.15 Annex E engine, at the element level: it walks a parsed dataset (dataset-tree.ts) at every
 * depth and marks each element kept, removed, emptied, replaced by a dummy or a pseudonym, given a
 * keyed UID, or cleaned, per Table E.1-1 and the chosen options; then it adds the attributes that say
 * what was done (E.1.1, E.3.6). The writer (dataset-writer.ts) turns the marks into bytes, copying
 * everything untouched byte for byte. Pure: no files, sockets or SQL.
 */
import { PIXEL_DATA, UNDEFINED_LENGTH, type ByteSource, type ElementNode } from '../dicom/dataset-tree.js';
import { insertElement, insertSequence, isDirty, newElement, type EditableElement, type EditableItem } from '../dicom/dataset-writer.js';
import { delimiter, delimiterWithLength, header, reencodeElements } from '../dicom/reencode.js';
import { envelope } from './cms.js';
import { keywordOf, vrOf } from '../dicom/dictionary.js';
import { tagText } from '../dicom/header-scanner.js';
import { decodeText, encodeText, gbCharacters, isMultiValuedText, parseSpecificCharacterSet } from '../dicom/charset.js';
import { LONG_VRS, padToEven, SHORT_VRS, trimUid } from '../dicom/values.js';
import { actionCodeFor, concreteAction, profileRowFor, PROFILE_EDITION, type ConcreteAction } from './profile.js';
import type { ProfileOption, ProfileRow } from './profile-types.js';
import type { PatientKey, Pseudonymizer } from './pseudonyms.js';
import { HASHABLE_VRS, MAX_VALUE_LENGTH, type AttributeRule } from './rules.js';
import { SafePrivatePolicy, type SafePrivateElement } from './safe-private.js';
import { capAge, dateVrOfText, dummyValue, shiftDate, shiftDateTime } from './values.js';
import { bindingElements } from './envelope-binding.js';
import { fitIso2022, holdsCjkDate, identifiersToScrub, quotesIdentifier, replaceUidsInText, scrubText, textFolding, type TextFolding } from './free-text.js';

export interface DeidSettings {
  options: ReadonlySet<ProfileOption>;
  /** Dates move back by a per-patient number of days in this range (retainLongitudinalModifiedDates). */
  dateShift: { minDays: number; maxDays: number };
  /** Ages above this are written as this + 1 (HIPAA Safe Harbor: 89). */
  maxAgeYears: number;
  /** With retainSafePrivate: private elements known to be safe besides those an instance declares. */
  safePrivate?: readonly SafePrivateElement[];
  /** Rules of config that override the profile for this instance (their conditions already hold). */
  rules?: readonly AttributeRule[];
  /** A recipient certificate (PEM): the original values of what changes go into the Encrypted
   * Attributes Sequence for it (PS3.15 E.1.2), so that it, and only it, can re-identify. */
  encryptFor?: string;
  /** The pixel data was redacted with this zone (Clean Pixel Data, PS3.15 E.3.1); `key` names its
   * rectangles, so that a redacted copy has a UID of its own even under retainUIDs. */
  cleanedPixels?: { zone: string; key: string };
  /** Under retainUIDs: instances of the same study whose pixels were redacted, by original SOP Instance
   * UID, with the UID each got (renameRedacted); references to them follow. */
  renamedUids?: ReadonlyMap<string, string>;
}

export const DEFAULT_DEID_SETTINGS: DeidSettings = {
  options: new Set(),
  dateShift: { minDays: 30, maxDays: 3650 },
  maxAgeYears: 89,
};

export interface AuditEntry {
  /** Where: tags from the top, items numbered, e.g. (0008,1140)[0](0008,1155). */
  path: string;
  keyword: string | undefined;
  action: ConcreteAction | 'added' | 'pseudonym' | 'replace' | 'hash';
}

export interface Finding {
  /** empty-patient-id: informational; the others are residual risk that can quarantine. */
  code: 'empty-patient-id' | 'identifier-in-text' | 'date-in-text';
  message: string;
  /** Where, when the finding is about one attribute (never its value). */
  path?: string;
}

export interface DeidOutcome {
  audit: AuditEntry[];
  findings: Finding[];
  /** The keyed replacement of the instance's SOP Instance UID (for the meta header and the name). */
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  /** Under retainUIDs, the original SOP Instance UID when the output has another (redacted pixels, a
   * rule): references to it elsewhere in the study follow (renamedUids). */
  renamedFrom?: string;
  /** Under retainUIDs: each Referenced SOP Instance UID of the dataset, with the UID written for it. */
  references?: Array<[original: string, written: string]>;
}

const TAG = {
  EncapsulatedDocument: 0x00420011,
  EncapsulatedDocumentLength: 0x00420015,
  MIMETypeOfEncapsulatedDocument: 0x00420012,
  URNCodeValue: 0x00080120,
  ValueType: 0x0040a040,
  ConceptNameCodeSequence: 0x0040a043,
  Date: 0x0040a121,
  SpecificCharacterSet: 0x00080005,
  SOPInstanceUID: 0x00080018,
  ReferencedSOPInstanceUID: 0x00081155,
  StudyInstanceUID: 0x0020000d,
  SeriesInstanceUID: 0x0020000e,
  PatientName: 0x00100010,
  PatientID: 0x00100020,
  IssuerOfPatientID: 0x00100021,
  AccessionNumber: 0x00080050,
  OtherPatientIDs: 0x00101000,
  OtherPatientIDsSequence: 0x00101002,
  PatientAge: 0x00101010,
  PatientBirthDate: 0x00100030,
  StudyDate: 0x00080020,
  AcquisitionDate: 0x00080022,
  ContainerIdentifier: 0x00400512,
  AlternateContainerIdentifierSequence: 0x00400513,
  SpecimenIdentifier: 0x00400551,
  SpecimenDescriptionSequence: 0x00400560,
  SeriesDate: 0x00080021,
  ContentDate: 0x00080023,
  PatientIdentityRemoved: 0x00120062,
  DeidentificationMethod: 0x00120063,
  DeidentificationMethodCodeSequence: 0x00120064,
  LongitudinalTemporalInformationModified: 0x00280303,
  CodeValue: 0x00080100,
  CodingSchemeDesignator: 0x00080102,
  CodeMeaning: 0x00080104,
  EncryptedAttributesSequence: 0x04000500,
  EncryptedContentTransferSyntaxUID: 0x04000510,
  EncryptedContent: 0x04000520,
  BurnedInAnnotation: 0x00280301,
} as const;

/** Names the patient had or has besides Patient's Name: Other Patient Names, Patient's Birth Name. */
const OTHER_NAMES_OF_THE_PATIENT = [0x00101001, 0x00101005] as const;
/**
 * Attributes Table E.1-1 (2024b) does not list that identify as a listed one does, and are treated as
 * it is (found in the review of IOD-specific places): Issuer of Patient ID Qualifiers Sequence
 * (0010,0024) restates the issuer (its OID, the facility) that Issuer of Patient ID (0010,0021) loses;
 * Breed Registration Sequence (0010,2294) and Breed Registration Number (0010,2295) give an animal's
 * number in a registry that names it and its owner, as Other Patient IDs (0010,1000) give other IDs.
 */
const IDENTIFIES_LIKE: ReadonlyMap<number, number> = new Map([
  [0x00100024, 0x00100021],
  [0x00102294, 0x00101000],
  [0x00102295, 0x00101000],
]);

/**
 * Attributes Table E.1-1 removes (X) that are Type 1 in the modules that hold them: removed, the
 * instance is no longer a valid instance of its IOD, and PS3.15 E.1.1 has a dummy keep it so.
 * Presentation Creation Date and Time (0070,0082/0083) are Type 1 in Presentation State
 * Identification (PS3.3 C.11.10) and the other modules that carry them: every presentation state lost
 * them (found in the review of IOD-specific places, dciodvfy).
 */
const REQUIRED_WHERE_PRESENT: ReadonlySet<number> = new Set([0x00700082, 0x00700083]);

/** Sequences whose items name other patients than the instance's: Source Patient Group Identification
 * (0010,0026) and Group of Patients Identification (0010,0027). */
const OTHER_PATIENTS_SEQUENCES: ReadonlySet<number> = new Set([0x00100026, 0x00100027]);

/** PS3.16 CID 7050 (De-identification Method), the codes of the profile and its options. */
const CID_7050: ReadonlyArray<readonly [ProfileOption | 'basic' | 'cleanPixelData', string, string]> = [
  ['basic', '113100', 'Basic Application Confidentiality Profile'],
  ['cleanPixelData', '113101', 'Clean Pixel Data Option'],
  ['cleanGraphics', '113103', 'Clean Graphics Option'],
  ['cleanStructuredContent', '113104', 'Clean Structured Content Option'],
  ['cleanDescriptors', '113105', 'Clean Descriptors Option'],
  ['retainLongitudinalFullDates', '113106', 'Retain Longitudinal Temporal Information Full Dates Option'],
  ['retainLongitudinalModifiedDates', '113107', 'Retain Longitudinal Temporal Information Modified Dates Option'],
  ['retainPatientCharacteristics', '113108', 'Retain Patient Characteristics Option'],
  ['retainDeviceIdentity', '113109', 'Retain Device Identity Option'],
  ['retainUIDs', '113110', 'Retain UIDs Option'],
  ['retainSafePrivate', '113111', 'Retain Safe Private Option'],
  ['retainInstitutionIdentity', '113112', 'Retain Institution Identity Option'],
];

const BINARY_VRS = new Set(['OB', 'OW', 'OF', 'OD', 'OL', 'OV', 'UN']);

/** How a date the table does not list is treated: as the table treats dates (removed, or kept or
 * shifted under the longitudinal options), for the dates of its edition's successors and of other
 * domains (PS3.6 has DICONDE's review and expiry dates, SecondaryReviewDate, StudyUpdateDateTime). */
const UNLISTED_DATE: ProfileRow = {
  tag: 'unlisted',
  name: 'a date Table E.1-1 does not list',
  keyword: undefined,
  basic: 'X',
  options: { retainLongitudinalFullDates: 'K', retainLongitudinalModifiedDates: 'C' },
  inStandardIod: false,
};

/** UIDs that name what kind of thing something is, not which one: they identify no one. */
const STANDARD_UID_KEYWORD = /ClassUID|TransferSyntaxUID|CodingScheme|ContextUID|MappingResourceUID|ApplicationContext|TemplateUID|PrivateInformationCreatorUID/;

/** The VR the dictionary gives a tag, if it knows one (an element sent as UN is what this says). */
function listedVr(tag: number): string | undefined {
  const vr = vrOf(tag);
  return vr === 'UN' ? undefined : vr;
}

/** The VRs PS3.5 6.2 defines. */
const DEFINED_VRS: ReadonlySet<string> = new Set([...SHORT_VRS, ...LONG_VRS]);

/** The VRs of character strings (PS3.5 6.2), which text can replace. */
const STRING_VRS: ReadonlySet<string> = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);

/**
 * A text replacing an element's value. Sent with a VR that holds no text (a PatientID sent as SV or
 * OB), it is written with the dictionary's VR: kept, the pseudonym under SV left a copy pydicom could
 * not read and dciodvfy refused (found in the PHI fuzz review).
 */
function textReplacement(element: EditableElement, value: Buffer): NonNullable<EditableElement['replacement']> {
  const listed = vrOf(element.tag);
  return STRING_VRS.has(element.vr) || element.vr === 'UN' || !STRING_VRS.has(listed) ? { value } : { value, vr: listed };
}

/** The code extensions that put a two-byte set in G1 (KS X 1001, GB 2312), written without escapes by EUC devices. */
const EUC_G1_SETS: ReadonlySet<string> = new Set(['ISO 2022 IR 149', 'ISO 2022 IR 58']);
/** What a cleaned value quoting the patient becomes when the name cannot be masked in its own set:
 * ASCII, which every set writes. */
const UNWRITABLE_MASK = 'XXXXXX';
/** Where people write free text (cleaned by C, scanned for residual identity). */
const TEXT_VRS = new Set(['LO', 'SH', 'ST', 'LT', 'UT', 'UC', 'PN']);
/** Code strings Table E.1-1 keeps that a user writes freely: the findings scan reads them as text.
 * A presentation state's Content Label and Graphic Layer carried "DOE_JOHNATHAN" and the patient ID
 * out with no finding (found in the SR review). Content Label (0070,0080), Graphic Layer (0070,0002). */
const FREE_LABELS: ReadonlySet<number> = new Set([0x00700080, 0x00700002]);
/** The longest kept text document the findings scan reads (keptTextDocument). */
const MAX_SCANNED_DOCUMENT_BYTES = 16 * 1024 * 1024;
/** The longest UN value the findings scan reads as possible text (UT's own limit is far above, but a
 * UN this long is a blob, not a kept label). */
const MAX_SCANNED_UN_BYTES = 64 * 1024;
/** Control bytes, other than tabs, line ends and escapes (ISO 2022). */
const CONTROL_BYTES = /[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]/g;

/**
 * Whether bytes (as Latin-1, padding trimmed) read as text: every byte of the upper half may (Latin-1,
 * and UTF-8, whose characters take bytes 0x80-0x9F too), and a few control bytes do not hide a name
 * (found in the PHI fuzz review: "€" in UTF-8, an escape, or one stray control byte kept a UN value
 * unscanned). A binary value has a control byte in about every tenth.
 */
function readsAsText(value: string): boolean {
  const controls = value.match(CONTROL_BYTES)?.length ?? 0;
  return controls <= 2 || controls * 20 <= value.length;
}

/** Where the engine is: the dataset (or a sequence it keeps), or inside a sequence the profile
 * replaces with a dummy (D) or cleans (C). */
type Within = 'dataset' | 'dummy' | 'clean';

export class DeidEngine {
  private readonly audit: AuditEntry[] = [];
  private readonly findings: Finding[] = [];
  /** Elements given a dummy value: Gantry's own text, never scanned for residual risk (a patient
   * named "Anonymous" would otherwise be quoted by every ANONYMOUS dummy). */
  private readonly dummies = new Set<EditableElement>();
  /** Elements of no date VR that the profile treated as the dates they read as (shifted, or kept as
   * dates under retainLongitudinalFullDates): the findings scan does not read them as free text. */
  private readonly treatedAsDates = new Set<EditableElement>();
  private dateOffsetDays = 0;
  private identifiers: readonly string[] = [];
  /** The identifiers as the dataset's character set writes them (an item's set adds its own). */
  private datasetIdentifiers: readonly string[] = [];
  private folding: TextFolding = 'latin1';
  /** How text without escape sequences compares: in the first character set alone (free-text.ts). */
  private plainFolding: TextFolding = 'latin1';
  /** The dataset's Specific Character Set, parsed. */
  private charsets: string[] = [''];
  /** The Specific Character Set the text being compared is in (an item may have its own, PS3.5 7.5),
   * and the identifiers written in it. */
  private textCharsets: string[] = [''];
  /** In an item whose set Gantry cannot write (ISO 2022, GB18030, GBK: no encoder here), the
   * identifiers it could not write in it, as UTF-8 (Latin-1 strings of the bytes): the item's text is
   * decoded and compared with them (quotesUnwritable). */
  private unwritableIdentifiers: readonly string[] = [];
  private datesShifted = false;

  constructor(
    private readonly settings: DeidSettings,
    private readonly pseudonyms: Pseudonymizer,
    private readonly source: ByteSource | undefined,
    private readonly bigEndian: boolean,
    private readonly implicit = false,
  ) {}

  /**
   * De-identifies a top-level dataset in place (its elements get edit marks and new elements).
   * `metaSopInstanceUid` stands in for a dataset without SOPInstanceUID.
   */
  /**
   * PS3.3 C.24.2: Encapsulated Document Length (0042,0015) is the length of Encapsulated Document
   * (0042,0011). Table E.1-1 replaces the document (D) and does not list its length, which would
   * otherwise keep the original's and send a reader past the dummy.
   */
  private matchEncapsulatedDocumentLength(elements: EditableElement[]): void {
    const document = elements.find((element) => element.tag === TAG.EncapsulatedDocument);
    const length = elements.find((element) => element.tag === TAG.EncapsulatedDocumentLength);
    if (!document || !length || !isDirty(document)) return;
    if (document.removed) {
      length.removed = true;
      return;
    }
    const value = Buffer.alloc(4);
    if (this.bigEndian) value.writeUInt32BE(document.replacement?.value.length ?? 0, 0);
    else value.writeUInt32LE(document.replacement?.value.length ?? 0, 0);
    length.replacement = { value };
  }

  run(elements: EditableElement[], metaSopInstanceUid = ''): DeidOutcome {
    const text = (tag: number) => this.text(elements.find((element) => element.tag === tag));
    const original = {
      sop: trimUid(text(TAG.SOPInstanceUID)) || metaSopInstanceUid,
      study: trimUid(text(TAG.StudyInstanceUID)),
      series: trimUid(text(TAG.SeriesInstanceUID)),
    };
    const specificCharacterSet = text(TAG.SpecificCharacterSet);
    this.charsets = parseSpecificCharacterSet(specificCharacterSet === '' ? undefined : specificCharacterSet);
    this.textCharsets = this.charsets;
    // The key is the text the bytes stand for: one patient sent by one device in Latin-1 and by another
    // in UTF-8 ("Klinikum München") got two pseudonyms and two date shifts in one study (found in the
    // character set review). Latin-1 and ASCII keys read as before.
    const decoded = (tag: number) => this.decoded(elements.find((element) => element.tag === tag));
    const patientKey: PatientKey = {
      issuerOfPatientId: decoded(TAG.IssuerOfPatientID).trim(),
      patientId: decoded(TAG.PatientID).trim(),
      studyInstanceUid: original.study,
    };
    if (patientKey.patientId === '') {
      this.findings.push({ code: 'empty-patient-id', message: 'PatientID is empty: the pseudonyms of this study stand for a patient of their own' });
    }
    this.dateOffsetDays = this.pseudonyms.dateOffsetDays(patientKey, this.settings.dateShift.minDays, this.settings.dateShift.maxDays);
    this.folding = textFolding(specificCharacterSet);
    this.plainFolding = textFolding(specificCharacterSet, false);
    this.identifiers = identifiersToScrub(
      [TAG.PatientName, ...OTHER_NAMES_OF_THE_PATIENT].map(text).filter((name) => name !== ''),
      // Free text is compared as its bytes are stored (free-text.ts).
      [text(TAG.PatientID).trim(), text(TAG.AccessionNumber), ...this.otherPatientIds(elements), ...this.specimenIds(elements)],
      this.folding,
    );
    this.datasetIdentifiers = this.identifiers;
    const untouched = [...elements];
    const originalDates = BIRTH_DATE_REFERENCES.map(text).map((value) => value.trim()).filter((value) => /^\d{8}$/.test(value));
    this.walk(elements, '', patientKey);
    this.capBirthDate(elements, originalDates);
    this.matchEncapsulatedDocumentLength(elements);
    this.scanForResidualPhi(elements, '');
    // Under retainUIDs, references to instances of the study renamed by redaction follow them, and the
    // references are reported, so that a later rename redoes exactly the instances that name it.
    const references = new Map<string, string>();
    if (this.settings.options.has('retainUIDs')) this.followRenames(elements, '', this.settings.renamedUids ?? new Map(), references);
    if (this.settings.cleanedPixels !== undefined && this.settings.options.has('retainUIDs')) this.renameRedacted(elements, original.sop, this.settings.cleanedPixels.key);
    // The identity of the output is what the dataset now says (a rule may have kept or replaced a
    // UID); an instance without SOPInstanceUID is named by the keyed meta one.
    const finalUid = (tag: number) => {
      const element = elements.find((candidate) => candidate.tag === tag);
      if (!element || element.removed) return '';
      return trimUid(element.replacement ? element.replacement.value.toString('latin1').replace(/[\0 ]+$/, '') : this.text(element));
    };
    const retainUids = this.settings.options.has('retainUIDs');
    const sopInstanceUid = finalUid(TAG.SOPInstanceUID) || (retainUids || original.sop === '' ? original.sop : this.pseudonyms.uid(original.sop));
    // Redacted pixel data (streamed) is not an attribute to restore: its original stays out of the envelope.
    if (this.settings.encryptFor !== undefined) {
      // What addMethodAttributes (below) writes over: an earlier de-identification's marks, kept in the
      // envelope as PS3.15 E.1.2 asks of every value changed (found in the reversible review: lost).
      // Not BurnedInAnnotation: the pixels stay redacted when re-identified, and its NO stays true.
      const marked = new Set<number>([TAG.PatientIdentityRemoved, TAG.DeidentificationMethod, TAG.DeidentificationMethodCodeSequence, TAG.LongitudinalTemporalInformationModified]);
      this.encryptOriginals(elements, untouched.filter((element) => (isDirty(element) && !element.stream) || marked.has(element.tag)), sopInstanceUid);
    }
    this.addMethodAttributes(elements);
    return {
      audit: this.audit,
      findings: this.findings,
      sopInstanceUid,
      studyInstanceUid: finalUid(TAG.StudyInstanceUID),
      seriesInstanceUid: finalUid(TAG.SeriesInstanceUID),
      ...(retainUids && original.sop !== '' && sopInstanceUid !== original.sop ? { renamedFrom: original.sop } : {}),
      ...(retainUids ? { references: [...references] } : {}),
    };
  }

  /**
   * deid.maxAgeYears (HIPAA Safe Harbor) holds for dates too: a birth date kept or shifted (a rule,
   * retainPatientCharacteristics with a longitudinal option) beside the study's date showed an age of
   * 93 where PatientAge said 090Y (found in the dates review). Such a birth date is emptied (Type 2:
   * present, no value); one showing an age within the cap stays. The age is read against the dates
   * written beside it; where none is written (the profile empties StudyDate unless a date option keeps
   * it), against the dates the instance came with, shifted or not, whichever shows the greater age; and
   * with none at all, against today: a birth date alone says how old the patient is now.
   */
  private capBirthDate(elements: EditableElement[], originalDates: readonly string[]): void {
    const written = (tag: number) => {
      const element = elements.find((candidate) => candidate.tag === tag);
      return element && !element.removed ? { element, value: this.currentText(element).trim() } : undefined;
    };
    const birth = written(TAG.PatientBirthDate);
    if (!birth || !/^\d{8}$/.test(birth.value)) return;
    const writtenDate = BIRTH_DATE_REFERENCES.map((tag) => written(tag)?.value).find((value) => value !== undefined && /^\d{8}$/.test(value));
    const references = writtenDate !== undefined ? [writtenDate]
      : originalDates.length > 0 ? originalDates.flatMap((date) => [date, shiftDate(date, this.dateOffsetDays)])
      : [new Date().toISOString().slice(0, 10).replaceAll('-', '')];
    if (references.every((date) => yearsBetween(birth.value, date) <= this.settings.maxAgeYears)) return;
    this.empty(birth.element, false, '');
  }

  /**
   * The IDs other issuers gave the patient: Other Patient IDs (0010,1000, retired, backslash-separated)
   * and the PatientID of each Other Patient IDs Sequence item (0010,1002). Table E.1-1 removes them;
   * free text that quotes one must lose it like the PatientID.
   */
  private otherPatientIds(elements: readonly EditableElement[]): string[] {
    const listed = this.text(elements.find((element) => element.tag === TAG.OtherPatientIDs)).split('\\');
    const sequence = elements.find((element) => element.tag === TAG.OtherPatientIDsSequence);
    const items = (sequence?.items ?? []).map((item) => this.text(item.elements.find((element) => element.tag === TAG.PatientID)));
    return [...listed, ...items].map((id) => id.trim()).filter((id) => id !== '');
  }

  /**
   * The slide's Container Identifier (0040,0512), its alternates (0040,0513), and the Specimen
   * Identifier (0040,0551) of each specimen described (0040,0560): a pathology lab's accession numbers,
   * which Table E.1-1 replaces. Cleaned text quoting one must lose it like the Accession Number: the
   * Specimen Identifier content item of every preparation step (TID 8001) kept it under Clean
   * Structured Content, with no finding (found in the review of IOD-specific places).
   */
  private specimenIds(elements: readonly EditableElement[]): string[] {
    const itemsOf = (tag: number) => elements.find((element) => element.tag === tag)?.items ?? [];
    const valueIn = (item: { elements: readonly ElementNode[] }, tag: number) => this.text(item.elements.find((element) => element.tag === tag));
    const ids = [
      this.text(elements.find((element) => element.tag === TAG.ContainerIdentifier)),
      ...itemsOf(TAG.AlternateContainerIdentifierSequence).map((item) => valueIn(item, TAG.ContainerIdentifier)),
      ...itemsOf(TAG.SpecimenDescriptionSequence).map((item) => valueIn(item, TAG.SpecimenIdentifier)),
    ];
    return ids.map((id) => id.trim()).filter((id) => id !== '');
  }

  private walk(elements: EditableElement[], path: string, patientKey: PatientKey, within: Within = 'dataset'): void {
    const removedOverlayGroups = new Set<number>();
    const creators = privateCreators(elements);
    const safePrivate = this.settings.options.has('retainSafePrivate')
      ? new SafePrivatePolicy(elements, this.settings.safePrivate ?? [], this.bigEndian)
      : undefined;
    const birthDateItem = path !== '' && this.isSubjectBirthDateItem(elements);
    for (const element of elements) {
      const here = `${path}(${tagText(element.tag)})`;
      if (birthDateItem && element.tag === TAG.Date && !this.ruleFor(element.tag, creators)) {
        // The subject's birth date in structured content is the patient's birth date (0010,0030),
        // which Table E.1-1 removes under every option; as a Date (0040,A121) it was shifted, or kept,
        // and gave the patient's age at the study away (found in the SR review). Type 1 in its item:
        // a dummy.
        this.apply(element, 'dummy', here, patientKey, 'dummy');
        continue;
      }
      if ((element.tag & 0xffff) === 0x0000) {
        // Group lengths (UL, retired, PS3.5 7.2): the writer recomputes them. One that is not four bytes
        // is no length, and whatever it holds is copied as it came unless it goes.
        if (element.length !== 4) {
          element.removed = true;
          this.record(here, element.tag, 'remove');
        }
        continue;
      }
      if (isPrivateCreator(element.tag)) continue; // decided with their blocks, below
      const rule = this.ruleFor(element.tag, creators);
      if (rule) {
        this.applyRule(element, rule, here, patientKey, within);
      } else if (safePrivate && isPrivate(element.tag)) {
        const action = safePrivate.actionFor(element.tag);
        this.apply(element, action === 'keep' ? this.retainedPrivateAction(element, safePrivate.listedVr(element.tag)) : action, here, patientKey, within);
      } else {
        this.apply(element, this.actionFor(element, within), here, patientKey, within);
      }
      // PS3.15 Table E.1-1: with Overlay Data removed, the rest of its overlay group goes too, so no
      // half overlay is left (dciodvfy would flag it).
      if (element.removed && (element.tag & 0xff01ffff) === 0x60003000) removedOverlayGroups.add(element.tag >>> 16);
    }
    for (const group of this.embeddedOverlayGroups(elements)) removedOverlayGroups.add(group);
    for (const element of elements) {
      if (removedOverlayGroups.has(element.tag >>> 16) && !element.removed) {
        element.removed = true;
        this.record(`${path}(${tagText(element.tag)})`, element.tag, 'remove');
      }
    }
    // A private creator stays exactly when an element of its block stays (PS3.5 7.8.1).
    for (const creator of elements.filter((element) => isPrivateCreator(element.tag))) {
      const group = creator.tag >>> 16;
      const block = creator.tag & 0xff;
      const used = elements.some((element) => !element.removed && isPrivate(element.tag) && !isPrivateCreator(element.tag) && element.tag >>> 16 === group && ((element.tag >>> 8) & 0xff) === block);
      if (used) continue;
      creator.removed = true;
      this.record(`${path}(${tagText(creator.tag)})`, creator.tag, 'remove');
    }
    // A group length (retired, PS3.5 7.2) of a group that is otherwise all gone goes with it.
    for (const groupLength of elements.filter((element) => (element.tag & 0xffff) === 0 && !element.removed)) {
      const members = elements.filter((element) => element.tag >>> 16 === groupLength.tag >>> 16 && element !== groupLength);
      if (members.every((member) => member.removed)) groupLength.removed = true;
    }
  }

  /**
   * Overlay groups without Overlay Data (60xx,3000): their bits are embedded in Pixel Data (PS3.5
   * 8.1.2, Overlay Bit Position; retired). Table E.1-1 removes Overlay Data (X, and C under
   * cleanGraphics, which cannot clean a bitmap); there is no element to remove, and a group left whole
   * has viewers draw the overlay from the pixels. Its description goes, so none is drawn. (The bits
   * themselves stay in the unused high bits of Pixel Data, beyond Bits Stored.)
   */
  private embeddedOverlayGroups(elements: readonly EditableElement[]): number[] {
    const row = profileRowFor(0x60003000);
    if (row && concreteAction(actionCodeFor(row, this.settings.options), 'OW') === 'keep') return [];
    const groups = new Set(elements.filter((element) => (element.tag & 0xff010000) === 0x60000000).map((element) => element.tag >>> 16));
    return [...groups].filter((group) => !elements.some((element) => element.tag === ((group << 16) | 0x3000) >>> 0));
  }

  private actionFor(element: EditableElement, within: Within): ConcreteAction {
    if (element.tag === TAG.PatientName || element.tag === TAG.PatientID) return 'dummy';
    // Someone else's encrypted originals never leave; ours replace them (encryptOriginals).
    if (element.tag === TAG.EncryptedAttributesSequence) return 'remove';
    // A VR PS3.5 does not define (read with a 4-byte length, dataset-tree.ts): what the value holds
    // cannot be told, and copied, pydicom refused the whole copy (found in the PHI fuzz review).
    if (!DEFINED_VRS.has(element.vr)) return 'remove';
    // A sequence sent as UN whose content is not implicit VR little endian (PS3.5 6.2.2; some nodes
    // relabel a sequence UN and leave its items explicit) could not be read: its items cannot be
    // de-identified one by one, and passing it on unread would pass on whatever they hold.
    // The same for a tag the dictionary does not know (an attribute newer than it): a value that opens
    // with an item tag is a sequence that did not parse (dataset-tree.ts holdsSequence).
    if (element.vr === 'UN' && element.items === undefined && (vrOf(element.tag) === 'SQ' || this.opensWithItem(element))) return 'remove';
    const row = profileRowFor(element.tag);
    // A sequence written as UN (dataset-tree.ts) is a sequence to the profile too.
    const vr = element.items !== undefined && !element.encapsulated ? 'SQ' : element.vr;
    if (!row) return this.actionForUnlisted(element, within);
    const action = concreteAction(actionCodeFor(row, this.settings.options), vr);
    return action === 'remove' && REQUIRED_WHERE_PRESENT.has(element.tag) ? 'dummy' : action;
  }

  /**
   * Attributes Table E.1-1 does not list are retained (PS3.15 E.1.1), with safety nets for what the
   * table cannot foresee (attributes newer than its edition, or unknown to it): a UID that is not
   * one the standard defines and does not name a class, syntax or coding scheme is an instance UID
   * and gets a keyed replacement, so references stay consistent; links (UR), AE titles and birth or
   * death dates go; so do the names of people (PN) and dates, as the table treats its own dates. Inside
   * a sequence the profile replaces (D) or cleans (C), free text is replaced or cleaned, and names of
   * people replaced: Content Sequence keeps its structure and coded values, and loses what people
   * wrote. An element sent as
   * UN (PS3.5 6.2.2) is judged by the VR the dictionary gives its tag.
   */
  private actionForUnlisted(element: EditableElement, within: Within): ConcreteAction {
    // Directory attributes (group 0004) belong to a DICOMDIR (PS3.3 F.3), never de-identified here
    // (deidentify-file.ts): in an instance they are a medium's records and file paths, which media
    // writers name after patients (Referenced File ID, File-set ID).
    if (element.tag >>> 16 === 0x0004) return 'remove';
    // File Meta Information (group 0002) belongs in the header Gantry writes anew (PS3.10 7.1); one
    // inside the dataset, a writer's error, may hold anything (Private Information, a source's names).
    if (element.tag >>> 16 === 0x0002) return 'remove';
    // Command elements (group 0000, PS3.7 E.1) belong to a DIMSE message, never to a stored dataset;
    // one there is a writer's error, and an Error Comment (0000,0902) is free text (found in the PHI review).
    if (element.tag >>> 16 === 0x0000) return 'remove';
    const keyword = keywordOf(element.tag) ?? '';
    const vr = element.vr === 'UN' && element.items === undefined ? vrOf(element.tag) : element.vr;
    if (vr === 'UI' && !STANDARD_UID_KEYWORD.test(keyword) && !onlyStandardUids(this.text(element))) return 'uid';
    // A tag the dictionary does not know, sent as UN (every element of an implicit VR dataset, PS3.5
    // 6.2.2), says no VR: a value that reads as a list of UIDs is treated as the UI it would be.
    if (vr === 'UN' && element.items === undefined && element.length <= MAX_UID_LIST_BYTES && readsAsUids(this.text(element)) && !onlyStandardUids(this.text(element))) return 'uid';
    // What goes for its VR goes whether the element or the dictionary gives that VR: a sender that
    // writes a person's name with the wrong explicit VR (LO for PN) does not keep it in.
    const listed = element.items === undefined ? vrOf(element.tag) : 'SQ';
    const is = (one: string) => vr === one || listed === one;
    // URN Code Value names a concept (PS3.3 8.8: urn:oid:, urn:uuid: of a code), not the patient: one of
    // Code Value, Long Code Value and URN Code Value is Type 1C, and removed it left an SR's or a KOS's
    // code with its meaning alone (found in the SR review).
    if (element.tag === TAG.URNCodeValue) return 'keep';
    const identifies = IDENTIFIES_LIKE.get(element.tag);
    if (identifies !== undefined) {
      const row = profileRowFor(identifies);
      if (row) return concreteAction(actionCodeFor(row, this.settings.options), vr);
    }
    if (is('UR') || /Birth|Death/.test(keyword)) return 'remove';
    // Table E.1-1 removes or replaces every AE it lists; the unlisted ones are command and meta elements
    // left in a dataset (Move Originator, Source AE Title), which name the sender's devices too.
    if (is('AE')) return 'remove';
    // A person's name is not free text: cleaning it of the patient's identifiers leaves anyone else's.
    if (is('PN')) return within === 'dataset' ? 'remove' : 'dummy';
    if (within !== 'dataset' && TEXT_VRS.has(vr)) return within === 'dummy' ? 'dummy' : 'clean';
    if (is('DA') || is('DT')) return concreteAction(actionCodeFor(UNLISTED_DATE, this.settings.options), vr);
    return 'keep';
  }

  /**
   * Table E.1-1 cleans (C), not keeps, the private attributes the Retain Safe Private Option retains.
   * Safe text and numbers stay; a UID (Table E.3.10-1 lists some, e.g. an analyzed series' UID) gets
   * its keyed replacement like every other instance UID, so the original does not pass beside it; a
   * date is treated as dates are (one original date beside shifted ones gives the shift away). The VR
   * is the element's, or the list's where the dataset is implicit VR (PS3.5 6.2.2: UN).
   */
  private retainedPrivateAction(element: EditableElement, listedVr: string | undefined): ConcreteAction {
    let vr = element.vr === 'UN' ? (listedVr ?? 'UN') : element.vr;
    // A VR the list does not give (a block the instance declares safe, a site's own entry): a value
    // that reads as UIDs or dates is treated as the UI, DA or DT it is, as for unlisted elements; kept
    // as it came, it would link the output to the original instance, or give the patient's date shift
    // away beside the shifted dates. So whether the element came as UN (implicit VR, relabelled) or as
    // the text its writer chose (an LO holding a UID): the same value, the same output (the LO passed
    // as it came, the same element in implicit VR was replaced; found in the UID review).
    const readAsText = vr === 'UN' || (listedVr === undefined && UNTYPED_TEXT_VRS.has(vr));
    if (readAsText && element.items === undefined && element.length <= MAX_UID_LIST_BYTES) {
      const text = this.text(element);
      // Stricter than for unlisted elements: a value a site chose to keep may be a version ("5.1.7").
      if (readsAsUids(text, RETAINED_UID_SYNTAX) && !onlyStandardUids(text)) return 'uid';
      vr = dateVrOfText(text) ?? vr;
      // Shifted (clean), kept (full dates) or removed: a date either way, no free text to scan.
      if (isDate(vr)) this.treatedAsDates.add(element);
    }
    if (vr === 'UI') return 'uid';
    if (vr === 'DA' || vr === 'DT') return concreteAction(actionCodeFor(UNLISTED_DATE, this.settings.options), vr);
    return 'keep';
  }

  /** The first active rule of the profile that names this element (a private one by its creator). */
  private ruleFor(tag: number, creators: ReadonlyMap<number, string>): AttributeRule | undefined {
    for (const rule of this.settings.rules ?? []) {
      const target = rule.target;
      if (target.tag !== undefined) {
        if (target.tag === tag) return rule;
        continue;
      }
      const ref = target.privateRef;
      if (!ref || !isPrivate(tag) || tag >>> 16 !== ref.group || (tag & 0xff) !== ref.element) continue;
      if (creators.get(((tag >>> 16) << 8) | ((tag >>> 8) & 0xff)) === ref.creator) return rule;
    }
    return undefined;
  }

  private applyRule(element: EditableElement, rule: AttributeRule, path: string, patientKey: PatientKey, within: Within): void {
    switch (rule.action) {
      case 'keep':
        this.apply(element, 'keep', path, patientKey, within);
        return;
      case 'remove':
        this.apply(element, 'remove', path, patientKey, within);
        return;
      case 'empty':
        this.apply(element, 'empty', path, patientKey, within);
        return;
      case 'remapUid':
        this.replaceUids(element, path);
        return;
      case 'shiftDate': {
        // As UN (implicit VR, a private element) the VR is the dictionary's, or what the value reads
        // as: the DA, DT and TM a rule keeps shifted in explicit VR were all removed (dates review).
        const vr = element.vr === 'UN' ? (listedVr(element.tag) ?? this.unknownDateVr(element)) : element.vr;
        if (vr !== undefined && isDate(vr)) this.clean(element, false, path, patientKey);
        else if (vr !== 'TM') this.apply(element, 'remove', path, patientKey, within);
        return;
      }
      case 'replace':
        // Rules on standard attributes were checked against their VR (rules.ts); a private one is
        // known only here: text cannot replace a binary value, so that goes.
        if (MAX_VALUE_LENGTH[element.vr] === undefined && element.vr !== 'UN') {
          this.apply(element, 'remove', path, patientKey, within);
          return;
        }
        element.replacement = textReplacement(element, padToEven(rule.value ?? '', element.vr === 'UI' ? '\0' : ' '));
        this.record(path, element.tag, 'replace');
        return;
      case 'hash':
        // A UID's hash is its keyed UID, so that it still names the object it names. A private element
        // in implicit VR is UN to the reader: one that reads as UIDs is the UI it was in explicit VR
        // (hashed as text, its reference was lost and its output depended on the sender's transfer
        // syntax; found in the UID review).
        if (element.vr === 'UI' || this.unknownReadsAsUids(element)) {
          this.replaceUids(element, path);
          return;
        }
        if (!HASHABLE_VRS.has(element.vr) && element.vr !== 'UN') {
          this.apply(element, 'remove', path, patientKey, within);
          return;
        }
        element.replacement = { value: padToEven(this.pseudonyms.hash(this.decoded(element), Math.min(16, MAX_VALUE_LENGTH[element.vr] ?? 16)), ' ') };
        this.record(path, element.tag, 'hash');
        return;
    }
  }

  /** Whether a content item is a DATE whose concept is Subject Birth Date (DCM 121031, TID 1007). */
  private isSubjectBirthDateItem(elements: readonly EditableElement[]): boolean {
    const valueType = elements.find((element) => element.tag === TAG.ValueType);
    if (!valueType || this.text(valueType).trim() !== 'DATE') return false;
    const concept = elements.find((element) => element.tag === TAG.ConceptNameCodeSequence)?.items?.[0]?.elements;
    if (!concept) return false;
    const value = (tag: number) => this.text(concept.find((element) => element.tag === tag)).trim();
    return value(TAG.CodeValue) === '121031' && value(TAG.CodingSchemeDesignator) === 'DCM';
  }

  /** What an element of unknown VR reads as: DA, DT, or TM (a time of day, HHMMSS.FFFFFF), if any. */
  private unknownDateVr(element: EditableElement): 'DA' | 'DT' | 'TM' | undefined {
    if (element.items !== undefined || element.length > MAX_UID_LIST_BYTES) return undefined;
    const text = this.text(element);
    return dateVrOfText(text) ?? (/^\s*([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?\s*$/.test(text) ? 'TM' : undefined);
  }

  /** Whether an element of unknown VR (UN) holds a list of UIDs as registration authorities give them. */
  private unknownReadsAsUids(element: EditableElement): boolean {
    if (element.vr !== 'UN' || element.items !== undefined || element.length > MAX_UID_LIST_BYTES) return false;
    return readsAsUids(this.text(element), RETAINED_UID_SYNTAX);
  }

  private apply(element: EditableElement, action: ConcreteAction, path: string, patientKey: PatientKey, within: Within): void {
    const isSequence = element.items !== undefined && !element.encapsulated;
    switch (action) {
      case 'keep':
        // A kept sequence inside a replaced or cleaned one is replaced or cleaned alike.
        if (isSequence) this.walkItems(element, path, patientKey, within);
        else if (element.tag === TAG.PatientAge) this.replaceText(element, capAge(this.text(element), this.settings.maxAgeYears), path, 'keep');
        return;
      case 'remove':
        element.removed = true;
        this.record(path, element.tag, 'remove');
        return;
      case 'empty':
        this.empty(element, isSequence, path);
        return;
      case 'dummy':
        if (isSequence) {
          // D on a sequence: a non-empty value, so its items stay, with dummy content (see actionFor).
          this.record(path, element.tag, 'dummy');
          this.walkItems(element, path, patientKey, 'dummy');
          return;
        }
        if (element.tag === TAG.PatientName) this.replaceText(element, this.pseudonyms.patientName(patientKey), path, 'pseudonym');
        else if (element.tag === TAG.PatientID) this.replaceText(element, this.pseudonyms.patientId(patientKey), path, 'pseudonym');
        else if (element.vr === 'UI') this.replaceUids(element, path);
        else {
          // Sent as UN, the dummy of the VR the dictionary gives (UN's own is empty: a DA of no value).
          element.replacement = { value: dummyValue((element.vr === 'UN' ? listedVr(element.tag) : undefined) ?? element.vr) };
          this.dummies.add(element);
          this.record(path, element.tag, 'dummy');
        }
        return;
      case 'uid':
        if (isSequence) {
          this.walkItems(element, path, patientKey, within);
          return;
        }
        if (this.settings.options.has('retainUIDs') && !replacedUnderRetainUids(element.tag)) return;
        this.replaceUids(element, path);
        return;
      case 'clean':
        this.clean(element, isSequence, path, patientKey);
        return;
    }
  }

  private walkItems(element: EditableElement, path: string, patientKey: PatientKey, within: Within = 'dataset'): void {
    const ofOtherPatients = OTHER_PATIENTS_SEQUENCES.has(element.tag);
    (element.items ?? []).forEach((item, index) =>
      this.inItemCharacterSet(item.elements, () =>
        this.walk(item.elements as EditableElement[], `${path}[${index}]`, ofOtherPatients ? this.keyOfItsPatient(item.elements, patientKey) : patientKey, within),
      ),
    );
  }

  /**
   * The key of the patient an item of Source Patient Group or Group of Patients Identification names
   * (PS3.3 C.7.1.4): its own PatientID, with its own issuer or else the instance's. Keyed by the
   * instance's patient, each subject of a group image got the group's pseudonym, and a subject's image
   * named its group by the subject's own (found in the review of IOD-specific places): the links
   * between the group's image and its subjects' were lost.
   */
  private keyOfItsPatient(elements: readonly ElementNode[], instancePatient: PatientKey): PatientKey {
    const decoded = (tag: number) => this.decoded(elements.find((element) => element.tag === tag)).trim();
    const patientId = decoded(TAG.PatientID);
    if (patientId === '') return instancePatient;
    return { issuerOfPatientId: decoded(TAG.IssuerOfPatientID) || instancePatient.issuerOfPatientId, patientId, studyInstanceUid: instancePatient.studyInstanceUid };
  }

  /**
   * Runs `run` with the text of an item that has its own Specific Character Set (PS3.5 7.5: it holds
   * for that item) compared in that set, the identifiers written in it. A UTF-8 item of a Latin-1
   * dataset kept "Patient Müller reports pain" (found in the character set review). The identifiers
   * are looked for as the dataset writes them too (an item may declare the dataset's own repertoire
   * spelled otherwise, or wrongly), and as the item's set writes them, where it can: even without
   * their accents. ISO 2022, GB18030 and GBK have no encoder here: the identifiers those cannot be
   * written in are compared with the item's text decoded (quotesUnwritable). Compared as bytes only,
   * a Japanese name quoted in an ISO 2022 IR 87 item of a UTF-8 dataset left with the instance, found
   * or masked by nothing (found in the second character set review).
   */
  private inItemCharacterSet<T>(elements: readonly ElementNode[], run: () => T): T {
    const element = elements.find((candidate) => candidate.tag === TAG.SpecificCharacterSet);
    if (!element) return run();
    const value = this.text(element);
    const charsets = parseSpecificCharacterSet(value === '' ? undefined : value);
    if (charsets.join('\\') === this.textCharsets.join('\\')) return run();
    const outer = { folding: this.folding, plainFolding: this.plainFolding, identifiers: this.identifiers, textCharsets: this.textCharsets, unwritableIdentifiers: this.unwritableIdentifiers };
    // From the dataset's identifiers, never the enclosing item's: one its set could not write would
    // be lost to every item inside it (found in the review of the session's diff).
    const unwritable: string[] = [];
    const written = this.datasetIdentifiers.flatMap((identifier) => {
      const text = decodeText(Buffer.from(identifier, 'latin1'), this.charsets, false, true);
      if (text.includes('\ufffd')) return [];
      // "Müller" has no ü in ISO 8859-5: looked for as "Muller", which matches with or without accents.
      const inItem = encodeText(text, charsets) ?? encodeText(text.normalize('NFD').replace(/\p{M}/gu, ''), charsets);
      if (inItem === undefined) unwritable.push(Buffer.from(text, 'utf8').toString('latin1'));
      return inItem === undefined ? [] : [inItem];
    });
    this.identifiers = [...new Set([...this.datasetIdentifiers, ...written])].sort((a, b) => b.length - a.length);
    this.unwritableIdentifiers = unwritable;
    this.folding = textFolding(value);
    this.plainFolding = textFolding(value, false);
    this.textCharsets = charsets;
    try {
      return run();
    } finally {
      Object.assign(this, outer);
    }
  }

  /** Whether text of an item whose set cannot write some of the identifiers quotes one of them, its
   * text decoded in that set. */
  private quotesUnwritable(value: string, vr: string): boolean {
    if (this.unwritableIdentifiers.length === 0) return false;
    return quotesIdentifier(Buffer.from(this.decodedInItsSets(value, vr), 'utf8').toString('latin1'), this.unwritableIdentifiers, 'unicode', isMultiValuedText(vr));
  }

  /** Text as the item's character sets write it, decoded to Unicode. Korean and Chinese devices write
   * KS X 1001 and GB 2312 without their escape, as EUC-KR and EUC-CN do (free-text.ts 'euc'): such text
   * is read with that set in G1 from its start. */
  private decodedInItsSets(value: string, vr: string): string {
    const eucSet = this.plainFolding === 'euc' && !value.includes('\x1b') ? this.textCharsets.find((set) => EUC_G1_SETS.has(set)) : undefined;
    return decodeText(Buffer.from(value, 'latin1'), eucSet ? [eucSet] : this.textCharsets, vr === 'PN', isMultiValuedText(vr));
  }

  /**
   * Whether text in ISO 2022 or EUC (IR 87, IR 149, ...) holds a date written with the characters of
   * a two-byte set ("2023年1月15日"), which the patterns read only in Unicode text: decoded here, and
   * such a value masked whole as quotesUnwritable masks (found in the review of this change: masked
   * in UTF-8, kept in JIS with no finding).
   */
  private holdsUndecodedDate(value: string, vr: string): boolean {
    if (this.plainFolding !== 'euc' && !value.includes('\x1b')) return false;
    return holdsCjkDate(this.decodedInItsSets(value, vr));
  }

  private empty(element: EditableElement, isSequence: boolean, path: string): void {
    if (isSequence) {
      for (const item of element.items ?? []) item.removed = true;
    } else {
      element.replacement = { value: Buffer.alloc(0) };
    }
    this.record(path, element.tag, 'empty');
  }

  /** Under retainUIDs a redacted instance is still a new object (its pixels differ from the
   * original's): its SOP Instance UID is keyed on the original and the zone's rectangles. */
  private renameRedacted(elements: EditableElement[], originalSop: string, zoneKey: string): void {
    if (originalSop === '') return;
    insertElement(elements, TAG.SOPInstanceUID, 'UI', padToEven(this.pseudonyms.uid(`${originalSop}|pixels ${zoneKey}`), '\0'));
    this.record(`(${tagText(TAG.SOPInstanceUID)})`, TAG.SOPInstanceUID, 'uid');
  }

  /** Every UID value left in the dataset (references in sequences included) that names a renamed
   * instance names its new UID instead. */
  private followRenames(elements: EditableElement[], path: string, renamed: ReadonlyMap<string, string>, references: Map<string, string>): void {
    for (const element of elements) {
      if (element.removed) continue;
      const here = `${path}(${tagText(element.tag)})`;
      if (element.items !== undefined && !element.encapsulated) {
        (element.items as EditableItem[]).forEach((item, index) => {
          if (!item.removed) this.followRenames(item.elements, `${here}[${index}]`, renamed, references);
        });
        continue;
      }
      if (element.vr !== 'UI') continue;
      const uids = (element.replacement ? element.replacement.value.toString('latin1') : this.text(element)).replace(/[\0 ]+$/, '').split('\\');
      const followed = uids.map((uid) => renamed.get(trimUid(uid)) ?? uid);
      if (element.tag === TAG.ReferencedSOPInstanceUID) uids.forEach((uid, index) => uid !== '' && references.set(trimUid(uid), trimUid(followed[index] ?? uid)));
      if (followed.every((uid, index) => uid === uids[index])) continue;
      element.replacement = { value: padToEven(followed.join('\\'), '\0') };
      this.record(here, element.tag, 'uid');
    }
  }

  private replaceUids(element: EditableElement, path: string): void {
    const uids = this.text(element)
      .split('\\')
      .map((uid) => trimUid(uid.trim()));
    // UIDs of the standard itself (classes, well-known instances) identify no one and must keep meaning.
    const replaced = uids.map((uid) => (uid === '' || uid.startsWith('1.2.840.10008.') ? uid : this.pseudonyms.uid(uid))).join('\\');
    element.replacement = { value: padToEven(replaced, '\0') };
    this.record(path, element.tag, 'uid');
  }

  /** C: dates move by the patient's offset; text loses the identifiers it quotes; sequences are
   * walked (their content gets the profile); anything else gets a dummy. */
  private clean(element: EditableElement, isSequence: boolean, path: string, patientKey: PatientKey): void {
    if (isSequence) {
      this.walkItems(element, path, patientKey, 'clean');
      return;
    }
    if (isCurveGroup(element.tag)) {
      // Table E.1-1 lists the whole repeating group (50xx,xxxx) as Curve Data. Its bytes cannot be
      // cleaned (below), and its counts and descriptors given dummies would describe a curve that is
      // not there: cleaning a curve removes all of it, as the Basic Profile does.
      element.removed = true;
      this.record(path, element.tag, 'remove');
      return;
    }
    const value = this.text(element);
    // An element sent as UN is cleaned as its dictionary VR says (a StudyTime in UN was removed as
    // bytes under Retain Longitudinal Modified Dates, found in the output review); one the dictionary
    // does not know, that reads as a date, is shifted as the date it is (retainedPrivateAction).
    // A private element in a text VR its writer chose (explicit VR) reads as it reads as UN (implicit
    // VR): a date is shifted, not masked as text, so that the output does not depend on the sender's
    // transfer syntax (found in the dates review: XXXXXXXX in one, the shifted date in the other).
    const known = element.vr === 'UN' ? listedVr(element.tag) : element.vr;
    const chosenByWriter = known === undefined || (isPrivate(element.tag) && listedVr(element.tag) === undefined && UNTYPED_TEXT_VRS.has(known));
    const readAs = chosenByWriter && element.length <= MAX_UID_LIST_BYTES ? dateVrOfText(value) : undefined;
    const vr = readAs ?? known ?? 'UN';
    if (vr === 'DA') {
      this.datesShifted = true;
      this.treatedAsDates.add(element);
      this.replaceText(element, shiftDate(value.trim(), this.dateOffsetDays), path, 'clean');
    } else if (vr === 'DT') {
      this.datesShifted = true;
      this.treatedAsDates.add(element);
      this.replaceText(element, shiftDateTime(value.trim(), this.dateOffsetDays), path, 'clean');
    } else if (vr === 'TM') {
      // Whole-day shifts leave times of day as they are; a value that is no time stays free text.
      if (/^[\d.:\\ -]*$/.test(value)) this.treatedAsDates.add(element);
    } else if (TEXT_VRS.has(vr)) {
      const multiValued = !SINGLE_VALUED_TEXT.has(vr);
      // UIDs the text quotes get the keyed UIDs of the objects they name, unless UIDs are kept (found
      // in the UID review: "derived from <the original SOP Instance UID>" passed in a cleaned comment).
      const withUids = this.settings.options.has('retainUIDs') ? value : replaceUidsInText(value, (uid) => this.pseudonyms.uid(uid), multiValued);
      let scrubbed = scrubText(withUids, this.identifiers, this.foldingOf(value), multiValued);
      // A name Gantry cannot mask in the item's set (it cannot write that set): the whole value goes.
      if (this.quotesUnwritable(scrubbed, vr) || this.holdsUndecodedDate(scrubbed, vr)) scrubbed = UNWRITABLE_MASK;
      if (scrubbed !== value) this.replaceText(element, fitToVr(scrubbed, vr, this.foldingOf(value)), path, 'clean');
    } else if (BINARY_VRS.has(vr)) {
      // Gantry cannot tell what a bitmap (overlay or curve data) or a binary timestamp holds: it gets
      // what the Basic Profile gives it. Removed, as before, Frame Origin Timestamp (D, and C under
      // Retain Longitudinal Modified Dates) went missing where the Basic Profile keeps it present
      // (found in the profile review: PS3.15 E.1.1, C never removes).
      const basic = basicAction(element.tag, vr);
      if (basic === 'dummy') {
        element.replacement = { value: dummyValue(vr) };
        this.dummies.add(element);
        this.record(path, element.tag, 'dummy');
      } else if (basic === 'empty') {
        this.empty(element, false, path);
      } else {
        element.removed = true;
        this.record(path, element.tag, 'remove');
      }
    } else if (vr === 'UI') {
      this.replaceUids(element, path);
    } else {
      element.replacement = { value: dummyValue(vr) };
      this.record(path, element.tag, 'clean');
    }
  }

  private replaceText(element: EditableElement, value: string, path: string, action: AuditEntry['action']): void {
    if (value === this.text(element)) return;
    element.replacement = textReplacement(element, padToEven(value, ' '));
    this.record(path, element.tag, action);
  }

  /**
   * The findings scan: free text that survives de-identification but quotes the patient's name or an
   * identifier, or a date, is residual risk (PS3.15 E.3.5 leaves free text to the implementer).
   */
  private scanForResidualPhi(elements: readonly EditableElement[], path: string): void {
    for (const element of elements) {
      if (element.removed) continue;
      const here = `${path}(${tagText(element.tag)})`;
      ((element.items ?? []) as EditableItem[]).forEach((item, index) => {
        if (!item.removed && !element.encapsulated) this.inItemCharacterSet(item.elements, () => this.scanForResidualPhi(item.elements as EditableElement[], `${here}[${index}]`));
      });
      if (element.tag === TAG.PatientName || element.tag === TAG.PatientID || this.dummies.has(element)) continue;
      const value = element.tag === TAG.EncapsulatedDocument ? this.keptTextDocument(element, elements) : this.scannableText(element);
      if (value === undefined) continue;
      if (value.trim() === '') continue;
      const keyword = keywordOf(element.tag) ?? here;
      const multiValued = !SINGLE_VALUED_TEXT.has(element.vr);
      if (quotesIdentifier(value, this.identifiers, this.foldingOf(value), multiValued) || this.quotesUnwritable(value, element.vr)) {
        this.findings.push({ code: 'identifier-in-text', message: `${keyword} quotes the patient's name or an identifier`, path: here });
      } else if (scrubText(value, [], this.foldingOf(value), multiValued, false) !== value || this.holdsUndecodedDate(value, element.vr)) {
        this.findings.push({ code: 'date-in-text', message: `${keyword} holds a date in free text`, path: here });
      }
    }
  }

  /**
   * PS3.15 E.1.2 and PS3.3 C.12.1.1.4.1: the original elements that the de-identification changes or
   * removes, in a Modified Attributes Sequence item, encrypted as CMS for the recipient, in an
   * Encrypted Attributes Sequence item with the transfer syntax of the encrypted dataset (explicit VR,
   * as required).
   */
  private encryptOriginals(elements: EditableElement[], changed: readonly ElementNode[], sopInstanceUid: string): void {
    if (!this.source) throw new Error('encrypting the original attributes needs the source dataset');
    const to = this.bigEndian ? 'explicit-be' : 'explicit-le';
    const from = this.bigEndian ? 'explicit-be' : this.implicit ? 'implicit-le' : 'explicit-le';
    const chunks: Buffer[] = [];
    const emit = (bytes: Buffer) => chunks.push(bytes);
    // Modified Attributes Sequence (0400,0550), one item of undefined length.
    emit(header(0x04000550, 'SQ', UNDEFINED_LENGTH, to));
    emit(delimiterWithLength(0xfffee000, UNDEFINED_LENGTH, to === 'explicit-be'));
    reencodeElements(changed, this.source, from, to, emit);
    emit(delimiter(0xfffee00d, to === 'explicit-be'));
    emit(delimiter(0xfffee0dd, to === 'explicit-be'));
    const modifiedAttributes = Buffer.concat(chunks);
    // Bound to this instance, and checked for changes when opened (envelope-binding.ts).
    const content = Buffer.concat([bindingElements(sopInstanceUid, modifiedAttributes, to), modifiedAttributes]);
    const envelopeDer = envelope(content, this.settings.encryptFor as string);
    const syntax = to === 'explicit-be' ? '1.2.840.10008.1.2.2' : '1.2.840.10008.1.2.1';
    insertSequence(elements, TAG.EncryptedAttributesSequence, [
      [
        newElement(TAG.EncryptedContentTransferSyntaxUID, 'UI', padToEven(syntax, '\0')),
        newElement(TAG.EncryptedContent, 'OB', envelopeDer.length % 2 ? Buffer.concat([envelopeDer, Buffer.from([0])]) : envelopeDer),
      ],
    ]);
    this.audit.push({ path: `(${tagText(TAG.EncryptedAttributesSequence)})`, keyword: keywordOf(TAG.EncryptedAttributesSequence), action: 'added' });
  }

  private addMethodAttributes(elements: EditableElement[]): void {
    const options: string[] = [...this.settings.options].sort();
    insertElement(elements, TAG.PatientIdentityRemoved, 'CS', padToEven('YES', ' '));
    if (this.settings.cleanedPixels !== undefined) options.push('cleanPixelData');
    insertElement(elements, TAG.DeidentificationMethod, 'LO', padToEven(methodValues(options).join('\\'), ' '));
    const codes = CID_7050.filter(([option]) => option === 'basic' || (option === 'cleanPixelData' ? this.settings.cleanedPixels !== undefined : this.settings.options.has(option)));
    // Only zones were applied: code 113101; Gantry never claims 113102 (Clean Recognizable Visual Features).
    if (this.settings.cleanedPixels !== undefined) {
      insertElement(elements, TAG.BurnedInAnnotation, 'CS', padToEven('NO', ' '));
      this.audit.push({ path: `(${tagText(TAG.BurnedInAnnotation)})`, keyword: keywordOf(TAG.BurnedInAnnotation), action: 'replace' });
      this.audit.push({ path: `(${tagText(PIXEL_DATA)})`, keyword: keywordOf(PIXEL_DATA), action: 'replace' });
    }
    insertSequence(
      elements,
      TAG.DeidentificationMethodCodeSequence,
      codes.map(([, value, meaning]) => [
        newElement(TAG.CodeValue, 'SH', padToEven(value, ' ')),
        newElement(TAG.CodingSchemeDesignator, 'SH', padToEven('DCM', ' ')),
        newElement(TAG.CodeMeaning, 'LO', padToEven(meaning, ' ')),
      ]),
    );
    // PS3.15 E.2 and E.3.6: say whether dates were kept, shifted or removed, whether or not this
    // instance had any (REMOVED "shall be added" when no longitudinal option applies).
    const longitudinal = this.settings.options.has('retainLongitudinalFullDates')
      ? 'UNMODIFIED'
      : this.datesShifted || this.settings.options.has('retainLongitudinalModifiedDates')
        ? 'MODIFIED'
        : 'REMOVED';
    insertElement(elements, TAG.LongitudinalTemporalInformationModified, 'CS', padToEven(longitudinal, ' '));
    for (const tag of [TAG.PatientIdentityRemoved, TAG.DeidentificationMethod, TAG.DeidentificationMethodCodeSequence]) {
      this.audit.push({ path: `(${tagText(tag)})`, keyword: keywordOf(tag), action: 'added' });
    }
  }

  /**
   * What the findings scan reads of an element: free text, whatever VR it was sent with, and an
   * element sent as UN (PS3.5 6.2.2: every private element of an implicit VR dataset) when its bytes
   * read as text, so that the scan does not depend on the transfer syntax. A Manufacturer or a
   * CodeMeaning sent as CS, IS or OB was not scanned, while DCMTK and pydicom show it as text, and a
   * destination Gantry converts it for reads it with the dictionary's VR (found in the PHI fuzz
   * review). Undefined for anything else.
   */
  private scannableText(element: EditableElement): string | undefined {
    if (this.treatedAsDates.has(element)) return undefined;
    if (TEXT_VRS.has(element.vr) || FREE_LABELS.has(element.tag)) return this.currentText(element);
    // The VR first: Pixel Data and other binary values are never read here (a 600 MB one cannot
    // even be a string).
    if (element.items !== undefined || element.length > MAX_SCANNED_UN_BYTES) return undefined;
    const listed = listedVr(element.tag);
    // A date, date and time or time sent as UN is no free text: the profile shifted, removed or kept
    // it as the date it is. Scanned, a shifted AcquisitionDate in UN held the instance back as "a date
    // in free text" (found in the dates review).
    if (listed !== undefined && (isDate(listed) || listed === 'TM')) return undefined;
    const listedAsText = listed !== undefined && TEXT_VRS.has(listed);
    if (!listedAsText && element.vr !== 'UN') return undefined;
    const value = this.currentText(element);
    return listedAsText || readsAsText(value) ? value : undefined;
  }

  /**
   * An Encapsulated Document kept as it came (a rule keeps it) whose MIME type says it is text (a CDA,
   * XML, plain text): read as text by the findings scan. A CDA kept with the patient's name, ID and
   * birth date in its XML was de-identified with no finding (found in the SR review). A PDF is not
   * text to read; it is held by default (pixel-risk) and replaced when passed.
   */
  private keptTextDocument(element: EditableElement, siblings: readonly EditableElement[]): string | undefined {
    if (element.replacement || element.length === UNDEFINED_LENGTH || element.length > MAX_SCANNED_DOCUMENT_BYTES) return undefined;
    const mime = this.currentText(siblings.find((sibling) => sibling.tag === TAG.MIMETypeOfEncapsulatedDocument && !sibling.removed) ?? element).trim();
    return /^text\/|[/+]xml$/i.test(mime) ? this.text(element) : undefined;
  }

  /** An element's value as Latin-1 text, its replacement if it has one. */
  private currentText(element: EditableElement): string {
    return element.replacement ? element.replacement.value.toString('latin1') : this.text(element);
  }

  /** Whether a value opens with an Item tag (FFFE,E000), in either byte order (PS3.5 7.5). */
  private opensWithItem(element: ElementNode): boolean {
    if (element.length < 8 || element.length === UNDEFINED_LENGTH) return false;
    const start = element.value?.subarray(0, 4) ?? this.source?.read(element.valueOffset, 4);
    if (!start || start.length < 4) return false;
    return start.readUInt32LE(0) === 0xe000fffe || start.readUInt32BE(0) === 0xfffee000;
  }

  /** How a text value (its bytes as Latin-1) compares: with escape sequences, in every set of the
   * dataset (or its item); without, in the first set alone when that has an upper half, where "ISO 2022 IR 144" reads as ISO_IR 144 (found in the
   * character set review: "ИВАНОВ" kept for Иванов, and "MÜLLER" for Müller under ISO 2022 IR 100 with
   * IR 87, compared as ASCII). */
  private foldingOf(value: string): TextFolding {
    return value.includes('\x1b') ? this.folding : this.plainFolding;
  }

  /** An element's text as its character set reads it (the dataset's, or its item's). */
  private decoded(element: ElementNode | undefined): string {
    if (!element) return '';
    const raw = this.text(element);
    const text = decodeText(Buffer.from(raw, 'latin1'), this.textCharsets, element.vr === 'PN', isMultiValuedText(element.vr));
    // Bytes the set cannot read (a Latin-1 ID in a dataset that says UTF-8) would all read as U+FFFD,
    // and two patients as one: such a value is keyed by its bytes, as before (found in the review of
    // the session's diff).
    return text.includes('\ufffd') && !raw.includes('\ufffd') ? raw : text;
  }

  private text(element: ElementNode | undefined): string {
    if (!element) return '';
    const bytes = element.value ?? (this.source && element.length !== 0xffffffff ? this.source.read(element.valueOffset, element.length) : undefined);
    return bytes ? bytes.toString('latin1').replace(/[\0 ]+$/, '') : '';
  }

  private record(path: string, tag: number, action: AuditEntry['action']): void {
    this.audit.push({ path: flat(path), keyword: keywordOf(tag), action });
  }
}

/**
 * A path as one string of its own. Built piece by piece (each level and tag appended), a path is a
 * chain of joined pieces (V8 keeps a concatenation as a pair of the strings it joins), and an audit
 * entry kept that chain: in an RT Structure Set of 9 data elements per contour, 46 of the 389 bytes
 * of heap each element cost, in a thread whose heap is 96 MB (docs/operations.md, "Large headers").
 */
function flat(path: string): string {
  return Buffer.from(path, 'latin1').toString('latin1');
}

/** (group << 8 | block) → private creator, for a dataset level (PS3.5 7.8.1). */
function privateCreators(elements: readonly ElementNode[]): Map<number, string> {
  const creators = new Map<number, string>();
  for (const element of elements) {
    if (!isPrivateCreator(element.tag)) continue;
    creators.set(((element.tag >>> 16) << 8) | (element.tag & 0xff), element.value?.toString('latin1').replace(/[\0 ]+$/, '').trim() ?? '');
  }
  return creators;
}

function isPrivate(tag: number): boolean {
  return ((tag >>> 16) & 1) === 1;
}

function isPrivateCreator(tag: number): boolean {
  const element = tag & 0xffff;
  return isPrivate(tag) && element >= 0x0010 && element <= 0x00ff;
}

/**
 * A UID that Table E.1-1 replaces (U) with no Retain UIDs Option entry (UID (0040,A124), Digital
 * Signature UID (0400,0100)): the option keeps the UIDs its column says K, and these are not among them.
 */
function replacedUnderRetainUids(tag: number): boolean {
  const row = profileRowFor(tag);
  return row !== undefined && row.tag !== 'private' && row.basic === 'U' && row.options.retainUIDs === undefined;
}

/** Text VRs a writer may give any value (unlike UI, DA, DT, numbers): one that reads as UIDs or dates
 * is treated as such where no list says what the element is (retainedPrivateAction). */
const UNTYPED_TEXT_VRS: ReadonlySet<string> = new Set(['LO', 'SH', 'CS', 'UC', 'ST', 'LT', 'UT']);

/** The longest UN value read as a possible list of UIDs (a thousand UIDs of the longest). */
const MAX_UID_LIST_BYTES = 65 * 1000;
/** A UID (PS3.5 9.1) of three components or more: a decimal number (DS) has two at most. */
const UID_SYNTAX = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){2,}$/;

/** Whether a value is a backslash-separated list of UIDs (padding trimmed), each of 64 characters at most. */
function readsAsUids(value: string, syntax = UID_SYNTAX): boolean {
  if (value === '') return false;
  return value.split('\\').every((uid) => uid.length <= 64 && syntax.test(uid.trim()));
}

/** A UID as registration authorities give them (PS3.5 9.1, ISO/IEC 8824): its first arc 0, 1 or 2,
 * and four components or more. */
const RETAINED_UID_SYNTAX = /^[0-2](\.(0|[1-9][0-9]*)){3,}$/;

/** Whether every value of a UI is a UID of the standard itself (replaceUids keeps those, value by value). */
function onlyStandardUids(value: string): boolean {
  return value.split('\\').every((uid) => uid.trim() === '' || uid.trim().startsWith('1.2.840.10008.'));
}

function isDate(vr: string): boolean {
  return vr === 'DA' || vr === 'DT';
}

/** The longest LO value (PS3.5 Table 6.2-1). */
const LO_MAX = 64;

/**
 * De-identification Method (0012,0063) as LO values of at most 64 characters each: the profile and
 * its options in one value while they fit, else the options carried on in further values (the
 * attribute is multi-valued, PS3.3 C.7.1.1), never cut inside a name.
 */
export function methodValues(options: readonly string[], edition = PROFILE_EDITION): string[] {
  const whole = `PS3.15 ${edition} Basic Profile${options.length > 0 ? ` + ${options.join(', ')}` : ''} (Gantry)`;
  if (whole.length <= LO_MAX) return [whole];
  const values = [`PS3.15 ${edition} Basic Profile (Gantry), options:`];
  let line = '';
  for (const option of options.map((name) => name.slice(0, LO_MAX))) {
    if (line === '') line = option;
    else if (line.length + 2 + option.length <= LO_MAX) line = `${line}, ${option}`;
    else {
      values.push(line);
      line = option;
    }
  }
  if (line !== '') values.push(line);
  return values;
}

/** Single-valued text VRs (PS3.5 6.2: a backslash is text there, not a value separator). */
const SINGLE_VALUED_TEXT = new Set(['LT', 'ST', 'UT']);

/**
 * A cleaned text value cut to the longest its VR allows (PS3.5 Table 6.2-1; per value, and for PN per
 * component group): the mask of an identifier can be longer than the identifier. Lengths are counted
 * in bytes (the text is read as Latin-1), which is never more than PS3.5 counts in characters; a cut
 * does not split a UTF-8 sequence or a GB18030 character.
 */
function fitToVr(value: string, vr: string, folding: TextFolding): string {
  const utf8 = folding === 'unicode';
  const max = MAX_VALUE_LENGTH[vr];
  if (max === undefined || value.length <= max) return value;
  // ISO 2022 (PS3.5 6.1.2.5): characters of one or two bytes between escapes, counted as characters.
  // EUC text, whose upper half is a two-byte set before any escape, is cut between its characters too.
  if (value.includes('\x1b') || folding === 'euc') return fitIso2022(value, max, SINGLE_VALUED_TEXT.has(vr) ? '' : vr === 'PN' ? '\\=' : '\\', folding === 'euc');
  const cut = (one: string) => {
    if (one.length <= max) return one;
    // UTF-8 (ISO_IR 192): up to four bytes a character; cut after the max-th character (bytes that
    // are not UTF-8 are cut as bytes below, never rewritten as replacement characters).
    const characters = utf8 ? [...Buffer.from(one, 'latin1').toString('utf8')] : [];
    if (utf8 && !characters.includes('\ufffd')) return Buffer.from(characters.slice(0, max).join(''), 'utf8').toString('latin1');
    // GB18030 and GBK: whole characters of one, two or four bytes (a cut at 64 bytes left a lone
    // lead byte, found in the character set review).
    if (folding.startsWith('multi-byte:')) {
      let fitted = '';
      for (const character of gbCharacters(one)) {
        if (fitted.length + character.length > max) break;
        fitted += character;
      }
      return fitted;
    }
    // UTF-8 text that does not decode is cut before a continuation byte; a single-byte set's every
    // byte is a character (Cyrillic letters among 0x80-0xBF), cut where it is.
    let end = max;
    while (utf8 && end > 0 && /[\x80-\xbf]/.test(one[end] as string)) end -= 1;
    return one.slice(0, end);
  };
  if (SINGLE_VALUED_TEXT.has(vr)) return cut(value);
  // In GB18030 and GBK a character's second byte may be 5C ("\\", 嘰 is 87 5C): values are split
  // between whole characters only.
  const values = folding.startsWith('multi-byte:') ? splitWholeCharacters(value) : value.split('\\');
  return values.map((one) => (vr === 'PN' ? one.split('=').map(cut).join('=') : cut(one))).join('\\');
}

/** GB18030 or GBK text split at each "\\" that is a character of its own. */
function splitWholeCharacters(text: string): string[] {
  const values = [''];
  for (const character of gbCharacters(text)) {
    if (character === '\\') values.push('');
    else values[values.length - 1] += character;
  }
  return values;
}

/** What the Basic Profile, with no option, does with a present element of this tag ('remove' for one
 * the table does not list). */
function basicAction(tag: number, vr: string): ConcreteAction {
  const row = profileRowFor(tag);
  return row ? concreteAction(row.basic, vr) : 'remove';
}

/** An element of a curve's repeating group (50xx,xxxx: even groups 5000-50FE, PS3.5 7.6; retired). */
function isCurveGroup(tag: number): boolean {
  const group = tag >>> 16;
  return group >= 0x5000 && group <= 0x50ff && (group & 1) === 0;
}

/** The dates a birth date shows an age against (capBirthDate), in this order. */
const BIRTH_DATE_REFERENCES = [TAG.StudyDate, TAG.SeriesDate, TAG.AcquisitionDate, TAG.ContentDate];

/** Whole years from one YYYYMMDD date to another (an age in years on the later date). */
function yearsBetween(from: string, to: string): number {
  const years = Number(to.slice(0, 4)) - Number(from.slice(0, 4));
  return to.slice(4) < from.slice(4) ? years - 1 : years;
}
