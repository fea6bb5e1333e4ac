/**
 * JPEG baseline and extended (.50, .51), redacted in the DCT domain: DCMTK (dcmdjpeg, no colour
 * conversion) decodes the output to the very pixels it decoded from the input everywhere outside the MCUs
 * a zone touches, and to black within a small tolerance inside them; the transfer syntax stays, no loss is
 * claimed that was not there, and dciodvfy finds no new error. Files: pydicom's baseline and extended
 * files (DCMTK, GDCM and other encoders; 4:4:4, 4:2:2, 4:1:1; YCbCr and RGB), and multi-frame images
 * encoded here by dcmcjpeg, one of them given restart intervals by Gantry's own coder.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { parseFile, PIXEL_DATA } from '../../src/dicom/dataset-tree.js';
import { elementText } from '../../src/dicom/element-value.js';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { decompressedDataset } from '../../src/pixels/decompress.js';
import { decodeDct, encodeDct } from '../../src/pixels/jpeg-dct.js';
import { segment } from '../../src/pixels/jpeg-entropy.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { deidentifyWithZones, firstFrame, imagePixelValues, noNewErrors, sampleValue, storedPixels } from '../helpers/pixel-checks.js';
import { withFrames, writeMultiframe } from '../helpers/pixel-images.js';
import { run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

const ZONES = 'zones:\n  - { name: corner and spot, match: { Rows: ">= 48" }, rects: [[3, 0, 20, 10], [40, 33, 5, 5]] }\n';
const RECTS = [
  [3, 0, 20, 10],
  [40, 33, 5, 5],
] as const;

const PYDICOM_FILES = [
  'SC_rgb_jpeg_dcmtk.dcm',
  'SC_rgb_dcmtk_+eb+cr.dcm',
  'SC_rgb_dcmtk_+eb+cy+n1.dcm',
  'SC_rgb_dcmtk_+eb+cy+n2.dcm',
  'SC_rgb_dcmtk_+eb+cy+np.dcm',
  'SC_rgb_dcmtk_+eb+cy+s2.dcm',
  'SC_rgb_dcmtk_+eb+cy+s4.dcm',
  'SC_rgb_jpeg_app14_dcmd.dcm',
  'SC_rgb_jpeg_lossy_gdcm.dcm',
  'SC_jpeg_no_color_transform.dcm',
  'SC_jpeg_no_color_transform_2.dcm',
  'JPGExtended.dcm', // 12-bit, process 4
  'JPEG-lossy.dcm', // 12-bit, a scan header that says Se = 0 (libjpeg decodes it as sequential)
];

/** The first frame's JPEG stream. */

/** How many fragments the encapsulated Pixel Data of `path` has (the Basic Offset Table item left out). */
function fragmentCount(path: string): number {
  const parsed = parseFile(path);
  try {
    return (parsed.elements.find((element) => element.tag === PIXEL_DATA)?.items?.length ?? 1) - 1;
  } finally {
    parsed.close();
  }
}

/** The MCU size in pixels and whether colour is YCbCr, read from the stream by hand (not by the code
 * under test), with libjpeg's rules: an Adobe segment's transform flag, a JFIF segment, component
 * identifiers 1, 2, 3 or 'R', 'G', 'B', and otherwise the Photometric Interpretation. */
function streamFacts(stream: Buffer, photometric: string): { width: number; height: number; ycc: boolean } {
  let adobe: number | undefined;
  let jfif = false;
  for (let at = 2; at + 4 < stream.length; ) {
    const marker = stream.readUInt16BE(at);
    if (marker === 0xffee) adobe = stream[at + 15];
    if (marker === 0xffe0) jfif = true;
    if (marker === 0xffc0 || marker === 0xffc1) {
      const count = stream[at + 9] as number;
      if (count === 1) return { width: 8, height: 8, ycc: false };
      const ids = Array.from({ length: count }, (_, i) => stream[at + 10 + i * 3] as number).join(',');
      const ycc = adobe !== undefined ? adobe !== 0 : jfif || ids === '1,2,3' || (ids !== '82,71,66' && photometric !== 'RGB');
      const factors = Array.from({ length: count }, (_, i) => stream[at + 11 + i * 3] as number);
      return { width: 8 * Math.max(...factors.map((f) => f >> 4)), height: 8 * Math.max(...factors.map((f) => f & 15)), ycc };
    }
    at += 2 + stream.readUInt16BE(at + 2);
  }
  throw new Error('no SOF0 or SOF1');
}

