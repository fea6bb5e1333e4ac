/**
 * Reversible pseudonymisation (PS3.15 E.1.2): the original values go into the Encrypted Attributes
 * Sequence as standard CMS, which `openssl cms -decrypt` opens, and `gantry reidentify` puts back.
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BufferSource, parseDataset, parseFile } from '../../src/dicom/dataset-tree.js';
import { deidentifyFile } from '../../src/deid/deidentify-file.js';
import { parseConfigText } from '../../src/config/load.js';
import { compileProfiles } from '../../src/deid/decide.js';
import { baseSettingsFromConfig, recipientCertificateWarnings } from '../../src/deid/settings.js';
import { DEFAULT_DEID_SETTINGS } from '../../src/deid/engine.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { reidentifyFile } from '../../src/deid/reidentify.js';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { definedItem, eightBitImagePixel, elementHeader, encodeDataset } from '../helpers/synthetic-dicom.js';
import { dcmdumpValues } from '../helpers/dcmtk.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

/** A recipient's private key and self-signed certificate, made by openssl in `dir`. */
async function recipient(dir: string): Promise<{ key: string; certificate: string }> {
  const key = join(dir, 'key.pem');
  const certificate = join(dir, 'cert.pem');
  const made = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', certificate, '-days', '30', '-subj', '/CN=Gantry test recipient']);
  assert.equal(made.code, 0, made.stderr);
  return { key, certificate };
}

