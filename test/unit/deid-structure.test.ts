/**
 * The engine and the writer on structure: sequences hidden in UN values, UIDs the table does not
 * list, references between instances, group lengths, deflated output, rules checked against VRs,
 * and identifiers found in free text without cutting words.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { inflateRawSync, deflateRawSync } from 'node:zlib';
import { BufferSource, parseDataset, parseFile, type ElementNode } from '../../src/dicom/dataset-tree.js';
import { DatasetWriter, type EditableElement } from '../../src/dicom/dataset-writer.js';
import { deflateDataset, encodePart10Header } from '../../src/dicom/part10.js';
import { compileProfiles } from '../../src/deid/decide.js';
import { deidentifyFile, writeThenRename } from '../../src/deid/deidentify-file.js';
import { DEFAULT_DEID_SETTINGS, DeidEngine } from '../../src/deid/engine.js';
import { scrubText } from '../../src/deid/free-text.js';
import { profileRowFor } from '../../src/deid/profile.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { compileProfile, RuleError, type RuleConfig } from '../../src/deid/rules.js';
import { scratchDir } from '../helpers/scratch.js';
import { metaValue } from '../helpers/stored.js';
import { definedItem, elementHeader, encodeElement, implicitElement, type Element } from '../helpers/synthetic-dicom.js';

const SECRET = 'the secret of the structure tests';
const PSEUDONYMS = new Pseudonymizer(SECRET);
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const DEFLATED = '1.2.840.10008.1.2.1.99';
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';

const TAG = {
  GroupLength0008: 0x00080000,
  SOPClassUID: 0x00080016,
  SOPInstanceUID: 0x00080018,
  ReferencedImageSequence: 0x00081140,
  ReferencedSOPClassUID: 0x00081150,
  ReferencedSOPInstanceUID: 0x00081155,
  StudyDescription: 0x00081030,
  PatientName: 0x00100010,
  PatientID: 0x00100020,
  StudyInstanceUID: 0x0020000d,
  SeriesInstanceUID: 0x0020000e,
  AvailableTransferSyntaxUID: 0x00083002,
  RetrieveLocationUID: 0x0040e011,
  AnnotationGroupUID: 0x006a0003,
} as const;


/** A reference to another instance, as a node that did not know the sequence wrote it: a UN of
 * defined length holding one implicit VR item. */
function referenceAsUn(sopInstanceUid: string): Buffer {
  const content = definedItem(Buffer.concat([implicitElement(TAG.ReferencedSOPClassUID, '1.2.840.10008.5.1.4.1.1.2'), implicitElement(TAG.ReferencedSOPInstanceUID, sopInstanceUid)]));
  return Buffer.concat([elementHeader(TAG.ReferencedImageSequence, 'UN', content.length), content]);
}

function sortedDataset(parts: Array<Buffer | Element>): Buffer {
  const buffers = parts.map((part) => (Buffer.isBuffer(part) ? part : encodeElement(part[0], part[1], part[2])));
  const tagOf = (bytes: Buffer) => ((bytes.readUInt16LE(0) << 16) | bytes.readUInt16LE(2)) >>> 0;
  return Buffer.concat(buffers.sort((a, b) => tagOf(a) - tagOf(b)));
}

function writePart10(path: string, sopInstanceUid: string, dataset: Buffer, sopClassUid = SECONDARY_CAPTURE): void {
  writeFileSync(path, Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: sopClassUid, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: EXPLICIT_LE }), dataset]));
}

function deid(input: string, output: string, rules: RuleConfig[] = []) {
  const settings = rules.length === 0 ? DEFAULT_DEID_SETTINGS : { profiles: compileProfiles([{ name: 'default', options: [], rules }]), base: DEFAULT_DEID_SETTINGS };
  const result = deidentifyFile(input, output, { settings, pseudonyms: PSEUDONYMS });
  assert.equal(result.kind, 'deidentified');
  return result as Extract<typeof result, { kind: 'deidentified' }>;
}

