/** The pseudonym ledger (record, upsert, lookups both ways). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PseudonymLedger } from '../../src/index/pseudonym-ledger.js';
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

test('an original recorded again keeps the newest pseudonym, in one row', (t) => {
  const db = openScratchIndex(t, 'pseudonym-ledger');
  const ledger = new PseudonymLedger(db);
  ledger.record([{ kind: 'PatientID', original: 'MRN-1', pseudonym: 'GPOLD' }], 1000);
  ledger.record([{ kind: 'PatientID', original: 'MRN-1', pseudonym: 'GPNEW' }], 2000);
  assert.equal(countRows(db, 'pseudonym_map'), 1);
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-1'), 'GPNEW');
  assert.equal(ledger.originalOf('PatientID', 'GPNEW'), 'MRN-1');
  assert.equal(ledger.originalOf('PatientID', 'GPOLD'), undefined, 'the replaced pseudonym no longer leads back');
  // A record older than the one kept does not replace it.
  ledger.record([{ kind: 'PatientID', original: 'MRN-1', pseudonym: 'GPSTALE' }], 1500);
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-1'), 'GPNEW');
  // Within one call, the later entry wins.
  ledger.record(
    [
      { kind: 'PatientID', original: 'MRN-2', pseudonym: 'GPFIRST' },
      { kind: 'PatientID', original: 'MRN-2', pseudonym: 'GPSECOND' },
    ],
    3000,
  );
  assert.equal(ledger.pseudonymOf('PatientID', 'MRN-2'), 'GPSECOND');
  assert.equal(countRows(db, 'pseudonym_map'), 2);
});

test('a large batch, written many rows per statement in key order, keeps every mapping and the later of two', (t) => {
  const db = openScratchIndex(t, 'pseudonym-ledger');
  const ledger = new PseudonymLedger(db);
  // 130 distinct originals in no order (37 and 130 are coprime), then one of them again.
  const entries = Array.from({ length: 130 }, (_, n) => ({ kind: n % 2 === 0 ? 'PatientID' : 'PatientName', original: `O${(n * 37) % 130}`, pseudonym: `P${n}` }));
  entries.push({ kind: 'PatientID', original: 'O0', pseudonym: 'PLATER' });
  ledger.record(entries);
  assert.equal(countRows(db, 'pseudonym_map'), 130);
  for (const entry of entries.slice(1, 130)) assert.equal(ledger.pseudonymOf(entry.kind, entry.original), entry.pseudonym, entry.original);
  assert.equal(ledger.pseudonymOf('PatientID', 'O0'), 'PLATER');
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
