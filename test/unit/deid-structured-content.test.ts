/**
 * Structured reports, presentation states and encapsulated documents through the engine: found in the
 * SR review. What people write in labels is read by the findings scan; coded concepts keep their
 * codes; the subject's birth date in content is no date to shift.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferSource, parseDataset, type ElementNode } from '../../src/dicom/dataset-tree.js';
import type { EditableElement } from '../../src/dicom/dataset-writer.js';
import { DEFAULT_DEID_SETTINGS, DeidEngine, type DeidSettings } from '../../src/deid/engine.js';
import type { ProfileOption } from '../../src/deid/profile-types.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { definedItem, encodeDataset, encodeElement, type Element } from '../helpers/synthetic-dicom.js';

const PSEUDONYMS = new Pseudonymizer('the secret of the structured content tests');

const PATIENT: Element[] = [
  [0x00080018, 'UI', '1.2.826.0.1.3680043.99.9.1'],
  [0x00080020, 'DA', '20230105'],
  [0x00100010, 'PN', 'DOE^JOHNATHAN'],
  [0x00100020, 'LO', 'PID778899'],
  [0x0020000d, 'UI', '1.2.826.0.1.3680043.99.9'],
];

function sequence(...items: Buffer[]): Buffer {
  return Buffer.concat(items.map((item) => definedItem(item)));
}

function run(elements: Element[], options: ProfileOption[] = []) {
  const bytes = encodeDataset(elements);
  const tree = parseDataset(new BufferSource(bytes), 'explicit-le') as EditableElement[];
  const outcome = new DeidEngine({ ...DEFAULT_DEID_SETTINGS, options: new Set(options) }, PSEUDONYMS, new BufferSource(bytes), false).run(tree);
  const valueOf = (element: EditableElement | undefined) =>
    element === undefined || element.removed ? undefined : (element.replacement?.value ?? element.value ?? Buffer.alloc(0)).toString('latin1').replace(/[\0 ]+$/, '');
  return { outcome, tree, valueOf };
}

test('a Content Label or Graphic Layer quoting the patient is a finding', () => {
  const layer = encodeElement(0x00700002, 'CS', 'PID778899');
  const { outcome } = run([...PATIENT, [0x00700080, 'CS', 'DOE_JOHNATHAN'], [0x00700060, 'SQ', sequence(layer)]]);
  const paths = outcome.findings.filter((finding) => finding.code === 'identifier-in-text').map((finding) => finding.path);
  assert.ok(paths.some((path) => path?.includes('(0070,0080)')), `Content Label: ${JSON.stringify(paths)}`);
  assert.ok(paths.some((path) => path?.includes('(0070,0002)')), `Graphic Layer: ${JSON.stringify(paths)}`);
  const clean = run([...PATIENT, [0x00700080, 'CS', 'FINDING_1']]);
  assert.deepEqual(clean.outcome.findings.filter((finding) => finding.code === 'identifier-in-text'), [], 'a label of no one');
});

test('a URN Code Value is kept with its code, in the dataset and in content', () => {
  const code = encodeElement(0x00080120, 'UR', 'urn:oid:2.16.840.1.113883.6.1');
  const meaning = encodeElement(0x00080104, 'LO', 'Of Interest');
  const content = sequence(Buffer.concat([encodeElement(0x0040a040, 'CS', 'CODE'), encodeElement(0x0040a168, 'SQ', sequence(Buffer.concat([code, meaning])))]));
  for (const options of [[], ['cleanStructuredContent']] as ProfileOption[][]) {
    const { tree, valueOf } = run([...PATIENT, [0x0040a043, 'SQ', sequence(Buffer.concat([code, meaning]))], [0x0040a730, 'SQ', content]], options);
    const title = tree.find((element) => element.tag === 0x0040a043)?.items?.[0]?.elements as EditableElement[] | undefined;
    assert.equal(valueOf(title?.find((element) => element.tag === 0x00080120)), 'urn:oid:2.16.840.1.113883.6.1', `${options}: the document title's`);
    const item = tree.find((element) => element.tag === 0x0040a730)?.items?.[0]?.elements;
    const concept = item?.find((element) => element.tag === 0x0040a168)?.items?.[0]?.elements as EditableElement[] | undefined;
    assert.equal(valueOf(concept?.find((element) => element.tag === 0x00080120)), 'urn:oid:2.16.840.1.113883.6.1', `${options}: a content item's`);
  }
});

test('a kept text document (CDA) that quotes the patient is a finding; a PDF is not read', () => {
  const cda = '<?xml version="1.0"?><ClinicalDocument><id extension="PID778899"/><family>Doe</family></ClinicalDocument>';
  const kept = (mime: string) => {
    const elements: Element[] = [...PATIENT, [0x00420011, 'OB', Buffer.from(cda.length % 2 ? `${cda} ` : cda)], [0x00420012, 'LO', mime]];
    const bytes = encodeDataset(elements);
    const tree = parseDataset(new BufferSource(bytes), 'explicit-le') as EditableElement[];
    // Kept as a rule keeps it: the engine's own choice for it is to replace it.
    const settings: DeidSettings = { ...DEFAULT_DEID_SETTINGS, rules: [{ kind: 'attribute', target: { tag: 0x00420011 }, action: 'keep' }] };
    return new DeidEngine(settings, PSEUDONYMS, new BufferSource(bytes), false).run(tree).findings.filter((finding) => finding.code === 'identifier-in-text');
  };
  assert.equal(kept('text/XML').length, 1, 'the CDA quotes the ID');
  assert.equal(kept('application/pdf').length, 0, 'a PDF is not read as text');
});

test("the subject's birth date in content is a dummy, under every date option", () => {
  const concept = sequence(Buffer.concat([encodeElement(0x00080100, 'SH', '121031'), encodeElement(0x00080102, 'SH', 'DCM'), encodeElement(0x00080104, 'LO', 'Subject Birth Date')]));
  const birth = Buffer.concat([encodeElement(0x0040a040, 'CS', 'DATE'), encodeElement(0x0040a043, 'SQ', concept), encodeElement(0x0040a121, 'DA', '19610412')]);
  const otherConcept = sequence(Buffer.concat([encodeElement(0x00080100, 'SH', '111060'), encodeElement(0x00080102, 'SH', 'DCM'), encodeElement(0x00080104, 'LO', 'Study Date')]));
  const other = Buffer.concat([encodeElement(0x0040a040, 'CS', 'DATE'), encodeElement(0x0040a043, 'SQ', otherConcept), encodeElement(0x0040a121, 'DA', '20230105')]);
  for (const options of [['retainLongitudinalModifiedDates', 'cleanStructuredContent'], ['retainLongitudinalFullDates']] as ProfileOption[][]) {
    const { tree, valueOf } = run([...PATIENT, [0x0040a730, 'SQ', sequence(birth, other)]], options);
    const items = tree.find((element) => element.tag === 0x0040a730)?.items ?? [];
    const dateOf = (index: number) => valueOf(items[index]?.elements.find((element: ElementNode) => element.tag === 0x0040a121) as EditableElement | undefined);
    assert.equal(dateOf(0), '19000101', `${options}: the birth date`);
    assert.equal(dateOf(1), valueOf(tree.find((element) => element.tag === 0x00080020)), `${options}: another date as the study's`);
  }
});
