import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStandardStorageSopClass, mayBeUnlistedStorageSopClass, SIEMENS_CSA_NON_IMAGE_STORAGE } from '../../src/dicom/sop-classes.js';
import { STORAGE_SOP_CLASS_ROWS, STORAGE_SOP_CLASSES_EDITION } from '../../src/dicom/storage-sop-classes.js';

test('the storage SOP class table has the 175 rows of PS3.4 2024b Table B.5-1', () => {
  assert.equal(STORAGE_SOP_CLASSES_EDITION, '2024b');
  assert.equal(STORAGE_SOP_CLASS_ROWS.length, 175);
  assert.equal(new Set(STORAGE_SOP_CLASS_ROWS.map(([uid]) => uid)).size, 175);
  for (const [uid, name] of STORAGE_SOP_CLASS_ROWS) {
    assert.match(uid, /^1\.2\.840\.10008\.[0-9.]+$/);
    assert.ok(name.length > 0);
  }
});

test('well-known classes are in the table; query/retrieve and private classes are not', () => {
  assert.ok(isStandardStorageSopClass('1.2.840.10008.5.1.4.1.1.2')); // CT Image Storage
  assert.ok(isStandardStorageSopClass('1.2.840.10008.5.1.4.1.1.6.1')); // Ultrasound Image Storage
  assert.ok(isStandardStorageSopClass('1.2.840.10008.5.1.4.1.1.104.1')); // Encapsulated PDF Storage
  assert.ok(!isStandardStorageSopClass('1.2.840.10008.5.1.4.1.2.2.1')); // Study Root Q/R FIND
  assert.ok(!isStandardStorageSopClass(SIEMENS_CSA_NON_IMAGE_STORAGE));
});

test('unlisted storage classes: private and retired ones may be storage, other services never', () => {
  assert.ok(mayBeUnlistedStorageSopClass(SIEMENS_CSA_NON_IMAGE_STORAGE));
  assert.ok(mayBeUnlistedStorageSopClass('1.2.840.10008.5.1.4.1.1.6')); // retired Ultrasound Image Storage
  assert.ok(!mayBeUnlistedStorageSopClass('1.2.840.10008.5.1.4.1.2.2.1'));
  assert.ok(!mayBeUnlistedStorageSopClass('1.2.840.10008.1.20.1')); // Storage Commitment
});
