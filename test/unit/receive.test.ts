/**
 * The receive pipeline's failure handling, in process with a real index and store, and faults
 * injected where a real disk would fail.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { scratchDir } from '../helpers/scratch.js';
import { test, type TestContext } from 'node:test';
import { openDatabase, WalSync } from '../../src/db/database.js';
import type { StoreRequest } from '../../src/dimse/services.js';
import { errorCommentText } from '../../src/dimse/command.js';
import { IndexWriter, InstanceIndex, type InstanceRecord } from '../../src/index/instance-index.js';
import { silentLogger } from '../../src/observability/logger.js';
import { ReceiveService } from '../../src/pipeline/receive.js';
import { FreeSpaceMonitor } from '../../src/store/free-space.js';
import { ObjectStore, type IncomingFile } from '../../src/store/object-store.js';
import { datasetBytes, listFiles } from '../helpers/stored.js';
import { encodeDataset, instanceElements, newUid, type Element } from '../helpers/synthetic-dicom.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';

/** A promise the test resolves when it chooses. */
function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** An ObjectStore whose next syncs fail as a dying disk's would, or wait for a gate. */
class FaultyStore extends ObjectStore {
  failSyncs = 0;
  /** Moves that fail once the file is at its path: a late write failing (ENOSPC) after the rename. */
  failMoves = 0;
  syncGate: Promise<void> | undefined;
  override async moveIntoPlace(file: IncomingFile, relativePath: string): Promise<void> {
    await super.moveIntoPlace(file, relativePath);
    if (this.failMoves > 0) {
      this.failMoves -= 1;
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    }
  }
  override async syncPlaced(file: IncomingFile): Promise<void> {
    if (this.syncGate) await this.syncGate;
    if (this.failSyncs > 0) {
      this.failSyncs -= 1;
      await file.close();
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    }
    return super.syncPlaced(file);
  }
}

/** A WalSync whose syncs wait for a gate. */
class GatedWal extends WalSync {
  syncGate: Promise<void> | undefined;
  override async sync(): Promise<void> {
    if (this.syncGate) await this.syncGate;
    return super.sync();
  }
}

async function setUp(
  t: TestContext,
  duplicates: 'replace' | 'keepFirst' = 'replace',
  settings = { minFreeBytes: 0 },
  freeSpaceOf: (store: FaultyStore, index: InstanceIndex) => FreeSpaceMonitor = (store) => new FreeSpaceMonitor(() => store.freeBytes()),
) {
  const root = scratchDir('receive');
  const store = new FaultyStore(root);
  await store.init();
  const db = openDatabase(join(root, 'index.sqlite'));
  const wal = new GatedWal(join(root, 'index.sqlite'));
  const index = new InstanceIndex(db);
  const writer = new IndexWriter(db, index, wal);
  const freeSpace = freeSpaceOf(store, index);
  const receive = new ReceiveService({ store, index, writer, freeSpace, settings: () => ({ minFreeBytes: settings.minFreeBytes, duplicates }) });
  t.after(async () => {
    await wal.close();
    db.close();
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });
  return { root, store, index, writer, receive, wal, freeSpace, db };
}

function request(sopInstanceUid: string): StoreRequest {
  return {
    association: { id: 't', callingAeTitle: 'UNIT', calledAeTitle: 'GANTRY', remoteAddress: '127.0.0.1', remotePort: 1, log: silentLogger() },
    messageId: 1,
    priority: 0,
    sopClassUid: CT,
    sopInstanceUid,
    transferSyntaxUid: '1.2.840.10008.1.2.1',
  };
}

function dataset(study: string, series: string, sop: string, description: string): Buffer {
  const { elements } = instanceElements({ studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop, patientId: 'U1', patientName: 'Unit^Test', rows: 4, columns: 4 });
  const extra: Element[] = [[0x00081030, 'LO', description], [0x7fe00010, 'OW', Buffer.alloc(32)]];
  return encodeDataset([...elements.filter(([tag]) => tag !== 0x00081030), ...extra]);
}

/**
 * Four rounds of two concurrent stores of one new UID, one of which meets `fault`: the one that
 * succeeds keeps its row and its whole file.
 */
