import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { test } from 'node:test';
import { createHeaderScanner, DatasetFormatError, type ByteScanner } from '../../src/dicom/header-scanner.js';
import { BufferSource, parseDataset } from '../../src/dicom/dataset-tree.js';
import { decodeIndexedAttributes, INDEXED_TAGS } from '../../src/index/attributes.js';
import { elementHeader, encodeElement } from '../helpers/synthetic-dicom.js';

function implicitElement(tag: number, value: Buffer | string, length?: number): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value.length % 2 ? `${value} ` : value, 'latin1') : value;
  const header = Buffer.alloc(8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.writeUInt32LE(length ?? bytes.length, 4);
  return Buffer.concat([header, bytes]);
}

const ITEM = (length: number) => implicitElement(0xfffee000, Buffer.alloc(0), length);
const ITEM_END = implicitElement(0xfffee00d, Buffer.alloc(0), 0);
const SEQ_END = implicitElement(0xfffee0dd, Buffer.alloc(0), 0);
const UNDEFINED = 0xffffffff;

async function scan(scanner: ByteScanner, bytes: Buffer, chunk: number) {
  for (let offset = 0; offset < bytes.length; offset += chunk) scanner.push(bytes.subarray(offset, offset + chunk));
  return scanner.finish();
}

const pixelData = Buffer.concat([elementHeader(0x7fe00010, 'OW', 8), Buffer.alloc(8)]);

test('explicit VR little endian: index attributes are read and the scan stops at Pixel Data', async () => {
  const dataset = Buffer.concat([
    encodeElement(0x00080005, 'CS', 'ISO_IR 100'),
    encodeElement(0x00080018, 'UI', '1.2.3.4'),
    // A nested sequence of undefined length with an item of undefined length: skipped.
    Buffer.concat([elementHeader(0x00081140, 'SQ', UNDEFINED), ITEM(UNDEFINED), encodeElement(0x00081155, 'UI', '9.9'), ITEM_END, SEQ_END]),
    encodeElement(0x00100010, 'PN', Buffer.from('Buc^J\u00e9r\u00f4me', 'latin1')),
    encodeElement(0x0020000d, 'UI', '1.2.3'),
    encodeElement(0x00280010, 'US', 512),
    pixelData,
  ]);
  for (const chunk of [1, 3, 64, dataset.length]) {
    const result = await scan(createHeaderScanner('explicit-le', INDEXED_TAGS), dataset, chunk);
    assert.equal(result.reachedStop, true, `chunk ${chunk}`);
    const attributes = decodeIndexedAttributes(result.values);
    assert.equal(attributes.SOPInstanceUID, '1.2.3.4');
    assert.equal(attributes.StudyInstanceUID, '1.2.3');
    assert.equal(attributes.Rows, 512);
    assert.equal(attributes.PatientName, 'Buc^J\u00e9r\u00f4me');
    assert.equal(result.values.has(0x00081155), false, 'nested elements are not kept');
  }
});

test('implicit VR little endian with sequences of defined and undefined length', async () => {
  const dataset = Buffer.concat([
    implicitElement(0x00080016, '1.2.840.10008.5.1.4.1.1.2\0'),
    implicitElement(0x00082112, Buffer.concat([ITEM(10), Buffer.alloc(10)])),
    implicitElement(0x00089215, Buffer.alloc(0), UNDEFINED),
    ITEM(UNDEFINED),
    implicitElement(0x00080100, 'T-D1100'),
    implicitElement(0x00089215, Buffer.alloc(0), UNDEFINED),
    ITEM(4),
    Buffer.alloc(4),
    SEQ_END,
    ITEM_END,
    SEQ_END,
    implicitElement(0x0020000e, '1.2.5\0'),
    implicitElement(0x00200013, '42'),
    implicitElement(0x7fe00010, Buffer.alloc(16)),
  ]);
  for (const chunk of [1, 5, dataset.length]) {
    const attributes = decodeIndexedAttributes((await scan(createHeaderScanner('implicit-le', INDEXED_TAGS), dataset, chunk)).values);
    assert.equal(attributes.SOPClassUID, '1.2.840.10008.5.1.4.1.1.2');
    assert.equal(attributes.SeriesInstanceUID, '1.2.5');
    assert.equal(attributes.InstanceNumber, 42);
  }
});

