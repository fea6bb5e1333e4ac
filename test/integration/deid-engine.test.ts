/**
 * The de-identification engine over real files and over generated files that plant a marker in every
 * Table E.1-1 attribute: under the Basic Profile no planted value and no original UID appears in any
 * output byte, UIDs are consistent, and dciodvfy finds no error the input did not already have.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { scratchDir } from '../helpers/scratch.js';
import { dciodvfyErrors } from '../helpers/pixel-checks.js';
import { test } from 'node:test';
import { vrOf } from '../../src/dicom/dictionary.js';
import { encodePart10Header, readFileMeta } from '../../src/dicom/part10.js';
import { findTransferSyntax } from '../../src/dicom/transfer-syntaxes.js';
import { deidentifyFile } from '../../src/deid/deidentify-file.js';
import { DEFAULT_DEID_SETTINGS } from '../../src/deid/engine.js';
import { PROFILE_ROWS } from '../../src/deid/profile-2024b.js';
import { profileRowFor } from '../../src/deid/profile.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { dcmdumpValues } from '../helpers/dcmtk.js';
import { needPeers, PYDICOM_CHARSET_FILES, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { run } from '../helpers/processes.js';
import { listFiles, metaValue } from '../helpers/stored.js';
import { elementHeader, encodeElement, newUid } from '../helpers/synthetic-dicom.js';

const SECRET = 'the secret of the engine tests';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

function deid(input: string, output: string) {
  const result = deidentifyFile(input, output, { settings: DEFAULT_DEID_SETTINGS, pseudonyms: new Pseudonymizer(SECRET) });
  assert.equal(result.kind, 'deidentified');
  return result as Extract<typeof result, { kind: 'deidentified' }>;
}

/** Part 10 files with a supported transfer syntax that DCMTK reads. */
async function realFiles(): Promise<string[]> {
  const files: string[] = [];
  for (const path of [...listFiles(PYDICOM_TEST_FILES), ...listFiles(PYDICOM_CHARSET_FILES)]) {
    const head = readFileSync(path);
    if (head.length < 132 || head.toString('latin1', 128, 132) !== 'DICM') continue;
    let syntax;
    try {
      syntax = findTransferSyntax((readFileMeta(head).elements.get(0x0010)?.toString('latin1') ?? '').replace(/[\0 ]+$/, ''));
    } catch {
      continue;
    }
    if (!syntax) continue;
    // A DICOMDIR (Basic Directory IOD) lists files; it is no composite instance, and Table E.1-1's
    // Z for its Type 1 record keys (Study Date, Study ID) would break it. Gantry holds such objects
    // back instead of de-identifying them.
    if (metaValue(path, 0x0002) === '1.2.840.10008.1.3.10') continue;
    // Nothing without a SOP Instance UID reaches Gantry (a C-STORE names it).
    if (!metaValue(path, 0x0003)) continue;
    const dump = await run('dcmdump', ['-q', path]);
    if (dump.code === 0 && !/^E: /m.test(dump.stderr)) files.push(path);
  }
  return files;
}

test('real files under the Basic Profile: no original identity or UID left, no new dciodvfy error', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'dcmdump', 'dciodvfy'))) return;
  const dir = scratchDir('deid-real');
  const files = await realFiles();
  assert.ok(files.length >= 60, `only ${files.length} readable files`);
  let checked = 0;
  for (const input of files) {
    const output = join(dir, `${checked}-${basename(input)}`);
    deid(input, output);
    checked += 1;
    const values = await dcmdumpValues(input, ['0008,0018', '0020,000d', '0020,000e', '0010,0010', '0010,0020', '0020,0052']);
    const bytes = readFileSync(output).toString('latin1');
    for (const [tag, value] of Object.entries(values)) {
      if (value.length < 6) continue; // too short to be told apart from other bytes
      assert.ok(!bytes.includes(value), `${basename(input)}: the original (${tag}) "${value}" is still in the output`);
    }
    const outputValues = await dcmdumpValues(output, ['0012,0062']);
    assert.equal(outputValues['0012,0062'], 'YES', basename(input));
    const before = await dciodvfyErrors(input);
    for (const error of await dciodvfyErrors(output)) {
      assert.ok(before.has(error), `${basename(input)}: new dciodvfy error: ${error}`);
    }
  }
});

/** A marker value for a VR, unique per attribute, at least 6 characters; undefined when the VR
 * cannot hold one. */
function marker(vr: string, n: number): string | undefined {
  const digits = String(100000 + n);
  switch (vr) {
    case 'AE':
    case 'CS':
    case 'SH':
    case 'LO':
    case 'ST':
    case 'LT':
    case 'UT':
    case 'UC':
    case 'PN':
      return `MRK${digits}`;
    case 'DA':
      return `1${digits.slice(1, 3)}${String(1 + (n % 12)).padStart(2, '0')}${String(1 + (n % 28)).padStart(2, '0')}`.padStart(8, '1').slice(0, 8);
    case 'DT':
      return `1911${String(1 + (n % 12)).padStart(2, '0')}${String(1 + (n % 28)).padStart(2, '0')}${digits}`;
    case 'TM':
      return `12${digits.slice(2)}.${digits}`;
    case 'UI':
      return `1.2.826.0.1.3680043.9.7777.${n}`;
    case 'IS':
    case 'DS':
      return `9${digits}`;
    case 'UR':
      return `http://mrk${digits}.invalid`;
    case 'OB':
    case 'UN':
      return `MRK${digits}`;
    default:
      return undefined;
  }
}

