/**
 * Identifying values hidden where a careless de-identifier looks past them, run through the function
 * the node uses (deidentifyFile) with the default settings: each of these tests failed before its fix.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { deidentifyFile, type DeidFileResult } from '../../src/deid/deidentify-file.js';
import { DEFAULT_DEID_SETTINGS } from '../../src/deid/engine.js';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { scratchDir } from '../helpers/scratch.js';
import { definedItem, eightBitImagePixel, elementHeader, encodeDataset, encodeElement, implicitElement, implicitElementOf } from '../helpers/synthetic-dicom.js';

const PSEUDONYMS = new Pseudonymizer('the secret of the leak hunt tests');
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';
const SOP = '1.2.826.0.1.3680043.99.600.1';
/** A tag of an even (standard) group that no edition of PS3.6 defines: an attribute newer than Gantry. */
const UNKNOWN_STANDARD_TAG = 0x00981234;

/** The elements of an explicit VR little endian dataset, sorted by tag. */
function dataset(parts: Buffer[]): Buffer {
  const tagOf = (bytes: Buffer) => ((bytes.readUInt16LE(0) << 16) | bytes.readUInt16LE(2)) >>> 0;
  return Buffer.concat([...parts].sort((a, b) => tagOf(a) - tagOf(b)));
}

function patient(): Buffer[] {
  return [
    encodeElement(0x00080016, 'UI', CT_IMAGE),
    encodeElement(0x00080018, 'UI', SOP),
    encodeElement(0x00080060, 'CS', 'CT'),
    encodeElement(0x00100010, 'PN', 'Zabriskie^Quentin'),
    encodeElement(0x00100020, 'LO', 'MRN600'),
  ];
}

/** De-identifies a Part 10 file holding `body`; the output's bytes, or undefined when held back. */
function deidentified(name: string, body: Buffer, transferSyntaxUid = EXPLICIT_LE): { result: DeidFileResult; written: string | undefined } {
  const dir = scratchDir(name);
  writeFileSync(join(dir, 'in.dcm'), Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: CT_IMAGE, mediaStorageSopInstanceUid: SOP, transferSyntaxUid }), body]));
  const result = deidentifyFile(join(dir, 'in.dcm'), join(dir, 'out.dcm'), { settings: DEFAULT_DEID_SETTINGS, pseudonyms: PSEUDONYMS });
  return { result, written: result.kind === 'quarantined' ? undefined : readFileSync(join(dir, 'out.dcm')).toString('latin1') };
}

// PS3.5 6.2.2: a sequence sent as UN holds implicit VR items. Some nodes relabel a sequence UN and
// leave its items explicit; Gantry cannot read those, so it must not pass them on (PS3.15 E.1.1: the
// names and UIDs the items hold are de-identified wherever they are). For a tag the dictionary calls
// SQ that was done; for a tag it does not know (an attribute newer than it), the value was kept.
test('a UN value of an unknown attribute that holds unreadable items is not passed on', () => {
  const originalUid = '1.2.826.0.1.3680043.99.600.77';
  const items = definedItem(Buffer.concat([encodeElement(0x00100010, 'PN', 'Zabriskie^Quentin'), encodeElement(0x00081155, 'UI', originalUid)]));
  const { result, written } = deidentified('leak-un-items', dataset([...patient(), elementHeader(UNKNOWN_STANDARD_TAG, 'UN', items.length), items]));
  if (written === undefined) return; // held back: fine too
  assert.equal(result.kind, 'deidentified');
  assert.ok(!written.includes('Zabriskie'), "the patient's name leaves inside the unread items");
  assert.ok(!written.includes(originalUid), 'an original UID leaves inside the unread items');
});