function text(element: ElementNode | undefined): string {
  return (element?.value ?? Buffer.alloc(0)).toString('latin1').replace(/[\0 ]+$/, '');
}

function find(elements: readonly ElementNode[], tag: number): ElementNode | undefined {
  return elements.find((element) => element.tag === tag);
}

/** Runs the engine on a dataset in memory and parses what the writer made of it. */
function roundTrip(dataset: Buffer, settings = DEFAULT_DEID_SETTINGS): ElementNode[] {
  const tree = parseDataset(new BufferSource(dataset), 'explicit-le') as EditableElement[];
  new DeidEngine(settings, PSEUDONYMS, new BufferSource(dataset), false).run(tree);
  const out: Buffer[] = [];
  new DatasetWriter(new BufferSource(dataset), 'explicit-le', (bytes) => out.push(Buffer.from(bytes))).writeElements(tree);
  return parseDataset(new BufferSource(Buffer.concat(out)), 'explicit-le');
}

test('a sequence hidden in a UN of defined length is walked: the UID inside is remapped, lengths stay right', () => {
  const referenced = '1.2.826.0.1.3680043.99.7.1';
  const dataset = sortedDataset([
    [TAG.SOPClassUID, 'UI', SECONDARY_CAPTURE],
    [TAG.SOPInstanceUID, 'UI', '1.2.826.0.1.3680043.99.7.2'],
    [TAG.PatientName, 'PN', 'Doe^Jane'],
    referenceAsUn(referenced),
  ]);
  const parsed = parseDataset(new BufferSource(dataset), 'explicit-le');
  const un = find(parsed, TAG.ReferencedImageSequence);
  assert.equal(un?.vr, 'UN');
  assert.equal(un?.items?.length, 1, 'the UN is read as a sequence of one item');

  const out = roundTrip(dataset);
  const sequence = find(out, TAG.ReferencedImageSequence);
  const inner = sequence?.items?.[0]?.elements ?? [];
  assert.equal(text(find(inner, TAG.ReferencedSOPInstanceUID)), PSEUDONYMS.uid(referenced), 'the reference follows its instance');
  assert.equal(text(find(inner, TAG.ReferencedSOPClassUID)), '1.2.840.10008.5.1.4.1.1.2', 'the class stays');
  assert.ok(!out.some((element) => text(element).includes(referenced)));
});

test('a UN value that only looks like a sequence stays an opaque value', () => {
  const bogus = Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0x00, 0x00, 0x00, 1, 2, 3, 4]);
  const dataset = sortedDataset([[TAG.SOPInstanceUID, 'UI', '1.2.3.4'], Buffer.concat([elementHeader(0x00091001, 'UN', bogus.length), bogus])]);
  const element = find(parseDataset(new BufferSource(dataset), 'explicit-le'), 0x00091001);
  assert.equal(element?.items, undefined);
  assert.deepEqual(element?.value, bogus);
});

