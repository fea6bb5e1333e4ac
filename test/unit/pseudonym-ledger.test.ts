/** The pseudonym ledger (record, upsert, lookups both ways). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PseudonymLedger, type PseudonymMapping } from '../../src/index/pseudonym-ledger.js';
import { countRows, openScratchIndex } from '../helpers/scratch-index.js';

test('recorded mappings are found both ways, per kind', (t) => {
  const db = openScratchIndex(t, 'pseudonym-ledger');
  const ledger = new PseudonymLedger(db);
  ledger.record([
    { kind: 'PatientID', original: 'MRN-0042', pseudonym: 'GPAAAAAAAAAAAAAAAA' },
    { kind: 'PatientName', original: 'Doe^Jane', pseudonym: 'ANONYMOUS^BBBBBBBB' },
    { kind: 'StudyInstanceUID', original: '1.2.3.4', pseudonym: '2.25.1234' },
  ]);
  assert.equal(countRows(db, 'pseudonym_map'), 3);
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-0042'), 'GPAAAAAAAAAAAAAAAA');
  assert.equal(ledger.pseudonymOf('PatientName', 'Doe^Jane'), 'ANONYMOUS^BBBBBBBB');
  assert.equal(ledger.originalOf('PatientName', 'ANONYMOUS^BBBBBBBB'), 'Doe^Jane');
  assert.equal(ledger.originalOf('StudyInstanceUID', '2.25.1234'), '1.2.3.4');
  // The kind is part of the key: a value under another keyword is not found.
  assert.equal(ledger.pseudonymOf('PatientName', 'MRN-0042'), undefined);
  assert.equal(ledger.originalOf('PatientID', 'ANONYMOUS^BBBBBBBB'), undefined);
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-0043'), undefined);
});

// Found in a review: one pseudonym per original was kept, and an original has several (two issuers'
// patients with one ID, two patients with one name, a secret changed): every one must lead back.
test('an original recorded with another pseudonym keeps both; pseudonymOf answers the newest', (t) => {
  const db = openScratchIndex(t, 'pseudonym-ledger');
  const ledger = new PseudonymLedger(db);
  ledger.record([{ kind: 'PatientID', original: 'MRN-1', pseudonym: 'GPOLD', issuerOfPatientId: 'HOSP_A' }], 1000);
  ledger.record([{ kind: 'PatientID', original: 'MRN-1', pseudonym: 'GPNEW', issuerOfPatientId: 'HOSP_B' }], 2000);
  assert.equal(countRows(db, 'pseudonym_map'), 2);
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-1'), 'GPNEW');
  assert.equal(ledger.originalOf('PatientID', 'GPNEW'), 'MRN-1');
  assert.equal(ledger.originalOf('PatientID', 'GPOLD'), 'MRN-1', 'the other pseudonym still leads back');
  const issuers = db.prepare(`SELECT pseudonym || ' ' || issuer_of_patient_id FROM pseudonym_map ORDER BY pseudonym`).pluck().all();
  assert.deepEqual(issuers, ['GPNEW HOSP_B', 'GPOLD HOSP_A']);
  // Recorded again, the older pseudonym is the newest record; one recorded earlier changes nothing.
  ledger.record([{ kind: 'PatientID', original: 'MRN-1', pseudonym: 'GPOLD' }], 3000);
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-1'), 'GPOLD');
  ledger.record([{ kind: 'PatientID', original: 'MRN-1', pseudonym: 'GPNEW' }], 1500);
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-1'), 'GPOLD');
  assert.equal(countRows(db, 'pseudonym_map'), 2);
  assert.deepEqual(db.prepare(`SELECT issuer_of_patient_id FROM pseudonym_map ORDER BY pseudonym`).pluck().all(), ['HOSP_B', 'HOSP_A'], 'a record without an issuer keeps the one known');
});

test('a large batch, written many rows per statement in key order, keeps every mapping once', (t) => {
  const db = openScratchIndex(t, 'pseudonym-ledger');
  const ledger = new PseudonymLedger(db);
  // 130 distinct originals in no order (37 and 130 are coprime), then one of them again.
  const entries = Array.from({ length: 130 }, (_, n) => ({ kind: n % 2 === 0 ? 'PatientID' : 'PatientName', original: `O${(n * 37) % 130}`, pseudonym: `P${n}` }));
  // One original with a second pseudonym, and one mapping given twice.
  entries.push({ kind: 'PatientID', original: 'O0', pseudonym: 'PLATER' }, { ...(entries[1] as PseudonymMapping) });
  ledger.record(entries);
  assert.equal(countRows(db, 'pseudonym_map'), 131, 'every pseudonym once');
  for (const entry of entries.slice(1, 130)) assert.equal(ledger.pseudonymOf(entry.kind, entry.original), entry.pseudonym, entry.original);
  assert.deepEqual(ledger.originalsOf('PatientID', 'PLATER'), ['O0']);
  assert.deepEqual(ledger.originalsOf('PatientID', 'P0'), ['O0']);
  assert.equal(ledger.originalOf('PatientName', 'P129'), `O${(129 * 37) % 130}`);
});

test('originals sharing a pseudonym (two spellings of one name): the last recorded answers, all are listed', (t) => {
  const db = openScratchIndex(t, 'pseudonym-ledger');
  const ledger = new PseudonymLedger(db);
  ledger.record([{ kind: 'PatientName', original: 'Doe^Jane', pseudonym: 'ANONYMOUS^SAME' }], 1000);
  ledger.record([{ kind: 'PatientName', original: 'DOE^JANE^^^', pseudonym: 'ANONYMOUS^SAME' }], 2000);
  assert.equal(ledger.originalOf('PatientName', 'ANONYMOUS^SAME'), 'DOE^JANE^^^');
  assert.deepEqual(ledger.originalsOf('PatientName', 'ANONYMOUS^SAME'), ['DOE^JANE^^^', 'Doe^Jane']);
  assert.deepEqual(ledger.originalsOf('PatientName', 'ANONYMOUS^OTHER'), []);
});

test('a batch that fails part-way records nothing (one transaction)', (t) => {
  const db = openScratchIndex(t, 'pseudonym-ledger');
  const ledger = new PseudonymLedger(db);
  assert.throws(() =>
    ledger.record([
      { kind: 'PatientID', original: 'MRN-1', pseudonym: 'GP1' },
      { kind: 'PatientID', original: 'MRN-2', pseudonym: null as unknown as string },
    ]),
  );
  assert.equal(countRows(db, 'pseudonym_map'), 0);
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-1'), undefined);
});