test('original values travel encrypted as standard CMS, and gantry reidentify restores them', async (t) => {
  if (!(await needPeers(t, 'openssl', 'dcmdump', PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('cms');
  const { key, certificate } = await recipient(dir);

  for (const name of ['CT_small.dcm', 'MR_small_implicit.dcm', 'MR_small_bigendian.dcm']) {
    const input = join(PYDICOM_TEST_FILES, name);
    const original = await dcmdumpValues(input, ['0010,0010', '0010,0020', '0020,000d', '0008,0018', '0008,0020']);
    const output = join(dir, `deid-${name}`);
    const outcome = deidentifyFile(input, output, {
      settings: { ...DEFAULT_DEID_SETTINGS, encryptFor: readFileSync(certificate, 'utf8') },
      pseudonyms: new Pseudonymizer('the secret of the encryption test'),
    });
    assert.equal(outcome.kind, 'deidentified');

    // The envelope, as any CMS tool sees it.
    const parsed = parseFile(output);
    const sequence = parsed.elements.find((element) => element.tag === 0x04000500);
    const content = sequence?.items?.[0]?.elements.find((element) => element.tag === 0x04000520)?.value;
    const syntax = sequence?.items?.[0]?.elements.find((element) => element.tag === 0x04000510)?.value?.toString('latin1').replace(/\0+$/, '');
    parsed.close();
    assert.ok(content, `${name}: an Encrypted Content`);
    const envelope = join(dir, `${name}.der`);
    writeFileSync(envelope, content);
    const plain = join(dir, `${name}.inner`);
    const opened = await run('openssl', ['cms', '-decrypt', '-inform', 'DER', '-in', envelope, '-recip', certificate, '-inkey', key, '-out', plain]);
    assert.equal(opened.code, 0, `openssl cms -decrypt: ${opened.stderr}`);
    const inner = parseDataset(new BufferSource(readFileSync(plain)), syntax === '1.2.840.10008.1.2.2' ? 'explicit-be' : 'explicit-le');
    const modified = inner.find((element) => element.tag === 0x04000550)?.items?.[0]?.elements ?? [];
    const originalName = modified.find((element) => element.tag === 0x00100010)?.value?.toString('latin1').trim();
    assert.equal(originalName, original['0010,0010'], `${name}: the original PatientName is in the envelope`);
    assert.ok(!readFileSync(output).toString('latin1').includes(original['0010,0010'] as string), `${name}: and nowhere in clear`);

    // Re-identification puts the originals back.
    const back = join(dir, 'back');
    const result = await run(process.execPath, [GANTRY_CLI, 'reidentify', '--key', key, '--out', back, output]);
    assert.equal(result.code, 0, result.stderr);
    const restored = await dcmdumpValues(join(back, `deid-${name}`), ['0010,0010', '0010,0020', '0020,000d', '0008,0018', '0008,0020', '0012,0062']);
    for (const tag of ['0010,0010', '0010,0020', '0020,000d', '0008,0018', '0008,0020']) assert.equal(restored[tag], original[tag], `${name}: (${tag}) restored`);
    assert.equal(restored['0012,0062'], undefined, `${name}: no longer marked de-identified`);
  }

  // Found in a review: files of the same name from two folders (S1/IM00001, S2/IM00001) were both
  // reported restored, and the second overwrote the first. Refused before anything is written.
  for (const folder of ['s1', 's2']) {
    mkdirSync(join(dir, folder));
    copyFileSync(join(dir, 'deid-CT_small.dcm'), join(dir, folder, 'IM00001'));
  }
  const same = join(dir, 'same');
  const clash = await run(process.execPath, [GANTRY_CLI, 'reidentify', '--key', key, '--out', same, join(dir, 's1', 'IM00001'), join(dir, 's2', 'IM00001')]);
  assert.equal(clash.code, 1);
  assert.match(clash.stderr, /s1\/IM00001 and .*s2\/IM00001 have the same name: .*separate folders/);
  assert.equal(existsSync(same), false, 'nothing written');
  const inPlace = await run(process.execPath, [GANTRY_CLI, 'reidentify', '--key', key, '--out', join(dir, 's1'), join(dir, 's1', 'IM00001')]);
  assert.match(inPlace.stderr, /would be overwritten by its own re-identified file/);
});

// PS3.5 7.2: a Group Length (gggg,0000) is the length of the rest of its group. Re-identification
// restores original values of other lengths than the pseudonyms it replaces, so a group length kept
// from the de-identified file no longer says the truth.
test('a re-identified file has no group length that disagrees with its group', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-group-length');
  const { key, certificate } = await recipient(dir);
  const sop = '1.2.826.0.1.3680043.99.505.1';
  const groups = (elements: Array<readonly [number, string, string]>) => {
    const lengths = new Map<number, number>();
    for (const [tag, , value] of elements) lengths.set(tag >>> 16, (lengths.get(tag >>> 16) ?? 0) + 8 + value.length + (value.length % 2));
    return [...lengths].map(([group, length]) => [((group << 16) >>> 0), 'UL', length] as const);
  };
  const elements: Array<readonly [number, string, string]> = [
    [0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.2'],
    [0x00080018, 'UI', sop],
    [0x00080020, 'DA', '20200304'],
    [0x00100010, 'PN', 'Jones^Alice^Margaret'],
    [0x00100020, 'LO', 'MRN505'],
    [0x0020000d, 'UI', '1.2.3.4'],
    [0x0020000e, 'UI', '1.2.3.5'],
  ];
  const input = join(dir, 'in.dcm');
  writeFileSync(input, Buffer.concat([
    encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.2', mediaStorageSopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.1' }),
    encodeDataset([...elements, ...groups(elements)]),
  ]));
  const output = join(dir, 'deid.dcm');
  const outcome = deidentifyFile(input, output, {
    settings: { ...DEFAULT_DEID_SETTINGS, encryptFor: readFileSync(certificate, 'utf8') },
    pseudonyms: new Pseudonymizer('the secret of the encryption test'),
  });
  assert.equal(outcome.kind, 'deidentified');
  const back = join(dir, 'back.dcm');
  reidentifyFile(output, back, readFileSync(key, 'utf8'));
  const parsed = parseFile(back);
  parsed.close();
  for (const groupLength of parsed.elements.filter((element) => (element.tag & 0xffff) === 0)) {
    const group = groupLength.tag >>> 16;
    const members = parsed.elements.filter((element) => element.tag >>> 16 === group && element !== groupLength);
    const actual = members.reduce((sum, element) => sum + (element.end - element.offset), 0);
    assert.equal(groupLength.value?.readUInt32LE(0), actual, `(${group.toString(16).padStart(4, '0')},0000) says the length of its group`);
  }
  assert.equal(parsed.elements.find((element) => element.tag === 0x00100010)?.value?.toString('latin1').trim(), 'Jones^Alice^Margaret', 'the name is restored');
});

// Found in the pseudonymisation review: the de-identification writes JPEG frames anew (their comments
// go) and drops the Extended Offset Table that described the old fragments; its original values went
// into the envelope as removed attributes, and re-identification put them back beside the new
// fragments: a reader trusting the table read the wrong bytes.
test('a re-identified file does not get back the offset table of fragments the de-identification rewrote', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-offset-table');
  const { key, certificate } = await recipient(dir);
  const comment = Buffer.from('Jones^Alice MRN505', 'latin1');
  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xfe, 0, comment.length + 2]), comment, Buffer.from([0xff, 0xda, 0x00, 0x02, 0x01, 0x02, 0xff, 0xd9])]);
  const table = (values: number[]) => Buffer.concat(values.map((value) => { const bytes = Buffer.alloc(8); bytes.writeBigUInt64LE(BigInt(value)); return bytes; }));
  const sop = '1.2.826.0.1.3680043.99.506.1';
  const input = join(dir, 'in.dcm');
  writeFileSync(input, Buffer.concat([
    encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.2.1', mediaStorageSopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.4.50' }),
    encodeDataset([
      [0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.2.1'],
      [0x00080018, 'UI', sop],
      [0x00100010, 'PN', 'Jones^Alice'],
      [0x00100020, 'LO', 'MRN505'],
      [0x0020000d, 'UI', '1.2.3.4'],
      [0x0020000e, 'UI', '1.2.3.5'],
      ...eightBitImagePixel({ rows: 8, columns: 8, frames: 2 }),
    ]),
    elementHeader(0x7fe00001, 'OV', 16),
    table([0, 8 + jpeg.length]),
    elementHeader(0x7fe00002, 'OV', 16),
    table([jpeg.length, jpeg.length]),
    elementHeader(0x7fe00010, 'OB', 0xffffffff),
    definedItem(Buffer.alloc(0)),
    definedItem(jpeg),
    definedItem(jpeg),
    Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]),
  ]));
  const output = join(dir, 'deid.dcm');
  const outcome = deidentifyFile(input, output, {
    settings: { ...DEFAULT_DEID_SETTINGS, encryptFor: readFileSync(certificate, 'utf8') },
    pseudonyms: new Pseudonymizer('the secret of the encryption test'),
  });
  assert.equal(outcome.kind, 'deidentified');
  assert.ok(!readFileSync(output).includes(comment), 'the comments went');
  const back = join(dir, 'back.dcm');
  reidentifyFile(output, back, readFileSync(key, 'utf8'));
  const parsed = parseFile(back);
  parsed.close();
  assert.deepEqual(parsed.elements.filter((element) => element.tag >= 0x7fe00001 && element.tag <= 0x7fe00003).map((element) => element.tag.toString(16)), []);
  assert.equal(parsed.elements.find((element) => element.tag === 0x00100010)?.value?.toString('latin1').trim(), 'Jones^Alice', 'the name is restored');
});

