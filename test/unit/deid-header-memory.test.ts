/**
 * The heap a de-identification holds per data element of the header: what decides how large a header
 * a 96 MB de-identification thread can take (docs/operations.md, "Large headers").
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseConfigText } from '../../src/config/load.js';
import { compileProfiles } from '../../src/deid/decide.js';
import { planDeidentification } from '../../src/deid/deidentify-file.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { baseSettingsFromConfig, profilesFromConfig } from '../../src/deid/settings.js';
import { ELEMENTS_PER_CONTOUR, writeLargeStructureSet } from '../helpers/large-header.js';
import { scratchDir } from '../helpers/scratch.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heapUsed(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

// Measured 385 bytes per element before (a push-grown array kept room for 16 entries in every item,
// and each audit entry kept its path as the chain of pieces it was joined from), 302 after.
test('a planned de-identification of a large structure set holds under 340 bytes of heap per data element', async (t) => {
  const path = join(scratchDir('header-memory'), 'rtstruct.dcm');
  const contours = 20_000;
  await writeLargeStructureSet(path, { contours, studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.4', patientId: 'MEM-1', patientName: 'Heap^Patient' });
  const config = parseConfigText(JSON.stringify({ deid: { secret: 'the secret of the memory test' } }), 'memory-test.yaml');
  const settings = { profiles: compileProfiles(profilesFromConfig(config)), base: baseSettingsFromConfig(config) };
  const pseudonyms = new Pseudonymizer('the secret of the memory test');
  const before = heapUsed();
  const plan = planDeidentification(path, { settings, pseudonyms });
  const perElement = (heapUsed() - before) / (contours * ELEMENTS_PER_CONTOUR);
  t.diagnostic(`${perElement.toFixed(0)} bytes of heap per element`);
  try {
    assert.equal(plan.result.kind, 'deidentified');
    assert.ok(perElement < 340, `${perElement.toFixed(0)} bytes of heap per element`);
  } finally {
    plan.close();
  }
});