async function racingStores(t: TestContext, fault: (store: FaultyStore) => void): Promise<void> {
  const { root, store, index, receive } = await setUp(t);
  for (let round = 0; round < 4; round += 1) {
    const [study, series, sop] = [newUid(), newUid(), newUid()];
    const copies = [dataset(study, series, sop, 'FIRST'), dataset(study, series, sop, 'SECOND')];
    const sinks = copies.map(() => receive.store(request(sop)));
    sinks.forEach((sink, i) => sink.write(copies[i] as Buffer));
    fault(store);
    const results = await Promise.all(sinks.map((sink) => sink.end()));
    assert.deepEqual(results.map((result) => result.status).sort(), [0x0000, 0xa700]);
    const succeeded = results.findIndex((result) => result.status === 0x0000);
    const row = index.findInstance(sop);
    assert.ok(row, 'the acknowledged instance has its row');
    assert.ok(datasetBytes(join(root, row.filePath)).equals(copies[succeeded] as Buffer), 'and its file, whole');
  }
}

test('of two concurrent stores of one UID, the one that fails cannot take the acknowledged one with it', (t) =>
  racingStores(t, (store) => (store.failSyncs = 1)));

test('a store that fails after its file reached the instance path cannot delete the next store\'s file', (t) =>
  racingStores(t, (store) => (store.failMoves = 1)));

// A sender that retries a batch after the disk filled gets Success for the instances kept already:
// keepFirst writes nothing for them. They were refused with 0xA700 like new ones, so the sender kept
// retrying instances the node had.
test('keepFirst: a re-send of a stored instance succeeds while the disk is below storage.minFreeBytes; a new instance is refused', async (t) => {
  const settings = { minFreeBytes: 0 };
  const { index, receive, freeSpace } = await setUp(t, 'keepFirst', settings);
  await freeSpace.refresh();
  const [study, series, sop] = [newUid(), newUid(), newUid()];
  const first = receive.store(request(sop));
  first.write(dataset(study, series, sop, 'FIRST'));
  assert.equal((await first.end()).status, 0x0000);
  settings.minFreeBytes = Number.MAX_SAFE_INTEGER;
  const again = receive.store(request(sop));
  again.write(dataset(study, series, sop, 'SECOND'));
  assert.equal((await again.end()).status, 0x0000, 'the instance is kept already');
  const other = newUid();
  const fresh = receive.store(request(other));
  fresh.write(dataset(study, series, other, 'NEW'));
  assert.equal((await fresh.end()).status, 0xa700, 'a new instance needs the space');
  assert.equal(index.hasInstance(other), false);
});

