/**
 * Zone files: the documented form parses, every problem names the zone and the key, and signatures
 * match by value (case and spacing aside), number, regular expression and numeric comparison, the first zone winning.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferSource, parseDataset } from '../../src/dicom/dataset-tree.js';
import { attributeReader } from '../../src/dicom/element-value.js';
import { compileZones, findZone, ZonesError } from '../../src/pixels/zones.js';
import { parseZones } from '../../src/pixels/zones-file.js';
import { elementHeader, encodeDataset } from '../helpers/synthetic-dicom.js';
import { zoneMask } from '../../src/pixels/ultrasound-regions.js';

const FILE = `
zones:
  - name: Acme Sono header band
    match: { Manufacturer: ACME, ManufacturerModelName: "/^Sono/", Rows: 480, Columns: 640 }
    rects: [[0, 0, 640, 48]]
  - name: Acme small screens
    match: { Manufacturer: ACME, Rows: "<= 600" }
    rects: [[0, 0, 100, 20], [0, 440, 640, 40]]
  - name: any ultrasound
    match: { Modality: US, ImageType: "DERIVED\\\\PRIMARY" }
    outsideUltrasoundRegions: true
`;

const MANUFACTURER = 0x00080070;
const MODEL = 0x00081090;
const ROWS = 0x00280010;
const COLUMNS = 0x00280011;
const MODALITY = 0x00080060;
const IMAGE_TYPE = 0x00080008;

function facts(values: Record<number, string>): (tag: number) => string | undefined {
  return (tag) => values[tag];
}

test('the documented form parses', () => {
  const zones = parseZones(FILE, 'zones.yaml');
  assert.equal(zones.length, 3);
  assert.deepEqual(zones[0]?.rects, [[0, 0, 640, 48]]);
  assert.equal(zones[0]?.outsideUltrasoundRegions, false);
  assert.equal(zones[2]?.outsideUltrasoundRegions, true);
  assert.deepEqual(zones[2]?.rects, []);
});

test('signatures match exact values, numbers, expressions and comparisons; the first match wins', () => {
  const zones = compileZones(parseZones(FILE, 'zones.yaml'));
  const sono = facts({ [MANUFACTURER]: 'ACME', [MODEL]: 'SonoStar 3', [ROWS]: '480', [COLUMNS]: '640' });
  assert.equal(findZone(zones, sono)?.rule.name, 'Acme Sono header band');
  // Not a Sono: the second zone's comparison decides.
  assert.equal(findZone(zones, facts({ [MANUFACTURER]: 'ACME', [MODEL]: 'Other', [ROWS]: '480', [COLUMNS]: '640' }))?.rule.name, 'Acme small screens');
  assert.equal(findZone(zones, facts({ [MANUFACTURER]: 'ACME', [ROWS]: '600' }))?.rule.name, 'Acme small screens');
  assert.equal(findZone(zones, facts({ [MANUFACTURER]: 'ACME', [ROWS]: '768' })), undefined);
  assert.equal(findZone(zones, facts({ [MANUFACTURER]: 'ACME' })), undefined, 'a missing attribute matches no comparison');
  assert.equal(findZone(zones, facts({ [MODALITY]: 'US', [IMAGE_TYPE]: 'DERIVED\\PRIMARY' }))?.rule.name, 'any ultrasound');
  assert.equal(findZone(zones, facts({ [MODALITY]: 'US', [IMAGE_TYPE]: 'ORIGINAL\\PRIMARY' })), undefined);
});

test('a plain string matches whatever the case and the spacing: a device that writes its name otherwise must not pass with its text', () => {
  // A zone that misses an instance with no other sign of burned-in text (a CT dose screen, say) lets
  // it out unredacted: nothing tells that the zone was meant for it. Case and spacing carry no meaning
  // in these values (PS3.5 6.2: leading and trailing spaces of CS, LO, SH are not significant).
  const zones = compileZones(
    parseZones(
      `zones:
  - { name: acme, match: { Manufacturer: "Acme Medical ", ManufacturerModelName: "Sono  Star", DeviceSerialNumber: "sn-42" }, rects: [[0, 0, 1, 1]] }
  - { name: types, match: { ImageType: "DERIVED\\\\SECONDARY" }, rects: [[0, 0, 1, 1]] }
`,
      'spacing.yaml',
    ),
  );
  const DEVICE_SERIAL_NUMBER = 0x00181000;
  assert.equal(findZone(zones, facts({ [MANUFACTURER]: 'ACME MEDICAL', [MODEL]: 'SONO STAR', [DEVICE_SERIAL_NUMBER]: 'SN-42' }))?.rule.name, 'acme');
  assert.equal(findZone(zones, facts({ [MANUFACTURER]: 'acme  medical', [MODEL]: 'Sono Star', [DEVICE_SERIAL_NUMBER]: ' sn-42' }))?.rule.name, 'acme');
  assert.equal(findZone(zones, facts({ [IMAGE_TYPE]: 'derived \\SECONDARY ' }))?.rule.name, 'types');
  // Other letters still differ.
  assert.equal(findZone(zones, facts({ [MANUFACTURER]: 'ACME MEDICAL', [MODEL]: 'SONOSTAR', [DEVICE_SERIAL_NUMBER]: 'SN-42' })), undefined);
  assert.equal(findZone(zones, facts({ [IMAGE_TYPE]: 'DERIVED\\PRIMARY' })), undefined);
});

test('zones of the same rectangles share a key; different rectangles do not', () => {
  const [a, b, c] = compileZones(
    parseZones(
      `zones:
  - { name: one, match: { Modality: US }, rects: [[1, 2, 3, 4]] }
  - { name: two, match: { Modality: XC }, rects: [[1, 2, 3, 4]] }
  - { name: three, match: { Modality: US }, rects: [[1, 2, 3, 5]] }
`,
      'keys.yaml',
    ),
  );
  assert.equal(a?.key, b?.key);
  assert.notEqual(a?.key, c?.key);
});

test('every problem names the zone and the key', () => {
  const problem = (text: string) => {
    try {
      parseZones(text, 'bad.yaml');
    } catch (error) {
      assert.ok(error instanceof ZonesError);
      return error.message;
    }
    assert.fail('no error');
  };
  assert.match(problem('zones:\n  - { name: a, match: { Manufactrer: ACME }, rects: [[0, 0, 1, 1]] }\n'), /zones\.0 \(a\): match\.\(a key hidden: .*\) is not a DICOM keyword/);
  // Found in the logs review: a list written without its brackets, { PatientID: MRN1, MRN2 }, is YAML
  // for MRN2 as a key, and the message (logged when a reload is refused) named it.
  const listWithoutBrackets = problem('zones:\n  - { name: a, match: { PatientID: MRN900, MRN901 }, rects: [[0, 0, 1, 1]] }\n');
  assert.doesNotMatch(listWithoutBrackets, /MRN90/);
  assert.match(listWithoutBrackets, /match\.\(a key hidden/);
  // Nor are the UIDs of a condition on them (studies withdrawn from research) quoted in an error.
  assert.doesNotMatch(problem('zones:\n  - { name: a, match: { StudyInstanceUID: "/^(1.2.999.555.1|1.2.9$/" }, rects: [[0, 0, 1, 1]] }\n'), /1\.2\.999/);
  assert.match(problem('zones:\n  - { name: a, match: { Modality: US } }\n'), /zones\.0: a zone needs rects, or outsideUltrasoundRegions: true/);
  assert.match(problem('zones:\n  - { name: a, match: { Modality: "/[/" }, rects: [[0, 0, 1, 1]] }\n'), /zones\.0 \(a\): match\.Modality: Invalid regular expression/);
  assert.match(problem('zones:\n  - { name: a, match: {}, rects: [[0, 0, 1, 1]] }\n'), /zones\.0\.match: a zone needs at least one attribute/);
  assert.match(problem('zones:\n  - { name: a, match: { Modality: US }, rects: [[0, 0, 0, 1]] }\n'), /zones\.0\.rects\.0\.2/);
  assert.match(problem('zones:\n  - { name: a, match: { Modality: "/US/g" }, rects: [[0, 0, 1, 1]] }\n'), /match\.Modality: the flags g and y are not allowed/);
  // Found in a review: a RegExp's own message quotes its pattern, and a zone may match on the patient.
  const patient = problem('zones:\n  - { name: a, match: { PatientID: "/(MRN12345/" }, rects: [[0, 0, 1, 1]] }\n');
  assert.match(patient, /match\.PatientID: not a valid regular expression \(hidden/);
  assert.ok(!patient.includes('MRN12345'), patient);
  assert.match(problem('zones: [\n'), /bad\.yaml: not valid YAML/);
  assert.match(problem('zone: []\n'), /bad\.yaml: .*zone/);
});

// Suspected in a review: signatures read every text value as Latin-1 whatever Specific Character Set
// said, so a device name with a letter outside ASCII in a UTF-8 dataset never matched the zone written
// for it (YAML is UTF-8), and its instances left unredacted.
test('a signature matches a device name in the dataset’s own character set', () => {
  const zones = compileZones(parseZones('zones:\n  - { name: Gerät, match: { Manufacturer: "Müller Medizintechnik" }, rects: [[0, 0, 8, 8]] }\n', 'zones.yaml'));
  for (const [charset, encoding] of [
    ['ISO_IR 192', 'utf8'],
    ['ISO_IR 100', 'latin1'],
  ] as const) {
    const bytes = encodeDataset([
      [0x00080005, 'CS', charset],
      [MANUFACTURER, 'LO', Buffer.from('Müller Medizintechnik ', encoding)],
    ]);
    const source = new BufferSource(bytes);
    assert.equal(findZone(zones, attributeReader(parseDataset(source, 'explicit-le'), source, false))?.rule.name, 'Gerät', charset);
  }
});

// Found in the pixel robustness review: a zone's mask worked each row's ranges out again for every
// frame, from every rectangle and ultrasound region (the file sets how many): 16,000 regions in a
// 1 MB instance of 128 frames ran past the task's five-minute limit. Each row is worked out once.
test("a zone's mask works each row out once, whatever the number of frames", () => {
  const item = (x0: number, x1: number) =>
    encodeDataset([
      [0x00186018, 'UL', x0],
      [0x0018601a, 'UL', 0],
      [0x0018601c, 'UL', x1],
      [0x0018601e, 'UL', 7],
    ]);
  const items = [item(0, 1), item(4, 5)].map((body) => Buffer.concat([Buffer.from([0xfe, 0xff, 0x00, 0xe0, body.length & 0xff, body.length >> 8, 0, 0]), body]));
  const sequence = Buffer.concat([elementHeader(0x00186011, 'SQ', items.reduce((sum, one) => sum + one.length, 0)), ...items]);
  const source = new BufferSource(sequence);
  const byTag = new Map(parseDataset(source, 'explicit-le').map((element) => [element.tag, element]));
  const geometry = { rows: 8, columns: 8, samplesPerPixel: 1, bitsAllocated: 8, bitsStored: 8, highBit: 7, signed: false, planar: false, photometric: 'MONOCHROME2', frames: 100, bigEndian: false };
  const [zone] = compileZones(parseZones('zones:\n  - { name: us, match: { Modality: US }, rects: [[6, 0, 1, 2]], outsideUltrasoundRegions: true }\n', 'zones.yaml'));
  assert.ok(zone);
  const mask = zoneMask(zone, byTag, source, false, geometry);
  assert.deepEqual(mask(0), [[2, 4], [6, 8]], 'outside the regions, and the rectangle');
  assert.deepEqual(mask(5), [[2, 4], [6, 8]]);
  assert.equal(mask(0), mask(0), 'the same ranges, not worked out again');
});
