/**
 * JPEG 2000 comments (COM, T.800 A.9.2) and bytes after EOC leave with pixels that leave as they are
 * no more: encoders write their name there ("Kakadu-2.2", "Created by GDCM/OpenJPEG"), and a device may
 * write anything. The walker on hand-built codestreams, then real files of pydicom's test set, decoded
 * by GDCM before and after.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { J2K_MAIN_HEADER, j2kCommentsIn, withoutJ2kComments } from '../../src/pixels/j2k-metadata.js';
import { cleanedCodestream } from '../../src/pixels/marker-segments.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { deidentifyPassingPixels, firstFrame, gdcmDecoded, noNewErrors } from '../helpers/pixel-checks.js';
import { withFrames } from '../helpers/pixel-images.js';
import { scratchDir } from '../helpers/scratch.js';

/** A marker segment: marker, length (itself included) and body. */
function markerSegment(marker: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(marker, 0);
  head.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([head, body]);
}

const SOC = Buffer.from([0xff, 0x4f]);
const SIZ = markerSegment(0xff51, Buffer.alloc(41, 1));
const COD = markerSegment(0xff52, Buffer.from([0, 0, 0, 1, 0, 5, 4, 4, 0, 0]));
const QCD = markerSegment(0xff5c, Buffer.from([0x40, 0x40, 0x48]));
const comment = (text: string) => markerSegment(0xff64, Buffer.concat([Buffer.from([0, 1]), Buffer.from(text, 'latin1')]));
/** A tile-part: SOT (Psot 0: to the end), SOD and data, EOC. */
const TILE = Buffer.concat([markerSegment(0xff90, Buffer.from([0, 0, 0, 0, 0, 0, 0, 1])), Buffer.from([0xff, 0x93, 1, 2, 3, 0xff, 0xd9])]);

test('main header comments go; every other segment and the tile-parts stay as they were', () => {
  const stream = Buffer.concat([SOC, SIZ, comment('Patient Doe^John'), COD, QCD, comment('Created by a device'), TILE]);
  assert.deepEqual(withoutJ2kComments(stream), Buffer.concat([SOC, SIZ, COD, QCD, TILE]));
  assert.equal(j2kCommentsIn(stream), 'present');
  assert.equal(j2kCommentsIn(stream.subarray(0, stream.length - 4)), 'present', 'a first fragment that holds the main header tells');
});

/** A tile-part of tile `index` whose Psot gives its length, with `header` segments before SOD. */
function tilePart(index: number, header: Buffer[], data: Buffer): Buffer {
  const rest = Buffer.concat([...header, Buffer.from([0xff, 0x93]), data]);
  const sot = markerSegment(0xff90, Buffer.from([0, index, 0, 0, 0, 0, 0, 1]));
  sot.writeUInt32BE(sot.length + rest.length, 6);
  return Buffer.concat([sot, rest]);
}

// Found reviewing the JPEG fix after it: comments in tile-part headers were left, and bytes after EOC
// (which no decoder reads) were copied. A tile-part comment is blanked in place, so that SOT's Psot and
// TLM stay true.
test("tile-part comments are blanked in place, and bytes after EOC go unless they are padding", () => {
  const EOC = Buffer.from([0xff, 0xd9]);
  const first = tilePart(0, [comment('Zabriskie^Quentin')], Buffer.from([1, 0xff, 0x7f, 2]));
  const second = tilePart(1, [markerSegment(0xff64, Buffer.from([0, 0, 0xde, 0xad]))], Buffer.from([3, 4]));
  const stream = Buffer.concat([SOC, SIZ, COD, QCD, first, second, EOC, Buffer.from('MRN600', 'latin1')]);
  const cleaned = withoutJ2kComments(stream);
  assert.ok(cleaned);
  const blankFirst = tilePart(0, [comment(' '.repeat('Zabriskie^Quentin'.length))], Buffer.from([1, 0xff, 0x7f, 2]));
  const blankSecond = tilePart(1, [markerSegment(0xff64, Buffer.from([0, 0, 0, 0]))], Buffer.from([3, 4]));
  assert.deepEqual(cleaned, Buffer.concat([SOC, SIZ, COD, QCD, blankFirst, blankSecond, EOC]));
  assert.equal(j2kCommentsIn(stream), 'present');
  assert.equal(j2kCommentsIn(Buffer.concat([SOC, SIZ, COD, QCD, first])), 'present', 'a first fragment whose tile-part has a comment tells');
  assert.equal(j2kCommentsIn(Buffer.concat([SOC, SIZ, COD, QCD, tilePart(0, [], Buffer.from([1, 2]))])), 'unknown', 'a first fragment that ends before EOC');
  for (const padding of [0x00, 0xff]) {
    const padded = Buffer.concat([SOC, SIZ, COD, QCD, tilePart(0, [], Buffer.from([1, 2])), EOC, Buffer.from([padding])]);
    assert.equal(withoutJ2kComments(padded), undefined);
    assert.equal(j2kCommentsIn(padded), 'none');
  }
  const tail = Buffer.concat([SOC, SIZ, COD, QCD, TILE, Buffer.from('Doe^John', 'latin1')]);
  assert.deepEqual(withoutJ2kComments(tail), Buffer.concat([SOC, SIZ, COD, QCD, TILE]), 'after a last tile-part that runs to EOC');
  const tailWithEnd = Buffer.concat([SOC, SIZ, COD, QCD, TILE, Buffer.from('Doe^John', 'latin1'), EOC, Buffer.from('MRN600', 'latin1')]);
  assert.deepEqual(withoutJ2kComments(tailWithEnd), Buffer.concat([SOC, SIZ, COD, QCD, TILE]), 'a tile-part that runs to EOC ends at the first one');
});

