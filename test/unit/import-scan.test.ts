/** gantry import's reading of the files it is given, and the index's reading of stored copies. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { scanIndexedAttributes } from '../../src/index/scan-file.js';
import { scanForImport } from '../../src/toolkit/import-scan.js';
import { scratchDir } from '../helpers/scratch.js';
import { elementHeader, encodeDataset } from '../helpers/synthetic-dicom.js';

// Found in the robustness review: the file was pushed into the deflate scanner without a wait, faster
// than it inflates, and past 4 MB queued the scan gave up before a byte was inflated. A valid deflated
// file of that size was "unreadable: no StudyInstanceUID, no SeriesInstanceUID".
test('a deflated file of several MB is read for import and for the index', async () => {
  const sop = '1.2.826.0.1.3680043.9.7433.78.1';
  const sopClass = '1.2.840.10008.5.1.4.1.1.7';
  const header = encodePart10Header({ mediaStorageSopClassUid: sopClass, mediaStorageSopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.1.99' });
  const pixels = randomBytes(6 * 1024 * 1024);
  const dataset = Buffer.concat([
    encodeDataset([
      [0x00080016, 'UI', sopClass],
      [0x00080018, 'UI', sop],
      [0x00100020, 'LO', 'DEFLATED-BIG'],
      [0x0020000d, 'UI', '1.2.826.0.1.3680043.9.7433.78.2'],
      [0x0020000e, 'UI', '1.2.826.0.1.3680043.9.7433.78.3'],
    ]),
    elementHeader(0x7fe00010, 'OB', pixels.length),
    pixels,
  ]);
  const path = join(scratchDir('import-scan-deflated'), 'deflated.dcm');
  writeFileSync(path, Buffer.concat([header, deflateRawSync(dataset)]));
  const scanned = await scanForImport(path);
  assert.equal(scanned.kind, 'dicom', JSON.stringify(scanned));
  assert.equal((scanned as { studyInstanceUid: string }).studyInstanceUid, '1.2.826.0.1.3680043.9.7433.78.2');
  assert.equal((await scanIndexedAttributes(path)).PatientID, 'DEFLATED-BIG');
});

// Found in the toolkit review: a file cut short inside Pixel Data (a copy interrupted) has a whole
// header, was indexed as good (exit 0), and the whole copy of the instance found later was refused
// as a duplicate of it; export then failed it.
test('a file cut short inside its Pixel Data is unreadable for import, native or encapsulated; a whole one is not', async () => {
  const dir = scratchDir('import-scan-cut');
  const sop = '1.2.826.0.1.3680043.9.7433.79.1';
  const sopClass = '1.2.840.10008.5.1.4.1.1.7';
  const header = (syntax: string) => encodePart10Header({ mediaStorageSopClassUid: sopClass, mediaStorageSopInstanceUid: sop, transferSyntaxUid: syntax });
  const elements = encodeDataset([
    [0x00080016, 'UI', sopClass],
    [0x00080018, 'UI', sop],
    [0x0020000d, 'UI', '1.2.826.0.1.3680043.9.7433.79.2'],
    [0x0020000e, 'UI', '1.2.826.0.1.3680043.9.7433.79.3'],
  ]);
  const pixels = randomBytes(40_000);
  const native = Buffer.concat([header('1.2.840.10008.1.2.1'), elements, elementHeader(0x7fe00010, 'OB', pixels.length), pixels]);
  const item = (bytes: Buffer) => Buffer.concat([Buffer.from([0xfe, 0xff, 0x00, 0xe0]), uint32(bytes.length), bytes]);
  const encapsulated = Buffer.concat([
    header('1.2.840.10008.1.2.5'),
    elements,
    Buffer.from([0xe0, 0x7f, 0x10, 0x00]), Buffer.from('OB\0\0', 'latin1'), uint32(0xffffffff),
    item(Buffer.alloc(0)),
    item(pixels.subarray(0, 20_000)),
    item(pixels.subarray(20_000)),
    Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]),
  ]);
  const cases: Array<[string, Buffer, string]> = [
    ['native', native, 'cut short: \\(7FE0,0010\\) needs 40000 bytes, \\d+ are in the file'],
    ['encapsulated', encapsulated, "cut short: \\(7FE0,0010\\)'s fragments end without their sequence delimiter"],
  ];
  // Bytes after Pixel Data that are no element fail de-identification as surely: a padding element is one.
  const tailPath = join(dir, 'tail-garbage.dcm');
  writeFileSync(tailPath, Buffer.concat([native, Buffer.from([1, 2, 3, 4, 5])]));
  const tail = await scanForImport(tailPath);
  assert.equal(tail.kind, 'unreadable', JSON.stringify(tail));
  assert.match((tail as { reason: string }).reason, /cut short after Pixel Data: dataset ends inside an element/);
  const paddedPath = join(dir, 'tail-padding.dcm');
  writeFileSync(paddedPath, Buffer.concat([native, elementHeader(0xfffcfffc, 'OB', 4), Buffer.alloc(4)]));
  assert.equal((await scanForImport(paddedPath)).kind, 'dicom', 'a padding element after Pixel Data');
  for (const [name, whole, reason] of cases) {
    const wholePath = join(dir, `${name}-whole.dcm`);
    writeFileSync(wholePath, whole);
    assert.equal((await scanForImport(wholePath)).kind, 'dicom', `${name}, whole`);
    for (const cut of [whole.length - 8, whole.length - 25_000]) {
      const path = join(dir, `${name}-${cut}.dcm`);
      writeFileSync(path, whole.subarray(0, cut));
      const scanned = await scanForImport(path);
      assert.equal(scanned.kind, 'unreadable', `${name} cut at ${cut}: ${JSON.stringify(scanned)}`);
      assert.match((scanned as { reason: string }).reason, new RegExp(reason), name);
    }
  }
});

function uint32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value);
  return bytes;
}