test('explicit VR big endian: numbers are read big endian', async () => {
  const rows = Buffer.from([0x00, 0x28, 0x00, 0x10, 0x55, 0x53, 0x00, 0x02, 0x01, 0x00]); // (0028,0010) US 2 = 256
  const uid = Buffer.concat([Buffer.from([0x00, 0x20, 0x00, 0x0d, 0x55, 0x49, 0x00, 0x06]), Buffer.from('1.2.3\0')]);
  const attributes = decodeIndexedAttributes((await scan(createHeaderScanner('explicit-be', INDEXED_TAGS), Buffer.concat([uid, rows]), 2)).values);
  assert.equal(attributes.Rows, 256);
  assert.equal(attributes.StudyInstanceUID, '1.2.3');
});

test('deflated explicit VR little endian is inflated only as far as needed', async () => {
  const dataset = Buffer.concat([encodeElement(0x0020000d, 'UI', '1.2.840.99'), encodeElement(0x00080060, 'CS', 'MR'), pixelData, Buffer.alloc(100_000)]);
  const deflated = deflateRawSync(dataset);
  const attributes = decodeIndexedAttributes((await scan(createHeaderScanner('deflated-explicit-le', INDEXED_TAGS), deflated, 100)).values);
  assert.equal(attributes.StudyInstanceUID, '1.2.840.99');
  assert.equal(attributes.Modality, 'MR');
});

test('a dataset that ends inside an element, or with an invalid VR, is a format error', async () => {
  const truncated = encodeElement(0x00100010, 'PN', 'Doe^John').subarray(0, 10);
  await assert.rejects(scan(createHeaderScanner('explicit-le', INDEXED_TAGS), truncated, 4), DatasetFormatError);
  const badVr = Buffer.from([0x10, 0x00, 0x10, 0x00, 0x01, 0x02, 0x02, 0x00, 0x41, 0x41]);
  await assert.rejects(scan(createHeaderScanner('explicit-le', INDEXED_TAGS), badVr, 10), DatasetFormatError);
  const garbage = Buffer.from('this is not a deflate stream at all');
  await assert.rejects(scan(createHeaderScanner('deflated-explicit-le', INDEXED_TAGS), garbage, 10), DatasetFormatError);
});

// Found reviewing the receive path's messages: bytes read as an element header where the data broke
// (after a wrong length, say) were quoted in hex, tag and VR, and they may be part of a value: the
// error comment goes to the sender, the log and the quarantine reason.
test('a format error does not quote, in hex, bytes that may belong to a value; a known tag is still named', async () => {
  const lost = Buffer.concat([encodeElement(0x00080060, 'CS', 'MR'), Buffer.from('Quimby^zed', 'latin1')]);
  const error = await scan(createHeaderScanner('explicit-le', INDEXED_TAGS), lost, 100).then(() => undefined, (caught: Error) => caught);
  assert.ok(error instanceof DatasetFormatError);
  assert.doesNotMatch(error.message, /7551|6d69|6279|Quimby/i);
  assert.throws(() => parseDataset(new BufferSource(lost), 'explicit-le'), (caught: Error) => caught instanceof DatasetFormatError && !/7551|6d69|6279|Quimby/i.test(caught.message));
  const knownTag = Buffer.from([0x10, 0x00, 0x10, 0x00, 0x01, 0x02, 0x02, 0x00, 0x41, 0x41]);
  await assert.rejects(scan(createHeaderScanner('explicit-le', INDEXED_TAGS), knownTag, 10), /element \(0010,0010\) has no valid VR/);
});

// Found in the robustness review: the scanner kept a frame for every sequence and item of undefined
// length, unbounded, on the main thread: 300 MB of nesting grew the heap by 2 GB before any error.
test('sequences nested beyond 256 levels are a format error as soon as they are seen; 200 levels are read', async () => {
  const nested = (levels: number, closed: boolean) => {
    const open = Buffer.concat([elementHeader(0x0040a730, 'SQ', UNDEFINED), ITEM(UNDEFINED)]);
    const close = Buffer.concat([ITEM_END, SEQ_END]);
    return Buffer.concat([...Array<Buffer>(levels).fill(open), ...Array<Buffer>(closed ? levels : 0).fill(close)]);
  };
  const ok = await scan(createHeaderScanner('explicit-le', INDEXED_TAGS), Buffer.concat([nested(200, true), pixelData]), 1000);
  assert.equal(ok.reachedStop, true);
  const tooDeep = /nested more than 256 deep/;
  await assert.rejects(scan(createHeaderScanner('explicit-le', INDEXED_TAGS), Buffer.concat([nested(257, true), pixelData]), 1000), tooDeep);
  // Refused while the bytes stream in, not only at their end.
  const scanner = createHeaderScanner('explicit-le', INDEXED_TAGS);
  assert.throws(() => scanner.push(nested(300, false)), (error: unknown) => error instanceof DatasetFormatError && tooDeep.test(error.message));
  // The deflate scanner says so too.
  await assert.rejects(scan(createHeaderScanner('deflated-explicit-le', INDEXED_TAGS), deflateRawSync(nested(257, true)), 1000), tooDeep);
});

