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
