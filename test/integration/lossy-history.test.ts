/**
 * PS3.3 C.7.6.1.1.5: an image once compressed lossily says so for good. Found in the pixel review: a
 * JPEG-LS near-lossless object without LossyImageCompression, sent decompressed to a destination that
 * refused JPEG-LS, arrived as a native image nothing marked lossy; redacted, its frames were encoded
 * again with NEAR 0 and said nothing either. So for JPEG 2000 with the irreversible wavelet.
 */
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BufferSource, parseDataset, parseFile, type ElementNode } from '../../src/dicom/dataset-tree.js';
import { EXPLICIT_VR_LITTLE_ENDIAN } from '../../src/dicom/transfer-syntaxes.js';
import { loadCodecs } from '../../src/pixels/codecs.js';
import { decompressedDataset } from '../../src/pixels/decompress.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { deidentifyWithZones } from '../helpers/pixel-checks.js';
import { writeMultiframe } from '../helpers/pixel-images.js';
import { run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

const LOSSY_TAGS = { compression: 0x00282110, ratio: 0x00282112, method: 0x00282114 } as const;

/** LossyImageCompression, its ratio and method in `elements` (read from `bytes`), trimmed. */
function lossyMarks(elements: readonly ElementNode[], bytes: (element: ElementNode) => Buffer): Record<keyof typeof LOSSY_TAGS, string | undefined> {
  const value = (tag: number) => {
    const element = elements.find((candidate) => candidate.tag === tag);
    return element === undefined ? undefined : bytes(element).toString('latin1').trim();
  };
  return { compression: value(LOSSY_TAGS.compression), ratio: value(LOSSY_TAGS.ratio), method: value(LOSSY_TAGS.method) };
}

function marksOfDecompressed(path: string): ReturnType<typeof lossyMarks> {
  const before = decompressedDataset(path, EXPLICIT_VR_LITTLE_ENDIAN)[0] as Buffer;
  return lossyMarks(parseDataset(new BufferSource(before), 'explicit-le'), (element) => before.subarray(element.valueOffset, element.valueOffset + element.length));
}

function marksOfFile(path: string): ReturnType<typeof lossyMarks> {
  const parsed = parseFile(path);
  try {
    return lossyMarks(parsed.elements, (element) => Buffer.from(parsed.source.read(element.valueOffset, element.length)));
  } finally {
    parsed.close();
  }
}

/** `input` with the marks of its loss removed, as a device that does not record them writes it. */
async function withoutMarks(input: string, output: string): Promise<string> {
  copyFileSync(input, output);
  const removed = await run('dcmodify', ['-nb', '-imt', '-e', '(0028,2110)', '-e', '(0028,2112)', '-e', '(0028,2114)', output]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.deepEqual(marksOfFile(output), { compression: undefined, ratio: undefined, method: undefined });
  return output;
}

const ZONE = 'zones:\n  - { name: corner, match: { Manufacturer: ACME }, rects: [[0, 0, 8, 8]] }\n';

test('JPEG-LS near-lossless frames keep the mark of their loss, decompressed or redacted; lossless ones get none', async (t) => {
  if (!(await needPeers(t, 'dcmcjpls', 'dcmodify'))) return;
  await loadCodecs();
  const dir = scratchDir('lossy-history');
  const native = join(dir, 'native.dcm');
  // Noise, so that near-lossless coding loses something.
  const frame = Buffer.alloc(64 * 64);
  let seed = 7;
  for (let at = 0; at < frame.length; at += 1) frame[at] = (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256;
  await writeMultiframe(native, { rows: 64, columns: 64, samples: 1, bits: 8, frames: 2, frame, patientName: 'Lossy^History' });
  for (const [flag, name] of [['+en', 'near.dcm'], ['+el', 'lossless.dcm']] as const) {
    const encoded = await run('dcmcjpls', [flag, native, join(dir, name)]);
    assert.equal(encoded.code, 0, encoded.stderr);
  }
  const near = await withoutMarks(join(dir, 'near.dcm'), join(dir, 'near-unmarked.dcm'));
  const decompressed = marksOfDecompressed(near);
  assert.equal(decompressed.compression, '01');
  assert.equal(decompressed.method, 'ISO_14495_1');
  assert.ok(Number(decompressed.ratio) > 0, `a ratio: ${decompressed.ratio}`);
  const redacted = join(dir, 'near-redacted.dcm');
  assert.equal(deidentifyWithZones(near, redacted, ZONE, dir).kind, 'deidentified');
  assert.equal(marksOfFile(redacted).compression, '01', 'redacted, encoded again with NEAR 0: marked');
  assert.equal(marksOfFile(redacted).method, 'ISO_14495_1');

  const lossless = join(dir, 'lossless.dcm');
  assert.equal(marksOfDecompressed(lossless).compression, undefined, 'lossless JPEG-LS: no mark');
  const losslessRedacted = join(dir, 'lossless-redacted.dcm');
  assert.equal(deidentifyWithZones(lossless, losslessRedacted, ZONE, dir).kind, 'deidentified');
  assert.equal(marksOfFile(losslessRedacted).compression, undefined);
});

test('JPEG 2000 frames of the irreversible wavelet keep the mark of their loss when decompressed; reversible ones get none', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmodify'))) return;
  await loadCodecs();
  const dir = scratchDir('lossy-history-j2k');
  // JPEG2000.dcm: 9-7 wavelet (COD transformation 0); MR_small_jp2klossless.dcm: 5-3.
  const irreversible = await withoutMarks(join(PYDICOM_TEST_FILES, 'JPEG2000.dcm'), join(dir, 'irreversible.dcm'));
  const decompressed = marksOfDecompressed(irreversible);
  assert.equal(decompressed.compression, '01');
  assert.equal(decompressed.method, 'ISO_15444_1');
  assert.equal(marksOfDecompressed(join(PYDICOM_TEST_FILES, 'MR_small_jp2klossless.dcm')).compression, undefined);
});

// Found in the transfer syntax review: a .91 stream of the reversible 5-3 wavelet cut to a lower rate
// (gdcmconv --j2k --lossy) is lossy too; judged by its wavelet, it left decompressed with nothing
// saying so. Every .91 object is marked when decompressed.
test('a JPEG 2000 (.91) object of the reversible wavelet made lossy by its rate is marked lossy when decompressed', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmodify', 'gdcmconv'))) return;
  await loadCodecs();
  const dir = scratchDir('lossy-history-j2k-rate');
  const encoded = join(dir, 'rate.dcm');
  const converted = await run('gdcmconv', ['--j2k', '--lossy', '-q', '30', join(PYDICOM_TEST_FILES, 'CT_small.dcm'), encoded]);
  assert.equal(converted.code, 0, converted.stderr);
  const lossy = await withoutMarks(encoded, join(dir, 'rate-unmarked.dcm'));
  const decompressed = marksOfDecompressed(lossy);
  assert.equal(decompressed.compression, '01');
  assert.equal(decompressed.method, 'ISO_15444_1');
});
