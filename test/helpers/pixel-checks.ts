/**
 * What the pixel tests share: de-identifying one file with a zones file, reading a file's Pixel Data and
 * image attributes, and dciodvfy's verdict before and after.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseConfigText } from '../../src/config/load.js';
import { parseFile, PIXEL_DATA } from '../../src/dicom/dataset-tree.js';
import { elementNumber } from '../../src/dicom/element-value.js';
import { frameBytes, framesOf } from '../../src/pixels/encapsulated.js';
import { compileProfiles } from '../../src/deid/decide.js';
import { deidentifyFile, type DeidFileResult } from '../../src/deid/deidentify-file.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { baseSettingsFromConfig, profilesFromConfig } from '../../src/deid/settings.js';
import { run } from './processes.js';

const SECRET = 'the secret of the pixel tests';
const PSEUDONYMS = new Pseudonymizer(SECRET);

/** De-identifies `input` with the zones in `zonesYaml` (written under `dir`), the options and rules. */
export function deidentifyWithZones(input: string, output: string, zonesYaml: string, dir: string, options: string[] = ['cleanPixelData'], rules: unknown[] = []): DeidFileResult {
  const zonesPath = join(dir, `zones-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(zonesPath, zonesYaml);
  const config = parseConfigText(JSON.stringify({ deid: { secret: SECRET, options, pixelZones: zonesPath, rules } }), 'pixel-test.yaml');
  return deidentifyFile(input, output, {
    settings: { profiles: compileProfiles(profilesFromConfig(config)), base: baseSettingsFromConfig(config) },
    pseudonyms: PSEUDONYMS,
  });
}

/** De-identifies `input` with its pixels passed as they are (cleanPixelData, no zone for its size, a
 * rule that passes them): what leaves the frames then is the codestream cleaning alone. */
export function deidentifyPassingPixels(input: string, output: string, dir: string): void {
  const noZone = 'zones:\n  - { name: elsewhere, match: { Rows: 4096 }, rects: [[0, 0, 8, 8]] }\n';
  const result = deidentifyWithZones(input, output, noZone, dir, ['cleanPixelData'], [{ action: 'pass' }]);
  assert.equal(result.kind, 'deidentified', `${basename(input)}: ${JSON.stringify(result)}`);
}

/** The samples of a compressed file, decoded by GDCM (gdcmconv --raw into `to`). */
export async function gdcmDecoded(path: string, to: string): Promise<Buffer> {
  const result = await run('gdcmconv', ['--raw', path, to], { timeoutMs: 60_000 });
  assert.equal(result.code, 0, `gdcmconv ${basename(path)}: ${result.stderr}`);
  return storedPixels(to);
}

/** The Pixel Data value of a native file. */
export function storedPixels(path: string): Buffer {
  const parsed = parseFile(path);
  try {
    const element = parsed.elements.find((candidate) => candidate.tag === PIXEL_DATA);
    assert.ok(element, 'Pixel Data');
    return Buffer.from(parsed.source.read(element.valueOffset, element.length));
  } finally {
    parsed.close();
  }
}

/** Numbers of the top level of a file (US or IS), by tag; undefined when absent. */
export function imagePixelValues(path: string, tags: number[]): Array<number | undefined> {
  const parsed = parseFile(path);
  try {
    const byTag = new Map(parsed.elements.map((element) => [element.tag, element]));
    return tags.map((tag) => elementNumber(byTag.get(tag), parsed.source, parsed.encoding === 'explicit-be'));
  } finally {
    parsed.close();
  }
}

/** dciodvfy's error lines, without the parts that name values. */
export async function dciodvfyErrors(path: string): Promise<Set<string>> {
  const result = await run('dciodvfy', [path], { timeoutMs: 60_000 });
  const lines = `${result.stdout}\n${result.stderr}`.split('\n').filter((line) => line.startsWith('Error'));
  return new Set(lines.map((line) => line.replace(/<[^>]*>/g, '<>').replace(/[0-9][0-9.]*/g, 'N').trim()));
}

export async function noNewErrors(input: string, output: string): Promise<void> {
  const before = await dciodvfyErrors(input);
  const added = [...(await dciodvfyErrors(output))].filter((line) => !before.has(line));
  assert.deepEqual(added, [], `${basename(input)}: dciodvfy errors the input did not have`);
}

/** A stored sample as its value: masked to BitsStored, sign-extended when signed (decoders differ in
 * what they leave in the bits above). */
export function sampleValue(bytes: Buffer, at: number, size: number, bitsStored: number, signed: boolean): number {
  const raw = size === 1 ? bytes.readUInt8(at) : bytes.readUInt16LE(at);
  const value = raw % 2 ** bitsStored;
  return signed && value >= 2 ** (bitsStored - 1) ? value - 2 ** bitsStored : value;
}

/** The first frame of an encapsulated file's Pixel Data, its fragments joined. */
export function firstFrame(path: string): Buffer {
  const parsed = parseFile(path);
  try {
    const pixelData = parsed.elements.find((element) => element.tag === PIXEL_DATA);
    assert.ok(pixelData, `${basename(path)}: Pixel Data`);
    const frames = elementNumber(parsed.elements.find((element) => element.tag === 0x00280008), parsed.source, false) ?? 1;
    return frameBytes(framesOf(pixelData, parsed.source, frames)[0] ?? [], parsed.source);
  } finally {
    parsed.close();
  }
}
