import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';

const SECRET = 'a test secret of enough length';

test('a replacement UID is 2.25 and a version-4 UUID, the same for the same input and secret', () => {
  const one = new Pseudonymizer(SECRET);
  const uid = one.uid('1.2.840.113619.2.55.3.604688119.969.1268071029.320');
  assert.match(uid, /^2\.25\.[1-9][0-9]*$/);
  assert.ok(uid.length <= 64, 'a UID has at most 64 characters (PS3.5 9.1)');
  const hex = BigInt(uid.slice(5)).toString(16).padStart(32, '0');
  assert.equal(hex[12], '4', 'version 4');
  assert.match(hex[16] ?? '', /[89ab]/, 'RFC 4122 variant');
  assert.equal(new Pseudonymizer(SECRET).uid('1.2.840.113619.2.55.3.604688119.969.1268071029.320'), uid, 'after a restart, on another node');
  assert.notEqual(new Pseudonymizer(`${SECRET}!`).uid('1.2.840.113619.2.55.3.604688119.969.1268071029.320'), uid, 'another secret, another UID');
  assert.notEqual(one.uid('1.2.3.4'), one.uid('1.2.3.5'));
});

test('the patient key is issuer and ID: the same MRN from two issuers gives two pseudonyms', () => {
  const p = new Pseudonymizer(SECRET);
  const a = { issuerOfPatientId: 'HOSP_A', patientId: '12345' };
  const b = { issuerOfPatientId: 'HOSP_B', patientId: '12345' };
  assert.notEqual(p.patientId(a), p.patientId(b));
  assert.equal(p.patientId(a), p.patientId({ ...a }));
  assert.match(p.patientId(a), /^GP[A-Z2-7]{16}$/);
  assert.match(p.patientName(a), /^ANONYMOUS\^[A-Z2-7]{8}$/);
  assert.notEqual(p.patientId(a), p.patientName(a).slice(10), 'the roles never share output');
});

test('an empty PatientID falls back to the study', () => {
  const p = new Pseudonymizer(SECRET);
  const x = p.patientId({ issuerOfPatientId: '', patientId: '', studyInstanceUid: '1.2.3' });
  const y = p.patientId({ issuerOfPatientId: '', patientId: '', studyInstanceUid: '1.2.4' });
  assert.notEqual(x, y);
});

test('date offsets are per patient, whole days, inside the range', () => {
  const p = new Pseudonymizer(SECRET);
  const offsets = new Set<number>();
  for (let i = 0; i < 200; i += 1) {
    const offset = p.dateOffsetDays({ issuerOfPatientId: '', patientId: `P${i}` }, 30, 3650);
    assert.ok(Number.isInteger(offset) && offset <= -30 && offset >= -3650, String(offset));
    offsets.add(offset);
  }
  assert.ok(offsets.size > 150, 'offsets spread over the range');
  assert.equal(p.dateOffsetDays({ issuerOfPatientId: '', patientId: 'P1' }, 30, 3650), p.dateOffsetDays({ issuerOfPatientId: '', patientId: 'P1' }, 30, 3650));
});

test('a short secret is refused', () => {
  assert.throws(() => new Pseudonymizer('short'), /at least 16 bytes/);
});

test('remembered derivations are the ones computed afresh, past the memory size, and keys that differ only where a NUL falls stay apart', () => {
  const p = new Pseudonymizer(SECRET);
  const study = '1.2.826.0.1.3680043.9.7433.1.1';
  const first = p.uid(study);
  // 5,000 distinct UIDs: more than the pseudonymizer remembers, so its memory is cleared on the way.
  for (let i = 0; i < 5000; i += 1) {
    const uid = `1.2.826.0.1.3680043.9.7433.3.${i}`;
    assert.equal(p.uid(uid), new Pseudonymizer(SECRET).uid(uid));
  }
  assert.equal(p.uid(study), first, 'the same UID again, remembered or not');
  assert.equal(p.uid(study), new Pseudonymizer(SECRET).uid(study));
  const a = { issuerOfPatientId: 'A\0B', patientId: 'C' };
  const b = { issuerOfPatientId: 'A', patientId: 'B\0C' };
  assert.notEqual(p.patientId(a), p.patientId(b));
  assert.equal(p.patientId(b), new Pseudonymizer(SECRET).patientId(b));
});
