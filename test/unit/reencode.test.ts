/**
 * Re-encoding between implicit and explicit VR little endian (a destination that accepted only the
 * other one): the same elements and values, with headers of the other encoding; "US or SS" elements,
 * which implicit VR reads as US, written SS in a dataset of signed pixels (PS3.3 C.7.6.1.1.4). And out
 * of explicit VR big endian: binary values byte-swapped, pixels of more than 16 bits refused.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferSource, parseDataset, type ElementNode } from '../../src/dicom/dataset-tree.js';
import { reencodeElements } from '../../src/dicom/reencode.js';
import { bigEndianElement, definedItem, encodeElement, implicitElementOf } from '../helpers/synthetic-dicom.js';

type LittleEndian = 'explicit-le' | 'implicit-le';

function reencode(dataset: Buffer, from: LittleEndian, to: LittleEndian): ElementNode[] {
  const source = new BufferSource(dataset);
  const out: Buffer[] = [];
  reencodeElements(parseDataset(source, from), source, from, to, (bytes) => out.push(Buffer.from(bytes)));
  return parseDataset(new BufferSource(Buffer.concat(out)), to);
}


function groupLengthAndBytes(elements: readonly ElementNode[], group: number): [said: number | undefined, counted: number] {
  const said = elements.find((element) => element.tag === group << 16)?.value?.readUInt32LE(0);
  const members = elements.filter((element) => element.tag >>> 16 === group && element.tag !== group << 16);
  return [said, members.reduce((sum, element) => sum + element.end - element.offset, 0)];
}

test('a group length counts the bytes of its group as re-encoded, not as they were (PS3.5 7.2)', () => {
  // OB, SQ and UT headers are 12 bytes in explicit VR and 8 in implicit, and sequences are written
  // with undefined length: the byte count of a group changes with the encoding.
  const explicitMembers = Buffer.concat([
    encodeElement(0x00080018, 'UI', '1.2.3.4'),
    encodeElement(0x00081115, 'SQ', Buffer.alloc(0)),
    encodeElement(0x00082111, 'ST', 'derived'),
  ]);
  const explicit = Buffer.concat([encodeElement(0x00080000, 'UL', explicitMembers.length), explicitMembers, encodeElement(0x00100010, 'PN', 'DOE^JOHN')]);
  const [said, counted] = groupLengthAndBytes(reencode(explicit, 'explicit-le', 'implicit-le'), 0x0008);
  assert.equal(said, counted, 'explicit to implicit');

  const implicitMembers = Buffer.concat([implicitElementOf(0x00080018, Buffer.from('1.2.3.4\0', 'latin1')), implicitElementOf(0x0008030e, Buffer.from('a private element ', 'latin1'))]);
  const lengthValue = Buffer.alloc(4);
  lengthValue.writeUInt32LE(implicitMembers.length);
  const implicit = Buffer.concat([implicitElementOf(0x00080000, lengthValue), implicitMembers, implicitElementOf(0x00100010, Buffer.from('DOE^JOHN', 'latin1'))]);
  const [saidImplicit, countedImplicit] = groupLengthAndBytes(reencode(implicit, 'implicit-le', 'explicit-le'), 0x0008);
  assert.equal(saidImplicit, countedImplicit, 'implicit to explicit');
});

const PixelRepresentation = 0x00280103;
const SmallestImagePixelValue = 0x00280106;
const PixelPaddingValue = 0x00280120;
const RedPaletteColorLookupTableDescriptor = 0x00281101;
const IconImageSequence = 0x00880200;

function int16s(...values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 2);
  values.forEach((value, index) => out.writeInt16LE(value, index * 2));
  return out;
}

function uint16s(...values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 2);
  values.forEach((value, index) => out.writeUInt16LE(value, index * 2));
  return out;
}

/** An implicit VR dataset whose pixels are signed or not, with an icon whose pixels are unsigned. */
function implicitDataset(pixelRepresentation: number): Buffer {
  const icon = Buffer.concat([implicitElementOf(PixelRepresentation, uint16s(0)), implicitElementOf(SmallestImagePixelValue, uint16s(5))]);
  return Buffer.concat([
    implicitElementOf(PixelRepresentation, uint16s(pixelRepresentation)),
    implicitElementOf(SmallestImagePixelValue, int16s(-100)),
    implicitElementOf(PixelPaddingValue, int16s(-2000)),
    implicitElementOf(RedPaletteColorLookupTableDescriptor, uint16s(256, 0, 16)),
    implicitElementOf(IconImageSequence, definedItem(icon)),
  ]);
}

function toExplicit(implicit: Buffer): ElementNode[] {
  return reencode(implicit, 'implicit-le', 'explicit-le');
}

function vrOfTag(elements: readonly ElementNode[], tag: number): string | undefined {
  return elements.find((element) => element.tag === tag)?.vr;
}