// PS3.15 E.1.1 and Table E.1-1: instance UIDs are replaced; Gantry remaps the UIDs of attributes the
// table does not list by their VR. An attribute the dictionary does not know, sent in implicit VR (or
// as UN in explicit VR), has no VR to say so: the same UID that was remapped when sent as UI left as
// it came.
test('a UID in an attribute the dictionary does not know is remapped whatever the transfer syntax', () => {
  const originalUid = '1.2.826.0.1.3680043.99.600.88';
  const implicit = Buffer.concat([
    implicitElement(0x00080016, CT_IMAGE),
    implicitElement(0x00080018, SOP),
    implicitElement(0x00100010, 'Zabriskie^Quentin'),
    implicitElement(0x00100020, 'MRN600'),
    implicitElement(UNKNOWN_STANDARD_TAG, `${originalUid}\\1.2.840.10008.5.1.4.1.1.2`),
  ]);
  const viaImplicit = deidentified('leak-un-uid-implicit', implicit, '1.2.840.10008.1.2');
  assert.ok(viaImplicit.written !== undefined && !viaImplicit.written.includes(originalUid), 'implicit VR: the original UID leaves');
  assert.ok(viaImplicit.written.includes('1.2.840.10008.5.1.4.1.1.2'), 'a UID of the standard itself stays');
  const asUn = deidentified('leak-un-uid-explicit', dataset([...patient(), encodeElement(UNKNOWN_STANDARD_TAG, 'UN', Buffer.from(`${originalUid}\0`, 'latin1'))]));
  assert.ok(asUn.written !== undefined && !asUn.written.includes(originalUid), 'explicit VR, sent as UN: the original UID leaves');
  const asUi = deidentified('leak-un-uid-ui', dataset([...patient(), encodeElement(UNKNOWN_STANDARD_TAG, 'UI', originalUid)]));
  assert.ok(asUi.written !== undefined && !asUi.written.includes(originalUid), 'explicit VR, sent as UI: remapped');
  // Numbers stay numbers: a decimal of two components is no UID.
  const decimal = deidentified('leak-un-decimal', dataset([...patient(), encodeElement(UNKNOWN_STANDARD_TAG, 'UN', Buffer.from('12.5', 'latin1'))]));
  assert.ok(decimal.written?.includes('12.5'));
});

// Found in the PHI fuzz review: the dictionary (from dcmjs) called View Orientation Modifier Code
// Sequence (0068,62F0) FD and Component Type Code Sequence (0076,0034) CS, so in implicit VR, the
// default transfer syntax (PS3.5 A.1), their items were one opaque value, kept unread, while DCMTK
// and pydicom show the names in them.
test('the items of every sequence the standard defines are read in implicit VR: none passes unread', () => {
  for (const tag of [0x006862f0, 0x00760034]) {
    const item = definedItem(Buffer.concat([implicitElement(0x00080080, 'Saint Leakwood Hospital'), implicitElement(0x00100010, 'Zabriskie^Quentin'), implicitElement(0x00100020, 'MRN600')]));
    const implicit = Buffer.concat([
      implicitElement(0x00080016, CT_IMAGE),
      implicitElement(0x00080018, SOP),
      implicitElement(0x00100010, 'Zabriskie^Quentin'),
      implicitElement(0x00100020, 'MRN600'),
      implicitElementOf(tag, item),
    ]);
    const { written } = deidentified(`leak-implicit-sequence-${tag.toString(16)}`, implicit, '1.2.840.10008.1.2');
    if (written === undefined) continue; // held back: fine too
    assert.ok(!/Zabriskie|MRN600|Leakwood/.test(written), `the items of (${tag.toString(16)}) leave unread`);
  }
});

// Found in the PHI fuzz review: the residual risk scan read kept text only under a text VR (or UN of
// printable bytes), while DCMTK and pydicom show a Manufacturer sent as CS or IS as text, and a
// destination Gantry converts to implicit VR reads an OB one by the dictionary's VR, LO.
test('kept text quoting the patient is found whatever VR it was sent with, and in UN values that are not all printable', () => {
  /** The findings of the scan (the node holds an instance with any, deid.quarantineOnFindings). */
  const quoting = (name: string, element: Buffer) => {
    const { result } = deidentified(name, dataset([...patient(), element]));
    return result.kind === 'quarantined' ? [] : result.findings.map((finding) => finding.code);
  };
  for (const vr of ['CS', 'IS', 'OB']) {
    const findings = quoting(`leak-manufacturer-${vr}`, encodeElement(0x00080070, vr, vr === 'OB' ? Buffer.from('Zabriskie Imaging', 'latin1') : 'Zabriskie Imaging'));
    assert.deepEqual(findings, ['identifier-in-text'], `Manufacturer sent as ${vr}`);
  }
  // An attribute newer than the dictionary, sent as UN: a stray control byte, or UTF-8 whose "€"
  // takes a byte of 0x80-0x9F, left the value unscanned.
  for (const [name, text] of [['control', 'Zabriskie Quentin\x01'], ['utf8', 'Zabriskie 5 €']] as const) {
    const bytes = Buffer.from(text, name === 'utf8' ? 'utf8' : 'latin1');
    const findings = quoting(`leak-un-${name}`, encodeElement(UNKNOWN_STANDARD_TAG, 'UN', bytes.length % 2 === 1 ? Buffer.concat([bytes, Buffer.from(' ')]) : bytes));
    assert.deepEqual(findings, ['identifier-in-text'], `a UN value (${name}) quoting the patient`);
  }
  // Binary stays binary: a UN value of numbers is not read as text.
  const numbers = Buffer.alloc(64);
  for (let index = 0; index < 16; index += 1) numbers.writeFloatLE(index * 1.37, index * 4);
  assert.deepEqual(quoting('leak-un-binary', encodeElement(UNKNOWN_STANDARD_TAG, 'UN', numbers)), []);
});

