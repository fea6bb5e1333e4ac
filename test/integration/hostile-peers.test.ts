/**
 * Peers that do not play by the rules, found by fuzzing the acceptor: one that sends requests and
 * never reads the responses, a flood of connections that never ask for an association, repeated
 * role selections, and PDVs that PS3.8 forbids where they came. The node must stay bounded in
 * memory, keep serving real callers, and answer what is wrong with an A-ABORT.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CommandField, DATASET_PRESENT, encodeCommand, NO_DATASET } from '../../src/dimse/command.js';
import { FAILURES_LOGGED } from '../../src/dimse/association.js';
import { encodePData } from '../../src/dimse/pdu.js';
import { startGantryProcess, type GantryProcess } from '../helpers/gantry.js';
import { peakRss, resetPeakRss, sleep } from '../helpers/processes.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { encodeDataset } from '../helpers/synthetic-dicom.js';

const VERIFICATION = '1.2.840.10008.1.1';
const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
const CONTEXTS = [
  { id: 1, abstractSyntax: VERIFICATION, transferSyntaxes: ['1.2.840.10008.1.2'] },
  { id: 3, abstractSyntax: CT_IMAGE_STORAGE, transferSyntaxes: ['1.2.840.10008.1.2.1'] },
];
const MAX_ASSOCIATIONS = 4;
/** src/dimse/server.ts: connections without an association allowed per association. */
const CONNECTIONS_PER_ASSOCIATION = 4;
const IDLE_SECONDS = 3;

function echoRequest(messageId: number): Buffer {
  const command = encodeCommand({ commandField: CommandField.CEchoRq, messageId, affectedSopClassUid: VERIFICATION, commandDataSetType: NO_DATASET });
  return Buffer.concat(encodePData(1, true, command, 16384));
}

async function associated(port: number, aeTitle: string): Promise<RawAssociation> {
  const raw = await RawAssociation.open(port);
  assert.equal((await raw.associate({ called: aeTitle, calling: 'HOSTILE', contexts: CONTEXTS })).kind, 'accept');
  return raw;
}