/** A de-identified CT of 8x8 pixels, encrypted for `certificate`, its pixels redacted by a zone when
 * `redact`; the output's path. */
function reversiblyDeidentified(dir: string, name: string, certificate: string, redact = false): string {
  const sop = `1.2.826.0.1.3680043.99.507.${name.length}`;
  const input = join(dir, `${name}-in.dcm`);
  writeFileSync(input, Buffer.concat([
    encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.2', mediaStorageSopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.1' }),
    encodeDataset([
      [0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.2'],
      [0x00080018, 'UI', sop],
      [0x00080060, 'CS', 'CT'],
      [0x00100010, 'PN', `Bound^${name}`],
      [0x00100020, 'LO', `MRN-${name}`],
      [0x0020000d, 'UI', '1.2.3.4'],
      [0x0020000e, 'UI', '1.2.3.5'],
      ...eightBitImagePixel({ rows: 8, columns: 8 }),
      [0x7fe00010, 'OB', Buffer.alloc(64, 200)],
    ]),
  ]));
  const output = join(dir, `${name}-deid.dcm`);
  const encryptFor = readFileSync(certificate, 'utf8');
  const base = { dateShift: DEFAULT_DEID_SETTINGS.dateShift, maxAgeYears: DEFAULT_DEID_SETTINGS.maxAgeYears, encryptFor, pixelZones: [{ name: 'corner', match: { Modality: 'CT' }, rects: [[0, 0, 4, 4] as const], outsideUltrasoundRegions: false }] };
  const outcome = deidentifyFile(input, output, {
    settings: redact ? { profiles: compileProfiles([{ name: 'default', options: [], rules: [], cleanPixelData: true }]), base } : { ...DEFAULT_DEID_SETTINGS, encryptFor },
    pseudonyms: new Pseudonymizer('the secret of the encryption test'),
  });
  assert.equal(outcome.kind, 'deidentified');
  return output;
}