// Found in the PHI fuzz review: the pseudonym of a PatientID sent as SV was written under SV (18
// bytes no reader could take), and an element of a VR PS3.5 does not define was copied as it came.
test('a pseudonym replacing a value sent with a VR that holds no text gets the dictionary VR; a VR the standard does not define goes', () => {
  const patientIdAsSv = encodeElement(0x00100020, 'SV', Buffer.alloc(8));
  const parts = patient().filter((part) => part.readUInt16LE(0) !== 0x0010 || part.readUInt16LE(2) !== 0x0020);
  // Read as every VR added since PS3.5 first was, with a 4-byte length (dataset-tree.ts).
  const unknownVr = Buffer.concat([elementHeader(0x00180050, 'UN', 10), Buffer.from('Zabriskie ', 'latin1')]);
  unknownVr.write('ZZ', 4, 'latin1');
  const { result, written } = deidentified('leak-wrong-vr', dataset([...parts, patientIdAsSv, unknownVr]));
  assert.equal(result.kind, 'deidentified');
  const bytes = Buffer.from(written ?? '', 'latin1');
  const at = bytes.indexOf(Buffer.from([0x10, 0x00, 0x20, 0x00]));
  assert.ok(at > 0, 'PatientID is written');
  assert.equal(bytes.toString('latin1', at + 4, at + 6), 'LO', 'the pseudonym is written as the LO it is');
  assert.ok(!written?.includes('ZZ') && !written?.includes('Zabriskie'), 'the element of VR ZZ leaves');
});

// PS3.3 F.3 and PS3.10 8.6: the directory attributes of group 0004 belong to a DICOMDIR, which Gantry
// holds back because its Referenced File IDs are paths media writers name after patients. Copied into
// an instance (a media importer that kept a record's keys), the same paths were kept: Table E.1-1 does
// not list them, and as CS they were not even scanned for the patient's name or ID.
test('directory attributes (group 0004) copied into an instance do not leave with it', () => {
  const { result, written } = deidentified(
    'leak-group-0004',
    dataset([...patient(), encodeElement(0x00041500, 'CS', 'ZABRISKIE\\MRN600\\IM0001'), encodeElement(0x00041130, 'CS', 'ZABRISKIE_Q')]),
  );
  assert.equal(result.kind, 'deidentified');
  assert.ok(written !== undefined && !/ZABRISKIE|MRN600/i.test(written), 'a file path named after the patient leaves');
});

// PS3.15 E.1.1: Gantry removes the names of people the table does not list (DICONDE's reviewers and
// evaluators) by their VR. The VR an explicit VR element states was the only one looked at: the same
// name written with a wrong VR (LO, as some writers do for every text) was kept.
test("an unlisted person's name sent with a wrong explicit VR is removed as a PN is", () => {
  const { result, written } = deidentified('leak-pn-as-lo', dataset([...patient(), encodeElement(0x00142006, 'LO', 'Quimby^Evaluator'), encodeElement(0x00140104, 'SH', 'Quimby^Second')]));
  assert.equal(result.kind, 'deidentified');
  assert.ok(written !== undefined && !written.includes('Quimby'), "a person's name leaves");
});