async function dcmdjpeg(path: string, to: string): Promise<Buffer> {
  const result = await run('dcmdjpeg', ['+cn', '+px', path, to], { timeoutMs: 60_000 });
  assert.equal(result.code, 0, `dcmdjpeg ${basename(path)}: ${result.stderr}`);
  return storedPixels(to);
}

function textValue(path: string, tag: number): string | undefined {
  const parsed = parseFile(path);
  try {
    return elementText(
      parsed.elements.find((element) => element.tag === tag),
      parsed.source,
      false,
    )?.trim();
  } finally {
    parsed.close();
  }
}

/** Redacts `input`, has DCMTK decode both, and checks every pixel. Returns how many MCUs went dark. */
async function checkRedaction(input: string, dir: string): Promise<number> {
  const name = basename(input);
  const output = join(dir, `out-${name}`);
  const result = deidentifyWithZones(input, output, ZONES, dir);
  assert.equal(result.kind, 'deidentified', `${name}: ${JSON.stringify(result)}`);
  const before = await dcmdjpeg(input, join(dir, `raw-in-${name}`));
  const after = await dcmdjpeg(output, join(dir, `raw-out-${name}`));
  assert.equal(after.length, before.length, name);
  const [rows, columns, samples, bits, frames, bitsStored] = imagePixelValues(join(dir, `raw-out-${name}`), [0x00280010, 0x00280011, 0x00280002, 0x00280100, 0x00280008, 0x00280101]) as [number, number, number, number, number | undefined, number];
  const mcu = streamFacts(firstFrame(input), textValue(input, 0x00280004) ?? '');
  const touched = (x: number, y: number) =>
    RECTS.some(([rx, ry, width, height]) => {
      const [mx, my] = [Math.floor(x / mcu.width), Math.floor(y / mcu.height)];
      return mx >= Math.floor(rx / mcu.width) && mx <= Math.floor((rx + width - 1) / mcu.width) && my >= Math.floor(ry / mcu.height) && my <= Math.floor((ry + height - 1) / mcu.height);
    });
  // Subsampled chroma: libjpeg interpolates each pixel's Cb and Cr from the nearest chroma samples
  // ("fancy upsampling"), across MCU borders. The one line of pixels on either side of a touched MCU's
  // border in a subsampled direction blends chroma from both sides; every coefficient outside the touched
  // MCUs is unchanged, and luminance is compared everywhere.
  const across = mcu.width > 8 ? 1 : 0;
  const down = mcu.height > 8 ? 1 : 0;
  const blendsChroma = (x: number, y: number) => {
    for (let dy = -down; dy <= down; dy += 1) for (let dx = -across; dx <= across; dx += 1) if (touched(x + dx, y + dy) !== touched(x, y)) return true;
    return false;
  };
  // Black: 0 for luminance and RGB; the middle for Cb and Cr. "Dark within a small tolerance": decoders
  // round the inverse DCT differently.
  const middle = 2 ** (bitsStored - 1);
  const tolerance = 2 ** (bitsStored - 8) * 2;
  const size = bits / 8;
  let darkMcuPixels = 0;
  for (let f = 0; f < (frames ?? 1); f += 1) {
    for (let y = 0; y < rows; y += 1) {
      for (let x = 0; x < columns; x += 1) {
        const inside = touched(x, y);
        const blended = samples === 3 && mcu.ycc && blendsChroma(x, y);
        for (let s = 0; s < samples; s += 1) {
          const at = (((f * rows + y) * columns + x) * samples + s) * size;
          const value = sampleValue(after, at, size, bitsStored, false);
          if (blended && s > 0) continue;
          if (inside) {
            const black = mcu.ycc && s > 0 ? middle : 0;
            assert.ok(Math.abs(value - black) <= tolerance, `${name} frame ${f} (${x}, ${y}) sample ${s}: ${value}, not dark`);
          } else if (value !== sampleValue(before, at, size, bitsStored, false)) {
            assert.fail(`${name} frame ${f} (${x}, ${y}) sample ${s} changed outside the touched MCUs`);
          }
        }
        if (inside) darkMcuPixels += 1;
      }
    }
  }
  assert.equal(textValue(output, 0x00280301), 'NO', `${name}: BurnedInAnnotation`);
  const written = parseFile(output);
  const original = parseFile(input);
  written.close();
  original.close();
  assert.equal(written.transferSyntaxUid, original.transferSyntaxUid, `${name}: the transfer syntax stays`);
  await noNewErrors(input, output);
  return darkMcuPixels;
}