// Found in the seventh session's review: a segment of a marker no part of JPEG 2000 defines (0xFF6F,
// 0xFF80) was kept, and decoders pass over it: MR_small_jp2klossless.dcm with one holding a name after
// SIZ decodes with gdcmconv (OpenJPEG) to the same samples, and the name left with it.
test('segments of markers JPEG 2000 does not define go from the main header and are blanked in tile-parts', () => {
  const unknown = (marker: number) => markerSegment(marker, Buffer.from('Patient Doe^John', 'latin1'));
  const stream = Buffer.concat([SOC, SIZ, unknown(0xff6f), COD, unknown(0xff80), QCD, TILE]);
  assert.equal(j2kCommentsIn(stream), 'present');
  assert.deepEqual(withoutJ2kComments(stream), Buffer.concat([SOC, SIZ, COD, QCD, TILE]));
  const inTilePart = Buffer.concat([SOC, SIZ, COD, QCD, tilePart(0, [unknown(0xff6f)], Buffer.from([1, 2])), Buffer.from([0xff, 0xd9])]);
  const blanked = Buffer.concat([SOC, SIZ, COD, QCD, tilePart(0, [markerSegment(0xff6f, Buffer.alloc(16))], Buffer.from([1, 2])), Buffer.from([0xff, 0xd9])]);
  assert.deepEqual(withoutJ2kComments(inTilePart), blanked);
  // Part 2 (T.801), HTJ2K (CAP, CPF) and profile (PRF) segments are known, and stay.
  const extended = Buffer.concat([SOC, markerSegment(0xff50, Buffer.from([0, 2, 0, 0, 0, 0])), markerSegment(0xff56, Buffer.from([0, 1])), SIZ, markerSegment(0xff59, Buffer.from([0, 0])), COD, markerSegment(0xff74, Buffer.from([0, 0, 0])), QCD, TILE]);
  assert.equal(withoutJ2kComments(extended), undefined);
});

// Found in the ninth session: markers 0xFF30-0xFF3F have no segment (T.800 A.1.3), and were read with
// a length: one before a comment hid it (its two bytes and the comment's marker taken for a length
// ran past the frame, and the instance was held) or took a comment's bytes for the next marker.
test('markers without a segment (0xFF30-0xFF3F) stay as their two bytes, in the main header and in tile-parts', () => {
  const reserved = Buffer.from([0xff, 0x30]);
  const stream = Buffer.concat([SOC, SIZ, reserved, comment('Patient Doe^John'), COD, QCD, TILE]);
  assert.deepEqual(withoutJ2kComments(stream), Buffer.concat([SOC, SIZ, reserved, COD, QCD, TILE]));
  assert.equal(j2kCommentsIn(stream), 'present');
  const clean = Buffer.concat([SOC, SIZ, Buffer.from([0xff, 0x3f]), COD, QCD, TILE]);
  assert.equal(withoutJ2kComments(clean), undefined);
  assert.equal(j2kCommentsIn(clean), 'none');
  const inTilePart = Buffer.concat([SOC, SIZ, COD, QCD, tilePart(0, [reserved, comment('Doe')], Buffer.from([1, 2])), Buffer.from([0xff, 0xd9])]);
  const blanked = Buffer.concat([SOC, SIZ, COD, QCD, tilePart(0, [reserved, comment('   ')], Buffer.from([1, 2])), Buffer.from([0xff, 0xd9])]);
  assert.deepEqual(withoutJ2kComments(inTilePart), blanked);
});

test('a codestream without main header comments, one that is no codestream and one cut before its first tile-part are left alone', () => {
  const clean = Buffer.concat([SOC, SIZ, COD, QCD, TILE]);
  assert.equal(withoutJ2kComments(clean), undefined);
  assert.equal(j2kCommentsIn(clean), 'none');
  assert.equal(withoutJ2kComments(Buffer.concat([Buffer.from([0xff, 0xd8]), comment('x'), TILE])), undefined, 'JPEG, not JPEG 2000');
  const cut = Buffer.concat([SOC, SIZ, comment('Doe^John'), COD]);
  assert.equal(withoutJ2kComments(cut), undefined);
  assert.equal(j2kCommentsIn(Buffer.concat([SOC, SIZ])), 'unknown');
  const lyingLength = Buffer.concat([SOC, SIZ, Buffer.from([0xff, 0x64, 0xff, 0xf0]), TILE]);
  assert.equal(withoutJ2kComments(lyingLength), undefined, 'a length past the end');
  const zeroLength = Buffer.concat([SOC, Buffer.from([0xff, 0x64, 0, 0]), TILE]);
  assert.equal(withoutJ2kComments(zeroLength), undefined, 'a length shorter than itself');
});