describe('hostile peers', () => {
  let dir: string;
  let gantry: GantryProcess;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gantry-hostile-'));
    gantry = await startGantryProcess(dir, {
      // ARTIM stays at its default (30 s), so that silent connections outlive the test unless closed.
      dicom: { maxAssociations: MAX_ASSOCIATIONS, maxAssociationsPerCaller: MAX_ASSOCIATIONS, idleTimeoutSeconds: IDLE_SECONDS },
    });
  });
  after(async () => {
    await gantry?.stop();
    if (process.env.DUMP) console.log(gantry.output());
    rmSync(dir, { recursive: true, force: true });
  });

  test('a peer that sends C-ECHO requests without reading the responses is held back, not buffered, and aborted when idle', async () => {
    const raw = await associated(gantry.port, gantry.aeTitle);
    raw.socket.pause(); // never read what Gantry answers
    const before = peakRss(gantry.pid);
    const burst = Buffer.concat(Array.from({ length: 1024 }, () => echoRequest(1)));
    let sent = 0;
    const deadline = Date.now() + 20_000;
    // Send until the node stops taking requests (they pile up in this socket's own buffer), or 60 MB.
    while (sent < 60 * 1024 * 1024 && raw.socket.writableLength < 4 * 1024 * 1024 && Date.now() < deadline) {
      raw.socket.write(burst);
      sent += burst.length;
      if (raw.socket.writableLength > 0) await sleep(5);
    }
    // Read now: the node aborts a peer that reads nothing for the idle timeout, which empties this
    // socket's buffer; on a slow machine that came within the wait below (CI, stop 19).
    const heldBack = raw.socket.writableLength;
    await sleep(500);
    const grown = peakRss(gantry.pid) - before;
    assert.ok(heldBack >= 4 * 1024 * 1024, `the node kept reading: ${(sent / 1e6).toFixed(1)} MB of requests were taken`);
    // Answering the requests it did take (tens of thousands of operations) grows the heap for a while:
    // 30-45 MB measured. Buffering every response, as before, cost about 8 bytes per byte sent.
    assert.ok(grown < 100 * 1024 * 1024, `peak RSS grew by ${(grown / 1e6).toFixed(0)} MB while ${(sent / 1e6).toFixed(1)} MB of requests were sent`);

    // A peer that reads nothing for the idle timeout is aborted, even with its requests held back.
    // The timeout counts from the last request read, which comes late on a loaded machine.
    const abortDeadline = Date.now() + IDLE_SECONDS * 1000 + 15_000;
    while (!/association idle too long: aborted/.test(gantry.output()) && Date.now() < abortDeadline) await sleep(100);
    raw.socket.destroy();
    const fresh = await associated(gantry.port, gantry.aeTitle);
    assert.equal(await fresh.echo(1), 0x0000);
    await fresh.release();
    assert.match(gantry.output(), /association idle too long: aborted/);
  });

  test('connections that never send an A-ASSOCIATE-RQ do not lock callers out: the oldest are closed', async () => {
    const limit = MAX_ASSOCIATIONS * CONNECTIONS_PER_ASSOCIATION;
    const silent: Socket[] = [];
    let closedByNode = 0;
    try {
      // All at once: the node accepts a burst in one turn of its event loop, before the closes of
      // the connections it cut are reported.
      for (let i = 0; i < limit + 20; i += 1) {
        const socket = connect(gantry.port, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.on('close', () => (closedByNode += 1));
        silent.push(socket);
      }
      await Promise.all(silent.map((socket) => (socket.connecting ? once(socket, 'connect') : undefined)));
      const raw = await associated(gantry.port, gantry.aeTitle);
      assert.equal(await raw.echo(1), 0x0000);
      await raw.release();
      const deadline = Date.now() + 5000;
      while (closedByNode < 20 && Date.now() < deadline) await sleep(50);
      assert.ok(closedByNode >= 20, `${closedByNode} of ${silent.length} silent connections were closed; at most ${limit} may stay`);
    } finally {
      for (const socket of silent) socket.destroy();
    }
  });

  test('a role selection repeated 1,984 times is answered once, and the association accepted', async () => {
    const raw = await RawAssociation.open(gantry.port);
    // As many 33-byte role selection items as the request's user information item holds (16-bit
    // length); echoed back beside Gantry's longer implementation class UID, they would not fit.
    const roleSelections = Array.from({ length: 1984 }, () => ({ sopClassUid: CT_IMAGE_STORAGE, scuRole: true, scpRole: false }));
    const answer = await raw.associate({ called: gantry.aeTitle, calling: 'HOSTILE', contexts: CONTEXTS, roleSelections });
    assert.equal(answer.kind, 'accept', JSON.stringify(answer).slice(0, 300));
    if (answer.kind === 'accept') assert.equal(answer.accept.userInformation.roleSelections.length, 1);
    await raw.release();
  });

  test('PDVs PS3.8 forbids where they come, and a request without a Message ID, are answered with an A-ABORT', async () => {
    // A P-DATA-TF (one empty PDV) before any association: PS3.8 AA-1, an A-ABORT of service-user
    // source (its reason not significant); the same PDU after it would be AA-8, source 2 with a reason.
    const early = await RawAssociation.open(gantry.port);
    early.write(Buffer.from([0x04, 0, 0, 0, 0, 6, 0, 0, 0, 2, 1, 2]));
    assert.deepEqual(await early.next(), { kind: 'abort', abort: { source: 0, reason: 0 } });
    early.destroy();

    // The last fragment of a dataset, empty, with no command before it: unexpected PDU parameter.
    const orphan = await associated(gantry.port, gantry.aeTitle);
    orphan.write(Buffer.from([0x04, 0, 0, 0, 0, 6, 0, 0, 0, 2, 3, 2]));
    assert.deepEqual(await orphan.next(), { kind: 'abort', abort: { source: 2, reason: 5 } });
    orphan.destroy();

    // A command begun on context 1 and ended on context 3: invalid PDU parameter value.
    const split = await associated(gantry.port, gantry.aeTitle);
    const command = encodeCommand({ commandField: CommandField.CEchoRq, messageId: 1, affectedSopClassUid: VERIFICATION, commandDataSetType: NO_DATASET });
    const half = Math.floor(command.length / 2);
    split.write(Buffer.concat(encodePData(1, true, command.subarray(0, half), 16384)).fill(1, 11, 12)); // not last
    split.write(Buffer.concat(encodePData(3, true, command.subarray(half), 16384)));
    assert.deepEqual(await split.next(), { kind: 'abort', abort: { source: 2, reason: 6 } });
    split.destroy();

    // A C-ECHO-RQ without its Message ID: a response could name no request (PS3.7 9.1).
    const anonymous = await associated(gantry.port, gantry.aeTitle);
    const noMessageId = encodeCommand({ commandField: CommandField.CEchoRq, affectedSopClassUid: VERIFICATION, commandDataSetType: NO_DATASET });
    anonymous.write(Buffer.concat(encodePData(1, true, noMessageId, 16384)));
    assert.deepEqual(await anonymous.next(), { kind: 'abort', abort: { source: 2, reason: 6 } });
    anonymous.destroy();

    const after = await associated(gantry.port, gantry.aeTitle);
    assert.equal(await after.echo(1), 0x0000);
    await after.release();
  });

  test('a C-STORE-RQ for a SOP class whose SCU role the requester declined is refused, not stored (PS3.7 D.3.3.4)', async () => {
    const raw = await RawAssociation.open(gantry.port);
    const roleSelections = [{ sopClassUid: CT_IMAGE_STORAGE, scuRole: false, scpRole: true }];
    const answer = await raw.associate({ called: gantry.aeTitle, calling: 'HOSTILE', contexts: CONTEXTS, roleSelections });
    assert.equal(answer.kind, 'accept');
    if (answer.kind === 'accept') assert.deepEqual(answer.accept.userInformation.roleSelections.map((role) => role.scuRole), [false]);
    const dataset = encodeDataset([
      [0x00080016, 'UI', CT_IMAGE_STORAGE],
      [0x00080018, 'UI', '1.2.826.0.1.3680043.8.498.77'],
      [0x0020000d, 'UI', '1.2.3.4'],
      [0x0020000e, 'UI', '1.2.3.4.5'],
    ]);
    const response = await raw.store(3, CT_IMAGE_STORAGE, '1.2.826.0.1.3680043.8.498.77', dataset);
    assert.equal(response?.status, 0x0211, 'unrecognized operation: no SCU role on this class');
    assert.equal(await raw.echo(1, 2), 0x0000, 'the verification context keeps its default roles');
    await raw.release();
  });

  // Found in the hostile-peer review: each PDV's data was queued for the file as a Buffer object of
  // its own, and the queue pushed back only at 4 MiB of bytes: 5 MB sent in PDVs of one byte took
  // 500 MB of heap, and 24 such associations ran the node out of memory.
  test('a dataset sent in PDVs of one byte is stored whole without the heap growing with it', async (t) => {
    // A node of its own: in the node the tests share, the C-ECHO flood had grown the heap already, and
    // a heap grown again within it showed in no RSS (review of the test suite).
    const node = await startGantryProcess(join(dir, 'one-byte-pdvs'));
    t.after(() => node.stop());
    const raw = await associated(node.port, node.aeTitle);
    const sopInstanceUid = '1.2.826.0.1.3680043.8.498.78';
    const dataset = encodeDataset([
      [0x00080016, 'UI', CT_IMAGE_STORAGE],
      [0x00080018, 'UI', sopInstanceUid],
      [0x0020000d, 'UI', '1.2.3.4'],
      [0x0020000e, 'UI', '1.2.3.4.5'],
      [0x7fe00010, 'OB', Buffer.alloc(1024 * 1024, 0x5a)],
    ]);
    // Its peak from here: not the start's.
    resetPeakRss(node.pid);
    const before = peakRss(node.pid);
    const began = Date.now();
    raw.sendCommand(3, { commandField: CommandField.CStoreRq, messageId: 7, priority: 0, affectedSopClassUid: CT_IMAGE_STORAGE, affectedSopInstanceUid: sopInstanceUid, commandDataSetType: DATASET_PRESENT });
    const PDVS_PER_PDU = 2000;
    for (let start = 0; start < dataset.length; start += PDVS_PER_PDU) {
      const count = Math.min(PDVS_PER_PDU, dataset.length - start);
      const pdu = Buffer.alloc(6 + count * 7);
      pdu[0] = 0x04; // P-DATA-TF
      pdu.writeUInt32BE(count * 7, 2);
      for (let i = 0; i < count; i += 1) {
        const at = 6 + i * 7;
        pdu.writeUInt32BE(3, at); // item length: context ID, control header, one byte
        pdu[at + 4] = 3;
        pdu[at + 5] = start + i === dataset.length - 1 ? 0x02 : 0x00; // dataset; the last fragment
        pdu[at + 6] = dataset[start + i] as number;
      }
      if (!raw.socket.write(pdu)) await once(raw.socket, 'drain');
    }
    const answer = await raw.next(120_000);
    assert.equal(answer.kind === 'command' ? answer.command.status : answer.kind, 0x0000);
    const grown = peakRss(node.pid) - before;
    assert.ok(grown < 60 * 1024 * 1024, `peak RSS grew by ${(grown / 1e6).toFixed(0)} MB for a 1 MB dataset (${Date.now() - began} ms)`);
    const stored = readdirSync(join(node.storagePath, 'originals'), { recursive: true }).map(String).find((name) => name.endsWith(`${sopInstanceUid}.dcm`));
    assert.ok(stored, 'stored');
    assert.ok(readFileSync(join(node.storagePath, 'originals', stored)).subarray(-dataset.length).equals(dataset), 'byte for byte');
    await raw.release();
  });

  // Found in the hostile-peer review: every byte put the idle timer back, so a peer announcing a
  // P-DATA-TF of 4 GB and sending a byte every few seconds held its association for good.
  test('a peer trickling a dataset byte by byte is aborted as idle', async () => {
    const raw = await associated(gantry.port, gantry.aeTitle);
    raw.sendCommand(3, { commandField: CommandField.CStoreRq, messageId: 1, priority: 0, affectedSopClassUid: CT_IMAGE_STORAGE, affectedSopInstanceUid: '1.2.826.0.1.3680043.8.498.93', commandDataSetType: DATASET_PRESENT });
    const header = Buffer.alloc(12);
    header[0] = 0x04;
    header.writeUInt32BE(0xffffffff, 2);
    header.writeUInt32BE(0xfffffffb, 6); // a PDV as long as the PDU allows
    header[10] = 3;
    header[11] = 0x00; // dataset, not the last fragment
    raw.write(header);
    let closed = false;
    raw.socket.once('close', () => (closed = true));
    const began = Date.now();
    // One byte every 500 ms: far below any sender's rate, far above "no traffic".
    while (!closed && Date.now() - began < (IDLE_SECONDS + 10) * 1000) {
      if (!raw.socket.destroyed) raw.socket.write(Buffer.from([0x5a]));
      await sleep(500);
    }
    assert.ok(closed, `the trickling peer was still connected after ${((Date.now() - began) / 1000).toFixed(1)} s`);
    raw.socket.destroy();
    const fresh = await associated(gantry.port, gantry.aeTitle);
    assert.equal(await fresh.echo(1), 0x0000);
    await fresh.release();
  });

  // Found in the hostile-peer review: a C-STORE reusing the Message ID of an outstanding one was
  // performed and answered alike (only C-FIND, C-MOVE and C-GET were checked).
  test('a C-STORE reusing the Message ID of an outstanding one gets 0x0210 and is not stored', async () => {
    const raw = await associated(gantry.port, gantry.aeTitle);
    const store = (sopInstanceUid: string) => {
      const command = encodeCommand({ commandField: CommandField.CStoreRq, messageId: 9, priority: 0, affectedSopClassUid: CT_IMAGE_STORAGE, affectedSopInstanceUid: sopInstanceUid, commandDataSetType: DATASET_PRESENT });
      const dataset = encodeDataset([
        [0x00080016, 'UI', CT_IMAGE_STORAGE],
        [0x00080018, 'UI', sopInstanceUid],
        [0x0020000d, 'UI', '1.2.3.4'],
        [0x0020000e, 'UI', '1.2.3.4.5'],
      ]);
      return Buffer.concat([...encodePData(3, true, command, 16384), ...encodePData(3, false, dataset, 16384)]);
    };
    raw.write(Buffer.concat([store('1.2.826.0.1.3680043.8.498.91'), store('1.2.826.0.1.3680043.8.498.92')]));
    const statuses: number[] = [];
    for (let i = 0; i < 2; i += 1) {
      const answer = await raw.next();
      if (answer.kind === 'command' && answer.command.messageIdBeingRespondedTo === 9) statuses.push(answer.command.status ?? -1);
    }
    assert.deepEqual(statuses.sort(), [0x0000, 0x0210]);
    await raw.release();
    const stored = readdirSync(join(gantry.storagePath, 'originals'), { recursive: true }).map(String);
    assert.ok(stored.some((name) => name.endsWith('1.2.826.0.1.3680043.8.498.91.dcm')), 'the first is stored');
    assert.ok(!stored.some((name) => name.includes('1.2.826.0.1.3680043.8.498.92')), 'the duplicate is not');
  });

  // Found in the hostile-peer review: every failed operation had a warning line of its own, and one
  // peer sending requests beyond its window wrote 24,384 lines (6 MB) in 20 seconds.
  test('the failures of one association are logged one by one up to a bound, then counted', async () => {
    const raw = await associated(gantry.port, 'GANTRY');
    const linesBefore = gantry.output().split('\n').filter((line) => line.includes('"operation failed"')).length;
    for (let messageId = 1; messageId <= FAILURES_LOGGED + 10; messageId += 1) {
      // A C-ECHO naming another class than its context's: refused with 0x0122.
      raw.sendCommand(1, { commandField: CommandField.CEchoRq, messageId, affectedSopClassUid: CT_IMAGE_STORAGE, commandDataSetType: NO_DATASET });
      const answer = await raw.next();
      assert.equal(answer.kind === 'command' ? answer.command.status : answer.kind, 0x0122);
    }
    await raw.release();
    await sleep(200);
    const lines = gantry.output().split('\n');
    assert.equal(lines.filter((line) => line.includes('"operation failed"')).length - linesBefore, FAILURES_LOGGED);
    assert.ok(lines.some((line) => line.includes('the next failures are counted in its summary')));
    assert.ok(lines.some((line) => line.includes('"association released"') && line.includes(`"failures":${FAILURES_LOGGED + 10}`)), 'the summary counts them all');
  });

  test('a response never echoes a UID the request spelled wrong (over 64 characters)', async () => {
    const raw = await associated(gantry.port, gantry.aeTitle);
    const tooLong = `${CT_IMAGE_STORAGE}${'.1'.repeat(40)}`;
    const dataset = encodeDataset([
      [0x00080016, 'UI', CT_IMAGE_STORAGE],
      [0x00080018, 'UI', tooLong],
      [0x0020000d, 'UI', '1.2.3.4'],
      [0x0020000e, 'UI', '1.2.3.4.5'],
    ]);
    const response = await raw.store(3, tooLong, tooLong, dataset);
    assert.equal(response?.status, 0x0122, 'refused: the command\'s SOP class is not its presentation context\'s (PS3.7 9.1.1)');
    // Both are optional in a response, and equal to the request's when present (U(=), PS3.7 9.1.1.1).
    assert.equal(response?.affectedSopClassUid, undefined, 'an Affected SOP Class UID spelled wrong is left out');
    assert.equal(response?.affectedSopInstanceUid, undefined, 'an Affected SOP Instance UID spelled wrong is left out');
    await raw.release();
  });
});
