/**
 * Which files a C-GET sends (src/query/move-service.ts): a source caller gets the originals only as a
 * sourceSide entry of query.moveDestinations at that entry's address, compared in one spelling of the
 * address as for query.sourceCallers (src/dimse/peer-address.ts).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { encodeTextDataset } from '../../src/dicom/dataset-encoder.js';
import { BufferSource, parseDataset, PIXEL_DATA } from '../../src/dicom/dataset-tree.js';
import type { FindRequest, MoveRequest, StoreChannel } from '../../src/dimse/services.js';
import { AccessAudit } from '../../src/index/access-audit.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { failedList, MoveService, type MoveDestination } from '../../src/query/move-service.js';
import type { StoredDataset } from '../../src/store/stored-dataset.js';
import { Transcoder } from '../../src/store/transcoder.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { openScratchIndex } from '../helpers/scratch-index.js';
import { scratchDir } from '../helpers/scratch.js';
import { moveServiceOver, moveSettings, storageWithOneInstance } from '../helpers/retrieve-storage.js';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const IMPLICIT_LE = '1.2.840.10008.1.2';
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';


/** The SOP Instance UIDs a C-GET by `callingAeTitle` from `remoteAddress` sends back. */
/** A Study Root C-GET of one study, by `callingAeTitle` from `remoteAddress`. */
function studyGetRequest(studyInstanceUid: string, callingAeTitle: string, remoteAddress = '127.0.0.1', log = silentLogger(), otherKeys: Array<{ tag: number; value: string }> = []): FindRequest {
  return {
    association: { id: 'a', callingAeTitle, calledAeTitle: 'GANTRY', remoteAddress, remotePort: 1, log },
    messageId: 1,
    sopClassUid: '1.2.840.10008.5.1.4.1.2.2.3',
    transferSyntaxUid: EXPLICIT_LE,
    identifier: encodeTextDataset([{ tag: 0x00080052, value: 'STUDY' }, ...otherKeys, { tag: 0x0020000d, value: studyInstanceUid }], 'explicit-le'),
  };
}

/** The final response of a retrieve, after its pending ones (at most 10). */
async function finalResponse<T>(progress: AsyncGenerator<unknown, T>): Promise<T> {
  for (let guard = 0; guard < 10; guard += 1) {
    const next = await progress.next();
    if (next.done) return next.value;
  }
  assert.fail('the retrieve did not end after 10 pending responses');
}

async function getFrom(
  service: MoveService,
  callingAeTitle: string,
  remoteAddress: string,
  studyInstanceUid: string,
  otherKeys: Array<{ tag: number; value: string }> = [],
): Promise<string[]> {
  const sent: string[] = [];
  const channel: StoreChannel = {
    contextFor: () => ({ id: 1, transferSyntax: EXPLICIT_LE }),
    store: async (_contextId, _sopClassUid, sopInstanceUid) => {
      sent.push(sopInstanceUid);
      return { status: 0x0000 };
    },
  };
  await finalResponse(service.get(studyGetRequest(studyInstanceUid, callingAeTitle, remoteAddress, silentLogger(), otherKeys), channel, new AbortController().signal));
  return sent;
}

// Found in a review: the caller's address was compared with the moveDestinations host as written, so a
// sourceSide entry whose IPv6 address was written in upper case or with its zeros (as query.sourceCallers
// accepts it) never matched, and the hospital workstation got the de-identified copies.
test('a C-GET by a sourceSide moveDestinations entry gets the originals however its address is spelt', async (t) => {
  const { db, storagePath, original, copy } = await storageWithOneInstance(t, 'retrieve-views-get');
  const destinations: MoveDestination[] = [{ aeTitle: 'HOSPITAL', host: '2001:DB8:0:0:0:0:0:7', port: 104, sourceSide: true }];
  const service = moveServiceOver(t, { db, storagePath }, (callingAeTitle) => (callingAeTitle === 'HOSPITAL' ? 'source' : callingAeTitle === 'RESEARCH' ? 'research' : undefined), destinations);
  assert.deepEqual(await getFrom(service, 'HOSPITAL', '2001:db8::7', original.studyInstanceUid), [original.sopInstanceUid], 'the listed workstation gets the original');
  assert.deepEqual(await getFrom(service, 'HOSPITAL', '2001:db8::8', original.studyInstanceUid), [copy.sopInstanceUid], 'from another address: the copy');
  assert.deepEqual(await getFrom(service, 'RESEARCH', '2001:db8::7', copy.studyInstanceUid), [copy.sopInstanceUid], 'a research caller: the copy');
});

