/**
 * `gantry zones preview` says what de-identification will do with the instance: a matching zone over
 * an image that de-identification holds back anyway (an overlay in the unused bits of Pixel Data, which
 * the preview does not draw; a top-level attribute given twice) is reported as held, not as redacted.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderPreview } from '../../src/pixels/preview.js';
import { compileZones } from '../../src/pixels/zones.js';
import { parseZones } from '../../src/pixels/zones-file.js';
import { scratchDir } from '../helpers/scratch.js';
import { OVERLAY_IN_BIT_15, writeTinyImage } from '../helpers/pixel-images.js';
import type { Element } from '../helpers/synthetic-dicom.js';

const ZONES = compileZones(parseZones('zones:\n  - { name: acme, match: { Manufacturer: acme }, rects: [[0, 0, 4, 1]] }\n', 'zones.yaml'));

type Extra = Element[];

function writeImage(name: string, extra: Extra): string {
  return writeTinyImage(join(scratchDir('zones-preview'), name), { sopClassUid: '1.2.840.10008.5.1.4.1.1.7', modality: 'OT', bitsAllocated: 16, extra });
}

test('the preview of a plain image names its zone and no hold', () => {
  const preview = renderPreview(writeImage('plain.dcm', []), ZONES);
  assert.equal(preview.zone?.rule.name, 'acme');
  assert.equal(preview.held, undefined);
});

test('the preview says an image with an overlay in the unused bits of Pixel Data is held back, zone or not', () => {
  const preview = renderPreview(writeImage('overlay.dcm', OVERLAY_IN_BIT_15), ZONES);
  assert.equal(preview.zone?.rule.name, 'acme');
  assert.match(preview.held ?? '', /overlay \(group 6000\) lies in the unused bits of Pixel Data/);
});

test('the preview says an image with a top-level attribute given twice is held back', () => {
  const preview = renderPreview(writeImage('twice.dcm', [[0x00280301, 'CS', 'NO'], [0x00280301, 'CS', 'YES']]), ZONES);
  assert.match(preview.held ?? '', /\(0028,0301\) more than once/);
});
