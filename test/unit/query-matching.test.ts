/** C-FIND attribute matching (PS3.4 C.2.2.2) run against a real SQLite table. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { InstanceIndex, type InstanceRecord } from '../../src/index/instance-index.js';
import { studyRootFind } from '../helpers/study-root-find.js';
import { matchCondition, MatchingError } from '../../src/query/matching.js';
import { instanceRecord } from '../helpers/index-records.js';
import { openScratchIndex } from '../helpers/scratch-index.js';
import { encodeDataset } from '../helpers/synthetic-dicom.js';

const ROWS: Array<{ name: string; date: string; time: string; uid: string; desc: string }> = [
  { name: 'Doe^John', date: '20240115', time: '093015.5', uid: '1.2.3.4', desc: 'CT HEAD' },
  { name: 'DOE^JANE', date: '20240131', time: '235959', uid: '1.2.3.5', desc: 'CT [CHEST]' },
  { name: 'Smith^Anna', date: '20240201', time: '080000', uid: '1.2.3.6', desc: 'MR KNEE' },
  { name: 'Smith_Ann', date: '', time: '', uid: '1.2.3.7', desc: '' },
  { name: 'Müller^Jörg', date: '20231231', time: '120000', uid: '1.2.3.8', desc: 'ct head' },
];

function matching(column: string, vr: string, value: string): string[] {
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (name TEXT, date TEXT, time TEXT, uid TEXT, desc TEXT)');
  const insert = db.prepare('INSERT INTO t VALUES (@name, @date, @time, @uid, @desc)');
  for (const row of ROWS) insert.run(row);
  const condition = matchCondition(column, vr, value);
  const rows = db.prepare(`SELECT name FROM t WHERE ${condition?.sql ?? '1'} ORDER BY rowid`).all(...(condition?.params ?? [])) as Array<{ name: string }>;
  db.close();
  return rows.map((row) => row.name);
}

const ALL = ROWS.map((row) => row.name);

test('universal matching: an empty value or "*" matches everything', () => {
  assert.deepEqual(matching('name', 'PN', ''), ALL);
  assert.deepEqual(matching('name', 'PN', '*'), ALL);
  assert.deepEqual(matching('date', 'DA', ''), ALL);
  assert.equal(matchCondition('name', 'PN', '  '), undefined);
});

test('single value matching: exact and case-sensitive, except PN which ignores case', () => {
  assert.deepEqual(matching('desc', 'LO', 'CT HEAD'), ['Doe^John']);
  assert.deepEqual(matching('desc', 'LO', 'CT HEAD '), ['Doe^John'], 'trailing padding is not significant');
  assert.deepEqual(matching('name', 'PN', 'doe^john'), ['Doe^John']);
  assert.deepEqual(matching('name', 'PN', 'Müller^Jörg'), ['Müller^Jörg']);
});

test('wild card matching: * and ?, PN without case, nothing else read as a pattern', () => {
  assert.deepEqual(matching('name', 'PN', 'doe*'), ['Doe^John', 'DOE^JANE']);
  assert.deepEqual(matching('name', 'PN', 'Smith?Ann*'), ['Smith^Anna', 'Smith_Ann']);
  assert.deepEqual(matching('name', 'PN', 'Smith_*'), ['Smith_Ann'], 'an underscore is a character, not a pattern');
  assert.deepEqual(matching('desc', 'LO', 'CT*'), ['Doe^John', 'DOE^JANE'], 'case-sensitive for LO');
  assert.deepEqual(matching('desc', 'LO', 'CT [C*'), ['DOE^JANE'], 'a bracket is a character');
  assert.deepEqual(matching('desc', 'LO', '?? HEAD'), ['Doe^John']);
});

test('list of UID matching', () => {
  assert.deepEqual(matching('uid', 'UI', '1.2.3.4\\1.2.3.6'), ['Doe^John', 'Smith^Anna']);
  assert.deepEqual(matching('uid', 'UI', '1.2.3.5'), ['DOE^JANE']);
  assert.throws(() => matchCondition('uid', 'UI', '1.2.*'), MatchingError);
});

test('range matching on dates and times, bounds included', () => {
  assert.deepEqual(matching('date', 'DA', '20240115-20240131'), ['Doe^John', 'DOE^JANE']);
  assert.deepEqual(matching('date', 'DA', '20240131-'), ['DOE^JANE', 'Smith^Anna']);
  assert.deepEqual(matching('date', 'DA', '-20231231'), ['Müller^Jörg'], 'an empty date is in no range');
  assert.deepEqual(matching('date', 'DA', '20240201'), ['Smith^Anna']);
  assert.deepEqual(matching('time', 'TM', '0930-1200'), ['Doe^John', 'Müller^Jörg'], 'an upper bound covers its finer values');
  assert.deepEqual(matching('time', 'TM', '2359'), ['DOE^JANE'], 'a time matches the values it is a prefix of');
  assert.throws(() => matchCondition('date', 'DA', '2024-01-15'), /not a DA value or range/);
  assert.throws(() => matchCondition('date', 'DA', '-'), /not a range/);
});

test('empty value matching: "" matches an empty or absent value', () => {
  assert.deepEqual(matching('date', 'DA', '""'), ['Smith_Ann']);
  assert.deepEqual(matching('desc', 'LO', '""'), ['Smith_Ann']);
});

test('a person name matches without its empty trailing components (PS3.5 6.2.1.1: "Doe^John^^" is "Doe^John")', () => {
  // Found in a review: neither form matched the other.
  const db = new Database(':memory:');
  db.exec('CREATE TABLE p (name TEXT)');
  for (const name of ['Doe^John^^', 'Roe^Jane', 'Poe^Edgar^^^Mr']) db.prepare('INSERT INTO p VALUES (?)').run(name);
  const names = (value: string) => {
    const condition = matchCondition('name', 'PN', value);
    return (db.prepare(`SELECT name FROM p WHERE ${condition?.sql ?? '1'} ORDER BY rowid`).all(...(condition?.params ?? [])) as Array<{ name: string }>).map((row) => row.name);
  };
  assert.deepEqual(names('Doe^John'), ['Doe^John^^']);
  assert.deepEqual(names('Roe^Jane^'), ['Roe^Jane']);
  assert.deepEqual(names('roe^jane^^='), ['Roe^Jane'], 'an empty trailing component group too');
  assert.deepEqual(names('*^John'), ['Doe^John^^'], 'wild card');
  assert.deepEqual(names('Poe^Edgar'), [], 'a component that is not empty still counts');
  db.close();
});

test('TM keys and stored times are compared at one precision: a stored 101112 is the instant 101112.000', () => {
  // Found in a review: "101112.000-" left out a stored 101112, and the single value 101112.000 too.
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (time TEXT)');
  for (const time of ['101112', '101112.7', '1013', '0930', '']) db.prepare('INSERT INTO t VALUES (?)').run(time);
  const times = (value: string) => {
    const condition = matchCondition('time', 'TM', value);
    return (db.prepare(`SELECT time FROM t WHERE ${condition?.sql ?? '1'} ORDER BY rowid`).all(...(condition?.params ?? [])) as Array<{ time: string }>).map((row) => row.time);
  };
  assert.deepEqual(times('101112.000'), ['101112']);
  assert.deepEqual(times('101112'), ['101112', '101112.7'], 'a single value covers the finer values it is a prefix of');
  assert.deepEqual(times('101112.000-'), ['101112', '101112.7', '1013']);
  assert.deepEqual(times('101112.0-101112.5'), ['101112']);
  assert.deepEqual(times('-101112.000'), ['101112', '0930']);
  assert.deepEqual(times('1011-1012'), ['101112', '101112.7'], 'an upper bound covers its minute');
  assert.deepEqual(times('0930'), ['0930']);
  db.close();
});

test('a key of "*" runs only is universal matching too: it matches an absent value, as "*" does', () => {
  // Found in a review: "**" went to GLOB / LIKE, which never match NULL, so an entity without the
  // attribute was left out though "*" matches any sequence of characters, a zero-length one included
  // (PS3.4 C.2.2.2.4), and "*" alone found it.
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (name TEXT, desc TEXT)');
  for (const [name, desc] of [['Doe^John', 'CT HEAD'], [null, null]]) db.prepare('INSERT INTO t VALUES (?, ?)').run(name, desc);
  const count = (column: string, vr: string, value: string) => {
    const condition = matchCondition(column, vr, value);
    return db.prepare(`SELECT count(*) FROM t WHERE ${condition?.sql ?? '1'}`).pluck().get(...(condition?.params ?? [])) as number;
  };
  assert.equal(count('desc', 'LO', '*'), 2);
  assert.equal(count('desc', 'LO', '**'), 2);
  assert.equal(count('name', 'PN', '***'), 2);
  assert.equal(count('desc', 'LO', '*HEAD'), 1, 'a pattern with other characters still needs a value');
  db.close();
});

test('a stored attribute with several values matches when any of its values matches (PS3.4 C.2.2.3)', () => {
  // Found in a review: ImageType ORIGINAL\PRIMARY\AXIAL was compared whole, so the key PRIMARY (or
  // PRIM*) found nothing, and "O*Y" matched across two values.
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (v TEXT)');
  for (const value of ['ORIGINAL\\PRIMARY\\AXIAL', 'DERIVED \\SECONDARY', 'PRIMARY', null]) db.prepare('INSERT INTO t VALUES (?)').run(value);
  const values = (key: string) => {
    const condition = matchCondition('v', 'CS', key, { multiValued: true });
    return db.prepare(`SELECT v FROM t WHERE ${condition?.sql ?? '1'} ORDER BY rowid`).pluck().all(...(condition?.params ?? []));
  };
  assert.deepEqual(values('PRIMARY'), ['ORIGINAL\\PRIMARY\\AXIAL', 'PRIMARY']);
  assert.deepEqual(values('DERIVED'), ['DERIVED \\SECONDARY'], "a value's padding is not significant");
  assert.deepEqual(values('PRIM*'), ['ORIGINAL\\PRIMARY\\AXIAL', 'PRIMARY']);
  assert.deepEqual(values('O*Y'), [], 'a wild card does not run across values');
  assert.deepEqual(values('ORIGINAL\\PRIMARY\\AXIAL'), ['ORIGINAL\\PRIMARY\\AXIAL'], 'a key of several values is matched whole (C.2.2.2.8: undefined without extended negotiation)');
  assert.deepEqual(values(''), ['ORIGINAL\\PRIMARY\\AXIAL', 'DERIVED \\SECONDARY', 'PRIMARY', null]);
  assert.deepEqual(values('""'), [null]);
  // The first 16 values are matched one by one (a bound on the split's cost, as for names).
  const many = Array.from({ length: 20 }, (_, n) => `V${n + 1}`).join('\\');
  db.prepare('INSERT INTO t VALUES (?)').run(many);
  assert.deepEqual(values('V16'), [many]);
  assert.deepEqual(values('V17'), [], 'a 17th value is not matched');
  db.close();
});

async function findIdentifiers(t: import('node:test').TestContext, name: string, records: InstanceRecord[], keys: Array<[number, string, string]>): Promise<Array<Map<number, string>>> {
  const db = openScratchIndex(t, name);
  const index = new InstanceIndex(db);
  db.transaction(() => records.forEach((record) => index.upsert(record)))();
  return (await studyRootFind(db, encodeDataset(keys))).map(({ elements }) => new Map(elements.map((element) => [element.tag, (element.value ?? Buffer.alloc(0)).toString('latin1').replace(/[\0 ]+$/, '')])));
}

test('C-FIND: ImageType matches an instance with the value among its values, and returns them all (C.2.2.3)', async (t) => {
  const records = [
    instanceRecord(1, { attributes: { PatientID: 'P1', Modality: 'CT', ImageType: 'ORIGINAL\\PRIMARY\\AXIAL' } }),
    instanceRecord(2, { attributes: { PatientID: 'P1', Modality: 'CT', ImageType: 'DERIVED\\SECONDARY' } }),
  ];
  const found = await findIdentifiers(t, 'query-matching-image-type', records, [
    [0x00080008, 'CS', 'AXIAL'],
    [0x00080018, 'UI', ''],
    [0x00080052, 'CS', 'IMAGE'],
    [0x0020000d, 'UI', '1.2.1'],
    [0x0020000e, 'UI', '1.2.1.1'],
  ]);
  assert.deepEqual(
    found.map((identifier) => [identifier.get(0x00080018), identifier.get(0x00080008)]),
    [['1.2.1.1.1', 'ORIGINAL\\PRIMARY\\AXIAL']],
  );
});

test('C-FIND: a StudyInstanceUID key of several UIDs finds each of those studies (List of UID Matching, C.2.2.2.2)', async (t) => {
  const records = ['1.2.1', '1.2.2', '1.2.3'].map((study, n) => instanceRecord(n, { studyInstanceUid: study, seriesInstanceUid: `${study}.1`, sopInstanceUid: `${study}.1.1` }));
  const found = await findIdentifiers(t, 'query-matching-uid-list', records, [
    [0x00080052, 'CS', 'STUDY'],
    [0x0020000d, 'UI', '1.2.1\\1.2.3'],
  ]);
  assert.deepEqual(found.map((identifier) => identifier.get(0x0020000d)), ['1.2.1', '1.2.3']);
});

// Found in the injection review: a UID list took one SQL parameter per UID and a ModalitiesInStudy
// list one condition per value; at 32,767 UIDs and about 1,000 modalities SQLite refused the query,
// and the C-FIND failed 0x0110. PS3.4 C.2.2.2.2 sets no limit.
test('lists of 40,000 UIDs and of 1,500 modalities are matched, not refused', async (t) => {
  const db = new Database(':memory:');
  db.exec('CREATE TABLE u (uid TEXT)');
  for (const uid of ['1.2.3.7', '1.2.3.39999', '9.9']) db.prepare('INSERT INTO u VALUES (?)').run(uid);
  const uids = Array.from({ length: 40_000 }, (_, n) => `1.2.3.${n}`).join('\\');
  const condition = matchCondition('uid', 'UI', uids);
  assert.deepEqual(db.prepare(`SELECT uid FROM u WHERE ${condition?.sql ?? '0'} ORDER BY rowid`).pluck().all(...(condition?.params ?? [])), ['1.2.3.7', '1.2.3.39999']);
  db.close();
  const modalities = [...Array.from({ length: 1_500 }, (_, n) => `M${n}`), 'CT'].join('\\');
  const found = await findIdentifiers(t, 'query-matching-long-lists', [instanceRecord(1)], [
    [0x00080052, 'CS', 'STUDY'],
    [0x00080061, 'CS', modalities],
    [0x0020000d, 'UI', ''],
  ]);
  assert.deepEqual(found.map((identifier) => identifier.get(0x0020000d)), ['1.2.1']);
  const none = await findIdentifiers(t, 'query-matching-long-lists-none', [instanceRecord(1)], [
    [0x00080052, 'CS', 'STUDY'],
    [0x00080061, 'CS', Array.from({ length: 1_500 }, (_, n) => `M${n}`).join('\\')],
    [0x0020000d, 'UI', ''],
  ]);
  assert.deepEqual(none, []);
});

test('a person name key is matched group by group: one group matches any of the name\'s component groups (PS3.5 6.2.1.2)', () => {
  // Found in a review: the key Yamada^Tarou did not find Yamada^Tarou=山田^太郎=やまだ^たろう (the whole
  // value was compared), though yamada* did, its "*" running across the "=" into the other groups.
  const db = new Database(':memory:');
  db.exec('CREATE TABLE p (name TEXT)');
  for (const name of ['Yamada^Tarou=山田^太郎=やまだ^たろう', 'Yamada^Hanako', 'Doe^John^^=', '=山田^花子', null]) db.prepare('INSERT INTO p VALUES (?)').run(name);
  const names = (value: string) => {
    const condition = matchCondition('name', 'PN', value);
    return db.prepare(`SELECT name FROM p WHERE ${condition?.sql ?? '1'} ORDER BY rowid`).pluck().all(...(condition?.params ?? []));
  };
  assert.deepEqual(names('yamada^tarou'), ['Yamada^Tarou=山田^太郎=やまだ^たろう'], 'the alphabetic group');
  assert.deepEqual(names('山田^太郎'), ['Yamada^Tarou=山田^太郎=やまだ^たろう'], 'the ideographic group');
  assert.deepEqual(names('山田*'), ['Yamada^Tarou=山田^太郎=やまだ^たろう', '=山田^花子']);
  assert.deepEqual(names('Yamada^Tarou=山田^太郎'), ['Yamada^Tarou=山田^太郎=やまだ^たろう'], 'each group of the key against its own group');
  assert.deepEqual(names('Yamada^Tarou=山田^花子'), []);
  assert.deepEqual(names('=山田*'), ['Yamada^Tarou=山田^太郎=やまだ^たろう', '=山田^花子'], 'an empty key group matches any');
  assert.deepEqual(names('*=*'), ['Yamada^Tarou=山田^太郎=やまだ^たろう', 'Yamada^Hanako', 'Doe^John^^=', '=山田^花子', null], 'groups of "*" only are universal matching');
  assert.deepEqual(names('Doe^John'), ['Doe^John^^='], 'empty trailing components and groups of the stored name are not significant');
  assert.deepEqual(names('*Tarou*たろう'), [], 'a wild card does not run across groups');
  assert.equal(matchCondition('name', 'PN', '^^'), undefined, 'a name of empty components only is an empty key: universal matching');
  // Found in the injection review: the split went on to every "=" of a stored name, each step copying
  // the rest of it, and names of 2,048 "=" stalled every query on names for seconds. A name has three
  // groups (PS3.5 6.2.1.2): an "=" after the third is not split at.
  db.prepare('INSERT INTO p VALUES (?)').run('Alpha=Beta=Gamma=Delta');
  db.prepare('INSERT INTO p VALUES (?)').run(Array(2048).fill('a').join('='));
  assert.deepEqual(names('Gamma'), ['Alpha=Beta=Gamma=Delta'], 'the third group');
  assert.deepEqual(names('Delta'), [], 'no fourth group');
  assert.deepEqual(names('a'), [Array(2048).fill('a').join('=')]);
  assert.deepEqual(names('x*'), []);
  // Found in the review of the session's diff: a key of many groups split every stored name as far.
  assert.deepEqual(names(`${'='.repeat(2047)}x*`), [], 'a key asking for a fourth group matches nothing');
  assert.deepEqual(names('Alpha=Beta=Gamma=*'), ['Alpha=Beta=Gamma=Delta'], 'a universal fourth group asks for nothing');
  assert.ok(!(matchCondition('name', 'PN', 'a=b=c=d=e')?.sql ?? '').includes('WITH RECURSIVE'), 'nothing is split for it');
  db.close();
});

test('a range whose first bound is later than its second matches nothing: TM ranges do not cross midnight (PS3.4 C.2.2.2.5)', () => {
  // The standard defines "<time1>-<time2>" only where time1 is not later than time2, and says range
  // matching crossing midnight is not supported; DA and TM are matched apart (no combined date-time
  // matching without extended negotiation, which Gantry does not offer).
  assert.deepEqual(matching('time', 'TM', '2300-0100'), []);
  assert.deepEqual(matching('date', 'DA', '20240131-20240115'), []);
});

// Suspected in an earlier review ("C-FIND one-char CJK over-match"): that "?" or a one-character key
// in Chinese, Japanese or Korean text matched more than one character (a byte, or a code unit, at a
// time). It does not: keys are decoded by their Specific Character Set (ISO 2022 escapes included)
// before matching, and SQLite's LIKE and GLOB take "_" and "?" for one character, whatever its length
// in UTF-8 or UTF-16 (𠮷 is outside the BMP). This pins it, through the identifier's bytes.
test('C-FIND: "?" and a one-character key match one CJK character, in ISO 2022 and UTF-8 identifiers, group by group', async (t) => {
  const names = ['山田^太郎', '山^太郎', '山田', '山', 'Yamada^Tarou=山田^太郎=やまだ^たろう', '𠮷田^太郎', 'Hong^Gildong=洪^吉洞=홍^길동', '김희중', '王^小東'];
  const records = names.map((name, n) =>
    instanceRecord(n, { attributes: { PatientID: `P${n}`, PatientName: name }, studyInstanceUid: `1.2.${n}`, seriesInstanceUid: `1.2.${n}.1`, sopInstanceUid: `1.2.${n}.1.1` }),
  );
  const db = openScratchIndex(t, 'query-matching-cjk');
  const index = new InstanceIndex(db);
  db.transaction(() => records.forEach((record) => index.upsert(record)))();
  const namesFound = async (charset: string, key: Buffer): Promise<string[]> => {
    const identifier = encodeDataset([
      [0x00080005, 'CS', charset],
      [0x00080052, 'CS', 'STUDY'],
      [0x00100010, 'PN', key],
      [0x00100020, 'LO', ''],
    ]);
    return (await studyRootFind(db, identifier)).map(({ elements }) => {
      const id = elements.find((element) => element.tag === 0x00100020)?.value?.toString('latin1').trim();
      return names[Number(id?.slice(1))] ?? '?';
    });
  };
  const utf8 = (key: string) => namesFound('ISO_IR 192', Buffer.from(key, 'utf8'));
  assert.deepEqual(await utf8('?'), ['山']);
  assert.deepEqual(await utf8('山'), ['山']);
  assert.deepEqual(await utf8('??'), ['山田']);
  assert.deepEqual(await utf8('?^太郎'), ['山^太郎']);
  assert.deepEqual(await utf8('?田^太郎'), ['山田^太郎', 'Yamada^Tarou=山田^太郎=やまだ^たろう', '𠮷田^太郎']);
  assert.deepEqual(await utf8('???'), ['김희중']);
  assert.deepEqual(await utf8('?^??'), ['山^太郎', 'Hong^Gildong=洪^吉洞=홍^길동', '王^小東']);
  // ISO 2022 IR 87: ESC $ B switches to JIS X 0208 (山 is 0x3B 0x33, 太郎 0x42 0x40 0x4F 0x3A), ESC ( B back.
  const jis = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'latin1') : Buffer.from(part))));
  const japanese = (key: Buffer) => namesFound('\\ISO 2022 IR 87', key);
  assert.deepEqual(await japanese(jis('\x1b$B', [0x3b, 0x33], '\x1b(B')), ['山']);
  assert.deepEqual(await japanese(jis('?^\x1b$B', [0x42, 0x40, 0x4f, 0x3a], '\x1b(B')), ['山^太郎']);
  assert.deepEqual(await japanese(jis('\x1b$B', [0x3b, 0x33], '\x1b(B?^\x1b$B', [0x42, 0x40, 0x4f, 0x3a], '\x1b(B')), ['山田^太郎', 'Yamada^Tarou=山田^太郎=やまだ^たろう']);
  // ISO 2022 IR 149: Korean in G1 after ESC $ ) C (김 is 0xB1 0xE8).
  assert.deepEqual(await namesFound('\\ISO 2022 IR 149', jis('\x1b$)C', [0xb1, 0xe8], '??')), ['김희중']);
  assert.deepEqual(await namesFound('\\ISO 2022 IR 149', jis('\x1b$)C', [0xb1, 0xe8], '?')), []);
});