test('a reference from one instance to another follows the keyed UID of the other, across files', () => {
  const dir = scratchDir('deid-references');
  const study = '1.2.826.0.1.3680043.99.8';
  const first = '1.2.826.0.1.3680043.99.8.1';
  const second = '1.2.826.0.1.3680043.99.8.2';
  const common: Element[] = [
    [TAG.SOPClassUID, 'UI', SECONDARY_CAPTURE],
    [TAG.PatientID, 'LO', 'MRN1'],
    [TAG.StudyInstanceUID, 'UI', study],
    [TAG.SeriesInstanceUID, 'UI', `${study}.9`],
  ];
  writePart10(join(dir, 'a.dcm'), first, sortedDataset([...common, [TAG.SOPInstanceUID, 'UI', first]]));
  const referenceSequence = (() => {
    const content = definedItem(Buffer.concat([encodeElement(TAG.ReferencedSOPClassUID, 'UI', SECONDARY_CAPTURE), encodeElement(TAG.ReferencedSOPInstanceUID, 'UI', first)]));
    return Buffer.concat([elementHeader(TAG.ReferencedImageSequence, 'SQ', content.length), content]);
  })();
  writePart10(join(dir, 'b.dcm'), second, sortedDataset([...common, [TAG.SOPInstanceUID, 'UI', second], referenceSequence]));
  const a = deid(join(dir, 'a.dcm'), join(dir, 'a-out.dcm'));
  deid(join(dir, 'b.dcm'), join(dir, 'b-out.dcm'));
  const parsed = parseFile(join(dir, 'b-out.dcm'));
  try {
    const inner = find(parsed.elements, TAG.ReferencedImageSequence)?.items?.[0]?.elements ?? [];
    assert.equal(text(find(inner, TAG.ReferencedSOPInstanceUID)), a.sopInstanceUid);
  } finally {
    parsed.close();
  }
});

test('a UID the table does not list is remapped unless it names a class or syntax or is the standard\'s own', () => {
  assert.equal(profileRowFor(TAG.RetrieveLocationUID), undefined, 'the test needs an unlisted instance-like UID');
  assert.equal(profileRowFor(TAG.SOPClassUID), undefined);
  const privateClass = '1.3.12.2.1107.5.9.1';
  const out = roundTrip(
    sortedDataset([
      [TAG.SOPClassUID, 'UI', privateClass],
      [TAG.SOPInstanceUID, 'UI', '1.2.3.4.5'],
      [TAG.AvailableTransferSyntaxUID, 'UI', '1.2.840.10008.1.2.4.50'],
      [TAG.RetrieveLocationUID, 'UI', '1.2.826.0.1.3680043.99.9'],
    ]),
  );
  assert.equal(text(find(out, TAG.SOPClassUID)), privateClass, 'a (private) class UID identifies no one');
  assert.equal(text(find(out, TAG.AvailableTransferSyntaxUID)), '1.2.840.10008.1.2.4.50');
  assert.equal(text(find(out, TAG.RetrieveLocationUID)), PSEUDONYMS.uid('1.2.826.0.1.3680043.99.9'));
});

test('unlisted attributes: a UID sent as UN is remapped by its dictionary VR, people\'s names go, dates go or stay or shift with the longitudinal options', () => {
  const MultiFrameSourceSOPInstanceUID = 0x00081167;
  const SecondaryReviewerName = 0x00140104;
  const StudyUpdateDateTime = 0x0008041f;
  for (const tag of [MultiFrameSourceSOPInstanceUID, SecondaryReviewerName, StudyUpdateDateTime]) assert.equal(profileRowFor(tag), undefined, 'the test needs attributes Table E.1-1 does not list');
  const source = '1.2.826.0.1.3680043.99.12';
  const dataset = sortedDataset([
    [TAG.SOPClassUID, 'UI', CT_IMAGE],
    [TAG.SOPInstanceUID, 'UI', '1.2.3.4.5'],
    [StudyUpdateDateTime, 'DT', '20230416101010'],
    [MultiFrameSourceSOPInstanceUID, 'UN', Buffer.from(`${source}\0`, 'latin1')],
    [SecondaryReviewerName, 'PN', 'Reviewer^Secret'],
  ]);
  const out = roundTrip(dataset);
  assert.equal(text(find(out, MultiFrameSourceSOPInstanceUID)), PSEUDONYMS.uid(source), 'a UID as UN is a UID');
  assert.equal(find(out, SecondaryReviewerName), undefined, 'a person\'s name the table does not list goes');
  assert.equal(find(out, StudyUpdateDateTime), undefined, 'so does a date, without the longitudinal options');
  const kept = roundTrip(dataset, { ...DEFAULT_DEID_SETTINGS, options: new Set(['retainLongitudinalFullDates']) });
  assert.equal(text(find(kept, StudyUpdateDateTime)), '20230416101010');
  const shifted = text(find(roundTrip(dataset, { ...DEFAULT_DEID_SETTINGS, options: new Set(['retainLongitudinalModifiedDates']) }), StudyUpdateDateTime));
  assert.match(shifted, /^\d{14}$/);
  assert.ok(shifted < '20230416101010', `shifted back: ${shifted}`);
});