// Found in the reversible pseudonymisation review: CMS EnvelopedData (AES-CBC) has no integrity
// check and its payload named no instance: a flipped byte restored a wrong StudyInstanceUID, and
// another file's payload restored another patient over these pixels, both with exit 0.
test('re-identification refuses encrypted attributes changed on the way or made for another instance', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-bound');
  const { key, certificate } = await recipient(dir);
  const privateKey = readFileSync(key, 'utf8');
  const output = reversiblyDeidentified(dir, 'bound', certificate);
  assert.deepEqual(reidentifyFile(output, join(dir, 'back.dcm'), privateKey), { restored: reidentifyFile(output, join(dir, 'back.dcm'), privateKey).restored, checked: true, keptSopInstanceUid: false });

  const parsed = parseFile(output);
  const content = parsed.elements.find((element) => element.tag === 0x04000500)?.items?.[0]?.elements.find((element) => element.tag === 0x04000520)?.value;
  const sop = parsed.elements.find((element) => element.tag === 0x00080018)?.value?.toString('latin1').replace(/\0+$/, '') as string;
  parsed.close();
  assert.ok(content && sop);
  const bytes = readFileSync(output);
  // One byte of the ciphertext flipped, at twelve places before its last block (whose padding a
  // decryption checks): garbled blocks that still parse, and those that do not.
  for (let back = 48; back < 48 + 12 * 7; back += 7) {
    const tampered = Buffer.from(bytes);
    const flipped = bytes.indexOf(content) + content.length - back;
    tampered.writeUInt8(tampered.readUInt8(flipped) ^ 0x01, flipped);
    writeFileSync(join(dir, 'tampered.dcm'), tampered);
    assert.throws(() => reidentifyFile(join(dir, 'tampered.dcm'), join(dir, 'back-tampered.dcm'), privateKey), /changed since they were made/, `a byte flipped ${back} bytes before the end`);
    assert.equal(existsSync(join(dir, 'back-tampered.dcm')), false, 'nothing written');
  }
  // The payload carried by another instance: the same bytes under another SOP Instance UID.
  const otherUid = `${sop.slice(0, -1)}${sop.endsWith('1') ? '2' : '1'}`;
  writeFileSync(join(dir, 'grafted.dcm'), Buffer.from(bytes.toString('latin1').split(sop).join(otherUid), 'latin1'));
  assert.throws(() => reidentifyFile(join(dir, 'grafted.dcm'), join(dir, 'back-grafted.dcm'), privateKey), /made for another instance/);
  assert.equal(existsSync(join(dir, 'back-grafted.dcm')), false, 'nothing written');
});

// Found in the reversible pseudonymisation review: re-identification gave a redacted instance the
// original's SOP Instance UID (PS3.3 C.12.1.1.1: another object), which collided with the unredacted
// original in a PACS.
test('a re-identified instance whose pixels were redacted keeps its de-identified SOP Instance UID', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-redacted');
  const { key, certificate } = await recipient(dir);
  const output = reversiblyDeidentified(dir, 'redacted', certificate, true);
  const sopOf = (path: string) => {
    const parsed = parseFile(path);
    parsed.close();
    return {
      dataset: parsed.elements.find((element) => element.tag === 0x00080018)?.value?.toString('latin1').replace(/\0+$/, ''),
      meta: parsed.meta.get(0x0003)?.toString('latin1').replace(/\0+$/, ''),
      name: parsed.elements.find((element) => element.tag === 0x00100010)?.value?.toString('latin1').trim(),
    };
  };
  const back = join(dir, 'back.dcm');
  assert.equal(reidentifyFile(output, back, readFileSync(key, 'utf8')).keptSopInstanceUid, true);
  const deidentified = sopOf(output);
  assert.deepEqual(sopOf(back), { dataset: deidentified.dataset, meta: deidentified.dataset, name: 'Bound^redacted' });
});