test('JPEG baseline and extended from pydicom: touched MCUs dark, every other pixel as DCMTK decoded it', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmdjpeg', 'dciodvfy'))) return;
  const dir = scratchDir('pixel-jpeg-dct');
  for (const name of PYDICOM_FILES) assert.ok((await checkRedaction(join(PYDICOM_TEST_FILES, name), dir)) > 0, `${name}: something went dark`);
});

/** A frame with text-like strokes across it: a gradient with bright bars every few pixels. */
function strokes(rows: number, columns: number, samples: number, size: number): Buffer {
  const out = Buffer.alloc(rows * columns * samples * size);
  const peak = size === 1 ? 255 : 4095;
  for (let y = 0; y < rows; y += 1) {
    for (let x = 0; x < columns; x += 1) {
      for (let s = 0; s < samples; s += 1) {
        const bar = x % 7 < 2 && y % 11 < 8;
        const value = bar ? peak : Math.round(((x * 3 + y * 2 + s * 40) % 200) * (peak / 255)) + 20;
        const at = ((y * columns + x) * samples + s) * size;
        if (size === 1) out[at] = value;
        else out.writeUInt16LE(value, at);
      }
    }
  }
  return out;
}

test('multi-frame baseline (grey, YBR_FULL_422, odd widths too) and 12-bit extended images encoded by dcmcjpeg, frames in several fragments without an offset table too, every frame redacted', async (t) => {
  if (!(await needPeers(t, 'dcmcjpeg', 'dcmdjpeg', 'dciodvfy'))) return;
  const dir = scratchDir('pixel-jpeg-dct-frames');
  const cases = [
    { name: 'grey8', samples: 1 as const, bits: 8 as const, option: '+eb', columns: 100 },
    { name: 'rgb8', samples: 3 as const, bits: 8 as const, option: '+eb', columns: 100 },
    // YBR_FULL_422 of an odd width, as dcmcjpeg writes it: the pairs of native 4:2:2 do not apply.
    { name: 'rgb8-odd', samples: 3 as const, bits: 8 as const, option: '+eb', columns: 99 },
    { name: 'grey12', samples: 1 as const, bits: 16 as const, option: '+ee', columns: 100 },
    // Frames spread over fragments of at most 1 KB with an empty Basic Offset Table (PS3.5 A.4 allows
    // both): where each frame begins is found from the SOI marker at the head of its first fragment.
    { name: 'grey8-fragments', samples: 1 as const, bits: 8 as const, option: '+eb', columns: 100, fragments: ['+fs', '1', '-ot'] },
    { name: 'rgb8-fragments', samples: 3 as const, bits: 8 as const, option: '+eb', columns: 99, fragments: ['+fs', '1', '-ot'] },
  ];
  for (const spec of cases) {
    const native = join(dir, `${spec.name}-native.dcm`);
    const frames = 4;
    const frame = strokes(70, spec.columns, spec.samples, spec.bits / 8);
    await writeMultiframe(native, { rows: 70, columns: spec.columns, samples: spec.samples, bits: spec.bits, frames, frame, patientName: 'Jpeg^Strokes' });
    const encoded = join(dir, `${spec.name}.dcm`);
    const result = await run('dcmcjpeg', [spec.option, ...(spec.fragments ?? []), native, encoded], { timeoutMs: 60_000 });
    assert.equal(result.code, 0, `dcmcjpeg ${spec.option}: ${result.stderr}`);
    if (spec.fragments) assert.ok(fragmentCount(encoded) > 2 * frames, `${spec.name}: frames in several fragments each (${fragmentCount(encoded)})`);
    const darkPixels = await checkRedaction(encoded, dir);
    assert.ok(darkPixels >= frames * (20 + 5) * (10 + 5), `${spec.name}: every frame's zones dark (${darkPixels} pixels)`);
  }
});

