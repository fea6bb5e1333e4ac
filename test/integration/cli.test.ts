/** The gantry command as an operator runs it. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from '../helpers/scratch.js';
import { test } from 'node:test';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { GANTRY_CLI, run } from '../helpers/processes.js';
import { listFiles } from '../helpers/stored.js';

test('gantry deid de-identifies files and folders into <Study>/<Series>/<SOP>.dcm, and says what failed', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('cli');
  const config = join(dir, 'gantry.yaml');
  writeFileSync(config, `storage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: \${TEST_SECRET}\n  options: [retainLongitudinalModifiedDates]\n`);
  const out = join(dir, 'out');
  const result = await run(process.execPath, [GANTRY_CLI, 'deid', '--config', config, '--out', out, join(PYDICOM_TEST_FILES, 'CT_small.dcm'), join(PYDICOM_TEST_FILES, 'MR_small.dcm'), join(PYDICOM_TEST_FILES, 'README.txt')], {
    env: { ...process.env, TEST_SECRET: 'a secret from the environment' },
  });
  assert.equal(result.code, 1, 'one input was not DICOM');
  assert.match(result.stdout, /de-identified 2 file\(s\) into .*; 1 failed/);
  assert.match(result.stderr, /README\.txt: not a DICOM Part 10 file/);
  const written = listFiles(out);
  assert.equal(written.length, 2);
  for (const path of written) assert.match(path, /\/2\.25\.\d+\/2\.25\.\d+\/2\.25\.\d+\.dcm$/);
});

test('an operator config without deid.secret is refused with the key named', async (t) => {
  const dir = scratchDir('cli');
  const config = join(dir, 'gantry.yaml');
  writeFileSync(config, `storage:\n  path: ${join(dir, 'data')}\n`);
  const result = await run(process.execPath, [GANTRY_CLI, 'deid', '--config', config, '--out', join(dir, 'out'), config]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /deid\.secret: is required/);
});

test('gantry config check names every bad key', async (t) => {
  const dir = scratchDir('cli');
  const config = join(dir, 'bad.yaml');
  writeFileSync(config, 'dicom:\n  port: 70000\n  aetitle: X\n');
  const result = await run(process.execPath, [GANTRY_CLI, 'config', 'check', '--config', config]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /dicom\.port: 70000 is not allowed; at most 65535/);
  assert.match(result.stderr, /dicom: unknown key "aetitle"/);
});

test('a reader that closes the pipe early does not crash the command', async () => {
  const child = spawn(process.execPath, [GANTRY_CLI, 'config', 'show'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Closed before the command writes: every write of its output meets a closed pipe (EPIPE).
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(stderr, '', 'no stack trace');
  assert.equal(code, 0);
});
