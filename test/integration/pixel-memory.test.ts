/**
 * Redaction holds one frame at a time: a 200 MB instance of 400 frames (native) and a 120-frame RLE
 * instance are redacted by a process whose peak RSS stays under 300 MB.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parseFile } from '../../src/dicom/dataset-tree.js';
import { needPeers } from '../helpers/peers.js';
import { run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { writeMultiframe } from '../helpers/pixel-images.js';

const REDACT_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'redact-file.js');

/** A MONOCHROME2 16-bit cine of `frames` frames of 512×512 (0.5 MB each), written in pieces. */
function writeCine(path: string, frames: number): Promise<void> {
  const frame = Buffer.alloc(512 * 512 * 2);
  for (let i = 0; i < frame.length; i += 2) frame.writeUInt16LE((i * 13) & 0x0fff, i);
  return writeMultiframe(path, { rows: 512, columns: 512, samples: 1, bits: 16, frames, frame, patientName: 'Long^Cine' });
}

/** The last frame's first 40 rows are black, and the row below is not. */
function checkLastFrameBand(path: string, frames: number): void {
  const parsed = parseFile(path);
  try {
    const pixels = parsed.elements.find((element) => element.tag === 0x7fe00010);
    assert.ok(pixels);
    const frame = 512 * 512 * 2;
    const last = parsed.source.read(pixels.valueOffset + (frames - 1) * frame, frame);
    assert.ok(last.subarray(0, 512 * 40 * 2).every((value) => value === 0), 'the band of the last frame is black');
    assert.ok(last.subarray(512 * 40 * 2, 512 * 41 * 2).some((value) => value !== 0), 'below the band, the picture');
  } finally {
    parsed.close();
  }
}

async function redactInOwnProcess(input: string, output: string, zones: string): Promise<{ kind: string; reason?: string; peakRssMb: number; ms: number }> {
  const result = await run(process.execPath, [REDACT_FILE, input, output, zones], { timeoutMs: 300_000 });
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}') as { kind: string; reason?: string; peakRssMb: number; ms: number };
}

test('a 200 MB native cine of 400 frames and a 120-frame RLE cine are redacted under 300 MB of RSS', async (t) => {
  if (!(await needPeers(t, 'dcmcrle'))) return;
  const dir = scratchDir('pixel-memory');
  const zones = join(dir, 'zones.yaml');
  writeFileSync(zones, 'zones:\n  - { name: band, match: { Manufacturer: ACME }, rects: [[0, 0, 512, 40]] }\n');
  const native = join(dir, 'native.dcm');
  await writeCine(native, 400);
  const big = await redactInOwnProcess(native, join(dir, 'native-out.dcm'), zones);
  t.diagnostic(`native 200 MB, 400 frames: ${JSON.stringify(big)}`);
  assert.equal(big.kind, 'deidentified', big.reason);
  assert.ok(big.peakRssMb < 300, `peak RSS ${big.peakRssMb.toFixed(0)} MB`);
  checkLastFrameBand(join(dir, 'native-out.dcm'), 400);

  const small = join(dir, 'cine-120.dcm');
  await writeCine(small, 120);
  const rle = join(dir, 'cine-120-rle.dcm');
  assert.equal((await run('dcmcrle', [small, rle], { timeoutMs: 120_000 })).code, 0);
  const compressed = await redactInOwnProcess(rle, join(dir, 'rle-out.dcm'), zones);
  t.diagnostic(`RLE, 120 frames: ${JSON.stringify(compressed)}`);
  assert.equal(compressed.kind, 'deidentified', compressed.reason);
  assert.ok(compressed.peakRssMb < 300, `peak RSS ${compressed.peakRssMb.toFixed(0)} MB`);
});
