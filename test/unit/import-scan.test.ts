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
