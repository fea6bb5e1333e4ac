import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodePart10Header, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, readFileMeta } from '../../src/dicom/part10.js';

/** One explicit VR little endian element of group 0002, built independently of part10.ts. */
function metaElement(elementNumber: number, vr: string, value: Buffer): Buffer {
  const long = vr === 'OB';
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(0x0002, 0);
  header.writeUInt16LE(elementNumber, 2);
  header.write(vr, 4, 'latin1');
  if (long) header.writeUInt32LE(value.length, 8);
  else header.writeUInt16LE(value.length, 6);
  return Buffer.concat([header, value]);
}

const uid = (text: string) => Buffer.from(text.length % 2 ? `${text}\0` : text, 'latin1');
const text = (value: string) => Buffer.from(value.length % 2 ? `${value} ` : value, 'latin1');

test('the Part 10 header is the preamble, DICM and the File Meta Information, byte for byte (PS3.10 7.1)', () => {
  // Odd and even lengths: UIDs are padded with NUL, SH and AE with a space.
  const meta = { mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.2', mediaStorageSopInstanceUid: '1.2.3.44', transferSyntaxUid: '1.2.840.10008.1.2.1', sourceApplicationEntityTitle: 'MODALITY1' };
  const body = Buffer.concat([
    metaElement(0x0001, 'OB', Buffer.from([0, 1])),
    metaElement(0x0002, 'UI', uid(meta.mediaStorageSopClassUid)),
    metaElement(0x0003, 'UI', uid(meta.mediaStorageSopInstanceUid)),
    metaElement(0x0010, 'UI', uid(meta.transferSyntaxUid)),
    metaElement(0x0012, 'UI', uid(IMPLEMENTATION_CLASS_UID)),
    metaElement(0x0013, 'SH', text(IMPLEMENTATION_VERSION_NAME)),
    metaElement(0x0016, 'AE', text(meta.sourceApplicationEntityTitle)),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(body.length);
  const expected = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), metaElement(0x0000, 'UL', groupLength), body]);
  assert.deepEqual(encodePart10Header(meta), expected);
});

test('without a source AE title the header has no (0002,0016), and its group length still counts every byte after it', () => {
  const header = encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.7', mediaStorageSopInstanceUid: '1.2.3.4.5', transferSyntaxUid: '1.2.840.10008.1.2' });
  const { elements, datasetOffset } = readFileMeta(header);
  assert.equal(datasetOffset, header.length);
  assert.equal(elements.has(0x0016), false);
  assert.equal((elements.get(0x0000) as Buffer).readUInt32LE(0), header.length - 128 - 4 - 12);
  assert.equal((elements.get(0x0003) as Buffer).toString('latin1'), '1.2.3.4.5\0');
  assert.equal(header.subarray(0, 128).every((byte) => byte === 0), true, 'the preamble is zeros');
});

