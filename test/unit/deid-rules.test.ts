/** Rules of the config and named profiles (src/deid/rules.ts, decide.ts), through the engine. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferSource, parseDataset, type ElementNode } from '../../src/dicom/dataset-tree.js';
import { type EditableElement } from '../../src/dicom/dataset-writer.js';
import { compileProfiles, decide } from '../../src/deid/decide.js';
import { DEFAULT_DEID_SETTINGS, DeidEngine } from '../../src/deid/engine.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { RuleError, type ProfileConfig } from '../../src/deid/rules.js';
import { encodeDataset, type Element } from '../helpers/synthetic-dicom.js';
import { attributeReader } from '../../src/dicom/element-value.js';

const PSEUDONYMS = new Pseudonymizer('the secret of the rule tests');
const BASE = { dateShift: DEFAULT_DEID_SETTINGS.dateShift, maxAgeYears: DEFAULT_DEID_SETTINGS.maxAgeYears };

const DATASET: Element[] = [
  [0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.2'],
  [0x00080018, 'UI', '1.2.3.4.1'],
  [0x00080020, 'DA', '20240315'],
  [0x00080050, 'SH', 'ACC4711'],
  [0x00080060, 'CS', 'CT'],
  [0x00080080, 'LO', 'Saint Elsewhere Hospital'],
  [0x00081010, 'SH', 'CTROOM2'],
  [0x00081030, 'LO', 'CT HEAD'],
  [0x00100010, 'PN', 'Doe^Jane'],
  [0x00100020, 'LO', 'MRN1'],
  [0x00190010, 'LO', 'ACME_PRIVATE'],
  [0x00191023, 'LO', 'KEEPME'],
  [0x00191024, 'LO', 'DROPME'],
  [0x0020000d, 'UI', '1.2.3.4.2'],
  [0x00200052, 'UI', '1.2.3.4.3'],
];

function run(profiles: ProfileConfig[], callingAeTitle = 'CT01', dataset: Element[] = DATASET) {
  const bytes = encodeDataset(dataset);
  const tree = parseDataset(new BufferSource(bytes), 'explicit-le') as EditableElement[];
  const byTag = new Map(tree.map((element) => [element.tag, element]));
  const decision = decide(compileProfiles(profiles), {
    callingAeTitle,
    sopClassUid: byTag.get(0x00080016)?.value?.toString('latin1').replace(/\0+$/, '') ?? '',
    attribute: (tag) => byTag.get(tag)?.value?.toString('latin1').replace(/[\0 ]+$/, '').trim(),
  }, BASE);
  if (decision.kind === 'quarantine') return { decision, values: new Map<number, string | undefined>() };
  new DeidEngine(decision.settings, PSEUDONYMS, new BufferSource(bytes), false).run(tree);
  const values = new Map(
    tree.map((element: ElementNode & { removed?: boolean; replacement?: { value: Buffer } }) => [
      element.tag,
      element.removed ? undefined : (element.replacement?.value ?? element.value ?? Buffer.alloc(0)).toString('latin1').replace(/[\0 ]+$/, ''),
    ]),
  );
  return { decision, values };
}

const profile = (rules: ProfileConfig['rules'], extra: Partial<ProfileConfig> = {}): ProfileConfig[] => [{ name: 'default', options: [], rules, ...extra }];

test('keep, remove, empty, replace and hash rules override the profile', () => {
  const { values } = run(
    profile([
      { attribute: 'StationName', action: 'keep' },
      { attribute: 'Modality', action: 'remove' },
      { attribute: '(0008,1030)', action: 'replace', value: 'RESEARCH' },
      { attribute: 'InstitutionName', action: 'empty' },
      { attribute: 'AccessionNumber', action: 'hash' },
    ]),
  );
  assert.equal(values.get(0x00081010), 'CTROOM2', 'kept by the rule, though the profile says D');
  assert.equal(values.get(0x00080060), undefined, 'removed by the rule');
  assert.equal(values.get(0x00081030), 'RESEARCH');
  assert.equal(values.get(0x00080080), '');
  const hashed = values.get(0x00080050) as string;
  assert.match(hashed, /^[A-Z2-7]{16}$/);
  assert.equal(run(profile([{ attribute: 'AccessionNumber', action: 'hash' }])).values.get(0x00080050), hashed, 'the same value, the same hash');
});

test('shiftDate and remapUid rules, and a private element kept by its creator', () => {
  const { values } = run(
    profile(
      [
        { attribute: 'StudyDate', action: 'shiftDate' },
        { attribute: 'FrameOfReferenceUID', action: 'remapUid' },
        { attribute: { creator: 'ACME_PRIVATE', tag: '0019,xx23' }, action: 'keep' },
      ],
      { options: ['retainUIDs'] },
    ),
  );
  assert.match(values.get(0x00080020) ?? '', /^\d{8}$/);
  assert.notEqual(values.get(0x00080020), '20240315');
  assert.equal(values.get(0x0020000d), '1.2.3.4.2', 'retainUIDs keeps the study UID');
  assert.match(values.get(0x00200052) ?? '', /^2\.25\./, 'the rule remaps the frame of reference anyway');
  assert.equal(values.get(0x00191023), 'KEEPME');
  assert.equal(values.get(0x00190010), 'ACME_PRIVATE', 'its creator stays with it');
  assert.equal(values.get(0x00191024), undefined);
});

test('conditions on the calling AE title and on attribute values (exact and /regex/)', () => {
  const rules: ProfileConfig['rules'] = [{ attribute: 'StationName', action: 'keep', when: { callingAeTitle: ['CT01', 'CT02'], attributes: { Modality: 'CT', InstitutionName: '/^Saint/' } } }];
  assert.equal(run(profile(rules), 'CT01').values.get(0x00081010), 'CTROOM2');
  assert.notEqual(run(profile(rules), 'MR07').values.get(0x00081010), 'CTROOM2', 'another caller: the profile applies');
  const other = DATASET.map((element) => (element[0] === 0x00080080 ? ([0x00080080, 'LO', 'General Hospital'] as Element) : element));
  assert.notEqual(run(profile(rules), 'CT01', other).values.get(0x00081010), 'CTROOM2', 'another institution: the profile applies');
});

test('a quarantine rule holds an instance back; burned-in text is held back unless a pass rule says otherwise', () => {
  const held = run(profile([{ action: 'quarantine', reason: 'no consent for Saint', when: { attributes: { InstitutionName: '/Saint/' } } }]));
  assert.deepEqual(held.decision, { kind: 'quarantine', reason: 'rule of profile default: no consent for Saint' });
  const ultrasound = DATASET.map((element) => (element[0] === 0x00080060 ? ([0x00080060, 'CS', 'US'] as Element) : element));
  assert.equal(run(profile([]), 'US01', ultrasound).decision.kind, 'quarantine');
  assert.match((run(profile([]), 'US01', ultrasound).decision as { reason: string }).reason, /modality US/);
  assert.equal(run(profile([{ action: 'pass', when: { callingAeTitle: 'US01' } }]), 'US01', ultrasound).decision.kind, 'deidentify');
});

test('named profiles: the first whose condition holds, else the default', () => {
  const profiles: ProfileConfig[] = [
    { name: 'trial', when: { callingAeTitle: 'CT01' }, options: ['retainUIDs'], rules: [] },
    { name: 'default', options: [], rules: [] },
  ];
  const trial = run(profiles, 'CT01');
  assert.ok(trial.decision.kind === 'deidentify' && trial.decision.profile === 'trial');
  assert.equal(trial.values.get(0x0020000d), '1.2.3.4.2');
  const other = run(profiles, 'MR01');
  assert.ok(other.decision.kind === 'deidentify' && other.decision.profile === 'default');
  assert.match(other.values.get(0x0020000d) ?? '', /^2\.25\./);
});

test('a rule naming an attribute the dictionary does not know is refused, with the profile and rule', () => {
  assert.throws(() => compileProfiles(profile([{ attribute: 'StationNmae', action: 'keep' }])), (error: unknown) => error instanceof RuleError && /profile default, rule 1: "StationNmae" is neither a DICOM keyword/.test(error.message));
});

// Found in the character set review: the patient key and hashes were made of the stored bytes, so one
// patient sent in Latin-1 by one device and in UTF-8 by another got two PatientIDs, two PatientNames
// and two date shifts within one study.
test('one patient in two character sets gets one pseudonym, one date shift and one hash', () => {
  const inCharset = (charset: string, encoding: 'latin1' | 'utf8') => {
    const dataset = DATASET.map((element): Element => {
      if (element[0] === 0x00100020) return [0x00100020, 'LO', Buffer.from('MÜ-4711', encoding)];
      if (element[0] === 0x00080080) return [0x00080080, 'LO', Buffer.from('Klinikum München', encoding)];
      return element;
    });
    dataset.unshift([0x00080005, 'CS', charset]);
    dataset.push([0x00100021, 'LO', Buffer.from('Klinikum München', encoding)]);
    dataset.sort((a, b) => a[0] - b[0]);
    return run(profile([{ attribute: 'InstitutionName', action: 'hash' }], { options: ['retainLongitudinalModifiedDates'] }), 'CT01', dataset).values;
  };
  const latin1 = inCharset('ISO_IR 100', 'latin1');
  const utf8 = inCharset('ISO_IR 192', 'utf8');
  for (const [tag, name] of [[0x00100020, 'PatientID'], [0x00100010, 'PatientName'], [0x00080020, 'StudyDate'], [0x00080080, 'InstitutionName (hashed)']] as const) {
    assert.ok(latin1.get(tag), name);
    assert.equal(utf8.get(tag), latin1.get(tag), name);
  }
  assert.notEqual(latin1.get(0x00080020), '20240315', 'the date was shifted');
  // Latin-1 keys read as they did: the pseudonym of the bytes as Latin-1 text.
  assert.equal(latin1.get(0x00100020), PSEUDONYMS.patientId({ issuerOfPatientId: 'Klinikum München', patientId: 'MÜ-4711' }));
});

// Found in the review of the session's diff: IDs whose bytes the set cannot read (Latin-1 in a dataset
// that says UTF-8) all decoded to U+FFFD, and two patients got one pseudonym.
test('PatientIDs the character set cannot read are keyed by their bytes', () => {
  const withId = (id: string) => {
    const dataset = DATASET.map((element): Element => (element[0] === 0x00100020 ? [0x00100020, 'LO', Buffer.from(id, 'latin1')] : element));
    dataset.unshift([0x00080005, 'CS', 'ISO_IR 192']);
    return run(profile([]), 'CT01', dataset).values.get(0x00100020);
  };
  assert.notEqual(withId('M\xfcller01'), withId('M\xe4ller01'));
});

// Found in the character set review: "Étude" was written as Latin-1 bytes into UTF-8 and Cyrillic
// datasets, and "研究" as control bytes.
test('a replace value outside printable ASCII is refused, naming the character', () => {
  for (const value of ['Étude', 'Study 研究', 'bell\x07']) {
    assert.throws(
      () => compileProfiles(profile([{ attribute: 'StudyDescription', action: 'replace', value }])),
      (error: unknown) => error instanceof RuleError && /rule 1: the value .* holds .*only printable ASCII/.test(error.message),
      value,
    );
  }
  assert.throws(() => compileProfiles(profile([{ attribute: { creator: 'ACME 1.0', tag: '0019,xx10' }, action: 'replace', value: 'Ünknown' }])), /only printable ASCII/);
  assert.doesNotThrow(() => compileProfiles(profile([{ attribute: 'StudyDescription', action: 'replace', value: 'RESEARCH ~ study #1' }])));
  // The default repertoire's controls are text in LT, ST and UT only (found in the reviews of the session's diff).
  assert.doesNotThrow(() => compileProfiles(profile([{ attribute: 'ImageComments', action: 'replace', value: 'Line one\r\nLine two\tend' }])));
  assert.throws(() => compileProfiles(profile([{ attribute: 'InstitutionName', action: 'replace', value: 'SITE\nA' }])), /holds "\\n".*CR, LF, FF and TAB in LT, ST and UT/);
});

// Found in review: a bare private tag kept whatever vendor's element sat in that block (PS3.5 7.8.1).
test('a rule that keeps a private element by its bare tag is refused and told to name the creator; removing one by tag is allowed', () => {
  assert.throws(
    () => compileProfiles(profile([{ attribute: '(0019,1023)', action: 'keep' }])),
    (error: unknown) => error instanceof RuleError && /rule 1: \(0019,1023\) is a private element.*\{ creator: NAME, tag: "0019,xx23" \} for keep/.test(error.message),
  );
  assert.throws(() => compileProfiles(profile([{ attribute: '0029,1010', action: 'hash' }])), RuleError);
  assert.doesNotThrow(() => compileProfiles(profile([{ attribute: '(0019,1023)', action: 'remove' }])));
  assert.doesNotThrow(() => compileProfiles(profile([{ attribute: { creator: 'GEMS_ACQU_01', tag: '0019,xx23' }, action: 'keep' }])));
  assert.doesNotThrow(() => compileProfiles(profile([{ attribute: '(0019,0010)', action: 'keep' }])), 'a private creator element names itself');
});

test('a dataset whose SOPClassUID is a Secondary Capture is held for burned-in text though its sender named another class', () => {
  const dataset = DATASET.map((element): Element => (element[0] === 0x00080016 ? [0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.7'] : element));
  const bytes = encodeDataset(dataset);
  const byTag = new Map((parseDataset(new BufferSource(bytes), 'explicit-le') as EditableElement[]).map((element) => [element.tag, element]));
  const decision = decide(compileProfiles(profile([])), {
    callingAeTitle: 'CT01',
    // As the File Meta Information says: the class of the C-STORE request.
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    attribute: (tag) => byTag.get(tag)?.value?.toString('latin1').replace(/[\0 ]+$/, '').trim(),
  }, BASE);
  assert.equal(decision.kind, 'quarantine');
  assert.match(decision.kind === 'quarantine' ? decision.reason : '', /Secondary Capture/);
});

// Found in the PHI fuzz review: RecognizableVisualFeatures has one value (VM 1), but a reader shows
// each of several; compared whole, "NO\YES" let a matching zone stand for the faces it cannot clean.
test('RecognizableVisualFeatures given several values, one of them YES, is faces: a matching zone does not clear them', () => {
  const dataset: Element[] = [...DATASET, [0x00280302, 'CS', 'NO\\YES'] as Element].sort((a, b) => a[0] - b[0]);
  const bytes = encodeDataset(dataset);
  const byTag = new Map((parseDataset(new BufferSource(bytes), 'explicit-le') as EditableElement[]).map((element) => [element.tag, element]));
  const zone = { name: 'every CT', match: { Modality: 'CT' }, rects: [[0, 0, 10, 10] as const], outsideUltrasoundRegions: false };
  const decision = decide(compileProfiles(profile([], { cleanPixelData: true })), {
    callingAeTitle: 'CT01',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    attribute: (tag) => byTag.get(tag)?.value?.toString('latin1').replace(/[\0 ]+$/, '').trim(),
  }, { ...BASE, pixelZones: [zone] });
  assert.equal(decision.kind, 'quarantine');
  assert.match(decision.kind === 'quarantine' ? decision.reason : '', /zones cannot clean faces/);
});

test('an overlay embedded in the unused high bits of Pixel Data holds a CT back: removing Overlay Data does not reach it', () => {
  // PS3.5 8.1.2 (retired usage, still in old archives): OverlayBitsAllocated 16 and OverlayBitPosition 12
  // put the overlay plane in bits 12 to 15 of every pixel, and viewers draw it; there is no (60xx,3000)
  // for Table E.1-1 to remove, so the instance would leave with whatever the overlay writes.
  const decideOn = (overlay: Element[]) => {
    const dataset: Element[] = [...DATASET.filter(([tag]) => tag < 0x00280000), [0x00280100, 'US', 16], [0x00280101, 'US', 12], [0x00280102, 'US', 11], ...overlay];
    const bytes = encodeDataset(dataset);
    const source = new BufferSource(bytes);
    return decide(compileProfiles(profile([])), { callingAeTitle: 'CT01', sopClassUid: '1.2.840.10008.5.1.4.1.1.2', attribute: attributeReader(parseDataset(source, 'explicit-le'), source, false) }, BASE);
  };
  const embedded = decideOn([
    [0x60020010, 'US', 512],
    [0x60020011, 'US', 512],
    [0x60020040, 'CS', 'G'],
    [0x60020050, 'SS', Buffer.from([1, 0, 1, 0])],
    [0x60020100, 'US', 16],
    [0x60020102, 'US', 12],
  ]);
  assert.equal(embedded.kind, 'quarantine');
  assert.match(embedded.kind === 'quarantine' ? embedded.reason : '', /overlay .*6002.* unused bits of Pixel Data/);
  // An overlay of its own (60xx,3000; one bit, position 0) is removed with its Overlay Data: no hold.
  const separate = decideOn([
    [0x60000010, 'US', 2],
    [0x60000011, 'US', 4],
    [0x60000100, 'US', 1],
    [0x60000102, 'US', 0],
    [0x60003000, 'OW', Buffer.alloc(2)],
  ]);
  assert.equal(separate.kind, 'deidentify');
});

// Found in a review: a reload refused for `when: { attributes: { PatientID: "/(MRN12345/" } }` logged the
// patient ID (a quarantine rule for patients who gave no consent lists their identifiers).
test('a condition on the patient that is refused names its key, never its value', () => {
  for (const [reference, expected] of [
    ['PatientID', '/(MRN12345/'],
    ['(0010,0010)', '/Smithers^John/g'],
    ['AccessionNumber', '/[ACC4711/i'],
  ] as const) {
    assert.throws(
      () => compileProfiles(profile([{ action: 'quarantine', reason: 'no consent', when: { attributes: { [reference]: expected } } }])),
      (error: unknown) =>
        error instanceof RuleError &&
        error.message.startsWith(`profile default, rule 1: when.attributes.${reference}: (hidden: it may identify a patient)`) &&
        !/MRN12345|Smithers|ACC4711/.test(error.message),
    );
  }
  // Other attributes are named with their value, as before.
  assert.throws(() => compileProfiles(profile([{ action: 'pass', when: { attributes: { Modality: '/(US/' } } }])), /when\.attributes\.Modality: \/\(US\/ is not a regular expression/);
});

// Found in the UID review: a hash rule on a private element of UIDs gave their keyed UIDs in explicit
// VR (UI), and one base32 hash of the whole list where the element reads as UN (implicit VR): the
// reference to the study and frame of reference was lost, and the output depended on the sender.
test('a hash rule gives a private element of UIDs their keyed UIDs whether it comes as UI or UN', () => {
  const rules: ProfileConfig['rules'] = [{ attribute: { creator: 'ACME_PRIVATE', tag: '0019,xx30' }, action: 'hash' }];
  const withUids = (vr: 'UI' | 'UN'): Element[] => [...DATASET, [0x00191030, vr, vr === 'UN' ? Buffer.from('1.2.3.4.2\\1.2.3.4.3\0') : '1.2.3.4.2\\1.2.3.4.3']];
  const asUi = run(profile(rules), 'CT01', withUids('UI')).values;
  const asUn = run(profile(rules), 'CT01', withUids('UN')).values;
  assert.equal(asUi.get(0x00191030), `${asUi.get(0x0020000d)}\\${asUi.get(0x00200052)}`, 'UI: each UID its keyed UID');
  assert.equal(asUn.get(0x00191030), asUi.get(0x00191030), 'UN: the same');
  const text: Element[] = [...DATASET, [0x00191030, 'UN', Buffer.from('not a uid')]];
  assert.match(run(profile(rules), 'CT01', text).values.get(0x00191030) ?? '', /^[A-Z2-7]{16}$/, 'other UN text is hashed as text');
});

// Found in the dates review: a shiftDate rule on a private element shifted its DA and DT and kept its
// TM in explicit VR, and removed all three where they came as UN (implicit VR).
test('a shiftDate rule on private elements sent as UN shifts what reads as a date and keeps a time', () => {
  const rules: ProfileConfig['rules'] = [0x40, 0x41, 0x42].map((element) => ({ attribute: { creator: 'ACME_PRIVATE', tag: `0019,xx${element.toString(16)}` }, action: 'shiftDate' as const }));
  const withDates = (vr: (typed: string) => string): Element[] => [
    ...DATASET,
    [0x00191040, vr('DA'), vr('DA') === 'UN' ? Buffer.from('20240315') : '20240315'],
    [0x00191041, vr('DT'), vr('DT') === 'UN' ? Buffer.from('20240315101500') : '20240315101500'],
    [0x00191042, vr('TM'), vr('TM') === 'UN' ? Buffer.from('101500') : '101500'],
  ];
  const typed = run(profile(rules, { options: ['retainLongitudinalModifiedDates'] }), 'CT01', withDates((vr) => vr)).values;
  const asUn = run(profile(rules, { options: ['retainLongitudinalModifiedDates'] }), 'CT01', withDates(() => 'UN')).values;
  assert.equal(typed.get(0x00191040), typed.get(0x00080020), 'DA: shifted as StudyDate is');
  for (const tag of [0x00191040, 0x00191041, 0x00191042]) assert.equal(asUn.get(tag), typed.get(tag), `(0019,${(tag & 0xffff).toString(16)}): as UN the same`);
  assert.equal(asUn.get(0x00191042), '101500', 'a time of day is kept');
});

// Found in the dates review: with a rule keeping the birth date shifted, a patient of 93 kept a birth
// date and a study date 93 years apart, where PatientAge said 090Y (deid.maxAgeYears, HIPAA Safe Harbor).
test('a birth date kept beside the study date is emptied when it shows an age over deid.maxAgeYears', () => {
  const rules: ProfileConfig['rules'] = [{ attribute: 'PatientBirthDate', action: 'shiftDate' }];
  const withBirth = (birth: string): Element[] => [...DATASET, [0x00100030, 'DA', birth]];
  const options = { options: ['retainLongitudinalModifiedDates' as const] };
  const old = run(profile(rules, options), 'CT01', withBirth('19300101')).values;
  assert.equal(old.get(0x00100030), '', 'an age of 94: present, no value');
  const young = run(profile(rules, options), 'CT01', withBirth('19800101')).values;
  assert.match(young.get(0x00100030) ?? '', /^\d{8}$/, 'an age of 44: kept, shifted');
  assert.notEqual(young.get(0x00100030), '19800101');
});

// Found in the dates review: with the profile emptying StudyDate (no date option), a birth date kept by
// a rule had nothing to show an age against, and a patient of 94 kept it.
test('a birth date kept where no date is written beside it is capped against the dates the instance came with, or today', () => {
  const rules: ProfileConfig['rules'] = [{ attribute: 'PatientBirthDate', action: 'keep' }];
  const withBirth = (birth: string, dataset = DATASET): Element[] => [...dataset, [0x00100030, 'DA', birth]];
  const studyDate = (values: ReadonlyMap<number, string | undefined>) => values.get(0x00080020);
  const old = run(profile(rules), 'CT01', withBirth('19300101')).values;
  assert.equal(studyDate(old), '', 'the profile empties the study date');
  assert.equal(old.get(0x00100030), '', 'an age of 94 at the study: present, no value');
  const young = run(profile(rules), 'CT01', withBirth('19800101')).values;
  assert.equal(young.get(0x00100030), '19800101', 'an age of 44 at the study: kept as the rule says');
  const undated = DATASET.filter(([tag]) => tag !== 0x00080020);
  const oldToday = run(profile(rules), 'CT01', withBirth('19200101', undated)).values;
  assert.equal(oldToday.get(0x00100030), '', 'no date at all: over 89 today');
  const youngToday = run(profile(rules), 'CT01', withBirth('19900101', undated)).values;
  assert.equal(youngToday.get(0x00100030), '19900101');
});

// Found in the SR review: an encapsulated PDF was held as "pixel data: modality DOC usually carries
// burned-in text (cleanPixelData is not among the options)": it has no pixels, and that option cannot help.
test('an encapsulated document is held as a document, saying that a pass rule sends it with the document replaced', () => {
  const pdf: Element[] = DATASET.map((element) => (element[0] === 0x00080016 ? ([0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.104.1'] as Element) : element[0] === 0x00080060 ? ([0x00080060, 'CS', 'DOC'] as Element) : element));
  const { decision } = run(profile([]), 'CT01', pdf);
  assert.equal(decision.kind, 'quarantine');
  assert.match(decision.kind === 'quarantine' ? decision.reason : '', /^document: Encapsulated PDF Storage may show identity in its document, which Gantry cannot read or clean \(a pass rule sends it with the document replaced\)$/);
});