test('"US or SS" elements read in implicit VR are written SS when Pixel Representation is 1, US when 0', () => {
  const signed = toExplicit(implicitDataset(1));
  assert.equal(vrOfTag(signed, SmallestImagePixelValue), 'SS');
  assert.equal(vrOfTag(signed, PixelPaddingValue), 'SS');
  assert.equal(signed.find((element) => element.tag === PixelPaddingValue)?.value?.readInt16LE(0), -2000, 'the value as it was');
  assert.equal(vrOfTag(signed, RedPaletteColorLookupTableDescriptor), 'US', 'a LUT descriptor stays US (PS3.3 C.7.6.3.1.5)');
  const icon = signed.find((element) => element.tag === IconImageSequence)?.items?.[0]?.elements ?? [];
  assert.equal(vrOfTag(icon, SmallestImagePixelValue), 'US', "an icon's own Pixel Representation 0 rules inside it");
  const unsigned = toExplicit(implicitDataset(0));
  assert.equal(vrOfTag(unsigned, SmallestImagePixelValue), 'US');
  assert.equal(vrOfTag(unsigned, PixelPaddingValue), 'US');
});

test('explicit VR big endian into little endian: the values of binary VRs byte-swapped, text as it is (PS3.5 7.3)', () => {
  const be = (write: (out: Buffer) => void, size: number) => {
    const out = Buffer.alloc(size);
    write(out);
    return out;
  };
  const dataset = Buffer.concat([
    bigEndianElement(0x00080018, 'UI', Buffer.from('1.2.3.4\0', 'latin1')),
    bigEndianElement(0x00280009, 'AT', be((out) => (out.writeUInt16BE(0x3004, 0), out.writeUInt16BE(0x000c, 2)), 4)),
    bigEndianElement(0x00280010, 'US', be((out) => out.writeUInt16BE(2, 0), 2)),
    bigEndianElement(0x00280100, 'US', be((out) => out.writeUInt16BE(16, 0), 2)),
    bigEndianElement(0x00280106, 'SS', be((out) => out.writeInt16BE(-5, 0), 2)),
    bigEndianElement(0x00209157, 'UL', be((out) => out.writeUInt32BE(0x01020304, 0), 4)),
    bigEndianElement(0x00289503, 'SS', be((out) => (out.writeInt16BE(-1, 0), out.writeInt16BE(300, 2)), 4)),
    bigEndianElement(0x3004000e, 'DS', Buffer.from('1.5 ', 'latin1')),
    bigEndianElement(0x00189087, 'FD', be((out) => out.writeDoubleBE(1000.25, 0), 8)),
    bigEndianElement(0x7fe00010, 'OW', be((out) => [1, 2, 0x0102, 0xfffe].forEach((value, index) => out.writeUInt16BE(value, index * 2)), 8)),
  ]);
  const source = new BufferSource(dataset);
  const out: Buffer[] = [];
  reencodeElements(parseDataset(source, 'explicit-be'), source, 'explicit-be', 'explicit-le', (bytes) => out.push(Buffer.from(bytes)));
  const byTag = new Map(parseDataset(new BufferSource(Buffer.concat(out)), 'explicit-le').map((element) => [element.tag, element]));
  const value = (tag: number) => byTag.get(tag)?.value ?? Buffer.alloc(0);
  assert.equal(value(0x00080018).toString('latin1'), '1.2.3.4\0');
  assert.deepEqual([value(0x00280009).readUInt16LE(0), value(0x00280009).readUInt16LE(2)], [0x3004, 0x000c]);
  assert.equal(value(0x00280010).readUInt16LE(0), 2);
  assert.equal(value(0x00280106).readInt16LE(0), -5);
  assert.equal(value(0x00209157).readUInt32LE(0), 0x01020304);
  assert.deepEqual([value(0x00289503).readInt16LE(0), value(0x00289503).readInt16LE(2)], [-1, 300]);
  assert.equal(value(0x3004000e).toString('latin1'), '1.5 ');
  assert.equal(value(0x00189087).readDoubleLE(0), 1000.25);
  assert.deepEqual([0, 2, 4, 6].map((offset) => value(0x7fe00010).readUInt16LE(offset)), [1, 2, 0x0102, 0xfffe]);
});

test('big-endian Pixel Data in OW with 32 bits allocated is refused, not guessed at', () => {
  // 32-bit samples as big-endian words or as 16-bit words: DCMTK and pydicom read them differently.
  const bitsAllocated = Buffer.alloc(2);
  bitsAllocated.writeUInt16BE(32);
  const dataset = Buffer.concat([bigEndianElement(0x00280100, 'US', bitsAllocated), bigEndianElement(0x7fe00010, 'OW', Buffer.from([0, 0x13, 0x0e, 0xe8]))]);
  const source = new BufferSource(dataset);
  assert.throws(() => reencodeElements(parseDataset(source, 'explicit-be'), source, 'explicit-be', 'implicit-le', () => undefined), /32 bits allocated/);
});