// Found in the reversible pseudonymisation review: a 512-bit recipient key passed the config check,
// and then every instance failed ("data too large for key size") while the node said it was ready.
test('a recipient certificate with an RSA key under 2048 bits is a config error naming the key', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-short-key');
  const settingsFor = (certificate: string) => baseSettingsFromConfig(parseConfigText(JSON.stringify({ deid: { secret: 'the secret of the key size test', encryption: { recipientCertificate: certificate } } }), 'key-size.yaml'));
  let tried = 0;
  for (const bits of [512, 1024]) {
    const certificate = join(dir, `cert-${bits}.pem`);
    const made = await run('openssl', ['req', '-x509', '-newkey', `rsa:${bits}`, '-nodes', '-keyout', join(dir, `key-${bits}.pem`), '-out', certificate, '-days', '30', '-subj', '/CN=short']);
    if (made.code !== 0) continue; // an OpenSSL whose policy refuses to make such a key
    tried += 1;
    assert.throws(() => settingsFor(certificate), new RegExp(`deid\\.encryption\\.recipientCertificate: .*${bits} bits, fewer than 2048`));
  }
  assert.ok(tried > 0, 'openssl made no short key to try');
  const { certificate } = await recipient(dir);
  assert.ok(settingsFor(certificate).encryptFor);
});

// Found in the secrets review: a certificate file holding the recipient's private key too, and an
// expired certificate, passed the config check; the private key then went to every thread of the node.
// An expired one is warned of, not refused: a node refusing it stopped at its next restart.
test('a recipient certificate file that holds a private key is a config error; an expired one is warned of', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-certificate-checks');
  const settingsFor = (certificate: string) => baseSettingsFromConfig(parseConfigText(JSON.stringify({ deid: { secret: 'the secret of the certificate test', encryption: { recipientCertificate: certificate } } }), 'cert.yaml'));
  const { key, certificate } = await recipient(dir);
  const combined = join(dir, 'combined.pem');
  writeFileSync(combined, `${readFileSync(certificate, 'utf8')}${readFileSync(key, 'utf8')}`);
  assert.throws(() => settingsFor(combined), /holds a private key beside the certificate: give Gantry the certificate alone/);
  // A certificate valid in 2020 only, self-signed by `openssl ca` (req -x509 cannot date one back).
  const ca = join(dir, 'ca');
  mkdirSync(ca);
  writeFileSync(join(ca, 'index.txt'), '');
  writeFileSync(join(ca, 'serial'), '01\n');
  const caConfig = join(dir, 'ca.cnf');
  writeFileSync(caConfig, `[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = ${ca}/index.txt\nserial = ${ca}/serial\nnew_certs_dir = ${ca}\ndefault_md = sha256\npolicy = p\n[ p ]\ncommonName = supplied\n`);
  const request = join(dir, 'expired.csr');
  const expired = join(dir, 'expired.pem');
  const asked = await run('openssl', ['req', '-new', '-key', key, '-subj', '/CN=expired', '-out', request]);
  assert.equal(asked.code, 0, asked.stderr);
  const made = await run('openssl', ['ca', '-batch', '-notext', '-config', caConfig, '-selfsign', '-keyfile', key, '-in', request, '-out', expired, '-startdate', '20200101000000Z', '-enddate', '20200102000000Z']);
  assert.equal(made.code, 0, made.stderr);
  assert.ok(settingsFor(expired).encryptFor, 'an expired certificate still encrypts');
  const warningsFor = (path: string) => recipientCertificateWarnings(parseConfigText(JSON.stringify({ deid: { secret: 'the secret of the certificate test', encryption: { recipientCertificate: path } } }), 'cert.yaml'));
  assert.deepEqual(warningsFor(expired), [`deid.encryption.recipientCertificate: ${expired} expired on 2020-01-02T00:00:00.000Z: ask whoever may re-identify whether its key is still theirs, and for a new certificate`]);
  assert.match(warningsFor(certificate)[0] ?? '', /expires on .*: ask for a new certificate/, 'one of 30 days expires within the month');
  assert.ok(settingsFor(certificate).encryptFor, 'the certificate alone, valid: taken');
});

// Found in the secrets review: gantry reidentify used a private key that other accounts could read,
// without a word. An unencrypted one readable by them is refused, as ssh refuses.
test('gantry reidentify refuses an unencrypted key readable by other accounts', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-key-mode');
  const { key, certificate } = await recipient(dir);
  const output = reversiblyDeidentified(dir, 'mode', certificate);
  chmodSync(key, 0o644);
  const refused = await run(process.execPath, [GANTRY_CLI, 'reidentify', '--key', key, '--out', join(dir, 'back'), output]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /is readable by other accounts \(mode 0644\): chmod 600 it/);
  chmodSync(key, 0o600);
  const restored = await run(process.execPath, [GANTRY_CLI, 'reidentify', '--key', key, '--out', join(dir, 'back'), output]);
  assert.equal(restored.code, 0, restored.stderr);
});