// Found in the robustness review: the JPEG comments and APPn segments of frames go (PS3.15 E.1.1:
// identifying information anywhere in the object), but a dataset whose frames could not be told apart
// (an offset table with too many entries, or more fragments opening with SOI than frames) was copied
// with them.
test('JPEG frames with a comment that cannot be told apart hold the instance; told apart, the comment goes', () => {
  const comment = Buffer.from('Zabriskie^Quentin MRN600', 'latin1');
  const commentSegment = Buffer.alloc(4);
  commentSegment.writeUInt16BE(0xfffe, 0);
  commentSegment.writeUInt16BE(comment.length + 2, 2);
  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8]), commentSegment, comment, Buffer.from([0xff, 0xda, 0x00, 0x02, 0x01, 0x02, 0xff, 0xd9])]);
  const image = [encodeDataset(eightBitImagePixel({ rows: 8, columns: 8, frames: 2 }))];
  const pixelData = (table: Buffer, fragments: number) =>
    Buffer.concat([elementHeader(0x7fe00010, 'OB', 0xffffffff), definedItem(table), ...Array<Buffer>(fragments).fill(definedItem(jpeg)), Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0])]);
  const threeEntries = Buffer.alloc(12);
  [0, 40, 80].forEach((offset, index) => threeEntries.writeUInt32LE(offset, index * 4));
  const oneFrame = image.map((element) => (element.readUInt32LE(0) === 0x00080028 ? encodeElement(0x00280008, 'IS', '1') : element));
  for (const [name, table, fragments, attributes] of [
    ['a table of three entries for two frames', threeEntries, 3, image],
    ['no table and three frame starts for two frames', Buffer.alloc(0), 3, image],
    // The comments of the codestreams after the first were past the header of "the" frame.
    ['no table and three frame starts for one frame', Buffer.alloc(0), 3, oneFrame],
  ] as const) {
    const { result, written } = deidentified('leak-jpeg-comment', dataset([...patient(), ...attributes, pixelData(table, fragments)]), '1.2.840.10008.1.2.4.50');
    assert.equal(result.kind, 'quarantined', `${name}: ${written?.includes('Zabriskie') ? 'the comment left' : 'written'}`);
    assert.match((result as { reason: string }).reason, /frames cannot be told apart .* codestream metadata/);
  }
  const { result, written } = deidentified('leak-jpeg-comment', dataset([...patient(), ...image, pixelData(Buffer.alloc(0), 2)]), '1.2.840.10008.1.2.4.50');
  assert.equal(result.kind, 'deidentified');
  assert.ok(written && !written.includes('Zabriskie'), 'one fragment per frame: the comment goes');
});

// Found reviewing the codestream cleaning: only the segments before the first scan were looked at, so
// a comment between two scans, or bytes after EOI, left with frames copied as they were.
test('a comment between scans and bytes after the end of a JPEG frame do not leave', () => {
  const segment = (marker: number, body: Buffer) => Buffer.concat([Buffer.from([marker >> 8, marker & 0xff, (body.length + 2) >> 8, (body.length + 2) & 0xff]), body]);
  const scan = segment(0xffda, Buffer.from([1, 1, 0, 0, 63, 0]));
  const jpeg = (extra: Buffer, tail: Buffer) => Buffer.concat([Buffer.from([0xff, 0xd8]), scan, Buffer.from([0x12, 0x34]), extra, scan, Buffer.from([0x56, 0x78, 0xff, 0xd9]), tail]);
  const image = [encodeDataset(eightBitImagePixel({ rows: 8, columns: 8, frames: 2 }))];
  const pixelData = (frames: Buffer[]) =>
    Buffer.concat([elementHeader(0x7fe00010, 'OB', 0xffffffff), definedItem(Buffer.alloc(0)), ...frames.map((frame) => definedItem(frame)), Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0])]);
  const between = jpeg(segment(0xfffe, Buffer.from('Zabriskie^Quentin', 'latin1')), Buffer.alloc(0));
  const after = jpeg(Buffer.alloc(0), Buffer.from('MRN600 Yablonski', 'latin1'));
  const { result, written } = deidentified('leak-jpeg-scans', dataset([...patient(), ...image, pixelData([between, after])]), '1.2.840.10008.1.2.4.50');
  assert.equal(result.kind, 'deidentified');
  assert.ok(written !== undefined && !written.includes('Zabriskie'), 'a comment between scans leaves');
  assert.ok(!written.includes('Yablonski'), 'bytes after EOI leave');
  assert.ok(written.includes(Buffer.concat([scan, Buffer.from([0x12, 0x34]), scan, Buffer.from([0x56, 0x78, 0xff, 0xd9])]).toString('latin1')), 'the scans stay as they were');
});

