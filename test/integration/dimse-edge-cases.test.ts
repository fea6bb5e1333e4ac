/**
 * Edge cases of the acceptor (src/dimse/association.ts, negotiation.ts) found in review: each test
 * failed before its fix and names the rule of PS3.7 / PS3.8 it holds the acceptor to. In-process DicomServer
 * on loopback (port 0) with handlers of the test's own, except the first, which runs Gantry itself.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CommandField, DATASET_PRESENT, encodeCommand, NO_DATASET } from '../../src/dimse/command.js';
import { encodePData, encodePDataHeader } from '../../src/dimse/pdu.js';
import type { DicomServer } from '../../src/dimse/server.js';
import { DiscardingSink, type FindRequest, type StoreRequest } from '../../src/dimse/services.js';
import { Status } from '../../src/dimse/status.js';
import { startGantryProcess, type GantryProcess } from '../helpers/gantry.js';
import { sleep } from '../helpers/processes.js';
import { RawAssociation, type Received } from '../helpers/raw-association.js';
import { countRows } from '../helpers/stored.js';
import { encodeDataset, newUid } from '../helpers/synthetic-dicom.js';
import { startTestServer } from '../helpers/test-server.js';

const VERIFICATION = '1.2.840.10008.1.1';
const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';
const STUDY_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.2.1';
const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
/** A private SOP class: not in PS3.4 Table B.5-1, refused by Gantry's default policy. */
const PRIVATE_SOP_CLASS = '1.3.6.1.4.1.99999.1.1';

interface InProcess {
  server: DicomServer;
  port: number;
  stores: StoreRequest[];
  /** C-FIND handlers running now, and the most that ever ran at once. */
  finds: { running: number; peak: number; started: FindRequest[] };
}

/** A DicomServer whose C-FIND handler yields nothing and runs until its C-CANCEL. */
async function startServer(): Promise<InProcess> {
  const stores: StoreRequest[] = [];
  const finds = { running: 0, peak: 0, started: [] as FindRequest[] };
  const { server, port } = await startTestServer({
    artimMs: 2000,
    maxAsyncOperations: 4,
    serviceFor: (abstractSyntax) =>
      abstractSyntax === VERIFICATION
        ? 'verification'
        : abstractSyntax === STUDY_ROOT_FIND
          ? 'find'
          : abstractSyntax === CT_IMAGE_STORAGE || abstractSyntax === MR_IMAGE_STORAGE
            ? 'storage'
            : undefined,
    handlers: {
      echo: () => ({ status: Status.Success }),
      store: (request) => {
        stores.push(request);
        return new DiscardingSink({ status: Status.Success });
      },
      find: (request, signal) =>
        (async function* () {
          finds.started.push(request);
          finds.running += 1;
          finds.peak = Math.max(finds.peak, finds.running);
          try {
            // Bounded: a find no C-CANCEL reaches ends by itself after 10 s.
            const deadline = Date.now() + 10_000;
            while (!signal.aborted && Date.now() < deadline) await sleep(20);
          } finally {
            finds.running -= 1;
          }
          yield* [];
        })(),
    },
  });
  return { server, port, stores, finds };
}

function findRequest(raw: RawAssociation, contextId: number, messageId: number): void {
  raw.sendCommand(contextId, { commandField: CommandField.CFindRq, messageId, priority: 0, affectedSopClassUid: STUDY_ROOT_FIND, commandDataSetType: DATASET_PRESENT });
  raw.sendDataset(contextId, encodeDataset([[0x00080052, 'CS', 'STUDY']]));
}

function cancel(raw: RawAssociation, contextId: number, messageId: number): void {
  raw.sendCommand(contextId, { commandField: CommandField.CCancelRq, messageIdBeingRespondedTo: messageId, commandDataSetType: NO_DATASET });
}

/** Everything received within `ms` (bounded). */
async function drain(raw: RawAssociation, ms: number): Promise<Received[]> {
  const received: Received[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return received;
    try {
      const event = await raw.next(left);
      received.push(event);
      if (event.kind === 'closed') return received;
    } catch {
      return received;
    }
  }
}