// Found in a review: a retrieve matched every key of its identifier as a C-FIND does, so a PatientID
// or PatientName sent beside the StudyInstanceUID that differed from the index's, or a C-FIND
// response's stale count, retrieved nothing with Success, and a date in another form refused it
// (0xA900). PS3.4 C.4.2.3.1, C.4.3.3.1: the SCP identifies what to send by the unique keys.
test('a retrieve sends what its unique keys name, whatever other keys its identifier carries', async (t) => {
  const { db, storagePath, copy } = await storageWithOneInstance(t, 'retrieve-unique-keys');
  const service = moveServiceOver(t, { db, storagePath }, () => 'research', []);
  const otherKeys = [
    { tag: 0x00080020, value: '2024.01.15' }, // StudyDate, not in the DA form
    { tag: 0x00100010, value: 'Roe^Jane' }, // PatientName
    { tag: 0x00100020, value: 'SOMEONE-ELSE' }, // PatientID (no unique key in the Study Root model)
    { tag: 0x00201208, value: '99' }, // NumberOfStudyRelatedInstances
  ];
  assert.deepEqual(await getFrom(service, 'RESEARCH', '127.0.0.1', copy.studyInstanceUid, otherKeys), [copy.sopInstanceUid]);
});

// Found in a review: a source caller's C-MOVE to a Move Destination not in query.moveDestinations was
// refused (0xA801) before the audit, though the conformance statement has every retrieve by a source
// caller in the access audit, whatever it sends.
test("a source caller's C-MOVE to an unknown Move Destination is refused and still audited", async (t) => {
  const { db, storagePath, original } = await storageWithOneInstance(t, 'retrieve-views-unknown');
  const audit = new AccessAudit(db);
  const service = moveServiceOver(t, { db, storagePath }, () => 'source', [], { audit });
  const request: MoveRequest = {
    association: { id: 'a', callingAeTitle: 'HOSPITAL', calledAeTitle: 'GANTRY', remoteAddress: '10.0.0.5', remotePort: 1, log: silentLogger() },
    messageId: 1,
    sopClassUid: '1.2.840.10008.5.1.4.1.2.2.2',
    transferSyntaxUid: EXPLICIT_LE,
    moveDestination: 'ELSEWHERE',
    identifier: encodeTextDataset([{ tag: 0x00080052, value: 'STUDY' }, { tag: 0x0020000d, value: original.studyInstanceUid }], 'explicit-le'),
  };
  const moving = service.move(request, new AbortController().signal);
  let next = await moving.next();
  while (!next.done) next = await moving.next();
  assert.equal(next.value.status, 0xa801);
  const entries = audit.list(10);
  assert.equal(entries.length, 1, 'the refused retrieve is in the access audit');
  assert.deepEqual([entries[0]?.operation, entries[0]?.callingAeTitle, entries[0]?.status], ['C-MOVE', 'HOSPITAL', '0xA801']);
});