test('the dummies Gantry writes are not residual risk, even for a patient named Anonymous', () => {
  const OperatorsName = 0x00081070;
  const PositionReferenceIndicator = 0x00201040;
  assert.match(profileRowFor(OperatorsName)?.basic ?? '', /D/, 'the test needs a name the profile replaces with a dummy');
  const dir = scratchDir('deid-dummies');
  const sop = '1.2.826.0.1.3680043.99.13.1';
  const dataset = (indicator: string) =>
    sortedDataset([
      [TAG.SOPClassUID, 'UI', CT_IMAGE],
      [TAG.SOPInstanceUID, 'UI', sop],
      [OperatorsName, 'PN', 'Tech^Someone'],
      [TAG.PatientName, 'PN', 'Anonymous'],
      [TAG.PatientID, 'LO', 'MRN77'],
      [PositionReferenceIndicator, 'LO', indicator],
    ]);
  writePart10(join(dir, 'in.dcm'), sop, dataset('ILIAC CREST'), CT_IMAGE);
  assert.deepEqual(deid(join(dir, 'in.dcm'), join(dir, 'out.dcm')).findings, []);
  // The scan still sees the patient's name where the original text quotes it.
  writePart10(join(dir, 'quoting.dcm'), sop, dataset('ANONYMOUS PATIENT'), CT_IMAGE);
  assert.deepEqual(deid(join(dir, 'quoting.dcm'), join(dir, 'quoting-out.dcm')).findings.map((finding) => finding.code), ['identifier-in-text']);
});

test('D on a UI attribute gives a keyed UID, not a text dummy', () => {
  assert.equal(profileRowFor(TAG.AnnotationGroupUID)?.basic, 'D');
  const out = roundTrip(sortedDataset([[TAG.SOPInstanceUID, 'UI', '1.2.3.4.5'], [TAG.AnnotationGroupUID, 'UI', '1.2.826.0.1.3680043.99.10']]));
  assert.equal(text(find(out, TAG.AnnotationGroupUID)), PSEUDONYMS.uid('1.2.826.0.1.3680043.99.10'));
});

test('a rule that keeps SOPInstanceUID keeps it in the meta header and the file name too', () => {
  const dir = scratchDir('deid-keep-sop');
  const sop = '1.2.826.0.1.3680043.99.11.1';
  // A CT image: a secondary capture would be held back for the text its pixels may show (decide.ts).
  writePart10(join(dir, 'in.dcm'), sop, sortedDataset([[TAG.SOPClassUID, 'UI', CT_IMAGE], [TAG.SOPInstanceUID, 'UI', sop], [TAG.StudyInstanceUID, 'UI', '1.2.826.0.1.3680043.99.11']]), CT_IMAGE);
  const outcome = deid(join(dir, 'in.dcm'), join(dir, 'out.dcm'), [{ attribute: 'SOPInstanceUID', action: 'keep' }]);
  assert.equal(outcome.sopInstanceUid, sop);
  assert.equal(metaValue(join(dir, 'out.dcm'), 0x0003), sop);
  assert.equal(outcome.studyInstanceUid, PSEUDONYMS.uid('1.2.826.0.1.3680043.99.11'), 'the study UID is still remapped');
});