test('restart intervals: coded by Gantry, decoded by DCMTK to the same pixels, and redacted', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmdjpeg', 'dciodvfy'))) return;
  const dir = scratchDir('pixel-jpeg-dct-restart');
  for (const name of ['SC_rgb_dcmtk_+eb+cy+s2.dcm', 'JPGExtended.dcm']) {
    const input = join(PYDICOM_TEST_FILES, name);
    const frame = decodeDct(firstFrame(input));
    // A restart interval of 3 MCUs (or blocks): a DRI segment before the first scan, and every scan coded with it.
    const firstScan = frame.parts.findIndex((part) => part.kind === 'scan');
    const interval = Buffer.alloc(2);
    interval.writeUInt16BE(3);
    frame.parts.splice(firstScan, 0, { kind: 'segment', bytes: segment(0xffdd, interval) });
    for (const part of frame.parts) if (part.kind === 'scan') part.scan.restartInterval = 3;
    const withRestarts = encodeDct(frame);
    assert.ok(withRestarts.includes(Buffer.from([0xff, 0xd7])), `${name}: RST7 written`);
    const restarted = join(dir, `restart-${name}`);
    withFrames(input, restarted, [withRestarts]);
    assert.deepEqual(await dcmdjpeg(restarted, join(dir, `raw-restart-${name}`)), await dcmdjpeg(input, join(dir, `raw-${name}`)), `${name}: the same pixels with restart intervals`);
    assert.ok((await checkRedaction(restarted, dir)) > 0);
  }
});

test('what the DCT coder cannot read is held back with its reason', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('pixel-jpeg-dct-held');
  const input = join(PYDICOM_TEST_FILES, 'SC_rgb_jpeg_dcmtk.dcm');
  const stream = firstFrame(input);
  // A progressive frame (SOF2) is not baseline: the SOF0 marker rewritten says so.
  const sof = stream.indexOf(Buffer.from([0xff, 0xc0]));
  const progressive = Buffer.from(stream);
  progressive[sof + 1] = 0xc2;
  const truncated = stream.subarray(0, Math.floor(stream.length / 2));
  for (const [label, bytes, reason] of [
    ['progressive', progressive, /not baseline or extended sequential/],
    ['truncated', truncated, /cut short/],
  ] as const) {
    const broken = join(dir, `${label}.dcm`);
    withFrames(input, broken, [bytes]);
    const result = deidentifyWithZones(broken, join(dir, `out-${label}.dcm`), ZONES, dir);
    assert.equal(result.kind, 'quarantined', `${label}: ${JSON.stringify(result)}`);
    assert.match((result as { reason: string }).reason, reason, label);
  }
});

