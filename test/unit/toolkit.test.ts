/**
 * The toolkit's pure parts and its promises to imported files: layouts name only de-identified values
 * and stay inside the export folder; retention and the start-up check never delete an imported file;
 * held instances are never routed.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDatabase } from '../../src/db/database.js';
import { InstanceIndex, type InstanceRecord } from '../../src/index/instance-index.js';
import { RetentionWork } from '../../src/index/retention-work.js';
import { checkLayout, DEFAULT_LAYOUT, layoutPath } from '../../src/toolkit/layout.js';
import { instanceRecord } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

test('a layout is filled with safe path segments, and a bad one is refused with the allowed keywords', () => {
  assert.equal(
    layoutPath(DEFAULT_LAYOUT, { PatientID: 'ABC', StudyInstanceUID: '1.2', SeriesInstanceUID: '1.2.3', SOPInstanceUID: '1.2.3.4' }),
    'ABC/1.2/1.2.3/1.2.3.4.dcm',
  );
  assert.match(layoutPath('{PatientName}/{SOPInstanceUID}.dcm', { PatientName: '../../etc/passwd', SOPInstanceUID: '9' }), /^__\.\._etc_passwd~[0-9a-f]{16}\/9\.dcm$/);
  assert.equal(layoutPath('{PatientID}/{Modality}/{SOPInstanceUID}', { PatientID: '', SOPInstanceUID: '1' }), '_/_/1');
  assert.match(layoutPath('{PatientName}', { PatientName: 'a\u0000b:c*d' }), /^a_b_c_d~[0-9a-f]{16}$/);
  // Values changed to be safe stay distinct: two invalid UIDs kept by retainUIDs (found in a review).
  const names = ['1.2/3', '1.2:3', '1.2_3', '1.2*3'].map((uid) => layoutPath('{SOPInstanceUID}.dcm', { SOPInstanceUID: uid }));
  assert.equal(new Set(names).size, names.length, names.join(' '));
  assert.equal(names[2], '1.2_3.dcm', 'a value that needed no change keeps its name');
  // Likewise two long values that share their first 128 bytes.
  const long = ['a', 'b'].map((last) => layoutPath('{PatientName}', { PatientName: `${'x'.repeat(140)}${last}` }));
  assert.notEqual(long[0], long[1]);
  assert.ok(long.every((name) => Buffer.byteLength(name) <= 128), long.join(' '));
  assert.doesNotThrow(() => checkLayout(DEFAULT_LAYOUT));
  assert.throws(() => checkLayout('{PatientBirthDate}/{SOPInstanceUID}'), /unknown \{PatientBirthDate\}; allowed: \{PatientID\}/);
  assert.throws(() => checkLayout('{PatientID}/x.dcm'), /must contain \{SOPInstanceUID\}/);
  assert.throws(() => checkLayout('../{SOPInstanceUID}'), /relative path without/);
  // An export run again deletes what an interrupted one left half-written by these suffixes.
  assert.throws(() => checkLayout('{SOPInstanceUID}.partial'), /must not end in \.partial or \.frames/);
  assert.throws(() => checkLayout('{SOPInstanceUID}.frames'), /must not end in/);
  assert.doesNotThrow(() => checkLayout('{SOPInstanceUID}.partial/x.dcm'));
  // Found in the export review: these passed, and then every instance failed ENOENT.
  assert.throws(() => checkLayout('{SOPInstanceUID}/'), /must not end in "\/" or hold "\/\/"/);
  assert.throws(() => checkLayout('{StudyInstanceUID}//{SOPInstanceUID}.dcm'), /must not end in "\/"/);
});

/** Instance n, received over the network or imported in place (held from forwarding). */
function record(n: number, imported: boolean): InstanceRecord {
  if (!imported) return instanceRecord(n);
  return instanceRecord(n, { filePath: `../tree/${n}.dcm`, callingAeTitle: 'IMPORT', sourcePath: `/somewhere/tree/${n}.dcm`, external: true, forwardHeld: true });
}

test('retention deletes forwarded originals, never an imported file in place; the newest-rows check skips them too', () => {
  const db = openDatabase(join(scratchDir('toolkit-retention'), 'index.sqlite'));
  try {
    const index = new InstanceIndex(db);
    db.transaction(() => {
      index.upsert(record(1, false));
      index.upsert(record(2, true));
    })();
    db.prepare(`UPDATE instances SET state = 'forwarded', state_changed_at = 0, deid_file_path = 'deidentified/' || id || '.dcm'`).run();
    const removed: string[] = [];
    const count = new RetentionWork(db).deleteExpired('original', Date.now(), 100, (path) => removed.push(path));
    assert.equal(count, 1);
    assert.deepEqual(removed, ['originals/1.dcm']);
    // Neither is checked at start-up: the imported file is the user's, the original is meant to be gone.
    assert.deepEqual(index.recentInstances(3_600_000), []);
    assert.equal(index.findInstance('1.2.1.1.2')?.external, true);
    assert.equal(index.findInstance('1.2.1.1.1')?.external, false);
  } finally {
    db.close();
  }
});
