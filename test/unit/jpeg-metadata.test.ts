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

// T.81 B.2.4 lets comments and application segments come before any scan, not only the first; and a
// decoder stops at EOI, so bytes after it reach no viewer but leave with the object. Both were copied.
test('segments between scans are cleaned as the header is, and bytes after EOI go', () => {
  /** A baseline frame header and two scans of one component each (non-interleaved). */
  const sof = segment(0xffc0, Buffer.from([8, 0, 2, 0, 2, 2, 1, 0x11, 0, 2, 0x11, 0]));
  const huffman = segment(0xffc4, Buffer.from([0x00, ...Array<number>(16).fill(0)]));
  // Entropy-coded data with a stuffed 0xFF, a restart marker and fill bytes before the next marker.
  const scan = (component: number) => Buffer.concat([segment(0xffda, Buffer.from([1, component, 0, 0, 63, 0])), Buffer.from([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0xff])]);
  const comment = segment(0xfffe, 'Zabriskie^Quentin');
  const exif = segment(0xffe1, 'Exif\0\0MRN600');
  const EOI = Buffer.from([0xff, 0xd9]);
  const stream = Buffer.concat([SOI, sof, huffman, scan(1), comment, huffman, exif, scan(2), EOI, Buffer.from('MRN600 Zabriskie', 'latin1')]);
  assert.equal(jpegMetadataIn(stream), 'present');
  assert.deepEqual(withoutJpegMetadata(stream), Buffer.concat([SOI, sof, huffman, scan(1), huffman, scan(2), EOI]));
  // A stream whose only extra is after its end: found too.
  const tailOnly = Buffer.concat([SOI, sof, scan(1), EOI, Buffer.from('MRN600', 'latin1')]);
  assert.equal(jpegMetadataIn(tailOnly), 'present');
  assert.deepEqual(withoutJpegMetadata(tailOnly), Buffer.concat([SOI, sof, scan(1), EOI]));
});

// Found in review: RSTn and TEM stand alone (T.81 Table B.1), and a decoder passes a stray one anywhere
// (libjpeg's read_markers skips them as parameterless); the walker read the two bytes after one as a
// length, so a comment right behind it made the frame unreadable and it was copied whole, or a
// crafted length carried the comment through as part of the "segment".
test('a restart or TEM marker outside a scan is two bytes, and the comment after it goes', () => {
  const sof = segment(0xffc0, Buffer.from([8, 0, 2, 0, 2, 1, 1, 0x11, 0]));
  const scan = Buffer.concat([segment(0xffda, Buffer.from([1, 1, 0, 0, 63, 0])), Buffer.from([0x12, 0x34])]);
  const comment = segment(0xfffe, 'Zabriskie^Quentin');
  const EOI = Buffer.from([0xff, 0xd9]);
  for (const marker of [0xffd0, 0xffd7, 0xff01]) {
    const stray = Buffer.from([marker >>> 8, marker & 0xff]);
    const inHeader = Buffer.concat([SOI, stray, comment, sof, scan, EOI]);
    assert.equal(jpegMetadataIn(inHeader), 'present', `${marker.toString(16)} in the header`);
    assert.deepEqual(withoutJpegMetadata(inHeader), Buffer.concat([SOI, stray, sof, scan, EOI]));
    const huffman = segment(0xffc4, Buffer.from([0x00, ...Array<number>(16).fill(0)]));
    const betweenScans = Buffer.concat([SOI, sof, scan, huffman, stray, comment, scan, EOI]);
    assert.deepEqual(withoutJpegMetadata(betweenScans), Buffer.concat([SOI, sof, scan, huffman, stray, scan, EOI]), `${marker.toString(16)} between scans`);
  }
});

// Found in review: an Adobe segment was kept whole whatever its length, and a decoder reads only its
// first 12 bytes (libjpeg's examine_app14 skips the rest), so text appended to it left with the frame.
test("an Adobe segment keeps its 12 bytes (the colour transform) and loses what follows them", () => {
  const adobe = Buffer.from([0x41, 0x64, 0x6f, 0x62, 0x65, 0, 100, 0, 0, 0, 0, 1]);
  const sof = segment(0xffc0, Buffer.from([8, 0, 2, 0, 2, 1, 1, 0x11, 0]));
  const scan = Buffer.concat([segment(0xffda, Buffer.from([1, 1, 0, 0, 63, 0])), Buffer.from([0x12, 0x34, 0xff, 0xd9])]);
  const padded = Buffer.concat([SOI, segment(0xffee, Buffer.concat([adobe, Buffer.from('Zabriskie^Quentin', 'latin1')])), sof, scan]);
  assert.equal(jpegMetadataIn(padded), 'present');
  assert.deepEqual(withoutJpegMetadata(padded), Buffer.concat([SOI, segment(0xffee, adobe), sof, scan]));
  assert.equal(withoutJpegMetadata(Buffer.concat([SOI, segment(0xffee, adobe), sof, scan])), undefined, 'a plain Adobe segment stays');
});