describe('a C-STORE whose Affected SOP Class UID is not its presentation context\'s (Gantry process)', () => {
  let dir: string;
  let gantry: GantryProcess;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gantry-review-'));
    gantry = await startGantryProcess(dir, {});
  });
  after(async () => {
    await gantry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('is refused (0x0122), not stored: negotiation refused that SOP class', async () => {
    // Negotiation refuses the private class (dicom.acceptUnknownSopClasses is false by default)...
    const refused = await RawAssociation.open(gantry.port);
    const offer = await refused.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: [{ id: 1, abstractSyntax: PRIVATE_SOP_CLASS, transferSyntaxes: [EXPLICIT_LE] }] });
    assert.equal(offer.kind, 'reject', 'the private SOP class on its own is refused at negotiation');
    refused.destroy();

    // ...but a C-STORE of that class on an accepted CT context is stored all the same.
    const raw = await RawAssociation.open(gantry.port);
    assert.equal((await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: [{ id: 1, abstractSyntax: CT_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] }] })).kind, 'accept');
    const before = countRows(gantry.storagePath).instances;
    const sopInstanceUid = newUid();
    const dataset = encodeDataset([
      [0x00080016, 'UI', PRIVATE_SOP_CLASS],
      [0x00080018, 'UI', sopInstanceUid],
      [0x00100010, 'PN', 'Doe^John'],
      [0x0020000d, 'UI', newUid()],
      [0x0020000e, 'UI', newUid()],
    ]);
    const response = await raw.store(1, PRIVATE_SOP_CLASS, sopInstanceUid, dataset);
    await raw.release();
    assert.deepEqual(
      { status: response?.status, indexed: countRows(gantry.storagePath).instances - before },
      { status: Status.SopClassNotSupported, indexed: 0 },
      'PS3.8 9.3.5 / PS3.7 9.1.1: a C-STORE on a context is of its abstract syntax; a SOP class negotiation refused is not stored',
    );
  });
});