// Found in the pixel robustness review: a frame whose first fragment was a whole, clean codestream
// was copied with its later fragments unread, and what they held past EOI (text, a comment segment)
// left; with frames that cannot be told apart, a fragment continuing another was taken as clean.
test('bytes in the later fragments of a frame, past its end or in a fragment that cannot be read alone, do not leave', () => {
  const segment = (marker: number, body: Buffer) => Buffer.concat([Buffer.from([marker >> 8, marker & 0xff, (body.length + 2) >> 8, (body.length + 2) & 0xff]), body]);
  const scan = segment(0xffda, Buffer.from([1, 1, 0, 0, 63, 0]));
  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8]), scan, Buffer.from([0x12, 0x34, 0x56, 0x78, 0xff, 0xd9])]);
  const secret = Buffer.from('MRN600 Yablonski', 'latin1');
  const pixelData = (table: Buffer, fragments: Buffer[]) =>
    Buffer.concat([elementHeader(0x7fe00010, 'OB', 0xffffffff), definedItem(table), ...fragments.map((fragment) => definedItem(fragment)), Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0])]);
  const oneFrame = [encodeDataset(eightBitImagePixel({ rows: 8, columns: 8, frames: 1 }))];
  const firstOnly = Buffer.alloc(4);
  for (const [name, later] of [
    ['text', secret],
    ['a comment segment', segment(0xfffe, secret)],
  ] as const) {
    const { result, written } = deidentified('leak-jpeg-later-fragment', dataset([...patient(), ...oneFrame, pixelData(firstOnly, [jpeg, later])]), '1.2.840.10008.1.2.4.50');
    assert.equal(result.kind, 'deidentified', name);
    assert.ok(written !== undefined && !written.includes('Yablonski'), `${name} in a later fragment, past EOI, leaves`);
    assert.ok(written.includes(jpeg.toString('latin1')), `${name}: the codestream stays`);
  }
  // Two frames, the first cut in two fragments with a comment in the second; a table of three entries
  // for two frames: the frames cannot be told apart, and the continuation cannot be read on its own.
  const twoFrames = [encodeDataset(eightBitImagePixel({ rows: 8, columns: 8, frames: 2 }))];
  const cut = jpeg.length - 6;
  const fragments = [jpeg.subarray(0, cut), Buffer.concat([jpeg.subarray(cut, jpeg.length - 2), segment(0xfffe, secret), jpeg.subarray(jpeg.length - 2)]), jpeg];
  const threeEntries = Buffer.alloc(12);
  [0, 1, 2].forEach((offset, index) => threeEntries.writeUInt32LE(offset, index * 4));
  const { result } = deidentified('leak-jpeg-untold-continuation', dataset([...patient(), ...twoFrames, pixelData(threeEntries, fragments)]), '1.2.840.10008.1.2.4.50');
  assert.equal(result.kind, 'quarantined');
  assert.match((result as { reason: string }).reason, /frames cannot be told apart .* not a whole codestream/);
  // One frame, a table listing each of its three fragments (some writers do): every fragment is the
  // frame's, read whole, its comment removed (found in the review of the session's diff: held).
  const third = Math.floor(fragments[0]!.length / 2);
  const split = [fragments[0]!.subarray(0, third), fragments[0]!.subarray(third), fragments[1]!];
  const offsets = Buffer.alloc(12);
  [0, 8 + split[0]!.length, 16 + split[0]!.length + split[1]!.length].forEach((offset, index) => offsets.writeUInt32LE(offset, index * 4));
  const whole = deidentified('leak-jpeg-one-frame-listed', dataset([...patient(), ...oneFrame, pixelData(offsets, split)]), '1.2.840.10008.1.2.4.50');
  assert.equal(whole.result.kind, 'deidentified');
  assert.ok(whole.written !== undefined && !whole.written.includes('Yablonski'), 'the comment in the frame leaves');
});

