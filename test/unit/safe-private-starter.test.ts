/**
 * The starter list of safe private attributes (PS3.15 Table E.3.10-1): well-formed entries, each with
 * its source, and as many as the table has rows with a VR.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SAFE_PRIVATE_STARTER } from '../../src/deid/safe-private-starter.js';

/** PS3.5 Table 6.2-1. */
const VRS = new Set([
  'AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'OB', 'OD', 'OF', 'OL', 'OV',
  'OW', 'PN', 'SH', 'SL', 'SQ', 'SS', 'ST', 'SV', 'TM', 'UC', 'UI', 'UL', 'UN', 'UR', 'US', 'UT', 'UV',
]);

/** Rows of Table E.3.10-1 in the sources read, and those left out because the table gives no VR. */
const TABLE_ROWS = 479;
const ROWS_WITHOUT_VR = 5;

test('every tag is "gggg,xxee" with an odd group in upper-case hex', () => {
  for (const entry of SAFE_PRIVATE_STARTER) {
    assert.match(entry.tag, /^[0-9A-F]{3}[13579BDF],xx[0-9A-F]{2}$/, `${entry.creator} ${entry.tag}`);
  }
});

test('every VR is a DICOM VR (or two alternatives such as OW/OB, as the table gives them)', () => {
  for (const entry of SAFE_PRIVATE_STARTER) {
    const alternatives = entry.vr.split('/');
    assert.ok(alternatives.length >= 1 && alternatives.length <= 2, `${entry.creator} ${entry.tag} ${entry.vr}`);
    for (const vr of alternatives) assert.ok(VRS.has(vr), `${entry.creator} ${entry.tag}: VR "${entry.vr}"`);
  }
});

test('every creator is non-empty, at most 64 characters (LO) and has no trailing spaces', () => {
  for (const entry of SAFE_PRIVATE_STARTER) {
    assert.ok(entry.creator.length > 0, entry.tag);
    assert.ok(entry.creator.length <= 64, entry.creator);
    assert.equal(entry.creator, entry.creator.trimEnd());
    assert.ok(!entry.creator.includes('\\'), entry.creator);
  }
});

test('no (creator, tag) is listed twice', () => {
  const seen = new Set<string>();
  for (const entry of SAFE_PRIVATE_STARTER) {
    const key = `${entry.creator}|${entry.tag}`;
    assert.ok(!seen.has(key), `duplicate ${key}`);
    seen.add(key);
  }
});

test('every entry names its source', () => {
  for (const entry of SAFE_PRIVATE_STARTER) {
    assert.equal(typeof entry.source, 'string');
    assert.match(entry.source, /Table E\.3\.10-1/, `${entry.creator} ${entry.tag}`);
    assert.match(entry.source, /, row \d+$/, `${entry.creator} ${entry.tag}`);
  }
});

test('the list has every row of Table E.3.10-1 that has a VR', () => {
  assert.equal(SAFE_PRIVATE_STARTER.length, TABLE_ROWS - ROWS_WITHOUT_VR);
  assert.equal(SAFE_PRIVATE_STARTER.length, 474);
  const rows = SAFE_PRIVATE_STARTER.map((entry) => Number(/row (\d+)$/.exec(entry.source)?.[1]));
  assert.equal(new Set(rows).size, rows.length);
  assert.ok(rows.every((n) => n >= 1 && n <= TABLE_ROWS));
});

test('known rows are there as the table gives them', () => {
  const find = (creator: string, tag: string) =>
    SAFE_PRIVATE_STARTER.find((entry) => entry.creator === creator && entry.tag === tag);
  assert.deepEqual(
    { ...find('SIEMENS MR HEADER', '0019,xx0C'), source: undefined },
    { creator: 'SIEMENS MR HEADER', tag: '0019,xx0C', vr: 'IS', name: 'B Value', source: undefined },
  );
  assert.equal(find('GEMS_ACQU_01', '0019,xx23')?.vr, 'DS');
  assert.equal(find('GEMS_PARM_01', '0043,xx39')?.vr, 'IS');
  assert.equal(find('Philips Imaging DD 001', '2001,xx0A')?.name, 'Image Plane Number');
  assert.equal(find('SIEMENS Ultrasound SC2000', '0119,xx11'), undefined); // no VR in the table: left out
});
