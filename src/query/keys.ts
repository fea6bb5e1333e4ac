/**
 * The keys Gantry answers C-FIND on, per level (PS3.4 C.6.1.1 and C.6.2.1: the required and unique keys
 * of the Patient Root and Study Root models, and a few optional ones the index keeps), each with the SQL
 * expression that reads it from the index. Aliases: p patients, st studies, se series, i instances.
 */

export type Level = 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE';

export interface KeyColumn {
  tag: number;
  /** The VR the matching follows (PS3.4 C.2.2.2). */
  vr: string;
  /** An SQL expression over the level's tables. */
  column: string;
  /** Matching on it needs a subquery (counts, ModalitiesInStudy): value filters are applied to it. */
  computed?: boolean;
  /** Its VM may be more than 1 (PS3.6): the column holds the values "\\"-separated, and a key matches when
   * it matches any of them (PS3.4 C.2.2.3). */
  multiValued?: true;
  /** Only in the source view (Gantry's own states are not the research callers' business). */
  sourceOnly?: boolean;
}

/**
 * InstanceAvailability (0008,0056), PS3.4 C.4.1.1.3.2: how soon the instances of the entity can be
 * retrieved; at a level above IMAGE, "the availability of the least rapidly available" of its
 * instances. Gantry keeps every file on its own disk, so an instance is ONLINE while the file the
 * caller's retrieve would send is there ({file_present}, on `instances f`: see inView), and
 * UNAVAILABLE once it is not (deleted under storage.retainOriginals or storage.retainDeidentified, or
 * never made). An entity without instances has none that is less available: ONLINE. Read from the
 * index alone: no file is looked at.
 */
function availabilityOf(instancesBelow: string): KeyColumn {
  return {
    tag: 0x00080056,
    vr: 'CS',
    column: `(CASE WHEN EXISTS (SELECT 1 FROM ${instancesBelow} AND NOT {file_present}) THEN 'UNAVAILABLE' ELSE 'ONLINE' END)`,
    computed: true,
  };
}

const PATIENT_KEYS: Record<string, KeyColumn> = {
  PatientName: { tag: 0x00100010, vr: 'PN', column: 'p.patient_name' },
  PatientID: { tag: 0x00100020, vr: 'LO', column: 'p.patient_id' },
  IssuerOfPatientID: { tag: 0x00100021, vr: 'LO', column: 'p.issuer_of_patient_id' },
  PatientBirthDate: { tag: 0x00100030, vr: 'DA', column: 'p.patient_birth_date' },
  PatientSex: { tag: 0x00100040, vr: 'CS', column: 'p.patient_sex' },
  NumberOfPatientRelatedStudies: {
    tag: 0x00201200,
    vr: 'IS',
    column: '(SELECT count(*) FROM {studies} s2 WHERE s2.patient_pk = p.id)',
    computed: true,
  },
  NumberOfPatientRelatedSeries: {
    tag: 0x00201202,
    vr: 'IS',
    column: '(SELECT count(*) FROM {series} x JOIN {studies} s2 ON s2.id = x.study_pk WHERE s2.patient_pk = p.id)',
    computed: true,
  },
  NumberOfPatientRelatedInstances: {
    tag: 0x00201204,
    vr: 'IS',
    column: '(SELECT count(*) FROM {instances} y JOIN {series} x ON x.id = y.series_pk JOIN {studies} s2 ON s2.id = x.study_pk WHERE s2.patient_pk = p.id)',
    computed: true,
  },
  InstanceAvailability: availabilityOf(
    '{instances} y JOIN {series} x ON x.id = y.series_pk JOIN {studies} s2 ON s2.id = x.study_pk JOIN instances f ON f.id = y.id WHERE s2.patient_pk = p.id',
  ),
};