// Found in the reversible pseudonymisation review: the one key that re-identifies everything could
// only be read unencrypted ("interrupted or cancelled" for a key with a passphrase).
test('gantry reidentify reads a recipient key kept encrypted, its passphrase named by an environment variable', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-encrypted-key');
  const { key, certificate } = await recipient(dir);
  const output = reversiblyDeidentified(dir, 'locked', certificate);
  const locked = join(dir, 'locked-key.pem');
  const made = await run('openssl', ['pkcs8', '-topk8', '-in', key, '-out', locked, '-passout', 'pass:a passphrase of the test', '-v2', 'aes-256-cbc']);
  assert.equal(made.code, 0, made.stderr);
  const reidentify = (extra: string[], env: Record<string, string> = {}) =>
    run(process.execPath, [GANTRY_CLI, 'reidentify', '--key', locked, '--out', join(dir, 'back'), ...extra, output], { env: { ...process.env, ...env } });
  const without = await reidentify([]);
  assert.notEqual(without.code, 0);
  assert.match(without.stderr, /is encrypted: name the environment variable that holds its passphrase with --passphrase-env/);
  const wrong = await reidentify(['--passphrase-env', 'GANTRY_TEST_PASSPHRASE'], { GANTRY_TEST_PASSPHRASE: 'not it' });
  assert.match(wrong.stderr, /a wrong passphrase/);
  const right = await reidentify(['--passphrase-env', 'GANTRY_TEST_PASSPHRASE'], { GANTRY_TEST_PASSPHRASE: 'a passphrase of the test' });
  assert.equal(right.code, 0, right.stderr);
  assert.match(right.stdout, /attribute\(s\) restored/);
});

// Found in the reversible pseudonymisation review: the marks of an earlier de-identification
// (PatientIdentityRemoved, DeidentificationMethod...) were written over and never put in the
// envelope, so re-identification dropped them (PS3.15 E.1.2: the originals of what changed).
test('re-identification gives back the marks of an earlier de-identification', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-earlier-marks');
  const { key, certificate } = await recipient(dir);
  const sop = '1.2.826.0.1.3680043.99.508.1';
  const input = join(dir, 'in.dcm');
  writeFileSync(input, Buffer.concat([
    encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.2', mediaStorageSopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.1' }),
    encodeDataset([
      [0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.2'],
      [0x00080018, 'UI', sop],
      [0x00100010, 'PN', 'Marked^Before'],
      [0x00100020, 'LO', 'MRN508'],
      [0x00120062, 'CS', 'YES'],
      [0x00120063, 'LO', 'AN EARLIER TOOL'],
      [0x0020000d, 'UI', '1.2.3.4'],
      [0x0020000e, 'UI', '1.2.3.5'],
    ]),
  ]));
  const output = join(dir, 'deid.dcm');
  const outcome = deidentifyFile(input, output, { settings: { ...DEFAULT_DEID_SETTINGS, encryptFor: readFileSync(certificate, 'utf8') }, pseudonyms: new Pseudonymizer('the secret of the encryption test') });
  assert.equal(outcome.kind, 'deidentified');
  const back = join(dir, 'back.dcm');
  reidentifyFile(output, back, readFileSync(key, 'utf8'));
  const parsed = parseFile(back);
  parsed.close();
  const value = (tag: number) => parsed.elements.find((element) => element.tag === tag)?.value?.toString('latin1').trim();
  assert.deepEqual([value(0x00120062), value(0x00120063), value(0x00100010)], ['YES', 'AN EARLIER TOOL', 'Marked^Before']);
});