// Found in a review: a sub-operation that failed was logged with the error's message, UIDs taken out;
// the transcoder's thread opens the file again by its path, and a file imported in place lives where
// its user put it, in a folder named after the patient: the name and birth date went into the node's log.
test('a retrieve sub-operation that fails on the file logs no path of it', async (t) => {
  const { db, storagePath, original } = await storageWithOneInstance(t, 'retrieve-views-path');
  const folder = join(scratchDir('retrieve-views-archive'), "O'BRIEN^SEAN 19700101");
  mkdirSync(folder, { recursive: true });
  const imported = join(folder, 'IM1.dcm');
  renameSync(join(storagePath, 'originals', '1.dcm'), imported);
  db.prepare('UPDATE instances SET file_path = ?').run(relative(storagePath, imported));
  const real = new Transcoder();
  t.after(() => real.close());
  // The file goes between its opening and the conversion (a user tidying the archive): the thread's
  // own open fails with Node's message, which quotes the path.
  const transcoder = {
    datasetInSyntax: (path: string, stored: StoredDataset, syntax: string) => {
      rmSync(path);
      return real.datasetInSyntax(path, stored, syntax);
    },
  } as unknown as Transcoder;
  const lines: string[] = [];
  const log = createLogger('debug', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  const service = new MoveService({
    db,
    storagePath,
    transcoder,
    viewFor: () => 'source',
    settings: () => moveSettings([{ aeTitle: 'HOSPITAL', host: '10.0.0.5', port: 104, sourceSide: true }]),
  });
  const channel: StoreChannel = {
    contextFor: () => ({ id: 1, transferSyntax: IMPLICIT_LE }),
    store: async () => ({ status: 0x0000 }),
  };
  const final = await finalResponse(service.get(studyGetRequest(original.studyInstanceUid, 'HOSPITAL', '10.0.0.5', log), channel, new AbortController().signal));
  assert.equal(final.suboperations?.failed, 1, 'the sub-operation failed');
  const logged = lines.join('');
  assert.match(logged, /a retrieve sub-operation failed/);
  assert.match(logged, /ENOENT/, 'the log still says why');
  assert.doesNotMatch(logged, /BRIEN|SEAN|19700101|IM1/, logged);
});

// Found in the query review: a C-GET sub-operation used only a context of the stored transfer syntax
// (or the other little-endian one), so a compressed object the caller took no compressed context for
// failed, though a C-MOVE of it decompresses for a destination that refuses the compressed syntax.
// getscu proposes uncompressed syntaxes only by default: a C-GET of a JPEG study ended 0xA702.
test('a C-GET decompresses an object whose stored syntax the caller accepted no context for, as a C-MOVE does', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES))) return;
  const storagePath = scratchDir('retrieve-views-get-jpeg');
  mkdirSync(join(storagePath, 'originals'));
  copyFileSync(join(PYDICOM_TEST_FILES, 'SC_rgb_jpeg_dcmtk.dcm'), join(storagePath, 'originals', 'jpeg.dcm'));
  const db = openScratchIndex(t, 'retrieve-views-get-jpeg-index');
  const jpeg = { studyInstanceUid: '1.2.826.7.1', seriesInstanceUid: '1.2.826.7.1.1', sopInstanceUid: '1.2.276.0.7230010.3.1.4.8323329.15150.1506363677.126194' };
  db.transaction(() =>
    new InstanceIndex(db).upsert({
      attributes: { PatientID: 'MRN-7', Modality: 'OT' },
      ...jpeg,
      sopClassUid: SECONDARY_CAPTURE,
      transferSyntaxUid: JPEG_BASELINE,
      filePath: 'originals/jpeg.dcm',
      fileSize: 1,
      callingAeTitle: 'CT01',
      receivedAt: Date.now(),
    }),
  )();
  const service = moveServiceOver(t, { db, storagePath }, () => 'source', [{ aeTitle: 'HOSPITAL', host: '127.0.0.1', port: 104, sourceSide: true }]);
  // The caller took the SCP role for Secondary Capture in explicit VR little endian only; the channel
  // answers as the association does (the syntax asked, or the other little-endian one).
  const sent: Array<{ contextId: number; pixelDataLength: number | undefined }> = [];
  const channel: StoreChannel = {
    contextFor: (sopClassUid, transferSyntaxUid) =>
      sopClassUid === SECONDARY_CAPTURE && (transferSyntaxUid === EXPLICIT_LE || transferSyntaxUid === IMPLICIT_LE) ? { id: 3, transferSyntax: EXPLICIT_LE } : undefined,
    store: async (contextId, _sopClassUid, _sopInstanceUid, body) => {
      const bytes = Buffer.alloc(body.length);
      for (let at = 0; at < bytes.length; ) {
        const read = await body.read(bytes.subarray(at), at);
        if (read === 0) break;
        at += read;
      }
      sent.push({ contextId, pixelDataLength: parseDataset(new BufferSource(bytes), 'explicit-le').find((element) => element.tag === PIXEL_DATA)?.length });
      return { status: 0x0000 };
    },
  };
  const final = await finalResponse(service.get(studyGetRequest(jpeg.studyInstanceUid, 'HOSPITAL'), channel, new AbortController().signal));
  assert.equal(final.status, 0x0000, `final status 0x${final.status.toString(16)}`);
  assert.deepEqual(final.suboperations, { remaining: 0, completed: 1, failed: 0, warning: 0 });
  // SC_rgb_jpeg_dcmtk.dcm is 100 x 100 RGB: 30,000 bytes once decompressed, where encapsulated
  // Pixel Data has an undefined length.
  assert.deepEqual(sent, [{ contextId: 3, pixelDataLength: 30_000 }]);
});