test('a group length is recomputed around an edited UN sequence, and goes with a group that is all gone', () => {
  const body = sortedDataset([
    [TAG.SOPClassUID, 'UI', SECONDARY_CAPTURE],
    [TAG.SOPInstanceUID, 'UI', '1.2.3.4.5'],
    [TAG.StudyDescription, 'LO', 'CHEST'],
    referenceAsUn('1.2.826.0.1.3680043.99.12.1'),
  ]);
  const privateGroup = Buffer.concat([encodeElement(0x00090000, 'UL', 34), encodeElement(0x00090010, 'LO', 'ACME 1.0'), encodeElement(0x00091001, 'LO', 'SECRET VALUE')]);
  const dataset = Buffer.concat([encodeElement(TAG.GroupLength0008, 'UL', body.length), body, privateGroup]);
  const out = roundTrip(dataset);
  const groupLength = find(out, TAG.GroupLength0008);
  const members = out.filter((element) => element.tag >>> 16 === 0x0008 && element.tag !== TAG.GroupLength0008);
  assert.equal(groupLength?.value?.readUInt32LE(0), members.reduce((sum, element) => sum + (element.end - element.offset), 0));
  assert.equal(find(out, 0x00090000), undefined, 'no group length is left for a removed group');
  assert.equal(find(out, 0x00091001), undefined);
});

test('deflated output is padded to an even length and reads back', () => {
  let odd: Buffer | undefined;
  for (let n = 0; n < 64 && !odd; n += 1) {
    const candidate = Buffer.from(`dataset ${n} ${'x'.repeat(n)}`);
    if (deflateRawSync(candidate).length % 2 === 1) odd = candidate;
  }
  assert.ok(odd, 'an input whose raw deflate has odd length');
  const padded = deflateDataset(odd);
  assert.equal(padded.length % 2, 0);
  assert.deepEqual(inflateRawSync(padded), odd);

  const dir = scratchDir('deid-deflated');
  const dataset = sortedDataset([[TAG.SOPClassUID, 'UI', SECONDARY_CAPTURE], [TAG.SOPInstanceUID, 'UI', '1.2.3.4.6'], [TAG.PatientName, 'PN', 'Doe^Jane'], [TAG.StudyDescription, 'LO', 'CHEST']]);
  for (let n = 0; n < 4; n += 1) {
    writeFileSync(join(dir, `in${n}.dcm`), Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: SECONDARY_CAPTURE, mediaStorageSopInstanceUid: '1.2.3.4.6', transferSyntaxUid: DEFLATED }), deflateRawSync(Buffer.concat([dataset, encodeElement(0x00204000, 'LT', 'y'.repeat(2 * n))]))]));
    deid(join(dir, `in${n}.dcm`), join(dir, `out${n}.dcm`));
    assert.equal(readFileSync(join(dir, `out${n}.dcm`)).length % 2, 0, `output ${n} has even length`);
    const parsed = parseFile(join(dir, `out${n}.dcm`));
    assert.ok(parsed.deflated);
    assert.match(text(find(parsed.elements, TAG.PatientName)), /^ANONYMOUS/);
    parsed.close();
  }
  // Found in the resource review: the output was deflated whole, the dataset held three times over. A
  // dataset of several megabytes is now deflated a megabyte at a time; the pieces read as one stream.
  const pixels = Buffer.alloc(3 * 1024 * 1024 + 6);
  for (let i = 0; i < pixels.length; i += 1) pixels[i] = (i * 31 + (i >> 11)) & 0xff;
  const large = Buffer.concat([dataset, encodeElement(0x7fe00010, 'OB', pixels)]);
  writeFileSync(join(dir, 'large.dcm'), Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: SECONDARY_CAPTURE, mediaStorageSopInstanceUid: '1.2.3.4.6', transferSyntaxUid: DEFLATED }), deflateRawSync(large)]));
  deid(join(dir, 'large.dcm'), join(dir, 'large-out.dcm'));
  const written = readFileSync(join(dir, 'large-out.dcm'));
  assert.equal(written.length % 2, 0, 'even length');
  const parsed = parseFile(join(dir, 'large-out.dcm'));
  assert.ok(parsed.deflated);
  assert.match(text(find(parsed.elements, TAG.PatientName)), /^ANONYMOUS/);
  const pixelData = find(parsed.elements, 0x7fe00010);
  assert.ok(pixelData && parsed.source.read(pixelData.valueOffset, pixelData.length).equals(pixels), 'the pixels whole, across the batches');
  parsed.close();
});