/** A JP2 box: length, type and content. */
function box(type: string, content: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + content.length, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, content]);
}

// Found in pydicom's GDCMJ2K_TextGBR.dcm: a codestream in the JP2 file format, whose UUID boxes (XMP,
// say) and XML boxes can hold anything, was left whole because it opens with no SOC. PS3.5 A.4.4 wants
// the codestream alone: it is taken out of its container and cleaned.
test('a codestream in a JP2 file leaves without the boxes around it', () => {
  const codestream = Buffer.concat([SOC, SIZ, comment('Created by a device'), COD, QCD, TILE]);
  const signature = Buffer.from([0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]);
  const wrapped = Buffer.concat([signature, box('ftyp', Buffer.from('jp2 \0\0\0\0jp2 ', 'latin1')), box('xml ', Buffer.from('<patient>Doe^John</patient>', 'latin1')), box('jp2c', codestream)]);
  assert.equal(j2kCommentsIn(wrapped.subarray(0, 40)), 'present', 'a first fragment that opens a JP2 file tells');
  assert.deepEqual(withoutJ2kComments(wrapped), Buffer.concat([SOC, SIZ, COD, QCD, TILE]));
  const withoutCodestream = Buffer.concat([signature, box('xml ', Buffer.from('Doe^John', 'latin1'))]);
  assert.equal(withoutJ2kComments(withoutCodestream), undefined, 'no codestream box: nothing to take out');
  // ...and nothing that can be read: the instance is held rather than its frame copied (deidentify-file.ts).
  assert.equal(cleanedCodestream(withoutCodestream, J2K_MAIN_HEADER), 'unreadable');
  assert.equal(cleanedCodestream(Buffer.concat([signature, box('jp2c', Buffer.concat([SOC, SIZ, COD, QCD, TILE]))]), J2K_MAIN_HEADER).length, SOC.length + SIZ.length + COD.length + QCD.length + TILE.length, 'the bare codestream');
});


// Suspected in a review of the JPEG metadata fix: JPEG 2000 frames that leave as they are kept their
// comments. Real encoders' comments (GDCM/OpenJPEG, Kakadu, JasPer) stand for a device's.
test('pixels in JPEG 2000 that leave as they are leave without comments, decoding to the same samples', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'gdcmconv'))) return;
  const dir = scratchDir('pixel-j2k-metadata');
  for (const name of ['MR_small_jp2klossless.dcm', 'JPEG2000.dcm', 'J2K_pixelrep_mismatch.dcm']) {
    const input = join(PYDICOM_TEST_FILES, name);
    const stream = firstFrame(input);
    // A device's comment beside the encoder's, right after SOC, behind a marker without a segment
    // (T.800 A.1.3), which decoders skip.
    const withName = Buffer.concat([stream.subarray(0, 2), Buffer.from([0xff, 0x30]), comment('Patient Doe^John'), stream.subarray(2)]);
    const sourced = join(dir, `named-${name}`);
    withFrames(input, sourced, [withName]);
    const output = join(dir, `out-${name}`);
    deidentifyPassingPixels(sourced, output, dir);
    const frame = firstFrame(output);
    assert.equal(frame.indexOf('Doe^John', 0, 'latin1'), -1, `${name}: no name left in the frame`);
    assert.equal(j2kCommentsIn(frame), 'none', `${name}: no comment left in the main header`);
    assert.ok(frame.length < stream.length, `${name}: the encoder's comment went too`);
    assert.deepEqual(await gdcmDecoded(output, join(dir, `decoded-out-${name}`)), await gdcmDecoded(input, join(dir, `decoded-in-${name}`)), `${name}: the same samples`);
    await noNewErrors(sourced, output);
  }
});

test("pydicom's JPEG 2000 in a JP2 file leaves as a bare codestream that decodes to the same samples", async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'gdcmconv'))) return;
  const dir = scratchDir('pixel-j2k-jp2');
  const input = join(PYDICOM_TEST_FILES, 'GDCMJ2K_TextGBR.dcm');
  assert.equal(firstFrame(input).toString('latin1', 4, 8), 'jP  ', 'the sample is a JP2 file');
  const output = join(dir, 'out.dcm');
  deidentifyPassingPixels(input, output, dir);
  const frame = firstFrame(output);
  assert.equal(frame.readUInt16BE(0), 0xff4f, 'the frame opens with SOC');
  assert.equal(frame.indexOf('uuid', 0, 'latin1'), -1, 'no box is left');
  assert.deepEqual(await gdcmDecoded(output, join(dir, 'decoded-out.dcm')), await gdcmDecoded(input, join(dir, 'decoded-in.dcm')));
  await noNewErrors(input, output);
});