// Found in the query review: an instance whose file was gone (its copy or original deleted after
// storage.retainDeidentified or storage.retainOriginals, 7 days by default; or a copy not made, for a
// source caller who gets copies) was left out of a retrieve without a word: C-FIND still listed it, and
// the C-MOVE or C-GET of it ended 0x0000 with nothing completed and nothing failed. It is a failed
// sub-operation now (PS3.4 C.4.2.3.1), in the Failed SOP Instance UID List.
test('a retrieve of an instance whose file was deleted counts it as a failed sub-operation and lists it', async (t) => {
  const { db, storagePath, original, copy } = await storageWithOneInstance(t, 'retrieve-views-deleted');
  const service = moveServiceOver(t, { db, storagePath }, (callingAeTitle) => (callingAeTitle === 'RESEARCH' ? 'research' : 'source'), [{ aeTitle: 'HOSPITAL', host: '127.0.0.1', port: 104, sourceSide: true }]);
  const outcome = async (callingAeTitle: string, studyInstanceUid: string) => {
    const sent: string[] = [];
    const channel: StoreChannel = {
      contextFor: () => ({ id: 1, transferSyntax: EXPLICIT_LE }),
      store: async (_contextId, _sopClassUid, sopInstanceUid) => (sent.push(sopInstanceUid), { status: 0x0000 }),
    };
    const final = await finalResponse(service.get(studyGetRequest(studyInstanceUid, callingAeTitle), channel, new AbortController().signal));
    const failedList = final.identifier
      ? parseDataset(new BufferSource(final.identifier), 'explicit-le').find((element) => element.tag === 0x00080058)?.value?.toString('latin1').replace(/\0$/, '')
      : undefined;
    return { sent, status: final.status, suboperations: final.suboperations, failedList };
  };
  const allFailed = { remaining: 0, completed: 0, failed: 1, warning: 0 };
  db.prepare('UPDATE instances SET deid_deleted_at = ?').run(Date.now());
  assert.deepEqual(await outcome('RESEARCH', copy.studyInstanceUid), { sent: [], status: 0xa702, suboperations: allFailed, failedList: copy.sopInstanceUid }, 'a research caller, its copy deleted');
  db.prepare('UPDATE instances SET original_deleted_at = ?').run(Date.now());
  assert.deepEqual(await outcome('HOSPITAL', original.studyInstanceUid), { sent: [], status: 0xa702, suboperations: allFailed, failedList: original.sopInstanceUid }, 'a source caller, the original deleted');
  db.prepare('UPDATE instances SET original_deleted_at = NULL, deid_deleted_at = NULL').run();
  assert.deepEqual(
    await outcome('HOSPITAL', original.studyInstanceUid),
    { sent: [original.sopInstanceUid], status: 0x0000, suboperations: { remaining: 0, completed: 1, failed: 0, warning: 0 }, failedList: undefined },
    'both files there: sent',
  );
});

// Found in a review: the Failed SOP Instance UID List was cut at 65,534 bytes (about 1,000 UIDs) in
// implicit VR too, whose length field has 32 bits: a retrieve of 1,100 failed instances named 1,008.
test('the Failed SOP Instance UID List names every failed sub-operation in implicit VR, and ends at a whole UID within 65,534 bytes in explicit VR', () => {
  const uids = Array.from({ length: 1100 }, (_, i) => `1.2.826.0.1.3680043.99.${String(i).padStart(40, '7')}`);
  const listIn = (syntax: string, encoding: 'implicit-le' | 'explicit-le') =>
    (parseDataset(new BufferSource(failedList(uids, syntax)), encoding)[0]?.value?.toString('latin1') ?? '').replace(/\0$/, '').split('\\');
  assert.deepEqual(listIn('1.2.840.10008.1.2', 'implicit-le'), uids);
  const explicit = listIn('1.2.840.10008.1.2.1', 'explicit-le');
  assert.deepEqual(explicit, uids.slice(0, explicit.length), 'the first UIDs, whole');
  assert.ok(explicit.length > 900 && explicit.length < 1100, `${explicit.length} UIDs`);
});