test('rules are checked against the VR of their attribute', () => {
  const refused = (rule: RuleConfig, reason: RegExp) =>
    assert.throws(() => compileProfile({ name: 'p', options: [], rules: [rule] }), (error: Error) => {
      assert.ok(error instanceof RuleError);
      assert.match(error.message, reason);
      return true;
    });
  refused({ attribute: 'PixelData', action: 'replace', value: 'X' }, /replace writes text.*VR O/);
  refused({ attribute: 'StationName', action: 'replace', value: 'A'.repeat(17) }, /longer than SH allows \(16/);
  refused({ attribute: 'FrameOfReferenceUID', action: 'replace', value: '1.2.03' }, /not a valid UI/);
  refused({ attribute: 'StudyDate', action: 'replace', value: '2024-01-01' }, /longer than DA allows/);
  refused({ attribute: 'StudyDate', action: 'replace', value: '2024011' }, /not a valid DA/);
  refused({ attribute: 'Rows', action: 'hash' }, /hash applies to text/);
  refused({ attribute: 'AcquisitionTime', action: 'shiftDate' }, /shiftDate applies to DA and DT/);
  refused({ attribute: 'PatientName', action: 'remapUid' }, /remapUid applies to UI/);
  assert.doesNotThrow(() => compileProfile({ name: 'p', options: [], rules: [{ attribute: 'StudyDate', action: 'replace', value: '20240101' }, { attribute: 'PatientName', action: 'replace', value: 'TRIAL^001' }] }));
});

test('identifiers are scrubbed where they stand on their own, not inside other words', () => {
  assert.equal(scrubText('Ann Lee: annular tear', ['Ann', 'Lee']), 'XXXXXX XXXXXX: annular tear');
  assert.equal(scrubText('MRN12345 and 123456', ['12345']), 'MRNXXXXXX and 123456');
  assert.equal(scrubText('patient 12-345 seen', ['12-345']), 'patient XXXXXX seen');
});

test('an output named as the caller\'s temporary file is written in place; any other goes through a .partial name', () => {
  const dir = scratchDir('deid-output');
  const input = join(dir, 'in.dcm');
  writePart10(input, '1.2.826.0.1.3680043.99.9.1', sortedDataset([[TAG.SOPClassUID, 'UI', SECONDARY_CAPTURE], [TAG.SOPInstanceUID, 'UI', '1.2.826.0.1.3680043.99.9.1'], [TAG.PatientName, 'PN', 'Doe^Jane']]));
  // A folder where the .partial file would go: writing through it fails, writing in place does not.
  const direct = join(dir, 'direct.dcm');
  mkdirSync(`${direct}.partial`);
  const result = deidentifyFile(input, direct, { settings: DEFAULT_DEID_SETTINGS, pseudonyms: PSEUDONYMS, outputIsTemporary: true });
  assert.equal(result.kind, 'deidentified');
  assert.ok(text(find(parseFile(direct).elements, TAG.PatientName)) !== 'Doe^Jane');
  // A write that fails half-way leaves nothing, in either mode.
  const failing = (fd: number) => {
    writeSync(fd, Buffer.from('half of a file'));
    throw new Error('the disk is full');
  };
  for (const direct of [false, true]) {
    const output = join(dir, `failed-${direct}.dcm`);
    assert.throws(() => writeThenRename(output, 0o640, false, failing, direct), /the disk is full/);
    assert.ok(!existsSync(output) && !existsSync(`${output}.partial`), `nothing left (${direct ? 'in place' : 'through .partial'})`);
  }
});