test('keepFirst: a re-send is not acknowledged on the strength of a first copy that is not yet durable, and is kept if the first fails', async (t) => {
  const { root, store, index, receive } = await setUp(t, 'keepFirst');
  const [study, series, sop] = [newUid(), newUid(), newUid()];
  const first = receive.store(request(sop));
  first.write(dataset(study, series, sop, 'FIRST'));
  const hold = gate();
  store.syncGate = hold.promise;
  store.failSyncs = 1;
  const firstResult = first.end();
  // The first store is placed and waits for its file sync (its row may already be committed).
  await new Promise((resolve) => setTimeout(resolve, 200));
  const second = receive.store(request(sop));
  const copy = dataset(study, series, sop, 'SECOND');
  second.write(copy);
  let answered = false;
  const secondResult = second.end().then((result) => {
    answered = true;
    return result;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(answered, false, 'the re-send was answered before the first copy was durable');
  hold.open();
  assert.equal((await firstResult).status, 0xa700);
  assert.equal((await secondResult).status, 0x0000);
  const row = index.findInstance(sop);
  assert.ok(row, 'the acknowledged re-send has its row');
  assert.ok(datasetBytes(join(root, row.filePath)).equals(copy), 'and its file');
  store.syncGate = undefined;
});

test('a failed store leaves neither row nor file behind', async (t) => {
  const { root, store, index, receive } = await setUp(t);
  const sop = newUid();
  const sink = receive.store(request(sop));
  sink.write(dataset(newUid(), newUid(), sop, 'LOST'));
  store.failSyncs = 1;
  assert.equal((await sink.end()).status, 0xa700);
  assert.equal(index.findInstance(sop), undefined);
  assert.deepEqual(listFiles(join(root, 'originals')), []);
});

test('a series row rolled back is never reused for a later instance', async (t) => {
  const { index, writer } = await setUp(t);
  const base = (study: string, series: string, sop: string, patientId: string): InstanceRecord => ({
    attributes: { PatientID: patientId },
    studyInstanceUid: study,
    seriesInstanceUid: series,
    sopInstanceUid: sop,
    sopClassUid: CT,
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    filePath: `${sop}.dcm`,
    fileSize: 1,
    callingAeTitle: 'UNIT',
    receivedAt: Date.now(),
  });
  const broken = { ...base('1.1', '1.1.1', '1.1.1.1', 'PAT_A'), sopClassUid: null as unknown as string };
  await assert.rejects(writer.submit(broken));
  await writer.submit(base('2.1', '2.1.1', '2.1.1.1', 'PAT_B'));
  await writer.submit(base('1.1', '1.1.1', '1.1.1.2', 'PAT_A'));
  const row = index.findInstance('1.1.1.2');
  assert.equal(row?.seriesInstanceUid, '1.1.1');
  assert.equal(row?.studyInstanceUid, '1.1');
});

test('the answer waits for the file sync and for the index sync, each', async (t) => {
  const { store, wal, receive } = await setUp(t);
  for (const held of ['file', 'index'] as const) {
    const sop = newUid();
    const sink = receive.store(request(sop));
    sink.write(dataset(newUid(), newUid(), sop, 'ORDER'));
    const hold = gate();
    if (held === 'file') store.syncGate = hold.promise;
    else wal.syncGate = hold.promise;
    let answered = false;
    const ending = sink.end().then((result) => {
      answered = true;
      return result;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(answered, false, `answered before the ${held} sync finished`);
    hold.open();
    assert.equal((await ending).status, 0);
    store.syncGate = undefined;
    wal.syncGate = undefined;
  }
});

// Found in a review: a new instance whose file sync failed after its row was committed took the row
// back, and when that failed too (a full disk fails the index's writes as well: SQLITE_FULL), the file
// was deleted all the same. The row then named a file that was gone, and stayed so after a clean stop
// (only an unclean one runs the start-up check): de-identification failed it, and a keepFirst re-send
// was acknowledged on the strength of it.
test('a row that cannot be taken back after a failed store keeps its file', async (t) => {
  const { root, store, index, writer, receive } = await setUp(t);
  const sop = newUid();
  const sink = receive.store(request(sop));
  sink.write(dataset(newUid(), newUid(), sop, 'KEPT'));
  store.failSyncs = 1;
  const takeBack = writer.takeBack;
  writer.takeBack = () => {
    throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
  };
  t.after(() => (writer.takeBack = takeBack));
  assert.equal((await sink.end()).status, 0xa700);
  const row = index.findInstance(sop);
  if (row) assert.ok(existsSync(join(root, row.filePath)), 'the row names a file that is there');
});

// Found in a review: when a store's file could not be synced and its row could not be taken back
// (the disk and the index failing together), the row stayed; keepFirst then answered Success to the
// sender's retry on the strength of that first copy, which was never durable.
test('keepFirst: a retry after a store whose sync and take-back both failed is stored, not acknowledged on the first copy', async (t) => {
  const { root, store, index, writer, receive } = await setUp(t, 'keepFirst');
  const [study, series, sop] = [newUid(), newUid(), newUid()];
  const first = receive.store(request(sop));
  first.write(dataset(study, series, sop, 'NOT DURABLE'));
  store.failSyncs = 1;
  const takeBack = writer.takeBack;
  writer.takeBack = () => {
    throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
  };
  assert.equal((await first.end()).status, 0xa700);
  writer.takeBack = takeBack;
  assert.ok(index.findInstance(sop), 'the row could not be taken back');
  const retry = receive.store(request(sop));
  const copy = dataset(study, series, sop, 'RETRIED');
  retry.write(copy);
  assert.equal((await retry.end()).status, 0x0000);
  const row = index.findInstance(sop);
  assert.ok(row);
  assert.ok(datasetBytes(join(root, row.filePath)).equals(copy), 'the retried copy is the one kept, synced');
  // Once it is, keepFirst keeps it.
  const third = receive.store(request(sop));
  third.write(dataset(study, series, sop, 'THIRD'));
  assert.equal((await third.end()).status, 0x0000);
  assert.ok(datasetBytes(join(root, (index.findInstance(sop) ?? row).filePath)).equals(copy), 'the first durable copy stays');
});

// Found in a review: the failure comment quoted the dataset's SOPInstanceUID as it came, and it is
// logged: a value that is no UID (a name) went into the log.
test("a dataset whose SOPInstanceUID differs from the command's is refused without quoting a value that is no UID", async (t) => {
  const { receive } = await setUp(t);
  const sop = newUid();
  const sink = receive.store(request(sop));
  sink.write(dataset(newUid(), newUid(), 'DOE^JOHN 19600101', 'MISMATCH'));
  const result = await sink.end();
  assert.notEqual(result.status, 0x0000);
  assert.match(result.errorComment ?? '', /SOPInstanceUID of the dataset \(\(not a UID\)\) differs from the command's \(/);
  assert.doesNotMatch(result.errorComment ?? '', /DOE/);
});

// Suspected in a review: a stop went on when its grace period for stores ended, closed the index under
// a store still placing its file, and called itself clean, so the next start skipped the check that
// removes what such a store leaves (a file no row names, a row whose file is short).
test('drain says whether a store is still placing its file when its time is up', async (t) => {
  const { store, receive } = await setUp(t);
  const sop = newUid();
  const sink = receive.store(request(sop));
  sink.write(dataset(newUid(), newUid(), sop, 'SLOW'));
  const hold = gate();
  store.syncGate = hold.promise;
  const result = sink.end();
  assert.equal(await receive.drain(300), false, 'the store waits for its sync');
  hold.open();
  assert.equal(await receive.drain(10_000), true);
  assert.equal((await result).status, 0x0000);
  store.syncGate = undefined;
});

// Found in the robustness review: a deflated dataset is inflated as it arrives, and a sender faster
// than the inflater had its bytes queued until the scanner gave up, past 4 MB: a valid dataset whose
// Study Instance UID came after 2 MB of other elements was refused with C001 on a fast network.
test('a deflated dataset is read as fast as it inflates: the store waits for the inflater, and the header 2 MB in is read', async (t) => {
  const { receive, index } = await setUp(t);
  const [study, series, sop] = [newUid(), newUid(), newUid()];
  const { elements } = instanceElements({ studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop, patientId: 'U1', patientName: 'Unit^Test', rows: 4, columns: 4 });
  const noise = randomBytes(2 * 1024 * 1024);
  const pixels = randomBytes(8 * 1024 * 1024);
  let deflated = deflateRawSync(encodeDataset([...elements, [0x00091010, 'OB', noise], [0x7fe00010, 'OB', pixels]]));
  if (deflated.length % 2 === 1) deflated = Buffer.concat([deflated, Buffer.alloc(1)]);
  const sink = receive.store({ ...request(sop), transferSyntaxUid: '1.2.840.10008.1.2.1.99' });
  // As the association feeds it: PDVs of 16 KB, waiting only when write() says so.
  for (let offset = 0; offset < deflated.length; offset += 16 * 1024) {
    if (!sink.write(deflated.subarray(offset, offset + 16 * 1024))) await sink.whenDrained();
  }
  const result = await sink.end();
  assert.equal(result.status, 0x0000, result.errorComment);
  assert.equal(index.findInstance(sop)?.studyInstanceUid, study);
});

// Found in the robustness review: after its header failed to parse, the rest of a dataset was still
// written to the incoming file, only to be deleted at its end: a peer could have the node write
// gigabytes it had already decided to refuse.
test('the bytes of a dataset after a format error are not written, and the store fails with C000', async (t) => {
  const { receive, store } = await setUp(t);
  let written = 0;
  const createIncoming = store.createIncoming.bind(store);
  store.createIncoming = (header: Buffer) => {
    const file = createIncoming(header);
    const write = file.write.bind(file);
    file.write = (chunk: Buffer) => {
      written += chunk.length;
      return write(chunk);
    };
    return file;
  };
  const sop = newUid();
  const sink = receive.store(request(sop));
  // (0010,0010) with the VR bytes 0x01 0xFF: not a VR (PS3.5 7.1.1).
  sink.write(Buffer.from([0x10, 0x00, 0x10, 0x00, 0x01, 0xff, 0x02, 0x00, 0x41, 0x41]));
  for (let chunk = 0; chunk < 64; chunk += 1) if (!sink.write(Buffer.alloc(64 * 1024))) await sink.whenDrained();
  const result = await sink.end();
  assert.equal(result.status, 0xc000);
  assert.match(result.errorComment ?? '', /has no valid VR/);
  assert.ok(written < 64 * 1024, `${written} bytes written`);
});

// Found in the review of the day: the Error Comment (0000,0902) is LO, cut at 64 characters on the
// wire (command.ts, errorCommentText), and the comment that put "the floor first" began with 56 characters of words:
// the default floor, 1073741824, reached the sender as "(10737418", a hundred times too small.
test('below storage.minFreeBytes the Error Comment holds the whole floor within the 64 characters the wire keeps', async (t) => {
  // The largest floor there is, above any free disk.
  const settings = { minFreeBytes: Number.MAX_SAFE_INTEGER };
  const { receive, freeSpace } = await setUp(t, 'replace', settings);
  await freeSpace.refresh();
  const sop = newUid();
  const refused = receive.store(request(sop));
  refused.write(dataset(newUid(), newUid(), sop, 'LOW'));
  const result = await refused.end();
  assert.equal(result.status, 0xa700);
  const onTheWire = errorCommentText(result.errorComment ?? '');
  assert.match(onTheWire, new RegExp(`storage\\.minFreeBytes \\(${settings.minFreeBytes}\\D`), onTheWire);
});

// Found in the failure review: only C-STORE looked at the floor, and a burst accepted down to it was
// de-identified into the last bytes of the disk; the study, never whole, was never forwarded, and
// nothing could free space. The copies of the originals waiting are counted against the floor.
test('C-STORE keeps room for the de-identified copies of the instances waiting: refused while free less their bytes is under the floor', async (t) => {
  const MB = 1024 * 1024;
  const settings = { minFreeBytes: 5 * MB };
  const { receive, freeSpace, db } = await setUp(t, 'replace', settings, (_store, index) => new FreeSpaceMonitor(async () => 10 * MB, { reserved: () => index.waitingBytes() }));
  const send = async (label: string) => {
    const sop = newUid();
    const sink = receive.store(request(sop));
    sink.write(dataset(newUid(), newUid(), sop, label));
    return (await sink.end()).status;
  };
  await freeSpace.refresh();
  assert.equal(await send('FIRST'), 0x0000, '10 MB free, nothing waiting');
  // What waits now takes 6 MB (as if larger originals had come): 10 - 6 is under the floor of 5.
  db.prepare(`UPDATE instances SET file_size = ? WHERE state = 'received'`).run(6 * MB);
  await freeSpace.refresh();
  assert.equal(freeSpace.availableBytes, 4 * MB);
  assert.equal(await send('REFUSED'), 0xa700);
  // De-identified: its copy is written, nothing waits.
  db.exec(`UPDATE instances SET state = 'deidentified'`);
  await freeSpace.refresh();
  assert.equal(await send('AGAIN'), 0x0000);
  assert.ok(freeSpace.reserved > 0 && freeSpace.reserved < MB, 'a store counts its own copy to come until the next reading');
});

// Found in the resource review: the floor was checked when a store began, and nothing after: one store
// of 1.2 GB went 900 MB under it, towards a full disk where the index and the other stores fail.
test('a store whose dataset takes the disk under storage.minFreeBytes while it arrives is answered 0xA700 and leaves nothing', async (t) => {
  const MB = 1024 * 1024;
  let free = 10 * MB;
  const settings = { minFreeBytes: 5 * MB };
  const { receive, freeSpace, root } = await setUp(t, 'replace', settings, () => new FreeSpaceMonitor(async () => free));
  await freeSpace.refresh();
  const sop = newUid();
  const sink = receive.store(request(sop));
  // A 6 MB dataset, in 1 MB chunks: the fifth chunk passes the floor of 5 MB under 10 MB free.
  const large = encodeDataset([...instanceElements({ studyInstanceUid: newUid(), seriesInstanceUid: newUid(), sopInstanceUid: sop, patientId: 'U1', patientName: 'Unit^Test', rows: 4, columns: 4 }).elements, [0x7fe10010, 'OB', Buffer.alloc(6 * MB)]]);
  for (let at = 0; at < large.length; at += MB) sink.write(large.subarray(at, at + MB));
  const result = await sink.end();
  assert.equal(result.status, 0xa700);
  assert.match(result.errorComment ?? '', /storage\.minFreeBytes \(5242880 bytes\) during the store/);
  assert.deepEqual(listFiles(join(root, 'originals')), [], 'nothing kept');
  // A new reading counts what the disk says: 9 MB free now, a 3 MB store fits, 6 MB would not.
  free = 9 * MB;
  await freeSpace.refresh();
  const fits = newUid();
  const small = receive.store(request(fits));
  small.write(encodeDataset([...instanceElements({ studyInstanceUid: newUid(), seriesInstanceUid: newUid(), sopInstanceUid: fits, patientId: 'U1', patientName: 'Unit^Test', rows: 4, columns: 4 }).elements, [0x7fe10010, 'OB', Buffer.alloc(3 * MB)]]));
  assert.equal((await small.end()).status, 0x0000);
});