describe('acceptor (in process)', () => {
  let gantry: InProcess;
  before(async () => {
    gantry = await startServer();
  });
  after(async () => {
    await gantry?.server.close(1000);
  });

  test('duplicate presentation context IDs in A-ASSOCIATE-RQ are not answered with two different contexts of one ID', async () => {
    const raw = await RawAssociation.open(gantry.port);
    const answer = await raw.associate({
      called: 'GANTRY',
      calling: 'RAW',
      contexts: [
        { id: 1, abstractSyntax: CT_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] },
        { id: 1, abstractSyntax: MR_IMAGE_STORAGE, transferSyntaxes: [IMPLICIT_LE] },
      ],
    });
    if (answer.kind === 'accept') {
      const ids = answer.accept.presentationContexts.map((context) => context.id);
      // What the peer now believes context 1 is (the first item), and what Gantry uses it as.
      raw.sendCommand(1, { commandField: CommandField.CStoreRq, messageId: 1, priority: 0, affectedSopClassUid: CT_IMAGE_STORAGE, affectedSopInstanceUid: '1.2.3', commandDataSetType: DATASET_PRESENT });
      raw.sendDataset(1, encodeDataset([[0x00080018, 'UI', '1.2.3']]));
      await raw.next();
      raw.destroy();
      assert.deepEqual(
        { ids, storedAs: gantry.stores.at(-1)?.transferSyntaxUid },
        { ids: [...new Set(ids)], storedAs: answer.accept.presentationContexts[0]?.transferSyntax },
        'PS3.8 9.3.2.2 / 9.3.3.2: one result per presentation context ID; the dataset the peer sent in explicit VR is read as implicit VR',
      );
    } else {
      raw.destroy();
    }
  });

  test('without an asynchronous operations window, a second C-FIND is not run beside the first (PS3.7 D.3.3.3)', async () => {
    const raw = await RawAssociation.open(gantry.port);
    assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RAW', contexts: [{ id: 1, abstractSyntax: STUDY_ROOT_FIND, transferSyntaxes: [EXPLICIT_LE] }] })).kind, 'accept');
    const peakBefore = gantry.finds.peak;
    gantry.finds.peak = 0;
    for (let messageId = 1; messageId <= 8; messageId += 1) findRequest(raw, 1, messageId);
    await sleep(500);
    const peak = gantry.finds.peak;
    for (let messageId = 1; messageId <= 8; messageId += 1) cancel(raw, 1, messageId);
    await drain(raw, 1000);
    raw.destroy();
    gantry.finds.peak = Math.max(peakBefore, peak);
    assert.ok(peak <= 1, `the window negotiated is 1 (none proposed), yet ${peak} C-FIND operations ran at once`);
  });

  test('a C-FIND reusing the Message ID of an outstanding one gets 0x0210, and one C-CANCEL ends every invocation of that ID', async () => {
    const raw = await RawAssociation.open(gantry.port);
    const accepted = await raw.associate({
      called: 'GANTRY',
      calling: 'RAW',
      contexts: [{ id: 1, abstractSyntax: STUDY_ROOT_FIND, transferSyntaxes: [EXPLICIT_LE] }],
      asyncOperations: { maxOperationsInvoked: 2, maxOperationsPerformed: 1 },
    });
    assert.equal(accepted.kind, 'accept');
    findRequest(raw, 1, 7);
    findRequest(raw, 1, 7);
    await sleep(300);
    cancel(raw, 1, 7);
    const received = await drain(raw, 2000);
    raw.destroy();
    const finals = received.flatMap((event) => (event.kind === 'command' && event.command.messageIdBeingRespondedTo === 7 ? [event.command.status] : []));
    // PS3.7 9.1.2.1.1 (Message ID): no two outstanding operations share one; PS3.7 C.5.x 0x0210
    // Duplicate invocation. Without it, C-CANCEL 7 reaches only the second: the first runs on.
    assert.equal(finals.length, 2, `both requests with Message ID 7 are answered (received ${JSON.stringify(finals)})`);
    assert.ok(finals.includes(Status.DuplicateInvocation), `the second is refused as a duplicate invocation (received ${JSON.stringify(finals)})`);
  });

  // Found in the hostile-peer review: only C-FIND, C-MOVE and C-GET were checked; two C-ECHO (or
  // C-STORE) requests with one Message ID were both performed and answered alike.
  test('a C-ECHO reusing the Message ID of an outstanding operation gets 0x0210', async () => {
    const raw = await RawAssociation.open(gantry.port);
    const accepted = await raw.associate({
      called: 'GANTRY',
      calling: 'RAW',
      contexts: [{ id: 1, abstractSyntax: VERIFICATION, transferSyntaxes: [IMPLICIT_LE] }],
      asyncOperations: { maxOperationsInvoked: 4, maxOperationsPerformed: 1 },
    });
    assert.equal(accepted.kind, 'accept');
    const echo = (messageId: number) => Buffer.concat(encodePData(1, true, encodeCommand({ commandField: CommandField.CEchoRq, messageId, affectedSopClassUid: VERIFICATION, commandDataSetType: NO_DATASET }), 16384));
    raw.write(Buffer.concat([echo(5), echo(5), echo(6)])); // in one segment: the first is outstanding
    const received = await drain(raw, 1000);
    raw.destroy();
    const statuses = received.flatMap((event) => (event.kind === 'command' ? [`${event.command.messageIdBeingRespondedTo}:${event.command.status}`] : []));
    assert.deepEqual(statuses.sort(), ['5:0', `5:${Status.DuplicateInvocation}`, '6:0'].sort());
  });

  test('a C-ECHO-RQ whose Command Data Set Type says a data set follows is not answered Success and then aborted', async () => {
    const raw = await RawAssociation.open(gantry.port);
    assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RAW', contexts: [{ id: 1, abstractSyntax: VERIFICATION, transferSyntaxes: [IMPLICIT_LE] }] })).kind, 'accept');
    raw.sendCommand(1, { commandField: CommandField.CEchoRq, messageId: 1, affectedSopClassUid: VERIFICATION, commandDataSetType: DATASET_PRESENT });
    await sleep(200); // the data set in a later TCP segment, as over any real network
    raw.sendDataset(1, Buffer.alloc(8));
    raw.sendCommand(1, { commandField: CommandField.CEchoRq, messageId: 2, affectedSopClassUid: VERIFICATION, commandDataSetType: NO_DATASET });
    const received = await drain(raw, 1500);
    raw.destroy();
    const summary = received.map((event) => (event.kind === 'command' ? `rsp ${event.command.messageIdBeingRespondedTo} 0x${event.command.status?.toString(16)}` : event.kind));
    // Its data set is read and it gets a failure status (0x0212 Mistyped argument), as other commands
    // with an unexpected data set do; the association goes on and answers the next C-ECHO. (Success then
    // A-ABORT, as before, told the peer the operation succeeded and then killed the association.)
    assert.deepEqual(summary.slice(0, 2), ['rsp 1 0x212', 'rsp 2 0x0'], `received: ${summary.join(', ')}`);
  });
  test('the last fragment of a dataset, empty, on another presentation context than its command is an A-ABORT, not the end of the C-STORE', async () => {
    const raw = await RawAssociation.open(gantry.port);
    const contexts = [
      { id: 1, abstractSyntax: CT_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] },
      { id: 3, abstractSyntax: VERIFICATION, transferSyntaxes: [IMPLICIT_LE] },
    ];
    assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RAW', contexts })).kind, 'accept');
    const sopInstanceUid = newUid();
    raw.sendCommand(1, { commandField: CommandField.CStoreRq, messageId: 1, priority: 0, affectedSopClassUid: CT_IMAGE_STORAGE, affectedSopInstanceUid: sopInstanceUid, commandDataSetType: DATASET_PRESENT });
    const dataset = encodeDataset([[0x00080018, 'UI', sopInstanceUid]]);
    raw.write(Buffer.concat([encodePDataHeader(1, false, false, dataset.length), dataset]));
    raw.write(encodePDataHeader(3, false, true, 0));
    const received = await drain(raw, 1500);
    raw.destroy();
    // PS3.8 9.3.5.1, PS3.7 6.3.1: every fragment of a message comes on the presentation context of its
    // command; the same fragment with data in it is already refused so (conformance statement 4.2.1.4).
    assert.deepEqual(received[0], { kind: 'abort', abort: { source: 2, reason: 6 } }, `received: ${JSON.stringify(received)}`);
  });
  test('a C-FIND refused for an identifier over 1 MiB does not keep its Message ID and its place in the window', async () => {
    const raw = await RawAssociation.open(gantry.port);
    assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RAW', contexts: [{ id: 1, abstractSyntax: STUDY_ROOT_FIND, transferSyntaxes: [EXPLICIT_LE] }] })).kind, 'accept');
    raw.sendCommand(1, { commandField: CommandField.CFindRq, messageId: 1, priority: 0, affectedSopClassUid: STUDY_ROOT_FIND, commandDataSetType: DATASET_PRESENT });
    raw.sendDataset(1, Buffer.alloc(1024 * 1024 + 2));
    const refused = await raw.next();
    // Then another C-FIND, in the window of 1 (none proposed) that the first no longer takes: it runs
    // until its C-CANCEL, and answers Cancel.
    findRequest(raw, 1, 2);
    await sleep(300);
    cancel(raw, 1, 2);
    const received = await drain(raw, 2000);
    raw.destroy();
    const statuses = [refused, ...received].flatMap((event) => (event.kind === 'command' ? [`${event.command.messageIdBeingRespondedTo} 0x${event.command.status?.toString(16)}`] : [event.kind]));
    // PS3.7 D.3.3.3: an operation answered is no longer outstanding; 9.1.2.1.1: nor is its Message ID.
    assert.deepEqual(statuses.slice(0, 2), ['1 0xc000', '2 0xfe00'], `received: ${statuses.join(', ')}`);
  });
});

