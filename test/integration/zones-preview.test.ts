/**
 * `gantry zones preview`: the PNG shows the frame with exactly what the matching zone blanks tinted
 * red, names the zone, and says so when no zone matches; RLE frames are decoded for it.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { inflateSync } from 'node:zlib';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { COLUMNS, ROWS, writeUltrasound } from '../helpers/pixel-images.js';
import { GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

/** Reads back an 8-bit RGB PNG as written by Gantry (one IDAT, filter 0 on every row). */
function readPng(path: string): { width: number; height: number; rgb: Buffer } {
  const png = readFileSync(path);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  assert.equal(png[24], 8);
  assert.equal(png[25], 2);
  const idat = png.indexOf('IDAT', 0, 'latin1');
  const rows = inflateSync(png.subarray(idat + 4, idat + 4 + png.readUInt32BE(idat - 4)));
  const rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    assert.equal(rows[y * (width * 3 + 1)], 0, 'filter type 0');
    rows.copy(rgb, y * width * 3, y * (width * 3 + 1) + 1, (y + 1) * (width * 3 + 1));
  }
  return { width, height, rgb };
}

function preview(args: string[]) {
  return run(process.execPath, [GANTRY_CLI, 'zones', 'preview', ...args], { timeoutMs: 60_000 });
}

test('the preview tints exactly what the zone blanks and names the zone', async () => {
  const dir = scratchDir('zones-preview');
  const input = join(dir, 'us.dcm');
  const pixels = writeUltrasound(input);
  const zones = join(dir, 'zones.yaml');
  writeFileSync(zones, 'zones:\n  - { name: Acme band, match: { Manufacturer: ACME }, rects: [[0, 0, 80, 8]], source: "site survey 2026" }\n');
  const out = join(dir, 'preview.png');
  const result = await preview(['--zones', zones, '--frame', '2', '--out', out, input]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /zone "Acme band" \(site survey 2026\) matches: .* \(frame 2 of 3\)/);
  const { width, height, rgb } = readPng(out);
  assert.deepEqual([width, height], [COLUMNS, ROWS]);
  const frame = ROWS * COLUMNS * 3;
  for (let y = 0; y < ROWS; y += 1) {
    for (let x = 0; x < COLUMNS; x += 1) {
      const at = (y * COLUMNS + x) * 3;
      const original = [...pixels.subarray(frame + at, frame + at + 3)];
      const shown = [...rgb.subarray(at, at + 3)];
      if (y < 8) assert.deepEqual(shown, [Math.round((original[0] as number + 255) / 2), Math.round((original[1] as number) / 2), Math.round((original[2] as number) / 2)], `(${x}, ${y}) tinted`);
      else assert.deepEqual(shown, original, `(${x}, ${y}) as in frame 2`);
    }
  }

  writeFileSync(zones, 'zones:\n  - { name: other, match: { Manufacturer: OTHER }, rects: [[0, 0, 8, 8]] }\n');
  const none = await preview(['--zones', zones, '--out', out, input]);
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stdout, /no zone of .* matches this instance: nothing would be blanked/);
  assert.deepEqual([...readPng(out).rgb.subarray(0, 3)], [...pixels.subarray(0, 3)], 'frame 1, untinted');

  const missing = await preview(['--out', out, input, '--config', join(dir, 'nothing.yaml')]);
  assert.notEqual(missing.code, 0);
});

test('an RLE frame is decoded for the preview as DCMTK decodes it', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmdrle'))) return;
  const dir = scratchDir('zones-preview-rle');
  const zones = join(dir, 'zones.yaml');
  writeFileSync(zones, 'zones:\n  - { name: corner, match: { Rows: 100 }, rects: [[0, 0, 10, 10]] }\n');
  const rle = join(PYDICOM_TEST_FILES, 'SC_rgb_rle_2frame.dcm');
  const native = join(dir, 'native.dcm');
  assert.equal((await run('dcmdrle', [rle, native], { timeoutMs: 60_000 })).code, 0);
  const fromRle = await preview(['--zones', zones, '--frame', '2', '--out', join(dir, 'rle.png'), rle]);
  const fromNative = await preview(['--zones', zones, '--frame', '2', '--out', join(dir, 'native.png'), native]);
  assert.equal(fromRle.code, 0, fromRle.stderr);
  assert.equal(fromNative.code, 0, fromNative.stderr);
  assert.match(fromRle.stdout, /zone "corner" matches/);
  const a = readPng(join(dir, 'rle.png'));
  const b = readPng(join(dir, 'native.png'));
  assert.deepEqual([a.width, a.height], [100, 100]);
  assert.ok(a.rgb.equals(b.rgb), 'the same picture from the RLE frame and from its DCMTK decoding');
  assert.ok(new Set(a.rgb).size > 4, 'a picture, not a blank');
});