// Found reviewing the codestream cleaning: a frame whose header could not be walked (a segment's length
// running past the frame, a frame that does not start with SOI, a JP2 file without its codestream) was
// copied whole, comment and all, as a frame "with nothing to clean".
test('a frame whose codestream cannot be read from its start holds the instance, whatever it carries', () => {
  const segment = (marker: number, body: Buffer, length = body.length + 2) => Buffer.concat([Buffer.from([marker >> 8, marker & 0xff, length >> 8, length & 0xff]), body]);
  const comment = segment(0xfffe, Buffer.from('Zabriskie^Quentin MRN600', 'latin1'));
  const scan = Buffer.concat([segment(0xffda, Buffer.from([1, 1, 0, 0, 63, 0])), Buffer.from([0x12, 0x34, 0xff, 0xd9])]);
  const readable = Buffer.concat([Buffer.from([0xff, 0xd8]), scan]);
  const image = [encodeDataset(eightBitImagePixel({ rows: 8, columns: 8, frames: 2 }))];
  const pixelData = (frames: Buffer[]) =>
    Buffer.concat([elementHeader(0x7fe00010, 'OB', 0xffffffff), definedItem(Buffer.alloc(0)), ...frames.map((frame) => definedItem(frame)), Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0])]);
  for (const [name, unreadable] of [
    ['a segment whose length runs past the frame', Buffer.concat([Buffer.from([0xff, 0xd8]), comment, segment(0xffe1, Buffer.from('EXIF'), 0x7000), scan])],
    ['no SOI before the comment', Buffer.concat([comment, scan])],
  ] as const) {
    const { result, written } = deidentified('leak-jpeg-unreadable', dataset([...patient(), ...image, pixelData([readable, unreadable])]), '1.2.840.10008.1.2.4.50');
    assert.equal(result.kind, 'quarantined', `${name}: ${written?.includes('Zabriskie') ? 'the comment left' : 'written'}`);
    assert.match((result as { reason: string }).reason, /frame 2 of 2 is not a codestream that can be read from its start/);
  }
  const { result } = deidentified('leak-jpeg-unreadable', dataset([...patient(), ...image, pixelData([readable, readable])]), '1.2.840.10008.1.2.4.50');
  assert.equal(result.kind, 'deidentified', 'readable frames with nothing to clean leave as they are');
});

// Found in a review: the reader takes group 0002 as File Meta Information only at the start of the
// file; an element of it further in (a writer's error) went through the rules for unlisted
// attributes, and an OB one such as Private Information (0002,0102) was kept with what it held.
test('a File Meta Information element inside the dataset is not passed on', () => {
  const body = Buffer.concat([dataset(patient()), encodeElement(0x00020102, 'OB', 'born 12 Jan 1960, MRN600 ')]);
  const { result, written } = deidentified('leak-meta-in-dataset', body);
  assert.equal(result.kind, 'deidentified');
  assert.ok(written !== undefined && !written.includes('born 12 Jan'), 'what the element held leaves with it');
});

// Found in the PHI review: a command element (group 0000) in a stored dataset, a writer's error, was
// kept as it came; an Error Comment (0000,0902) is free text.
test('a command element inside the dataset is not passed on', () => {
  const body = Buffer.concat([encodeElement(0x00000902, 'LO', 'failed for Zabriskie '), dataset(patient())]);
  const { result, written } = deidentified('leak-command-in-dataset', body);
  assert.equal(result.kind, 'deidentified');
  assert.ok(written !== undefined && !written.includes('Zabriskie') && !written.includes('failed for'), 'the comment leaves');
});

// Found in a review: group lengths were skipped by the engine and copied as they came when nothing
// else of their group changed; one that is not the four bytes of a UL (malformed) held text.
test('a group length that is not four bytes is not passed on', () => {
  const implicit = Buffer.concat([
    implicitElement(0x00080016, CT_IMAGE),
    implicitElement(0x00080018, SOP),
    implicitElement(0x00100010, 'Zabriskie^Quentin'),
    implicitElement(0x00100020, 'MRN600'),
    implicitElement(0x00180000, 'DOE JOHN DOB 19600112'),
    implicitElement(0x00180050, '1.5 '),
  ]);
  const { result, written } = deidentified('leak-group-length', implicit, '1.2.840.10008.1.2');
  assert.equal(result.kind, 'deidentified');
  assert.ok(written !== undefined && !written.includes('DOE JOHN'), 'what the group length held leaves');
  assert.ok(written.includes('1.5'), 'the rest of the group stays');
});