describe('acceptor serving C-MOVE (in process)', () => {
  const STUDY_ROOT_MOVE = '1.2.840.10008.5.1.4.1.2.2.2';

  test('a C-MOVE-RQ without a Move Destination has its identifier read and is refused, not answered and then aborted', async () => {
    const moves: string[] = [];
    const { server, port } = await startTestServer({
      serviceFor: (abstractSyntax) => (abstractSyntax === VERIFICATION ? 'verification' : abstractSyntax === STUDY_ROOT_MOVE ? 'move' : undefined),
      handlers: {
        echo: () => ({ status: Status.Success }),
        store: () => new DiscardingSink({ status: Status.Success }),
        move: (request) =>
          (async function* () {
            moves.push(request.moveDestination);
            yield* [];
            return { status: Status.Success, suboperations: { remaining: 0, completed: 0, failed: 0, warning: 0 } };
          })(),
      },
    });
    const raw = await RawAssociation.open(port);
    try {
      const contexts = [
        { id: 1, abstractSyntax: STUDY_ROOT_MOVE, transferSyntaxes: [EXPLICIT_LE] },
        { id: 3, abstractSyntax: VERIFICATION, transferSyntaxes: [IMPLICIT_LE] },
      ];
      assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RAW', contexts })).kind, 'accept');
      raw.sendCommand(1, { commandField: CommandField.CMoveRq, messageId: 1, priority: 0, affectedSopClassUid: STUDY_ROOT_MOVE, commandDataSetType: DATASET_PRESENT });
      raw.sendDataset(1, encodeDataset([[0x00080052, 'CS', 'STUDY'], [0x0020000d, 'UI', '1.2.3']]));
      raw.sendCommand(3, { commandField: CommandField.CEchoRq, messageId: 2, affectedSopClassUid: VERIFICATION, commandDataSetType: NO_DATASET });
      const received = await drain(raw, 1500);
      const summary = received.map((event) => (event.kind === 'command' ? `rsp ${event.command.messageIdBeingRespondedTo} 0x${event.command.status?.toString(16)}` : event.kind));
      // PS3.7 9.1.4.1.3: Move Destination is mandatory in a C-MOVE-RQ, whose identifier (9.1.4.1.5)
      // follows all the same; refused, the request's data set is read and the association goes on.
      assert.deepEqual({ summary: summary.slice(0, 2), moves }, { summary: ['rsp 1 0xc000', 'rsp 2 0x0'], moves: [] }, `received: ${summary.join(', ')}`);
    } finally {
      raw.destroy();
      await server.close(1000);
    }
  });

  // Found in a review: a C-MOVE beyond the window was refused with 0xA700, a status C-MOVE and C-GET
  // do not have (PS3.4 C.4.2.1.5, C.4.3.1.4); theirs is 0xA701 (or 0xA702).
  test('a C-MOVE beyond the asynchronous operations window is refused with 0xA701, and the one running goes on', async () => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const { server, port } = await startTestServer({
      serviceFor: (abstractSyntax) => (abstractSyntax === STUDY_ROOT_MOVE ? 'move' : undefined),
      handlers: {
        echo: () => ({ status: Status.Success }),
        store: () => new DiscardingSink({ status: Status.Success }),
        move: () =>
          (async function* () {
            await released;
            yield* [];
            return { status: Status.Success, suboperations: { remaining: 0, completed: 0, failed: 0, warning: 0 } };
          })(),
      },
    });
    const raw = await RawAssociation.open(port);
    try {
      // No window proposed: one operation at a time (PS3.7 D.3.3.3).
      assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RAW', contexts: [{ id: 1, abstractSyntax: STUDY_ROOT_MOVE, transferSyntaxes: [EXPLICIT_LE] }] })).kind, 'accept');
      for (const messageId of [1, 2]) {
        raw.sendCommand(1, { commandField: CommandField.CMoveRq, messageId, priority: 0, affectedSopClassUid: STUDY_ROOT_MOVE, commandDataSetType: DATASET_PRESENT, moveDestination: 'ELSEWHERE' });
        raw.sendDataset(1, encodeDataset([[0x00080052, 'CS', 'STUDY'], [0x0020000d, 'UI', '1.2.3']]));
      }
      const refused = await raw.next(5000);
      release();
      const finished = await raw.next(5000);
      const summary = [refused, finished].map((event) => (event.kind === 'command' ? `rsp ${event.command.messageIdBeingRespondedTo} 0x${event.command.status?.toString(16)}` : event.kind));
      assert.deepEqual(summary, ['rsp 2 0xa701', 'rsp 1 0x0']);
    } finally {
      raw.destroy();
      await server.close(1000);
    }
  });

  // Found in a review: every final C-MOVE and C-GET response carried Number of Remaining Sub-operations
  // (0), which PS3.4 C.4.2.1.6 and C.4.3.1.6 allow in Pending and Cancel responses only: "Warning,
  // Failure or Success shall not contain" it.
  test('the final response has Number of Remaining Sub-operations only after a cancel; the pending ones always', async () => {
    const { server, port } = await startTestServer({
      serviceFor: (abstractSyntax) => (abstractSyntax === STUDY_ROOT_MOVE ? 'move' : undefined),
      handlers: {
        echo: () => ({ status: Status.Success }),
        store: () => new DiscardingSink({ status: Status.Success }),
        move: (request) =>
          (async function* () {
            yield { remaining: 1, completed: 1, failed: 0, warning: 0 };
            const counts = { remaining: 0, completed: 1, failed: 1, warning: 0 };
            if (request.moveDestination === 'CANCELLED') return { status: Status.Cancel, suboperations: { ...counts, remaining: 1 } };
            return request.moveDestination === 'WARNED' ? { status: 0xb000, suboperations: counts } : { status: Status.Success, suboperations: { ...counts, failed: 0, completed: 2 } };
          })(),
      },
    });
    const raw = await RawAssociation.open(port);
    try {
      assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RAW', contexts: [{ id: 1, abstractSyntax: STUDY_ROOT_MOVE, transferSyntaxes: [EXPLICIT_LE] }] })).kind, 'accept');
      const remainingIn = async (destination: string, messageId: number) => {
        raw.sendCommand(1, { commandField: CommandField.CMoveRq, messageId, priority: 0, affectedSopClassUid: STUDY_ROOT_MOVE, commandDataSetType: DATASET_PRESENT, moveDestination: destination });
        raw.sendDataset(1, encodeDataset([[0x00080052, 'CS', 'STUDY'], [0x0020000d, 'UI', '1.2.3']]));
        const responses: Array<[number | undefined, number | undefined]> = [];
        for (;;) {
          const event = await raw.next(5000);
          if (event.kind !== 'command') throw new Error(`expected a C-MOVE-RSP, received ${event.kind}`);
          responses.push([event.command.status, event.command.numberOfRemainingSuboperations]);
          if (event.command.status !== Status.Pending) return responses;
        }
      };
      assert.deepEqual(await remainingIn('DONE', 1), [[Status.Pending, 1], [Status.Success, undefined]]);
      assert.deepEqual(await remainingIn('WARNED', 2), [[Status.Pending, 1], [0xb000, undefined]]);
      assert.deepEqual(await remainingIn('CANCELLED', 3), [[Status.Pending, 1], [Status.Cancel, 1]], 'a Cancel response may say what was left');
    } finally {
      raw.destroy();
      await server.close(1000);
    }
  });
});