test('decompressed for a destination that refuses JPEG: every sample within 1 of what DCMTK decodes', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmdjpeg'))) return;
  const dir = scratchDir('pixel-jpeg-dct-decompress');
  for (const name of PYDICOM_FILES) {
    const input = join(PYDICOM_TEST_FILES, name);
    const decompressed = join(dir, `native-${name}`);
    // Written as a file with the same meta, so that both sides are read the same way.
    writeFileSync(decompressed, Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.7', mediaStorageSopInstanceUid: '1.2.3.4', transferSyntaxUid: '1.2.840.10008.1.2.1' }), ...decompressedDataset(input, '1.2.840.10008.1.2.1')]));
    const mine = storedPixels(decompressed);
    const reference = await dcmdjpeg(input, join(dir, `dcmtk-${name}`));
    assert.equal(mine.length, reference.length, name);
    const [bits, bitsStored] = imagePixelValues(decompressed, [0x00280100, 0x00280101]) as [number, number];
    const size = bits / 8;
    let worst = 0;
    for (let at = 0; at < mine.length; at += size) worst = Math.max(worst, Math.abs(sampleValue(mine, at, size, bitsStored, false) - sampleValue(reference, at, size, bitsStored, false)));
    assert.ok(worst <= 1, `${name}: a sample differs by ${worst}`);
    const photometric = textValue(decompressed, 0x00280004);
    if (name.startsWith('SC_')) assert.equal(photometric, streamFacts(firstFrame(input), textValue(input, 0x00280004) ?? '').ycc ? 'YBR_FULL' : 'RGB', `${name}: the colour space of the decoded samples`);
  }
});

// Suspected in a review: decompressing a JPEG baseline or extended object whose dataset does not say
// it was compressed lossily (LossyImageCompression is Type 3) dropped the only sign of it, the transfer
// syntax, and the destination got native pixels that looked original (PS3.3 C.7.6.1.1.5).
test('decompressed from a lossy JPEG: the copy says it was lossily compressed, and how', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmodify'))) return;
  const dir = scratchDir('pixel-jpeg-dct-lossy-flag');
  const input = join(dir, 'unflagged.dcm');
  writeFileSync(input, readFileSync(join(PYDICOM_TEST_FILES, 'SC_rgb_jpeg_dcmtk.dcm')));
  const removed = await run('dcmodify', ['-nb', '-ea', '(0028,2110)', '-ea', '(0028,2112)', '-ea', '(0028,2114)', input], { timeoutMs: 30_000 });
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(textValue(input, 0x00282110), undefined);
  const decompressed = join(dir, 'native.dcm');
  const meta = { mediaStorageSopClassUid: textValue(input, 0x00080016) as string, mediaStorageSopInstanceUid: textValue(input, 0x00080018) as string, transferSyntaxUid: '1.2.840.10008.1.2.1' };
  writeFileSync(decompressed, Buffer.concat([encodePart10Header(meta), ...decompressedDataset(input, '1.2.840.10008.1.2.1')]));
  assert.equal(textValue(decompressed, 0x00282110), '01', 'LossyImageCompression');
  assert.equal(textValue(decompressed, 0x00282114), 'ISO_10918_1', 'LossyImageCompressionMethod');
  assert.ok(Number(textValue(decompressed, 0x00282112)) > 1, 'LossyImageCompressionRatio');
  await noNewErrors(input, decompressed);
});

test('a redacted frame keeps no EXIF, comment or thumbnail: only what decoding needs', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmdjpeg'))) return;
  const dir = scratchDir('pixel-jpeg-dct-segments');
  const input = join(PYDICOM_TEST_FILES, 'SC_rgb_dcmtk_+eb+cy+s2.dcm'); // has a JFIF APP0
  const stream = firstFrame(input);
  const jfif = segmentBody(stream, 0xffe0);
  assert.ok(jfif && jfif.subarray(0, 5).toString('latin1') === 'JFIF\0', 'the input has JFIF');
  // A 1×1 thumbnail in the JFIF segment, an EXIF segment and a comment, all naming the patient.
  const jfifWithThumbnail = Buffer.concat([jfif.subarray(0, 12), Buffer.from([1, 1, 0x44, 0x6f, 0x65])]);
  const withSegments = Buffer.concat([
    stream.subarray(0, 2),
    segment(0xffe0, jfifWithThumbnail),
    segment(0xffe1, Buffer.from('Exif\0\0Doe^John camera', 'latin1')),
    segment(0xfffe, Buffer.from('Patient Doe^John', 'latin1')),
    stream.subarray(2 + 4 + jfif.length), // the rest after the original JFIF segment
  ]);
  const sourced = join(dir, 'with-segments.dcm');
  withFrames(input, sourced, [withSegments]);
  const output = join(dir, 'out.dcm');
  const result = deidentifyWithZones(sourced, output, ZONES, dir);
  assert.equal(result.kind, 'deidentified', JSON.stringify(result));
  const redacted = firstFrame(output);
  assert.equal(redacted.indexOf('Doe^John', 0, 'latin1'), -1, 'no name left in the frame');
  assert.equal(segmentBody(redacted, 0xffe1), undefined, 'no EXIF');
  assert.equal(segmentBody(redacted, 0xfffe), undefined, 'no comment');
  const kept = segmentBody(redacted, 0xffe0);
  assert.ok(kept && kept.length === 14 && kept[12] === 0 && kept[13] === 0, 'JFIF kept, without its thumbnail');
  await dcmdjpeg(output, join(dir, 'decoded.dcm'));
});

