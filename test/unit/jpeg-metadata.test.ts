/** The codestream's own metadata segments (src/pixels/jpeg-metadata.ts), on streams built by hand. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jpegMetadataIn, withoutJpegMetadata } from '../../src/pixels/jpeg-metadata.js';

function segment(marker: number, body: string | Buffer): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const header = Buffer.alloc(4);
  header.writeUInt16BE(marker, 0);
  header.writeUInt16BE(bytes.length + 2, 2);
  return Buffer.concat([header, bytes]);
}

const SOI = Buffer.from([0xff, 0xd8]);
/** A JPEG-LS frame header (SOF55) and a scan: what decoding needs, kept byte for byte. */
const FRAME_HEADER = segment(0xfff7, Buffer.from([8, 0, 4, 0, 4, 1, 1, 0x11, 0]));
const SCAN = Buffer.concat([segment(0xffda, Buffer.from([1, 1, 0, 0, 0, 0])), Buffer.from([0x12, 0xff, 0x7f, 0x34]), Buffer.from([0xff, 0xd9])]);

test('EXIF, other application segments and comments go; JPEG-LS colour transform, frame header and scan stay', () => {
  const colourTransform = segment(0xffe8, 'mrfx\u0002');
  const stream = Buffer.concat([SOI, segment(0xffe1, 'Exif\0\0Doe^John'), colourTransform, segment(0xfffe, 'Patient Doe^John'), Buffer.from([0xff]), FRAME_HEADER, SCAN]);
  assert.equal(jpegMetadataIn(stream), 'present');
  assert.deepEqual(withoutJpegMetadata(stream), Buffer.concat([SOI, colourTransform, FRAME_HEADER, SCAN]));
});

test('a stream without metadata, one that is not a marker stream, and one cut before its scan are left alone', () => {
  const clean = Buffer.concat([SOI, FRAME_HEADER, SCAN]);
  assert.equal(withoutJpegMetadata(clean), undefined);
  assert.equal(jpegMetadataIn(clean), 'none');
  assert.equal(withoutJpegMetadata(Buffer.from('not a JPEG stream')), undefined);
  // The first fragment of a frame whose headers go on in the next one: only the whole frame can tell.
  const cut = Buffer.concat([SOI, segment(0xfffe, 'a comment'), FRAME_HEADER.subarray(0, 6)]);
  assert.equal(jpegMetadataIn(cut), 'unknown');
  assert.equal(withoutJpegMetadata(cut), undefined);
});
