/**
 * Re-encoding from implicit to explicit VR little endian (a destination that accepts only explicit VR):
 * "US or SS" elements, which implicit VR reads as US, are written SS in a dataset of signed pixels
 * (PS3.3 C.7.6.1.1.4), so that a value of -100 stays -100; values are copied byte for byte.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferSource, parseDataset, type ElementNode } from '../../src/dicom/dataset-tree.js';
import { reencodeElements } from '../../src/dicom/reencode.js';

const PixelRepresentation = 0x00280103;
const SmallestImagePixelValue = 0x00280106;
const PixelPaddingValue = 0x00280120;
const RedPaletteColorLookupTableDescriptor = 0x00281101;
const IconImageSequence = 0x00880200;

function implicitElement(tag: number, value: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.writeUInt32LE(value.length, 4);
  return Buffer.concat([header, value]);
}

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
  const icon = Buffer.concat([implicitElement(PixelRepresentation, uint16s(0)), implicitElement(SmallestImagePixelValue, uint16s(5))]);
  const item = Buffer.concat([Buffer.from([0xfe, 0xff, 0x00, 0xe0]), uint16s(icon.length & 0xffff, icon.length >>> 16), icon]);
  return Buffer.concat([
    implicitElement(PixelRepresentation, uint16s(pixelRepresentation)),
    implicitElement(SmallestImagePixelValue, int16s(-100)),
    implicitElement(PixelPaddingValue, int16s(-2000)),
    implicitElement(RedPaletteColorLookupTableDescriptor, uint16s(256, 0, 16)),
    implicitElement(IconImageSequence, item),
  ]);
}

function toExplicit(implicit: Buffer): ElementNode[] {
  const source = new BufferSource(implicit);
  const parts: Buffer[] = [];
  reencodeElements(parseDataset(source, 'implicit-le'), source, 'implicit-le', 'explicit-le', (bytes) => parts.push(Buffer.from(bytes)));
  return parseDataset(new BufferSource(Buffer.concat(parts)), 'explicit-le');
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