// Found in the reversible pseudonymisation review: only the first item of the Encrypted Attributes
// Sequence was tried (PS3.3 C.12.1.1.4.1 has one per recipient), so a file whose first item was for
// someone else was refused with an OAEP decoding error.
test('re-identification opens the item of the Encrypted Attributes Sequence made for its key, wherever it is', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-two-recipients');
  for (const name of ['a', 'b', 'c']) mkdirSync(join(dir, name));
  const [first, second, third] = await Promise.all(['a', 'b', 'c'].map((name) => recipient(join(dir, name))));
  assert.ok(first && second && third);
  const forA = readFileSync(reversiblyDeidentified(join(dir, 'a'), 'two', first.certificate));
  const forB = readFileSync(reversiblyDeidentified(join(dir, 'b'), 'two', second.certificate));
  /** The raw bytes of a file's Encrypted Attributes Sequence, and its items'. */
  const sequenceOf = (bytes: Buffer) => {
    const path = join(dir, 'probe.dcm');
    writeFileSync(path, bytes);
    const parsed = parseFile(path);
    const sequence = parsed.elements.find((element) => element.tag === 0x04000500);
    assert.ok(sequence?.items?.[0]);
    const whole = Buffer.from(parsed.source.read(sequence.offset, sequence.end - sequence.offset));
    const item = Buffer.from(parsed.source.read(sequence.items[0].offset, sequence.items[0].end - sequence.items[0].offset));
    parsed.close();
    return { whole, item };
  };
  const a = sequenceOf(forA);
  const b = sequenceOf(forB);
  // B's item first, then A's, in a sequence of undefined length (explicit VR little endian).
  const header = Buffer.from([0x00, 0x04, 0x00, 0x05, 0x53, 0x51, 0, 0, 0xff, 0xff, 0xff, 0xff]);
  const both = Buffer.concat([header, b.item, a.item, Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0])]);
  const at = forA.indexOf(a.whole);
  assert.ok(at > 0);
  const twoItems = join(dir, 'two-items.dcm');
  writeFileSync(twoItems, Buffer.concat([forA.subarray(0, at), both, forA.subarray(at + a.whole.length)]));
  const back = join(dir, 'back.dcm');
  assert.equal(reidentifyFile(twoItems, back, readFileSync(first.key, 'utf8')).checked, true);
  const parsed = parseFile(back);
  parsed.close();
  assert.equal(parsed.elements.find((element) => element.tag === 0x00100010)?.value?.toString('latin1').trim(), 'Bound^two');
  assert.throws(() => reidentifyFile(twoItems, join(dir, 'none.dcm'), readFileSync(third.key, 'utf8')), /no item of the Encrypted Attributes Sequence \(2\) opens with this key/);
});

// Found in the review of the session's diff: the binding names the instance by its File Meta
// Information's UID when its dataset has no SOPInstanceUID, and re-identification compared with the
// dataset's alone, refusing such an instance as made for another.
test('an instance without SOPInstanceUID in its dataset is re-identified, bound by its File Meta Information', async (t) => {
  if (!(await needPeers(t, 'openssl'))) return;
  const dir = scratchDir('cms-no-sop');
  const { key, certificate } = await recipient(dir);
  // Absent, and (found in the second review of the diff) present but empty.
  for (const [name, sop] of [['absent', []], ['empty', [[0x00080018, 'UI', ''] as const]]] as const) {
    const input = join(dir, `in-${name}.dcm`);
    writeFileSync(input, Buffer.concat([
      encodePart10Header({ mediaStorageSopClassUid: '1.2.840.10008.5.1.4.1.1.2', mediaStorageSopInstanceUid: '1.2.826.0.1.3680043.99.509.1', transferSyntaxUid: '1.2.840.10008.1.2.1' }),
      encodeDataset([
        [0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.2'],
        ...sop,
        [0x00100010, 'PN', 'Meta^Only'],
        [0x00100020, 'LO', 'MRN509'],
        [0x0020000d, 'UI', '1.2.3.4'],
        [0x0020000e, 'UI', '1.2.3.5'],
      ]),
    ]));
    const output = join(dir, `deid-${name}.dcm`);
    assert.equal(deidentifyFile(input, output, { settings: { ...DEFAULT_DEID_SETTINGS, encryptFor: readFileSync(certificate, 'utf8') }, pseudonyms: new Pseudonymizer('the secret of the encryption test') }).kind, 'deidentified');
    const back = join(dir, `back-${name}.dcm`);
    assert.equal(reidentifyFile(output, back, readFileSync(key, 'utf8')).checked, true, name);
    const parsed = parseFile(back);
    parsed.close();
    assert.equal(parsed.elements.find((element) => element.tag === 0x00100010)?.value?.toString('latin1').trim(), 'Meta^Only', name);
  }
});
