/**
 * Reversible pseudonymisation (PS3.15 E.1.2): the original values go into the Encrypted Attributes
 * Sequence as standard CMS, which `openssl cms -decrypt` opens, and `gantry reidentify` puts back.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BufferSource, parseDataset, parseFile } from '../../src/dicom/dataset-tree.js';
import { deidentifyFile } from '../../src/deid/deidentify-file.js';
import { DEFAULT_DEID_SETTINGS } from '../../src/deid/engine.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { dcmdumpValues } from '../helpers/dcmtk.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { GANTRY_CLI, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

test('original values travel encrypted as standard CMS, and gantry reidentify restores them', async (t) => {
  if (!(await needPeers(t, 'openssl', 'dcmdump', PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('cms');
  const key = join(dir, 'key.pem');
  const certificate = join(dir, 'cert.pem');
  const made = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', certificate, '-days', '30', '-subj', '/CN=Gantry test recipient']);
  assert.equal(made.code, 0, made.stderr);

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
});
