/**
 * The Priority of a retrieve's C-STORE sub-operations (PS3.4 C.4.2.1.2, C.4.3.1.2): the C-MOVE's or
 * C-GET's Priority "defines the requested priority of the ... operation and corresponding C-STORE
 * sub-operations". Through the wire on both sides: a requester's C-MOVE-RQ or C-GET-RQ to Gantry's
 * acceptor, the MoveService, and the C-STORE-RQ that reaches the destination (or comes back).
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { CommandField, DATASET_PRESENT, NO_DATASET } from '../../src/dimse/command.js';
import { DiscardingSink } from '../../src/dimse/services.js';
import { Status } from '../../src/dimse/status.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { moveServiceOver, storageWithOneInstance } from '../helpers/retrieve-storage.js';
import { encodeDataset } from '../helpers/synthetic-dicom.js';
import { startTestServer } from '../helpers/test-server.js';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const CT = '1.2.840.10008.5.1.4.1.1.2';
const STUDY_ROOT_MOVE = '1.2.840.10008.5.1.4.1.2.2.2';
const STUDY_ROOT_GET = '1.2.840.10008.5.1.4.1.2.2.3';
const HIGH = 0x0001;
const LOW = 0x0002;
/** The research view's Study Instance UID of storageWithOneInstance's copy. */
const COPY = { studyInstanceUid: '2.25.11' };

/** Gantry's Q/R acceptor over a MoveService, and a Storage SCP (its AE title GANTRY, as every test server's) that records each C-STORE's Priority. */
async function startRetrieve(t: TestContext): Promise<{ port: number; priorities: number[] }> {
  const { db, storagePath } = await storageWithOneInstance(t, 'retrieve-priority');
  const priorities: number[] = [];
  const destination = await startTestServer({
    serviceFor: (abstractSyntax) => (abstractSyntax === CT ? 'storage' : undefined),
    handlers: {
      echo: () => ({ status: Status.Success }),
      store: (request) => {
        priorities.push(request.priority);
        return new DiscardingSink({ status: Status.Success });
      },
    },
  });
  t.after(() => destination.server.close(1000));
  const service = moveServiceOver(t, { db, storagePath }, () => 'research', [{ aeTitle: 'GANTRY', host: '127.0.0.1', port: destination.port, sourceSide: false }]);
  const gantry = await startTestServer({
    serviceFor: (abstractSyntax) => (abstractSyntax === STUDY_ROOT_MOVE ? 'move' : abstractSyntax === STUDY_ROOT_GET ? 'get' : abstractSyntax === CT ? 'storage' : undefined),
    mayGet: () => true,
    handlers: {
      echo: () => ({ status: Status.Success }),
      store: () => new DiscardingSink({ status: Status.Success }),
      move: (request, signal) => service.move(request, signal),
      get: (request, channel, signal) => service.get(request, channel, signal),
    },
  });
  t.after(() => gantry.server.close(1000));
  return { port: gantry.port, priorities };
}

const identifier = encodeDataset([
  [0x00080052, 'CS', 'STUDY'],
  [0x0020000d, 'UI', COPY.studyInstanceUid],
]);

/** A caller (RESEARCH) that takes the SCP role for CT on its association and sends a C-GET of the copy's study at HIGH priority. */
async function sendGet(t: TestContext, port: number): Promise<RawAssociation> {
  const raw = await RawAssociation.open(port);
  t.after(() => raw.destroy());
  const accepted = await raw.associate({
    called: 'GANTRY',
    calling: 'RESEARCH',
    contexts: [
      { id: 1, abstractSyntax: STUDY_ROOT_GET, transferSyntaxes: [EXPLICIT_LE] },
      { id: 3, abstractSyntax: CT, transferSyntaxes: [EXPLICIT_LE] },
    ],
    roleSelections: [{ sopClassUid: CT, scuRole: false, scpRole: true }],
  });
  assert.equal(accepted.kind, 'accept');
  raw.sendCommand(1, { commandField: CommandField.CGetRq, messageId: 1, priority: HIGH, affectedSopClassUid: STUDY_ROOT_GET, commandDataSetType: DATASET_PRESENT });
  raw.sendDataset(1, identifier);
  return raw;
}