// Found in review: a JPEG-LS colour transform segment (APP8 "mrfx") was kept whole whatever its
// length: pydicom's CT_small.dcm encoded by dcmcjpls, with "mrfx", 0 and a name after SOI, decodes with
// dcmdjpls and gdcmconv to the same samples, and the name left. Its tail is zeroed, not cut: decoders
// differ on a longer segment (CharLS 2 reads it only when it is 5 bytes long), so a cut could change
// what one of them decodes; zeros change none.
test('a JPEG-LS colour transform segment keeps its 5 bytes and length, and what follows them is zeroed', () => {
  const tail = Buffer.concat([SOI, segment(0xffe8, Buffer.concat([Buffer.from('mrfx\u0001', 'latin1'), Buffer.from('Zabriskie', 'latin1')])), FRAME_HEADER, SCAN]);
  assert.equal(jpegMetadataIn(tail), 'present');
  assert.deepEqual(withoutJpegMetadata(tail), Buffer.concat([SOI, segment(0xffe8, Buffer.concat([Buffer.from('mrfx\u0001', 'latin1'), Buffer.alloc(9)])), FRAME_HEADER, SCAN]));
});

test('padding after EOI, JPEG-LS bit stuffing and a scan cut before its end are left alone', () => {
  for (const padding of [0x00, 0xff]) {
    const padded = Buffer.concat([SOI, FRAME_HEADER, SCAN, Buffer.from([padding])]);
    assert.equal(jpegMetadataIn(padded), 'none');
    assert.equal(withoutJpegMetadata(padded), undefined);
  }
  // 0xFF 0x7F in SCAN is JPEG-LS data (T.87 A.1), not a marker; 0xFF 0xFE (COM) after it would be.
  const lsComment = Buffer.concat([SOI, FRAME_HEADER, SCAN.subarray(0, -2), segment(0xfffe, 'Doe^John'), Buffer.from([0xff, 0xd9])]);
  assert.deepEqual(withoutJpegMetadata(lsComment), Buffer.concat([SOI, FRAME_HEADER, SCAN]));
  // The first fragment of a frame whose scan goes on in the next one: only the whole frame can tell.
  const cut = Buffer.concat([SOI, FRAME_HEADER, SCAN.subarray(0, -2)]);
  assert.equal(jpegMetadataIn(cut), 'unknown');
  assert.equal(withoutJpegMetadata(cut), undefined);
});

// Found reviewing the walker: a stream that no EOI ends kept everything after its first scan, and
// decoders read such a stream as far as it goes; bytes between segments, which decoders skip, were kept.
test('a stream cut short is cleaned as far as it goes, and ends with EOI; bytes between segments go', () => {
  const scanData = SCAN.subarray(0, -2);
  const comment = segment(0xfffe, 'Patient Doe^John');
  const cutAfterComment = Buffer.concat([SOI, FRAME_HEADER, scanData, comment, scanData]);
  assert.equal(jpegMetadataIn(cutAfterComment), 'present');
  // Cleaned, it ends with an EOI: scan data last is what gdcmconv does not decode.
  assert.deepEqual(withoutJpegMetadata(cutAfterComment), Buffer.concat([SOI, FRAME_HEADER, scanData, scanData, Buffer.from([0xff, 0xd9])]));
  const cutInComment = Buffer.concat([SOI, FRAME_HEADER, scanData, comment.subarray(0, 10)]);
  assert.equal(jpegMetadataIn(cutInComment), 'present', 'a first fragment cut inside a comment has metadata');
  assert.deepEqual(withoutJpegMetadata(cutInComment), Buffer.concat([SOI, FRAME_HEADER, scanData, Buffer.from([0xff, 0xd9])]));
  const extraneous = Buffer.concat([SOI, FRAME_HEADER, scanData, segment(0xffdd, Buffer.from([0, 0])), Buffer.from('Doe^John', 'latin1'), SCAN]);
  assert.deepEqual(withoutJpegMetadata(extraneous), Buffer.concat([SOI, FRAME_HEADER, scanData, segment(0xffdd, Buffer.from([0, 0])), SCAN]));
  const extraneousInHeader = Buffer.concat([SOI, Buffer.from('Doe^John', 'latin1'), FRAME_HEADER, SCAN]);
  assert.equal(jpegMetadataIn(extraneousInHeader), 'present');
  assert.deepEqual(withoutJpegMetadata(extraneousInHeader), Buffer.concat([SOI, FRAME_HEADER, SCAN]));
});

// Found by the review helper: fill bytes between scans were kept one Buffer view each, some 130 bytes
// of heap for every byte of the frame (a frame of 100 MB of 0xFF before its EOI took the thread down).
test('a long run of fill bytes is copied as one piece', () => {
  const fill = Buffer.alloc(4_000_000, 0xff);
  const stream = Buffer.concat([SOI, FRAME_HEADER, SCAN.subarray(0, -2), fill, Buffer.from([0xff, 0xd9]), Buffer.from('MRN600', 'latin1')]);
  const before = process.memoryUsage().heapUsed;
  const cleaned = withoutJpegMetadata(stream);
  const grown = process.memoryUsage().heapUsed - before;
  assert.deepEqual(cleaned, Buffer.concat([SOI, FRAME_HEADER, SCAN.subarray(0, -2), fill, Buffer.from([0xff, 0xd9])]));
  assert.ok(grown < 64 * 1024 * 1024, `the heap grew by ${Math.round(grown / 1024 / 1024)} MB`);
});
