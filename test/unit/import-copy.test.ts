/** gantry import --copy: the copy placed under storage.path is the file the scan read. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { copyIntoStorage, type ScannedInstance } from '../../src/toolkit/import-scan.js';
import { recordingSyncs } from '../helpers/fs-syncs.js';
import { scratchDir } from '../helpers/scratch.js';

function scannedOf(path: string, size: number): ScannedInstance {
  return {
    kind: 'dicom',
    path,
    size,
    stamp: { mtimeNs: '0', ino: '0' },
    attributes: {},
    studyInstanceUid: '1.2.1',
    seriesInstanceUid: '1.2.1.1',
    sopInstanceUid: '1.2.1.1.1',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
  };
}

// Suspected in the deletion review: the row took the size the scan saw, and the copy was made later
// of whatever the file held then. A file still being written got a copy of another size, and after an
// unclean stop the check of the newest rows deleted that row and its copy, though the import had
// reported it indexed (and its user may have removed the source since).
test('a file whose size changed between the scan and the copy is refused, and no copy is left', () => {
  const dir = scratchDir('import-copy');
  const source = join(dir, 'growing.dcm');
  writeFileSync(source, Buffer.alloc(300, 1));
  const storage = join(dir, 'storage');
  assert.throws(() => copyIntoStorage(source, storage, scannedOf(source, 200)), /the file changed while it was imported/);
  const folder = join(storage, 'originals');
  const left = existsSync(folder) ? readdirSync(folder, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()) : [];
  assert.deepEqual(left, [], 'no copy, whole or temporary');
  const relative = copyIntoStorage(source, storage, scannedOf(source, 300));
  assert.ok(existsSync(join(storage, relative)), 'a file of the size scanned is copied');
  assert.equal(dirname(relative).startsWith('originals'), true);
});

// Found in the durability review: the copy was renamed into folders made with mkdir -p, and neither
// those folders nor the copy's name were synced before the batch committed its row. A power cut could
// keep the row and lose the name: the instance failed as "gone since it was imported", its data left
// under a temporary name nothing names.
test('the copy\'s name and every folder made for it are synced before copyIntoStorage returns', (t) => {
  const dir = scratchDir('import-copy-sync');
  const source = join(dir, 'one.dcm');
  writeFileSync(source, Buffer.alloc(300, 1));
  const storage = join(dir, 'storage');
  mkdirSync(storage);
  const { result: copy, events } = recordingSyncs(t, storage, () => copyIntoStorage(source, storage, scannedOf(source, 300)));
  const renamed = events.indexOf(`rename ${copy}`);
  assert.ok(renamed >= 0, `the copy is renamed into place: ${events.join(', ')}`);
  assert.ok(events.indexOf(`sync ${dirname(copy)}`) > renamed, `its folder is synced after the rename: ${events.join(', ')}`);
  for (const folder of ['', 'originals', dirname(dirname(copy))]) assert.ok(events.includes(`sync ${folder}`), `${folder || 'storage.path'} is synced (a folder made in it): ${events.join(', ')}`);
});