// Found in a review: a File Meta Information longer than the 64 KiB first read (a private element) had
// its dataset read from inside the meta, and an element running past the end of the file gave a
// dataset offset beyond it (an empty dataset, or a negative length) instead of a format error.
test('a File Meta Information longer than the first read is skipped whole; one running past the file is a format error', async () => {
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { scratchDir } = await import('../helpers/scratch.js');
  const { encodeDataset } = await import('../helpers/synthetic-dicom.js');
  const { scanIndexedAttributes } = await import('../../src/index/scan-file.js');
  const { scanForImport } = await import('../../src/toolkit/import-scan.js');
  const { parseFile } = await import('../../src/dicom/dataset-tree.js');
  const { DatasetFormatError } = await import('../../src/dicom/header-scanner.js');
  const sop = '1.2.826.0.1.3680043.9.7433.77.1';
  const header = encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.7', mediaStorageSopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.1' });
  const dataset = encodeDataset([
    [0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.7'],
    [0x00080018, 'UI', sop],
    [0x00100020, 'LO', 'META-LONG'],
    [0x0020000d, 'UI', '1.2.826.0.1.3680043.9.7433.77.2'],
    [0x0020000e, 'UI', '1.2.826.0.1.3680043.9.7433.77.3'],
  ]);
  const withPrivate = (privateValueLength: number, declaredLength = privateValueLength) => {
    const creator = metaElement(0x0100, 'UI', uid('1.2.3.4'));
    const information = metaElement(0x0102, 'OB', Buffer.alloc(privateValueLength, 0x41));
    information.writeUInt32LE(declaredLength, 8);
    const file = Buffer.concat([header, creator, information, dataset]);
    file.writeUInt32LE(file.readUInt32LE(140) + creator.length + information.length, 140);
    return file;
  };
  const dir = scratchDir('part10-long-meta');
  const long = join(dir, 'long-meta.dcm');
  writeFileSync(long, withPrivate(70 * 1024));
  assert.equal((await scanIndexedAttributes(long)).PatientID, 'META-LONG', 'the index reads the dataset after the meta');
  const scanned = await scanForImport(long);
  assert.equal(scanned.kind, 'dicom', JSON.stringify(scanned));
  assert.equal((scanned as { attributes: { PatientID?: string } }).attributes.PatientID, 'META-LONG', 'import reads the dataset after the meta');
  const parsed = parseFile(long);
  parsed.close();
  assert.ok(parsed.elements.some((element) => element.tag === 0x00100020), 'the parser finds the dataset');
  const broken = join(dir, 'past-the-end.dcm');
  writeFileSync(broken, withPrivate(16, 10 * 1024 * 1024));
  assert.throws(() => parseFile(broken), (error: unknown) => error instanceof DatasetFormatError && /\(0002,0102\) runs past the end of the file/.test(error.message));
  const refused = await scanForImport(broken);
  assert.deepEqual([refused.kind, (refused as { reason?: string }).reason], ['unreadable', 'File Meta Information element (0002,0102) runs past the end of the file']);
});

// Found in a review: the meta was read while the group was 0002, so group 0002 elements at the start
// of the dataset (a sender that put its file's meta there) were taken for the file's: the stored
// file's transfer syntax became JPEG Baseline over native pixels, and its UIDs another's.
test("the File Meta Information ends where its group length says; group 0002 elements after it are the dataset's", () => {
  const header = encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.7', mediaStorageSopInstanceUid: '1.2.3.4', transferSyntaxUid: '1.2.840.10008.1.2.1' });
  const inDataset = Buffer.concat([metaElement(0x0003, 'UI', uid('1.2.3.999')), metaElement(0x0010, 'UI', uid('1.2.840.10008.1.2.4.50'))]);
  const file = Buffer.concat([header, inDataset, Buffer.from([0x08, 0x00, 0x16, 0x00, 0x55, 0x49, 2, 0, 0x31, 0])]);
  const meta = readFileMeta(file);
  assert.equal(meta.datasetOffset, header.length);
  assert.equal(meta.elements.get(0x0010)?.toString('latin1'), '1.2.840.10008.1.2.1\0');
  assert.equal(meta.elements.get(0x0003)?.toString('latin1'), '1.2.3.4\0');
  // A group length that ends inside an element, or short of elements that go on in order (writers
  // that counted wrong), is not followed.
  const wrong = Buffer.from(header);
  wrong.writeUInt32LE(wrong.readUInt32LE(140) - 3, 140);
  assert.equal(readFileMeta(wrong).datasetOffset, header.length);
  const implementationVersion = metaElement(0x0013, 'SH', text(IMPLEMENTATION_VERSION_NAME));
  const short = Buffer.concat([header, Buffer.from([0x08, 0x00, 0x16, 0x00, 0x55, 0x49, 2, 0, 0x31, 0])]);
  short.writeUInt32LE(short.readUInt32LE(140) - implementationVersion.length, 140);
  assert.equal(readFileMeta(short).datasetOffset, header.length, 'the last element, left out of the count, is still the meta\'s');
  // A stray meta whose first element goes on in order after the real one's last: read up to where
  // the order breaks, no further.
  const strayAfter = Buffer.concat([header, metaElement(0x0016, 'AE', text('STRAY')), inDataset]);
  const stray = readFileMeta(strayAfter);
  assert.equal(stray.datasetOffset, header.length + metaElement(0x0016, 'AE', text('STRAY')).length);
  assert.equal(stray.elements.get(0x0010)?.toString('latin1'), '1.2.840.10008.1.2.1\0');
});
