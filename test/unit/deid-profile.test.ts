import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { scratchDir } from '../helpers/scratch.js';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PROFILE_EDITION, PROFILE_ROWS } from '../../src/deid/profile-2024b.js';
import { run } from '../helpers/processes.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('the profile is PS3.15 2024b Table E.1-1: 621 rows with the edition counts of each action', () => {
  assert.equal(PROFILE_EDITION, '2024b');
  assert.equal(PROFILE_ROWS.length, 621);
  const counts: Record<string, number> = {};
  for (const row of PROFILE_ROWS) counts[row.basic] = (counts[row.basic] ?? 0) + 1;
  assert.deepEqual(counts, { X: 384, D: 92, U: 54, Z: 42, 'X/D': 22, 'X/Z': 11, 'X/Z/D': 8, 'Z/D': 6, 'X/Z/U*': 2 });
  const byKeyword = new Map(PROFILE_ROWS.map((row) => [row.keyword, row]));
  assert.equal(byKeyword.get('PatientID')?.basic, 'Z/D', 'since 2024b Patient ID is Z/D');
  assert.equal(byKeyword.get('PatientName')?.basic, 'Z');
  assert.equal(byKeyword.get('StudyInstanceUID')?.basic, 'U');
  assert.deepEqual(byKeyword.get('AcquisitionDate')?.options, { retainLongitudinalFullDates: 'K', retainLongitudinalModifiedDates: 'C' });
  assert.ok(PROFILE_ROWS.some((row) => row.tag === 'private' && row.basic === 'X'));
  assert.ok(PROFILE_ROWS.some((row) => row.tag === '60xx3000'));
});

// The source is kept in the repository: beside ../shared only, this check was skipped in every CI run
// of a clean clone (found in the review of the test suite).
test('the committed table is what the generator makes of the source, and the source is the shared one where that is at hand', async () => {
  const source = join(ROOT, 'scripts', 'dicom-standard', 'confidentiality_profile_attributes.json');
  const dir = scratchDir('profile');
  const out = join(dir, 'profile.ts');
  const result = await run(process.execPath, [join(ROOT, 'dist', 'scripts', 'generate-deid-profile.js'), '--edition', '2024b', '--from', source, '--out', out], { cwd: ROOT });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(readFileSync(out, 'utf8'), readFileSync(join(ROOT, 'src', 'deid', 'profile-2024b.ts'), 'utf8'));
  const shared = join(ROOT, '..', 'shared', 'dicom-standard', 'confidentiality_profile_attributes.json');
  if (existsSync(shared)) assert.ok(readFileSync(shared).equals(readFileSync(source)), 'the copy in scripts/dicom-standard is the shared source');
});