/** A Success C-STORE-RSP to a sub-operation, naming `affectedSopInstanceUid`. */
function answerStore(raw: RawAssociation, messageId: number, affectedSopInstanceUid: string): void {
  raw.sendCommand(3, { commandField: CommandField.CStoreRsp, messageIdBeingRespondedTo: messageId, affectedSopClassUid: CT, affectedSopInstanceUid, commandDataSetType: NO_DATASET, status: Status.Success });
}

test('the C-STORE sub-operations of a C-MOVE carry its Priority', async (t) => {
  const { port, priorities } = await startRetrieve(t);
  const raw = await RawAssociation.open(port);
  t.after(() => raw.destroy());
  assert.equal((await raw.associate({ called: 'GANTRY', calling: 'RESEARCH', contexts: [{ id: 1, abstractSyntax: STUDY_ROOT_MOVE, transferSyntaxes: [EXPLICIT_LE] }] })).kind, 'accept');
  const move = async (priority: number, messageId: number): Promise<number | undefined> => {
    raw.sendCommand(1, { commandField: CommandField.CMoveRq, messageId, priority, affectedSopClassUid: STUDY_ROOT_MOVE, commandDataSetType: DATASET_PRESENT, moveDestination: 'GANTRY' });
    raw.sendDataset(1, identifier);
    for (;;) {
      const event = await raw.next(10_000);
      if (event.kind !== 'command') throw new Error(`expected a C-MOVE-RSP, received ${event.kind}`);
      if (event.command.status !== Status.Pending) return event.command.status;
    }
  };
  assert.equal(await move(HIGH, 1), Status.Success);
  assert.equal(await move(LOW, 2), Status.Success);
  assert.equal(await move(0x0007, 3), Status.Success, 'a Priority PS3.7 does not define');
  assert.deepEqual(priorities, [HIGH, LOW, 0x0000], 'HIGH, LOW, then MEDIUM');
});

test('the C-STORE sub-operations of a C-GET carry its Priority', async (t) => {
  const { port } = await startRetrieve(t);
  const raw = await sendGet(t, port);
  const stores: number[] = [];
  for (;;) {
    const event = await raw.next(10_000);
    if (event.kind !== 'command') throw new Error(`expected a C-STORE-RQ or C-GET-RSP, received ${event.kind}`);
    const { command } = event;
    if (command.commandField === CommandField.CStoreRq) {
      stores.push(command.priority ?? -1);
      answerStore(raw, command.messageId ?? 0, command.affectedSopInstanceUid ?? '');
    } else if (command.status !== Status.Pending) {
      assert.equal(command.status, Status.Success);
      break;
    }
  }
  assert.deepEqual(stores, [HIGH]);
});

// Found in a review: a C-STORE-RSP to a C-GET's sub-operation was matched by its Message ID alone, so
// one naming another instance counted as the sub-operation's success (the requestor already refused
// that, PS3.7 9.3.1.2): now it is a protocol error, and the association is aborted.
test('a C-STORE-RSP to a C-GET sub-operation that names another instance is not its answer: the association is aborted', async (t) => {
  const { port } = await startRetrieve(t);
  const raw = await sendGet(t, port);
  const seen: string[] = [];
  for (let events = 0; events < 20; events += 1) {
    const event = await raw.next(10_000);
    seen.push(event.kind === 'command' ? `command 0x${event.command.commandField.toString(16)} status ${event.command.status}` : event.kind);
    if (event.kind !== 'command') break;
    const { command } = event;
    if (command.commandField === CommandField.CStoreRq) {
      answerStore(raw, command.messageId ?? 0, '1.2.826.0.1.3680043.99.1.999');
    } else if (command.status !== Status.Pending) break;
  }
  assert.equal(seen.at(-1), 'abort', `received: ${seen.join(', ')}`);
});
