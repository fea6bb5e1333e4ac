/** gantry deid --out DIR (src/cli/deid.ts): what it leaves in DIR besides its outputs. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runDeid } from '../../src/cli/deid.js';
import { parseConfigText, type LoadedConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/observability/logger.js';
import { scratchDir } from '../helpers/scratch.js';

// Found in a review: the outputs were staged in DIR/.staging, deleted with everything in it at the
// end: a folder of that name the user already had in DIR went with the run.
test('gantry deid stages its outputs in a folder of its own, and leaves the folders it finds in DIR', () => {
  const dir = scratchDir('deid-cli');
  const storagePath = join(dir, 'data');
  const loaded: LoadedConfig = { config: parseConfigText(`storage:\n  path: ${storagePath}\ndeid:\n  secret: a secret of this test\n`, 'test'), source: 'test', embedded: false };
  const out = join(dir, 'out');
  mkdirSync(join(out, '.staging'), { recursive: true });
  writeFileSync(join(out, '.staging', 'notes.txt'), 'the user\'s');
  const summary = runDeid(loaded, [], out, silentLogger());
  assert.equal(summary.done, 0);
  assert.ok(existsSync(join(out, '.staging', 'notes.txt')), "the user's folder and file stay");
  assert.deepEqual(readdirSync(out), ['.staging'], 'the run leaves no staging folder of its own');
});