const STUDY_KEYS: Record<string, KeyColumn> = {
  StudyInstanceUID: { tag: 0x0020000d, vr: 'UI', column: 'st.study_instance_uid' },
  StudyDate: { tag: 0x00080020, vr: 'DA', column: 'st.study_date' },
  StudyTime: { tag: 0x00080030, vr: 'TM', column: 'st.study_time' },
  AccessionNumber: { tag: 0x00080050, vr: 'SH', column: 'st.accession_number' },
  StudyID: { tag: 0x00200010, vr: 'SH', column: 'st.study_id' },
  StudyDescription: { tag: 0x00081030, vr: 'LO', column: 'st.study_description' },
  ReferringPhysicianName: { tag: 0x00080090, vr: 'PN', column: 'st.referring_physician_name' },
  ModalitiesInStudy: {
    tag: 0x00080061,
    vr: 'CS',
    column: "(SELECT replace(group_concat(DISTINCT x.modality), ',', '\\') FROM {series} x WHERE x.study_pk = st.id)",
    computed: true,
  },
  // Gantry's states of the study's instances, for operators (docs/conformance-statement.md): the
  // retired Study Status ID carries RECEIVED, DEIDENTIFIED, QUARANTINED, FORWARDED, FAILED.
  StudyStatusID: {
    tag: 0x0032000a,
    vr: 'CS',
    column: "(SELECT replace(group_concat(DISTINCT upper(y.state)), ',', '\\') FROM {instances} y JOIN {series} x ON x.id = y.series_pk WHERE x.study_pk = st.id)",
    computed: true,
    sourceOnly: true,
  },
  NumberOfStudyRelatedSeries: { tag: 0x00201206, vr: 'IS', column: '(SELECT count(*) FROM {series} x WHERE x.study_pk = st.id)', computed: true },
  NumberOfStudyRelatedInstances: {
    tag: 0x00201208,
    vr: 'IS',
    column: '(SELECT count(*) FROM {instances} y JOIN {series} x ON x.id = y.series_pk WHERE x.study_pk = st.id)',
    computed: true,
  },
  InstanceAvailability: availabilityOf('{instances} y JOIN {series} x ON x.id = y.series_pk JOIN instances f ON f.id = y.id WHERE x.study_pk = st.id'),
};

const SERIES_KEYS: Record<string, KeyColumn> = {
  SeriesInstanceUID: { tag: 0x0020000e, vr: 'UI', column: 'se.series_instance_uid' },
  Modality: { tag: 0x00080060, vr: 'CS', column: 'se.modality' },
  SeriesNumber: { tag: 0x00200011, vr: 'IS', column: 'se.series_number' },
  SeriesDescription: { tag: 0x0008103e, vr: 'LO', column: 'se.series_description' },
  SeriesDate: { tag: 0x00080021, vr: 'DA', column: 'se.series_date' },
  SeriesTime: { tag: 0x00080031, vr: 'TM', column: 'se.series_time' },
  BodyPartExamined: { tag: 0x00180015, vr: 'CS', column: 'se.body_part_examined' },
  NumberOfSeriesRelatedInstances: { tag: 0x00201209, vr: 'IS', column: '(SELECT count(*) FROM {instances} y WHERE y.series_pk = se.id)', computed: true },
  InstanceAvailability: availabilityOf('{instances} y JOIN instances f ON f.id = y.id WHERE y.series_pk = se.id'),
};

const IMAGE_KEYS: Record<string, KeyColumn> = {
  SOPInstanceUID: { tag: 0x00080018, vr: 'UI', column: 'i.sop_instance_uid' },
  SOPClassUID: { tag: 0x00080016, vr: 'UI', column: 'i.sop_class_uid' },
  InstanceNumber: { tag: 0x00200013, vr: 'IS', column: 'i.instance_number' },
  ContentDate: { tag: 0x00080023, vr: 'DA', column: 'i.content_date' },
  ContentTime: { tag: 0x00080033, vr: 'TM', column: 'i.content_time' },
  NumberOfFrames: { tag: 0x00280008, vr: 'IS', column: 'i.number_of_frames' },
  Rows: { tag: 0x00280010, vr: 'US', column: 'i.rows' },
  Columns: { tag: 0x00280011, vr: 'US', column: 'i.columns' },
  ImageType: { tag: 0x00080008, vr: 'CS', column: 'i.image_type', multiValued: true },
  AvailableTransferSyntaxUID: { tag: 0x00083002, vr: 'UI', column: 'i.transfer_syntax_uid' },
  InstanceAvailability: availabilityOf('instances f WHERE f.id = i.id'),
};

export type Model = 'patient' | 'study';

/** PS3.4 C.6: the Query/Retrieve Information Model SOP classes: their model and their operation. */
const QUERY_RETRIEVE_SOP_CLASSES: ReadonlyArray<readonly [string, Model, 'find' | 'move' | 'get']> = [
  ['1.2.840.10008.5.1.4.1.2.1.1', 'patient', 'find'],
  ['1.2.840.10008.5.1.4.1.2.1.2', 'patient', 'move'],
  ['1.2.840.10008.5.1.4.1.2.1.3', 'patient', 'get'],
  ['1.2.840.10008.5.1.4.1.2.2.1', 'study', 'find'],
  ['1.2.840.10008.5.1.4.1.2.2.2', 'study', 'move'],
  ['1.2.840.10008.5.1.4.1.2.2.3', 'study', 'get'],
];