// Suspected in a review: the codestream's own metadata was removed only from frames a zone redacted.
// An instance whose pixels leave as they are (passed by a rule here; a CT or MR with no sign of
// burned-in text alike) carried its EXIF (camera serial numbers, dates, owners) and comments out.
test('pixels that leave as they are leave without EXIF or comments, decoding to the same samples', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmdjpeg'))) return;
  const dir = scratchDir('pixel-jpeg-dct-metadata');
  const input = join(PYDICOM_TEST_FILES, 'SC_rgb_dcmtk_+eb+cy+s2.dcm'); // has a JFIF APP0
  const stream = firstFrame(input);
  const jfif = segmentBody(stream, 0xffe0) as Buffer;
  const withSegments = Buffer.concat([
    stream.subarray(0, 2 + 4 + jfif.length),
    segment(0xffe1, Buffer.from('Exif\0\0Doe^John camera SN 47110', 'latin1')), // an even length: no padding
    segment(0xfffe, Buffer.from('Patient Doe^John', 'latin1')),
    stream.subarray(2 + 4 + jfif.length),
  ]);
  const sourced = join(dir, 'with-segments.dcm');
  withFrames(input, sourced, [withSegments]);
  const output = join(dir, 'out.dcm');
  // No zone for this size: the rule passes the pixels as they are.
  const noZone = 'zones:\n  - { name: elsewhere, match: { Rows: 4096 }, rects: [[0, 0, 8, 8]] }\n';
  const result = deidentifyWithZones(sourced, output, noZone, dir, ['cleanPixelData'], [{ action: 'pass' }]);
  assert.equal(result.kind, 'deidentified', JSON.stringify(result));
  const frame = firstFrame(output);
  assert.equal(frame.indexOf('Doe^John', 0, 'latin1'), -1, 'no name left in the frame');
  assert.equal(segmentBody(frame, 0xffe1), undefined, 'no EXIF');
  assert.equal(segmentBody(frame, 0xfffe), undefined, 'no comment');
  assert.deepEqual(segmentBody(frame, 0xffe0), jfif, 'JFIF kept');
  assert.equal(frame.length, stream.length, 'nothing else changed');
  assert.deepEqual(await dcmdjpeg(output, join(dir, 'decoded-out.dcm')), await dcmdjpeg(input, join(dir, 'decoded-in.dcm')));
  await noNewErrors(sourced, output);
  // A frame without any is copied as it was.
  const plain = join(dir, 'plain-out.dcm');
  assert.equal(deidentifyWithZones(input, plain, noZone, dir, ['cleanPixelData'], [{ action: 'pass' }]).kind, 'deidentified');
  assert.deepEqual(firstFrame(plain), stream);
});

/** The body of the first marker segment `marker` before the first scan, read by hand. */
function segmentBody(stream: Buffer, marker: number): Buffer | undefined {
  for (let at = 2; at + 4 < stream.length; ) {
    const found = stream.readUInt16BE(at);
    if (found === 0xffda) return undefined;
    const length = stream.readUInt16BE(at + 2);
    if (found === marker) return stream.subarray(at + 4, at + 2 + length);
    at += 2 + length;
  }
  return undefined;
}
