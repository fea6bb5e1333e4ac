/**
 * `gantry zones preview` says what de-identification will do with the instance: a matching zone over
 * an image that de-identification holds back anyway (an overlay in the unused bits of Pixel Data, which
 * the preview does not draw; a top-level attribute given twice) is reported as held, not as redacted.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PIXEL_DATA } from '../../src/dicom/dataset-tree.js';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { renderPreview } from '../../src/pixels/preview.js';
import { compileZones } from '../../src/pixels/zones.js';
import { parseZones } from '../../src/pixels/zones-file.js';
import { scratchDir } from '../helpers/scratch.js';
import { encodeDataset, EXPLICIT_LE, newUid } from '../helpers/synthetic-dicom.js';

const ZONES = compileZones(parseZones('zones:\n  - { name: acme, match: { Manufacturer: acme }, rects: [[0, 0, 4, 1]] }\n', 'zones.yaml'));

type Extra = Array<[number, string, string | number | Buffer]>;

function writeImage(name: string, extra: Extra): string {
  const sopClassUid = '1.2.840.10008.5.1.4.1.1.7'; // Secondary Capture
  const sopInstanceUid = newUid();
  const path = join(scratchDir('zones-preview'), name);
  const elements: Extra = [
    [0x00080016, 'UI', sopClassUid],
    [0x00080018, 'UI', sopInstanceUid],
    [0x00080060, 'CS', 'OT'],
    [0x00080070, 'LO', 'ACME'],
    [0x0020000d, 'UI', newUid()],
    [0x0020000e, 'UI', newUid()],
    [0x00280002, 'US', 1],
    [0x00280004, 'CS', 'MONOCHROME2'],
    [0x00280010, 'US', 4],
    [0x00280011, 'US', 4],
    [0x00280100, 'US', 16],
    [0x00280101, 'US', 12],
    [0x00280102, 'US', 11],
    [0x00280103, 'US', 0],
    ...extra,
    [PIXEL_DATA, 'OW', Buffer.alloc(32, 0x80)],
  ];
  writeFileSync(
    path,
    Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: sopClassUid, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: EXPLICIT_LE }), encodeDataset(elements)]),
  );
  return path;
}

test('the preview of a plain image names its zone and no hold', () => {
  const preview = renderPreview(writeImage('plain.dcm', []), ZONES);
  assert.equal(preview.zone?.rule.name, 'acme');
  assert.equal(preview.held, undefined);
});

test('the preview says an image with an overlay in the unused bits of Pixel Data is held back, zone or not', () => {
  const overlay: Extra = [
    [0x60000010, 'US', 4],
    [0x60000011, 'US', 4],
    [0x60000040, 'CS', 'G'],
    [0x60000050, 'SS', Buffer.from([1, 0, 1, 0])],
    [0x60000100, 'US', 16],
    [0x60000102, 'US', 15],
  ];
  const preview = renderPreview(writeImage('overlay.dcm', overlay), ZONES);
  assert.equal(preview.zone?.rule.name, 'acme');
  assert.match(preview.held ?? '', /overlay \(group 6000\) lies in the unused bits of Pixel Data/);
});

test('the preview says an image with a top-level attribute given twice is held back', () => {
  const preview = renderPreview(writeImage('twice.dcm', [[0x00280301, 'CS', 'NO'], [0x00280301, 'CS', 'YES']]), ZONES);
  assert.match(preview.held ?? '', /\(0028,0301\) more than once/);
});