// Found in the robustness review: a kept value was joined to the bytes pending at every push, so a
// peer sending it in PDVs of one byte had the main thread copy 2 GB for 65 KB of Patient's Name.
test('a kept value arriving a byte at a time is read whole, without copying what came before at each byte', async () => {
  const name = `${'A'.repeat(65532)}^B`;
  const dataset = Buffer.concat([encodeElement(0x00100010, 'PN', name), encodeElement(0x00100020, 'LO', 'ID1'), pixelData]);
  const concat = Buffer.concat;
  let copied = 0;
  Buffer.concat = (list: readonly Uint8Array[], totalLength?: number) => {
    copied += list.reduce((sum, buffer) => sum + buffer.length, 0);
    return concat(list, totalLength);
  };
  let result;
  try {
    result = await scan(createHeaderScanner('explicit-le', INDEXED_TAGS), dataset, 1);
  } finally {
    Buffer.concat = concat;
  }
  assert.equal(result.reachedStop, true);
  assert.equal(result.values.get(0x00100010)?.bytes.toString('latin1'), name);
  assert.equal(result.values.get(0x00100020)?.bytes.toString('latin1'), 'ID1 ');
  assert.ok(copied < 1024 * 1024, `${copied} bytes copied for a dataset of ${dataset.length}`);
});

// Found in the robustness review: the 13 text attributes of the index were decoded whole, up to the
// 64 KiB the scanner keeps; in ISO 2022 (ESC sequences, or bytes alternating between G0 and G1) that
// took about 85 ms each, on the main thread, for values PS3.5 6.2 limits to 64 characters.
test('the index decodes at most 4 KiB of a text attribute', () => {
  const alternating = Buffer.from(Array.from({ length: 65534 }, (_, index) => (index % 2 ? 0xa4 : 0x41)));
  const values = new Map([
    [0x00080005, { vr: 'CS', bytes: Buffer.from('ISO 2022 IR 6\\ISO 2022 IR 87', 'latin1'), bigEndian: false }],
    [0x00100010, { vr: 'PN', bytes: alternating, bigEndian: false }],
    [0x00100020, { vr: 'LO', bytes: Buffer.from('ID1 ', 'latin1'), bigEndian: false }],
  ]);
  const attributes = decodeIndexedAttributes(values);
  assert.equal(attributes.PatientID, 'ID1');
  assert.ok((attributes.PatientName?.length ?? 0) <= 4096, `${attributes.PatientName?.length} characters`);
});

// Found in the quirks review: the receive path never read past Pixel Data, so a dataset that ends
// inside an element after it was acknowledged; a PatientID written after Pixel Data was not indexed;
// of a PatientName given twice the index kept the second, where readers show the first.
test('read to the end, the scanner refuses a dataset that ends inside an element after Pixel Data, and fills values found there', async () => {
  const scan = async (bytes: Buffer, readToEnd: boolean) => {
    const scanner = createHeaderScanner('explicit-le', INDEXED_TAGS, undefined, readToEnd);
    for (let at = 0; at < bytes.length; at += 5) scanner.push(bytes.subarray(at, at + 5));
    return decodeIndexedAttributes((await scanner.finish()).values);
  };
  const head = Buffer.concat([encodeElement(0x00100010, 'PN', 'First^Name'), encodeElement(0x00100010, 'PN', 'Second^Name')]);
  const after = encodeElement(0x00100020, 'LO', 'MRN-AFTER');
  const padding = Buffer.concat([elementHeader(0xfffcfffc, 'OB', 4), Buffer.alloc(4)]);
  const whole = Buffer.concat([head, pixelData, after, padding]);
  const read = await scan(whole, true);
  assert.equal(read.PatientName, 'First^Name', 'the first of a tag given twice');
  assert.equal(read.PatientID, 'MRN-AFTER', 'a value after Pixel Data fills one missing');
  assert.equal((await scan(whole, false)).PatientName, 'First^Name');
  for (const cut of [whole.subarray(0, whole.length - 2), Buffer.concat([whole, Buffer.from([1, 2, 3])]), whole.subarray(0, head.length + pixelData.length - 3)]) {
    await assert.rejects(scan(cut, true), (error: unknown) => error instanceof DatasetFormatError && /dataset ends inside an element/.test(error.message));
    await scan(cut, false); // up to Pixel Data only, as import reads files: no error
  }
});