describe('acceptor with a short idle timeout (in process)', () => {
  const IDLE_MS = 500;

  test('a C-FIND requester that reads none of its pending responses is aborted after the idle timeout', async () => {
    const find = { yielded: 0, ended: false };
    const { server, port } = await startTestServer({
      artimMs: 500,
      idleMs: IDLE_MS,
      serviceFor: (abstractSyntax) => (abstractSyntax === STUDY_ROOT_FIND ? 'find' : undefined),
      handlers: {
        echo: () => ({ status: Status.Success }),
        store: () => new DiscardingSink({ status: Status.Success }),
        find: (_request, signal) =>
          (async function* () {
            try {
              // Bounded: 4096 matches of 64 KiB (256 MB) is far more than the socket buffers hold.
              for (let i = 0; i < 4096 && !signal.aborted; i += 1) {
                find.yielded += 1;
                yield Buffer.alloc(64 * 1024);
              }
            } finally {
              find.ended = true;
            }
          })(),
      },
    });
    const raw = await RawAssociation.open(port);
    try {
      assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RAW', contexts: [{ id: 1, abstractSyntax: STUDY_ROOT_FIND, transferSyntaxes: [EXPLICIT_LE] }] })).kind, 'accept');
      raw.socket.pause(); // never read what Gantry answers
      findRequest(raw, 1, 1);
      const deadline = Date.now() + IDLE_MS + 8000;
      while ((server.activeAssociations > 0 || !find.ended) && Date.now() < deadline) await sleep(50);
      assert.deepEqual(
        { active: server.activeAssociations, findEnded: find.ended },
        { active: 0, findEnded: true },
        `a peer that reads nothing for the idle timeout is aborted (conformance statement 4.2.1.4); ${find.yielded} matches were taken before the socket filled`,
      );
    } finally {
      raw.destroy();
      await server.close(1000);
    }
  });
});