export const MODEL_OF_SOP_CLASS: ReadonlyMap<string, Model> = new Map(QUERY_RETRIEVE_SOP_CLASSES.map(([uid, model]) => [uid, model]));

/** The operation (find, move, get) a Query/Retrieve SOP class is for, or undefined. */
export function queryRetrieveOperationOf(sopClassUid: string): 'find' | 'move' | 'get' | undefined {
  return QUERY_RETRIEVE_SOP_CLASSES.find(([uid]) => uid === sopClassUid)?.[2];
}

export const LEVELS: readonly Level[] = ['PATIENT', 'STUDY', 'SERIES', 'IMAGE'];

/** The keys answerable at a level: its own and those of the levels above it (a STUDY query may ask for
 * patient attributes, PS3.4 C.6.2.1.2); counts only at their own level, where the Study Root model's
 * STUDY level is also its patients' (Table C.6-5 lists NumberOfPatientRelatedStudies, Series and
 * Instances among its keys). */
export function keysAt(level: Level, model: Model): Map<number, KeyColumn & { keyword: string; level: Level }> {
  const out = new Map<number, KeyColumn & { keyword: string; level: Level }>();
  for (const at of LEVELS.slice(0, LEVELS.indexOf(level) + 1)) {
    const ownLevel = at === level || (model === 'study' && at === 'PATIENT' && level === 'STUDY');
    for (const [keyword, key] of Object.entries(KEYS_BY_LEVEL[at])) {
      if (!key.computed || ownLevel) out.set(key.tag, { ...key, keyword, level: at });
    }
  }
  return out;
}

export const KEYS_BY_LEVEL: Record<Level, Record<string, KeyColumn>> = {
  PATIENT: PATIENT_KEYS,
  STUDY: STUDY_KEYS,
  SERIES: SERIES_KEYS,
  IMAGE: IMAGE_KEYS,
};

/** The FROM clause of a level: its table joined to those above it. */
export const FROM_BY_LEVEL: Record<Level, string> = {
  PATIENT: '{patients} p',
  STUDY: '{studies} st JOIN {patients} p ON p.id = st.patient_pk',
  SERIES: '{series} se JOIN {studies} st ON st.id = se.study_pk JOIN {patients} p ON p.id = st.patient_pk',
  IMAGE: '{instances} i JOIN {series} se ON se.id = i.series_pk JOIN {studies} st ON st.id = se.study_pk JOIN {patients} p ON p.id = st.patient_pk',
};

/**
 * The two views of one index: the originals (source callers) and the research view of de-identified
 * copies (research callers, tables r_*, the same columns). SQL written with {patients}, {studies},
 * {series} and {instances} is made for one view by inView.
 */
export type View = 'source' | 'research';

/**
 * Which file of an instance a retrieve sends (move-service.ts): its original, or its de-identified
 * copy. A research caller only ever gets copies.
 */
export type RetrievedFile = 'original' | 'copy';

/** SQL: the file `retrieved` of the `instances` row `alias` is there to send. A copy exists once the
 * instance is de-identified; either file is gone once retention deleted it (retention-work.ts). */
export function filePresent(retrieved: RetrievedFile, alias: string): string {
  return retrieved === 'original'
    ? `(${alias}.original_deleted_at IS NULL)`
    : `(${alias}.state IN ('deidentified', 'forwarded') AND ${alias}.deid_deleted_at IS NULL)`;
}

/** SQL for one view: its tables, and {file_present} (InstanceAvailability) on the file `retrieved`
 * (in the research view, always the copy). */
export function inView(sql: string, view: View, retrieved: RetrievedFile = 'copy'): string {
  const tables = view === 'source' ? sql.replace(/\{(patients|studies|series|instances)\}/g, '$1') : sql.replace(/\{(patients|studies|series|instances)\}/g, 'r_$1');
  return tables.replace(/\{file_present\}/g, filePresent(view === 'research' ? 'copy' : retrieved, 'f'));
}

/** The unique key of each level (PS3.4 C.6.1.1, C.6.2.1). */
export const UNIQUE_KEY: Record<Level, number> = {
  PATIENT: 0x00100020,
  STUDY: 0x0020000d,
  SERIES: 0x0020000e,
  IMAGE: 0x00080018,
};

/** The row key of each level, for a stable order. */
export const ORDER_BY_LEVEL: Record<Level, string> = { PATIENT: 'p.id', STUDY: 'st.id', SERIES: 'se.id', IMAGE: 'i.id' };