test('a marker planted in every Table E.1-1 attribute, at the top, in nested items and private blocks, never comes out', async (t) => {
  const dir = scratchDir('deid-markers');
  const planted: string[] = [];
  const top: Buffer[] = [];
  const nested: Buffer[] = [];
  let n = 0;
  for (const row of PROFILE_ROWS) {
    if (!/^[0-9a-f]{8}$/.test(row.tag)) continue;
    const tag = Number.parseInt(row.tag, 16) >>> 0;
    if (tag >>> 16 === 0x0000 || tag >>> 16 === 0x0002 || tag === 0x7fe00010) continue;
    const vr = vrOf(tag);
    if (vr === 'SQ') continue; // sequences get planted items below
    const value = marker(vr, (n += 1));
    if (value === undefined) continue;
    planted.push(value);
    top.push(encodeElement(tag, vr, value));
    const inner = marker(vr, (n += 1)) as string;
    planted.push(inner);
    nested.push(encodeElement(tag, vr, inner));
  }
  // A sequence Table E.1-1 does not list (so it is kept and walked), holding every attribute again.
  const keptSequence = [0x00400275, 0x00081115, 0x00540016, 0x00082112].find((tag) => profileRowFor(tag) === undefined) as number;
  assert.ok(keptSequence, 'a standard sequence outside the table');
  const item = Buffer.concat(nested.sort((a, b) => (a.readUInt16LE(0) << 16 | a.readUInt16LE(2)) - (b.readUInt16LE(0) << 16 | b.readUInt16LE(2))));
  const sequence = Buffer.concat([elementHeader(keptSequence, 'SQ', 8 + item.length), elementHeader(0xfffee000, '', 0).subarray(0, 4), Buffer.from(new Uint32Array([item.length]).buffer), item]);
  const privateBlock = Buffer.concat([encodeElement(0x00090010, 'LO', 'MRKCREATOR'), encodeElement(0x00091001, 'LO', 'MRKPRIVATE1')]);
  planted.push('MRKCREATOR', 'MRKPRIVATE1');
  const elements = [...top, sequence, privateBlock].sort((a, b) => ((a.readUInt16LE(0) << 16) | a.readUInt16LE(2)) - ((b.readUInt16LE(0) << 16) | b.readUInt16LE(2)));
  const sopInstanceUid = newUid();
  const withUids = Buffer.concat([...elements]);
  const input = join(dir, 'planted.dcm');
  writeFileSync(input, Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.7', mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: EXPLICIT_LE }), withUids]));
  assert.ok(planted.length > 500, `${planted.length} markers planted`);

  const output = join(dir, 'out.dcm');
  const outcome = deid(input, output);
  const bytes = readFileSync(output).toString('latin1');
  const leaked = planted.filter((value) => bytes.includes(value));
  assert.deepEqual(leaked, [], `planted values in the output: ${leaked.slice(0, 10).join(', ')}`);
  assert.ok(outcome.audit.length > 500);
  if (await needPeers(t, 'dcmdump')) assert.equal((await run('dcmdump', ['-q', output])).code, 0, 'the output is readable');
});

test('UIDs are consistent across the instances of a study and between runs, and another secret changes them', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('deid-uids');
  const input = join(PYDICOM_TEST_FILES, 'CT_small.dcm');
  const first = deid(input, join(dir, 'a.dcm'));
  const second = deid(input, join(dir, 'b.dcm'));
  assert.deepEqual([second.sopInstanceUid, second.studyInstanceUid, second.seriesInstanceUid], [first.sopInstanceUid, first.studyInstanceUid, first.seriesInstanceUid]);
  assert.equal(metaValue(join(dir, 'a.dcm'), 0x0003), first.sopInstanceUid, 'the meta header carries the new SOP Instance UID');
  assert.ok(readFileSync(join(dir, 'a.dcm')).equals(readFileSync(join(dir, 'b.dcm'))), 'the same input gives the same bytes');
  const other = deidentifyFile(input, join(dir, 'c.dcm'), { settings: DEFAULT_DEID_SETTINGS, pseudonyms: new Pseudonymizer(`${SECRET}, another`) });
  assert.ok(other.kind === 'deidentified' && other.studyInstanceUid !== first.studyInstanceUid);
});

test('text in other character sets that is kept stays byte for byte, and Specific Character Set never changes', async (t) => {
  if (!(await needPeers(t, PYDICOM_CHARSET_FILES))) return;
  const dir = scratchDir('deid-charset');
  for (const name of ['chrX1.dcm', 'chrH31.dcm', 'chrI2.dcm', 'chrRuss.dcm', 'chrSQEncoding.dcm']) {
    const input = join(PYDICOM_CHARSET_FILES, name);
    const output = join(dir, name);
    deid(input, output);
    const charset = (path: string) => {
      const file = readFileSync(path);
      const at = file.indexOf(Buffer.from([0x08, 0x00, 0x05, 0x00]), readFileMeta(file).datasetOffset);
      return at < 0 ? undefined : file.subarray(at, at + 8 + file.readUInt16LE(at + 6)).toString('latin1');
    };
    assert.equal(charset(output), charset(input), name);
  }
});
