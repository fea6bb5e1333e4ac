/** The forwarder's pure parts: context proposals, backoff, warning statuses, destination conditions,
 * the requestor against a peer that rejects or does not answer, and the memory objects converted for a
 * destination may hold. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { AssociationError, RequestorAssociation } from '../../src/dimse/requestor.js';
import { encodeAssociateReject } from '../../src/dimse/pdu.js';
import { backoffMs, Forwarder, type DestinationSettings, type ForwardSettings } from '../../src/pipeline/forward.js';
import { isWarning } from '../../src/dimse/status.js';
import { proposeContexts } from '../../src/dimse/store-contexts.js';
import { routeDestinations } from '../../src/pipeline/route.js';
import { conditionHolds } from '../../src/deid/rules.js';
import type { Outbox, OutboxItem } from '../../src/queue/outbox.js';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { piecesBody, type Transcoder } from '../../src/store/transcoder.js';
import { startCountingServer, waitUntil } from '../helpers/destinations.js';
import { sleep } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { encodeDataset } from '../helpers/synthetic-dicom.js';
import { acceptEverything, requestorOptions } from '../helpers/requestor-peer.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const US = '1.2.840.10008.5.1.4.1.1.6.1';
const EXPLICIT = '1.2.840.10008.1.2.1';
const IMPLICIT = '1.2.840.10008.1.2';
const JPEG_LS = '1.2.840.10008.1.2.4.80';
/** Short timeouts: the tests of refusals and silences wait for them. */
const QUICK = { artimMs: 300, responseTimeoutMs: 1000 };

function item(id: number, sopClassUid: string, transferSyntaxUid: string): OutboxItem {
  return { id, destination: 'd', instancePk: id, filePath: `f${id}`, sopClassUid, sopInstanceUid: `1.2.${id}`, transferSyntaxUid, attempts: 0, routedAt: 1, studyPk: 1 };
}

test('contexts: the stored syntax, and both little-endian syntaxes for what has a little-endian form, once per class', () => {
  const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
  const MPEG4 = '1.2.840.10008.1.2.4.102';
  const { contexts, fitting } = proposeContexts([item(1, CT, EXPLICIT), item(2, CT, EXPLICIT), item(3, MR, JPEG_LS), item(4, CT, IMPLICIT), item(5, US, JPEG_BASELINE), item(6, US, MPEG4)]);
  assert.equal(fitting.length, 6);
  assert.deepEqual(
    contexts.map((context) => [context.id, context.abstractSyntax, context.transferSyntaxes.join(' ')]),
    [
      [1, CT, EXPLICIT],
      [3, CT, `${EXPLICIT} ${IMPLICIT}`],
      [5, MR, JPEG_LS],
      // JPEG-LS and JPEG baseline can be decompressed: a fallback context in little endian.
      [7, MR, `${EXPLICIT} ${IMPLICIT}`],
      [9, CT, IMPLICIT],
      [11, US, JPEG_BASELINE],
      [13, US, `${EXPLICIT} ${IMPLICIT}`],
      // Video cannot: its own syntax only.
      [15, US, MPEG4],
    ],
  );
});

test('contexts: no more than 128; items that do not fit wait for the next association', () => {
  const items = Array.from({ length: 100 }, (_, i) => item(i + 1, `1.2.3.${i}`, EXPLICIT));
  const { contexts, fitting } = proposeContexts(items);
  assert.equal(contexts.length, 128);
  assert.equal(fitting.length, 64);
  assert.ok(contexts.every((context) => context.id % 2 === 1 && context.id <= 255));
});

test('backoff grows by the multiplier up to the cap; warnings are 0x0001 and 0xBxxx', () => {
  const retry = { baseSeconds: 10, multiplier: 2, maxSeconds: 60, maxAttempts: 5 };
  assert.deepEqual([1, 2, 3, 4, 5].map((failures) => backoffMs(failures, retry)), [10_000, 20_000, 40_000, 60_000, 60_000]);
  assert.ok(isWarning(0x0001) && isWarning(0xb000) && isWarning(0xb007));
  assert.ok(isWarning(0x0107) && isWarning(0x0116), 'the general warnings of PS3.7 C.4');
  assert.ok(!isWarning(0x0110) && !isWarning(0x0122), 'processing failure and SOP class not supported fail');
  assert.ok(!isWarning(0x0000) && !isWarning(0xa700) && !isWarning(0xc000));
});

test('destination conditions name only indexed attributes, and names differ', () => {
  const base = { aeTitle: 'R', host: 'h', port: 1, maxAssociations: 1, maxOperations: 1 };
  assert.throws(() => routeDestinations([{ ...base, name: 'a', when: { attributes: { PatientBirthDate: '19700101' } } }]), /when\.attributes: "PatientBirthDate" cannot be tested; allowed: Modality/);
  assert.throws(() => routeDestinations([{ ...base, name: 'a' }, { ...base, name: 'a' }]), /"a" is used twice/);
  const [ct] = routeDestinations([{ ...base, name: 'ct', when: { attributes: { Modality: 'CT' } } }]);
  assert.equal(ct?.when?.attributes.length, 1);
});

async function listen(onConnection: Parameters<typeof createServer>[1]): Promise<{ server: Server; port: number }> {
  const server = createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port };
}

test('a destination condition never depends on the instance tested before it: regular expressions with g or y are refused', () => {
  const base = { aeTitle: 'R', host: 'h', port: 1, maxAssociations: 1, maxOperations: 1 };
  // With g, RegExp.test goes on from where the last match ended: every other CT instance failed the
  // condition and was routed to no destination.
  for (const flags of ['g', 'gi', 'y']) {
    assert.throws(() => routeDestinations([{ ...base, name: 'ct', when: { attributes: { Modality: `/^CT$/${flags}` } } }]), /forward\.destinations\[0\]\.when\.attributes\.Modality: .*flags g and y/);
  }
  const [ct] = routeDestinations([{ ...base, name: 'ct', when: { attributes: { Modality: '/^ct$/i' } } }]);
  const facts = { callingAeTitle: 'CT01', attribute: () => 'CT' };
  assert.deepEqual([1, 2, 3].map(() => conditionHolds(ct?.when, facts)), [true, true, true]);
});

test('the requestor reports a rejection, a refused connection and a silent peer as AssociationError kinds', async (t) => {
  const rejecting = await listen((socket) => socket.once('data', () => socket.end(encodeAssociateReject({ result: 1, source: 1, reason: 7 }))));
  t.after(() => rejecting.server.close());
  await assert.rejects(RequestorAssociation.open(requestorOptions(rejecting.port, QUICK)), (error: AssociationError) => {
    assert.equal(error.kind, 'rejected');
    assert.equal(error.reject?.reason, 7);
    return true;
  });

  const silent = await listen(() => undefined);
  t.after(() => silent.server.close());
  const began = Date.now();
  await assert.rejects(RequestorAssociation.open(requestorOptions(silent.port, QUICK)), (error: AssociationError) => error.kind === 'timeout');
  assert.ok(Date.now() - began < 2000, 'ARTIM ends the wait');

  const closed = await listen(() => undefined);
  const port = (closed.server.address() as { port: number }).port;
  await new Promise((resolve) => closed.server.close(resolve));
  await assert.rejects(RequestorAssociation.open(requestorOptions(port, QUICK)), (error: AssociationError) => error.kind === 'connect');
});

test('an abort fails the request on the wire as sent, and those behind it as never sent', async (t) => {
  const { encodeAbort } = await import('../../src/dimse/pdu.js');
  const peer = await listen((socket) => {
    let buffered = Buffer.alloc(0);
    let accepted = false;
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!accepted && buffered.length >= 6 && buffered.length >= 6 + buffered.readUInt32BE(2)) {
        accepted = true;
        socket.write(acceptEverything(buffered));
        buffered = buffered.subarray(6 + buffered.readUInt32BE(2));
        return;
      }
      // The first request's data arrives: abort instead of answering.
      if (accepted && buffered.length > 0) socket.end(encodeAbort({ source: 2, reason: 0 }));
    });
  });
  t.after(() => peer.server.close());
  const association = await RequestorAssociation.open(requestorOptions(peer.port, QUICK));
  const context = [...association.contexts.values()][0];
  assert.ok(context);
  const body = { length: 1000, read: async (target: Buffer) => target.fill(1).length };
  const outcomes = await Promise.allSettled([1, 2, 3].map((n) => association.store(context, `1.2.3.${n}`, { ...body })));
  const sent = outcomes.map((outcome) => (outcome.status === 'rejected' ? (outcome.reason as AssociationError).requestSent : 'resolved'));
  assert.deepEqual(sent, [true, false, false]);
});

test('a destination that sends a command set without end is aborted, not buffered without bound', async (t) => {
  const { encodePDataHeader } = await import('../../src/dimse/pdu.js');
  const FRAGMENT = 64 * 1024;
  const MAX_FRAGMENTS = 512; // 32 MiB in all
  let sentBytes = 0;
  let peerSawAbortOrClose = false;
  const peer = await listen((socket) => {
    let buffered = Buffer.alloc(0);
    let accepted = false;
    socket.on('error', () => undefined);
    socket.on('close', () => (peerSawAbortOrClose = true));
    socket.on('data', (chunk: Buffer) => {
      if (accepted) {
        if (chunk.includes(0x07)) peerSawAbortOrClose = true;
        return;
      }
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 6 || buffered.length < 6 + buffered.readUInt32BE(2)) return;
      accepted = true;
      socket.write(acceptEverything(buffered));
      // Then command fragments on context 1, none of them the last (PS3.8 E.2), bounded at 32 MiB.
      void (async () => {
        const body = Buffer.alloc(FRAGMENT, 0x41);
        for (let i = 0; i < MAX_FRAGMENTS && !peerSawAbortOrClose && !socket.destroyed; i += 1) {
          const ok = socket.write(Buffer.concat([encodePDataHeader(1, true, false, FRAGMENT), body]));
          sentBytes += FRAGMENT;
          if (!ok) await new Promise((resolve) => { socket.once('drain', resolve); socket.once('close', resolve); });
        }
      })();
    });
  });
  t.after(() => peer.server.close());
  const association = await RequestorAssociation.open(requestorOptions(peer.port, QUICK));
  t.after(() => association.abort());
  const heldBefore = process.memoryUsage().arrayBuffers;
  const deadline = Date.now() + 10_000;
  while (association.isUsable && sentBytes < MAX_FRAGMENTS * FRAGMENT && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  await new Promise((resolve) => setTimeout(resolve, 200));
  // The acceptor refuses a command set over 64 KiB (association.ts MAX_COMMAND_LENGTH); the requestor
  // (requestor.ts pdvData) keeps every fragment in memory until a last one that never comes.
  global.gc?.();
  const held = Math.round((process.memoryUsage().arrayBuffers - heldBefore) / 1024 / 1024);
  assert.equal(association.isUsable, false, `still usable after ${sentBytes / 1024 / 1024} MiB of one command set (${held} MiB of buffers held)`);
});

/** Forwarding settings with one destination "d" on 127.0.0.1:`port`, or `destinations`. */
function forwardSettings(port: number, destinations?: DestinationSettings[]): ForwardSettings {
  return {
    destinations: destinations ?? [{ name: 'd', aeTitle: 'DEST', host: '127.0.0.1', port, callingAeTitle: 'GANTRY', maxAssociations: 1, maxOperations: 16, conditions: 'null' }],
    retry: { baseSeconds: 1, multiplier: 2, maxSeconds: 10, maxAttempts: 3 },
    warningIsSuccess: true,
    implementationClassUid: '1.2.3',
    implementationVersionName: 'TEST',
    maxPduLength: 65536,
    connectTimeoutMs: 2000,
    responseTimeoutMs: 5000,
  };
}

/** `count` stored CT files in `transferSyntaxUid` under `storagePath`, as outbox items f1, f2… */
function storedItems(storagePath: string, count: number, transferSyntaxUid: string): OutboxItem[] {
  const items: OutboxItem[] = [];
  for (let n = 1; n <= count; n += 1) {
    const sopInstanceUid = `1.2.3.${n}`;
    const header = encodePart10Header({ mediaStorageSopClassUid: CT, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid });
    const dataset = encodeDataset([[0x00080016, 'UI', CT], [0x00080018, 'UI', sopInstanceUid]]);
    writeFileSync(join(storagePath, `f${n}`), Buffer.concat([header, dataset]));
    items.push({ ...item(n, CT, transferSyntaxUid), sopInstanceUid });
  }
  return items;
}

/** A transcoder for objects sent in their stored syntax: the stored dataset itself. */
const asStored = { datasetInSyntax: async (_path: string, stored: unknown) => stored } as unknown as Transcoder;

/** An outbox that hands out the `items` not confirmed yet and records what the forwarder tells it;
 * `overrides` replace its methods. */
function fakeOutbox(items: OutboxItem[], overrides: Record<string, unknown> = {}): { outbox: Outbox; sent: OutboxItem[] } {
  const sent: OutboxItem[] = [];
  const outbox = {
    due: () => items.filter((queued) => !sent.includes(queued)),
    nextDueAt: () => undefined,
    markSent: (confirmed: OutboxItem) => sent.push(confirmed),
    settleForwarded: () => undefined,
    routingPending: () => false,
    markRetry: (...args: unknown[]) => assert.fail(`no item fails: ${JSON.stringify(args)}`),
    markDead: () => assert.fail('no item fails'),
    noteUnreachable: () => assert.fail('the destination is reachable'),
    ...overrides,
  } as unknown as Outbox;
  return { outbox, sent };
}

test('objects converted for a destination are held in memory within a budget, not one per place in the window', async (t) => {
  const storagePath = scratchDir('forward-converted');
  const count = 8;
  // Stored in JPEG-LS, which the destination refuses: each goes converted to explicit VR little endian.
  const items = storedItems(storagePath, count, JPEG_LS);
  let converting = 0;
  let mostHeld = 0;
  const { outbox, sent } = fakeOutbox(items);
  const transcoder = {
    datasetInSyntax: async (_path: string, stored: { sopInstanceUid: string }) => {
      converting += 1;
      mostHeld = Math.max(mostHeld, converting - sent.length);
      const pixels = Buffer.alloc(600 * 1024);
      return piecesBody([encodeDataset([[0x00080016, 'UI', CT], [0x00080018, 'UI', stored.sopInstanceUid], [0x7fe00010, 'OB', pixels]])]);
    },
  } as unknown as Transcoder;
  const destination = await startCountingServer();
  t.after(() => destination.close());
  const forwarder = new Forwarder({
    outbox,
    storagePath,
    transcoder,
    log: silentLogger(),
    pollMs: 50,
    convertedBytes: 1024 * 1024,
    settings: () => forwardSettings(destination.port),
  });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('every item confirmed', 20_000, () => sent.length === count);
  // Each once; not in order: the items ask for the budget as their files open, which may finish in any order.
  assert.deepEqual([...destination.received].sort(), items.map((stored) => stored.sopInstanceUid).sort());
  // 600 KiB each under a 1 MiB budget: one held while the next is converted, never more.
  assert.ok(mostHeld <= 2, `converted objects held at once: ${mostHeld}`);
});

// Found in the forward review: every object the converter could not take was dead-lettered as "cannot be
// decompressed", an uncompressed big-endian one too: the reason names the conversion and the syntax.
test('an object that cannot be converted for a destination is dead-lettered at once, naming the conversion and its syntax', async (t) => {
  const storagePath = scratchDir('forward-unconvertible');
  const items = storedItems(storagePath, 1, JPEG_LS);
  const dead: string[] = [];
  const { outbox } = fakeOutbox(items, { due: () => (dead.length > 0 ? [] : items), markDead: (_item: OutboxItem, _status: unknown, reason: string) => dead.push(reason) });
  const { PixelRedactionError } = await import('../../src/pixels/native.js');
  const transcoder = {
    datasetInSyntax: async () => {
      throw new PixelRedactionError('cannot convert Pixel Data of 32 bits allocated');
    },
  } as unknown as Transcoder;
  // Stored in JPEG-LS, which the destination refuses: the object must be converted.
  const destination = await startCountingServer();
  t.after(() => destination.close());
  const forwarder = new Forwarder({ outbox, storagePath, transcoder, log: silentLogger(), pollMs: 50, convertedBytes: 1024 * 1024, settings: () => forwardSettings(destination.port) });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('the item dead-lettered', 10_000, () => dead.length === 1);
  assert.match(dead[0] as string, /^cannot be converted from JPEG-LS Lossless.* for d: cannot convert Pixel Data of 32 bits allocated$/);
});

test('confirmed instances that could not be marked forwarded (the index failed for a moment) are tried again, not left until a restart', async (t) => {
  const storagePath = scratchDir('forward-settle');
  const items = storedItems(storagePath, 3, EXPLICIT);
  const settled = new Set<number>();
  let failures = 0;
  const { outbox } = fakeOutbox(items, {
    settleForwarded: (instancePks: Iterable<number>) => {
      if (failures === 0) {
        failures += 1;
        throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      }
      for (const instancePk of instancePks) settled.add(instancePk);
    },
  });
  const destination = await startCountingServer();
  t.after(() => destination.close());
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings: () => forwardSettings(destination.port) });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('every instance marked forwarded', 10_000, () => settled.size === items.length);
  assert.equal(failures, 1);
});

// Found in a review: a queue a reload retired (its destination removed, or its number of associations
// changed) settled its confirmed instances once as it stopped; when that failed, nothing tried again
// before a restart, and those instances stayed `deidentified` with their originals (PHI) kept.
test('instances a queue retired by a reload confirmed are settled even when its last settle fails', async (t) => {
  const storagePath = scratchDir('forward-retired-settle');
  const items = storedItems(storagePath, 3, EXPLICIT);
  const settled = new Set<number>();
  let failing = true;
  let failures = 0;
  const { outbox, sent } = fakeOutbox(items, {
    settleForwarded: (instancePks: Iterable<number>) => {
      if (failing) {
        failures += 1;
        throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      }
      for (const instancePk of instancePks) settled.add(instancePk);
    },
  });
  const destination = await startCountingServer();
  t.after(() => destination.close());
  let destinations: DestinationSettings[] | undefined;
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings: () => forwardSettings(destination.port, destinations) });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('every item confirmed', 10_000, () => sent.length === items.length);
  destinations = [];
  forwarder.reconfigure();
  // Long enough for the queue to stop and every settle it had planned to fail.
  await sleep(1000);
  const failedSoFar = failures;
  assert.ok(failedSoFar >= 1, 'the settles failed');
  failing = false;
  await waitUntil('every instance marked forwarded', 5_000, () => settled.size === items.length);
});

// Found in a review: a confirmation that could not be recorded was logged and the batch went on; the
// items stayed due, and were sent again at once, over and over, while the index refused writes. Found
// in the failure review: a failure status that could not be recorded (markRetry on a full disk) did the
// same: 3,039 requests in 17 s for 10 instances, none counted as an attempt; and an association ended
// for a confirmation the index refused was counted and logged as the destination unreachable.
for (const [name, statusFor, overrides] of [
  ['a confirmation', () => 0x0000, { markSent: 'throws' }],
  ['a failure status', () => 0xc000, { markRetry: 'throws', markDead: 'throws' }],
] as const) {
  test(`${name} that cannot be recorded pauses sending, instead of sending again at once, and does not blame the destination`, async (t) => {
    const storagePath = scratchDir('forward-unrecorded');
    const items = storedItems(storagePath, 3, EXPLICIT);
    const full = () => {
      throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    };
    const { outbox } = fakeOutbox(items, {
      ...Object.fromEntries(Object.keys(overrides).map((method) => [method, full])),
      noteUnreachable: () => assert.fail('the destination is not to blame'),
    });
    const destination = await startCountingServer(statusFor);
    t.after(() => destination.close());
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) }));
    const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log, pollMs: 20, settings: () => forwardSettings(destination.port) });
    forwarder.start();
    t.after(() => forwarder.stop(1000));
    await waitUntil('sending paused', 10_000, () => lines.some((line) => line.msg === 'the index cannot record what the destination answered: sending to it paused'));
    await sleep(1500);
    // Paused 1 s, then 2 s: a couple of associations in 1.5 s, each ended at its first unrecorded
    // answer (and the requests already on the wire); sent again at once, hundreds.
    assert.ok(destination.received.length <= 12, `requests received: ${destination.received.length}`);
    assert.ok(!lines.some((line) => line.msg === 'destination unreachable: will retry'), 'not logged as unreachable');
  });
}

test('a reload that arrives while the forwarder stops changes nothing and does not throw', async () => {
  const outbox = { due: () => [], nextDueAt: () => undefined } as unknown as Outbox;
  const first: DestinationSettings = { name: 'd', aeTitle: 'DEST', host: '127.0.0.1', port: 9, callingAeTitle: 'GANTRY', maxAssociations: 1, maxOperations: 1, conditions: 'null' };
  let destinations = [first];
  const forwarder = new Forwarder({ outbox, storagePath: '/nonexistent', transcoder: {} as Transcoder, log: silentLogger(), pollMs: 20, settings: () => forwardSettings(9, destinations) });
  forwarder.start();
  const stopping = forwarder.stop(1000);
  // SIGHUP during the stop: one destination resized, one added.
  destinations = [{ ...first, maxAssociations: 2 }, { ...first, name: 'e' }];
  assert.doesNotThrow(() => forwarder.reconfigure());
  assert.doesNotThrow(() => forwarder.nudge());
  await stopping;
});

test('a reload that mends a destination (its port, AE title or host) ends its backoff: sending starts again at once, not after maxSeconds', async (t) => {
  const storagePath = scratchDir('forward-mended');
  const items = storedItems(storagePath, 2, EXPLICIT);
  const { outbox, sent } = fakeOutbox(items, { noteUnreachable: () => undefined });
  const destination = await startCountingServer();
  t.after(() => destination.close());
  const closed = await listen(() => undefined);
  const wrongPort = (closed.server.address() as { port: number }).port;
  await new Promise((resolve) => closed.server.close(resolve));
  let port = wrongPort;
  const settings = () => ({ ...forwardSettings(port), retry: { baseSeconds: 60, multiplier: 2, maxSeconds: 3600, maxAttempts: 3 } });
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  // The first association fails (nothing listens there): the destination backs off for 60 s.
  await sleep(300);
  assert.equal(sent.length, 0);
  port = destination.port;
  forwarder.reconfigure();
  await waitUntil('both items sent to the mended destination', 5000, () => sent.length === items.length);
});

// Found in a review: a reload that mends the address while an association to the old one is still
// being opened found no backoff to end; the attempt then failed and backed off (60 s here, up to
// maxSeconds) although the address it failed at was no longer the destination's.
test('an association that fails at an address a reload has mended meanwhile does not back off', async (t) => {
  const storagePath = scratchDir('forward-mended-during');
  const items = storedItems(storagePath, 2, EXPLICIT);
  const { outbox, sent } = fakeOutbox(items, { noteUnreachable: () => undefined });
  const destination = await startCountingServer();
  t.after(() => destination.close());
  // The old address accepts the connection and drops it a moment later, unanswered.
  const slow = await listen((socket) => void setTimeout(() => socket.destroy(), 400));
  t.after(() => new Promise((resolve) => slow.server.close(resolve)));
  let port = slow.port;
  const settings = () => ({ ...forwardSettings(port), retry: { baseSeconds: 60, multiplier: 2, maxSeconds: 3600, maxAttempts: 3 } });
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await sleep(150);
  port = destination.port;
  forwarder.reconfigure();
  await waitUntil('both items sent to the mended destination', 5000, () => sent.length === items.length);
});

// Found in a review: `gantry queue retry` re-queued dead items, but a node whose destination was in
// backoff (up to forward.retry.maxSeconds) sent nothing until the backoff ended.
test('items an operator re-queues reach a destination in backoff at the next poll: one attempt, then the backoff goes on', async (t) => {
  const storagePath = scratchDir('forward-retry-asked');
  const items = storedItems(storagePath, 2, EXPLICIT);
  let unreachable = 0;
  // When the operator re-queued the items, as the outbox answers it: asked after the backoff began.
  let retryAskedAt: number | undefined;
  const { outbox } = fakeOutbox(items, {
    noteUnreachable: () => (unreachable += 1),
    retryAskedSince: (_destination: string, since: number) => retryAskedAt !== undefined && retryAskedAt > since,
  });
  const closed = await listen(() => undefined);
  const port = (closed.server.address() as { port: number }).port;
  await new Promise((resolve) => closed.server.close(resolve));
  const settings = () => ({ ...forwardSettings(port), retry: { baseSeconds: 60, multiplier: 2, maxSeconds: 3600, maxAttempts: 3 } });
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('the first association failed: 60 s of backoff', 5000, () => unreachable === 1);
  await sleep(300);
  assert.equal(unreachable, 1, 'nothing is tried during the backoff');
  retryAskedAt = Date.now();
  await waitUntil('the re-queued items are tried at once', 5000, () => unreachable === 2);
  await sleep(500);
  assert.equal(unreachable, 2, 'one attempt per retry: the destination is not hammered');
});

// Found in a review: a stop (SIGTERM) whose grace period ended with responses outstanding aborted the
// association and charged each request on the wire one attempt, as if the destination had failed it:
// with forward.retry.maxAttempts 1 a restart put them in dead letter, never retried without an operator.
test('requests Gantry aborts itself at the end of a stop are not attempts: they stay queued, not dead-lettered', async (t) => {
  const storagePath = scratchDir('forward-stop-abort');
  const items = storedItems(storagePath, 3, EXPLICIT);
  const failed: string[] = [];
  const { outbox, sent } = fakeOutbox(items, {
    markRetry: () => failed.push('retry'),
    markDead: () => failed.push('dead'),
  });
  // A destination that accepts and reads every request, and answers none (slow storage).
  let requests = 0;
  const peer = await listen((socket) => {
    let buffered = Buffer.alloc(0);
    let accepted = false;
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      if (accepted) {
        requests += 1;
        return;
      }
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 6 || buffered.length < 6 + buffered.readUInt32BE(2)) return;
      accepted = true;
      socket.write(acceptEverything(buffered, { asyncOperations: { maxOperationsInvoked: 16, maxOperationsPerformed: 1 } }));
    });
  });
  t.after(() => peer.server.close());
  const settings = () => ({ ...forwardSettings(peer.port), retry: { baseSeconds: 1, multiplier: 2, maxSeconds: 10, maxAttempts: 1 }, responseTimeoutMs: 30_000 });
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings });
  forwarder.start();
  await waitUntil('requests on the wire', 5000, () => requests > 0);
  await sleep(200);
  await forwarder.stop(300);
  assert.equal(sent.length, 0);
  assert.deepEqual(failed, [], 'no item charged an attempt for an abort of Gantry’s own');
});

/** A storage SCP that answers Success to each request and closes the connection after `perAssociation`
 * answers (a PACS or a firewall that ends long associations), or, for the objects `abortOn`, once
 * their dataset has come (a PACS that cannot read them). Over `maxAssociations` open at once, it
 * rejects an association as transient, local limit exceeded, and counts it in `rejected`. */
async function closingPeer(perAssociation: number, answerAfterMs = 0, abortOn: readonly string[] = [], maxAssociations = Infinity): Promise<{ server: Server; port: number; stored: string[]; rejected: () => number }> {
  const { encodeCommand, decodeCommand, CommandField, NO_DATASET } = await import('../../src/dimse/command.js');
  const { encodePData, encodeReleaseResponse, PduType, RejectResult, RejectSource, RejectReason } = await import('../../src/dimse/pdu.js');
  const stored: string[] = [];
  let open = 0;
  let rejected = 0;
  const peer = await listen((socket) => {
    socket.on('error', () => undefined);
    let accepted = false;
    socket.on('close', () => (open -= accepted ? 1 : 0));
    let buffered = Buffer.alloc(0);
    let command: Buffer[] = [];
    let current: { messageId: number; sopClassUid: string; sopInstanceUid: string } | undefined;
    let answered = 0;
    let reading = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      reading = reading.then(() => readPdus());
    });
    const readPdus = async () => {
      while (!socket.destroyed && buffered.length >= 6 && buffered.length >= 6 + buffered.readUInt32BE(2)) {
        const type = buffered[0] as number;
        const pdu = buffered.subarray(0, 6 + buffered.readUInt32BE(2));
        buffered = buffered.subarray(pdu.length);
        if (type === PduType.AssociateRq && open >= maxAssociations) {
          rejected += 1;
          socket.end(encodeAssociateReject({ result: RejectResult.Transient, source: RejectSource.ServiceProviderPresentation, reason: RejectReason.LocalLimitExceeded }));
          return;
        } else if (type === PduType.AssociateRq) {
          accepted = true;
          open += 1;
          socket.write(acceptEverything(pdu));
        }
        else if (type === PduType.ReleaseRq) socket.end(encodeReleaseResponse());
        else if (type === PduType.PDataTf) {
          const body = pdu.subarray(6);
          for (let offset = 0; offset < body.length; ) {
            const itemLength = body.readUInt32BE(offset);
            const header = body[offset + 5] as number;
            const data = body.subarray(offset + 6, offset + 4 + itemLength);
            offset += 4 + itemLength;
            if ((header & 1) === 1) {
              command.push(Buffer.from(data));
              if ((header & 2) === 2) {
                const decoded = decodeCommand(Buffer.concat(command));
                command = [];
                current = { messageId: decoded.messageId as number, sopClassUid: decoded.affectedSopClassUid as string, sopInstanceUid: decoded.affectedSopInstanceUid as string };
              }
            } else if ((header & 2) === 2 && current) {
              if (abortOn.includes(current.sopInstanceUid)) {
                socket.destroy();
                return;
              }
              stored.push(current.sopInstanceUid);
              if (answerAfterMs > 0) await sleep(answerAfterMs);
              const rsp = encodeCommand({
                commandField: CommandField.CStoreRsp,
                messageIdBeingRespondedTo: current.messageId,
                commandDataSetType: NO_DATASET,
                affectedSopClassUid: current.sopClassUid,
                affectedSopInstanceUid: current.sopInstanceUid,
                status: 0,
              });
              for (const out of encodePData(1, true, rsp, 16384)) socket.write(out);
              current = undefined;
              answered += 1;
              if (answered >= perAssociation) {
                socket.destroy();
                return;
              }
            }
          }
        }
      }
    };
  });
  return { ...peer, stored, rejected: () => rejected };
}

// Found in a review: the destination's backoff grew with every association that ended other than by
// release, even one that stored instances: a PACS (or a firewall) that ends each association after N
// instances made the delay between associations reach forward.retry.maxSeconds (an hour by default),
// and a backlog went N instances an hour.
test('an association that stored instances before it ended does not make the backoff grow: the destination is up', async (t) => {
  const storagePath = scratchDir('forward-progress');
  const items = storedItems(storagePath, 8, EXPLICIT);
  const { outbox, sent } = fakeOutbox(items, { noteUnreachable: () => undefined, markRetry: () => undefined });
  const peer = await closingPeer(2);
  t.after(() => peer.server.close());
  const settings = () => ({
    ...forwardSettings(peer.port, [{ name: 'd', aeTitle: 'DEST', host: '127.0.0.1', port: peer.port, callingAeTitle: 'GANTRY', maxAssociations: 1, maxOperations: 1, conditions: 'null' }]),
    retry: { baseSeconds: 0.5, multiplier: 10, maxSeconds: 60, maxAttempts: 10 },
  });
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  // Four associations of two: 0.5 s between them, not 0.5, 5 and 50 s.
  await waitUntil('every item sent', 8000, () => sent.length === items.length);
});

// Found in the quirks review: a destination that aborts the association on one object (DCMTK on a
// dataset of odd length) was backed off as a whole, 10 s, 20 s, 40 s..., and every instance queued
// behind that object waited until its last attempt.
test('an association that ends on one object tries the other items at once; a second such end backs the destination off', async (t) => {
  const storagePath = scratchDir('forward-ended-on-item');
  const items = storedItems(storagePath, 6, EXPLICIT);
  const retryAt = new Map<number, number>();
  let unreachable = 0;
  /** An outbox that keeps a failed item back until its own retry time, and counts backoffs. */
  const honouringRetries = () => {
    const faked = fakeOutbox(items, {
      due: () => items.filter((queued) => !faked.sent.includes(queued) && (retryAt.get(queued.id) ?? 0) <= Date.now()),
      markRetry: (failed: OutboxItem, nextAttemptAt: number) => retryAt.set(failed.id, nextAttemptAt),
      noteUnreachable: () => (unreachable += 1),
    });
    return faked;
  };
  const { outbox, sent } = honouringRetries();
  // The first item is the one the destination cannot take.
  const peer = await closingPeer(Infinity, 0, [items[0]?.sopInstanceUid as string]);
  t.after(() => peer.server.close());
  const settings = () => ({
    ...forwardSettings(peer.port, [{ name: 'd', aeTitle: 'DEST', host: '127.0.0.1', port: peer.port, callingAeTitle: 'GANTRY', maxAssociations: 1, maxOperations: 1, conditions: 'null' }]),
    retry: { baseSeconds: 30, multiplier: 2, maxSeconds: 60, maxAttempts: 10 },
  });
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  // Not after the destination's backoff of 30 s: at once.
  await waitUntil('the other items sent', 5000, () => sent.length === items.length - 1);
  assert.equal(unreachable, 0, 'the destination was not backed off');
  assert.ok((retryAt.get(items[0]?.id ?? 0) ?? 0) > Date.now() + 20_000, 'the object that ended it waits its own backoff');
  await forwarder.stop(1000);

  // Two in a row, each on its first object: the destination is backed off after the second.
  retryAt.clear();
  const twice = honouringRetries();
  const refusing = await closingPeer(Infinity, 0, items.slice(0, 2).map((queued) => queued.sopInstanceUid));
  t.after(() => refusing.server.close());
  const again = new Forwarder({ outbox: twice.outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings: () => ({ ...settings(), destinations: settings().destinations.map((destination) => ({ ...destination, port: refusing.port })) }) });
  again.start();
  t.after(() => again.stop(1000));
  await waitUntil('the destination backed off', 5000, () => unreachable === 1);
  await sleep(1000);
  assert.equal(twice.sent.length, 0, 'nothing more is tried during the backoff');
});

// A destination that takes one association at a time (a transient "local limit exceeded" for the
// next, PS3.8 9.3.4) and maxAssociations 2: the second sender's rejection was counted as the
// destination unreachable once a batch, and it knocked again at every poll and nudge.
test('a destination that takes fewer associations than maxAssociations is not unreachable: the other sender waits for one to end', async (t) => {
  const storagePath = scratchDir('forward-fewer-associations');
  // More than one batch (500), so that both senders have items.
  const items = storedItems(storagePath, 520, EXPLICIT);
  let unreachable = 0;
  const { outbox, sent } = fakeOutbox(items, { noteUnreachable: () => (unreachable += 1) });
  const peer = await closingPeer(Infinity, 2, [], 1);
  t.after(() => peer.server.close());
  const settings = () => ({
    ...forwardSettings(peer.port, [{ name: 'd', aeTitle: 'DEST', host: '127.0.0.1', port: peer.port, callingAeTitle: 'GANTRY', maxAssociations: 2, maxOperations: 1, conditions: 'null' }]),
    retry: { baseSeconds: 30, multiplier: 2, maxSeconds: 60, maxAttempts: 10 },
  });
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 20, settings });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('every item sent', 20_000, () => sent.length === items.length);
  assert.equal(unreachable, 0, 'the destination was never unreachable');
  assert.ok(peer.rejected() >= 1, 'the second sender met the limit');
  // Polled every 20 ms for more than a second of answers, a sender knocking at each poll would have
  // been rejected dozens of times; waiting for the other association, once or twice.
  assert.ok(peer.rejected() <= 3, `rejected ${peer.rejected()} times`);
});

// Found in a review: a reload that points a destination elsewhere (a wrong address mended, a PACS
// moved) left the association open to the former address carrying the rest of its batch, up to 500
// instances, recorded as sent though the destination now configured never got them.
test('a reload that changes the address of a destination ends the batch going to the former one: the rest goes to the new address', async (t) => {
  const storagePath = scratchDir('forward-moved');
  const items = storedItems(storagePath, 20, EXPLICIT);
  const { outbox, sent } = fakeOutbox(items);
  const former = await closingPeer(Infinity, 100);
  t.after(() => former.server.close());
  const moved = await startCountingServer();
  t.after(() => moved.close());
  let port = former.port;
  const settings = () => forwardSettings(port, [{ name: 'd', aeTitle: 'DEST', host: '127.0.0.1', port, callingAeTitle: 'GANTRY', maxAssociations: 1, maxOperations: 1, conditions: 'null' }]);
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('the former address storing', 5000, () => former.stored.length >= 2);
  // Window 1: beyond the confirmed items, at most one request is on the wire at the reload.
  const confirmedOrOnTheWire = sent.length + 1;
  port = moved.port;
  forwarder.reconfigure();
  await waitUntil('every item sent', 10_000, () => sent.length === items.length);
  // The request on the wire at the reload is answered there; none of those waiting for the window
  // behind it goes there (found in the forward review: up to LOOKAHEAD of them did).
  assert.ok(former.stored.length <= confirmedOrOnTheWire, `instances sent to the former address after the reload: ${former.stored.length - confirmedOrOnTheWire}`);
  assert.equal(former.stored.length + moved.received.length, items.length);
});

/**
 * A forwarder sending `count` items, with a window of 1, to a peer that answers each request
 * `answerAfterMs` after its dataset, once the peer has stored two. `narrow(items)` is a reload that
 * changes the destination's condition and withdraws `items` from the outbox, as route.ts withdrawUnmet does.
 */
async function forwardingThenNarrowed(t: TestContext, name: string, count: number, answerAfterMs: number, log = silentLogger()) {
  const storagePath = scratchDir(name);
  const items = storedItems(storagePath, count, EXPLICIT);
  const withdrawn = new Set<OutboxItem>();
  const { outbox, sent } = fakeOutbox(items, { due: () => items.filter((queued) => !sent.includes(queued) && !withdrawn.has(queued)) });
  const peer = await closingPeer(Infinity, answerAfterMs);
  t.after(() => peer.server.close());
  let conditions = 'null';
  const settings = () => forwardSettings(peer.port, [{ name: 'd', aeTitle: 'DEST', host: '127.0.0.1', port: peer.port, callingAeTitle: 'GANTRY', maxAssociations: 1, maxOperations: 1, conditions }]);
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log, pollMs: 50, settings });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('the destination storing', 5000, () => peer.stored.length >= 2);
  const narrow = (items: Iterable<OutboxItem>) => {
    conditions = '{"attributes":{"Modality":"MR"}}';
    for (const item of items) withdrawn.add(item);
    forwarder.reconfigure();
  };
  return { items, sent, withdrawn, peer, narrow };
}

// Found in a review: a reload that narrowed a destination's condition left the batch in progress
// carrying the items it had taken, up to 500, although the reload withdrew them from the outbox.
test('a reload that changes the condition of a destination ends the batch in progress: the items it withdrew are not sent', async (t) => {
  const { items, sent, withdrawn, peer, narrow } = await forwardingThenNarrowed(t, 'forward-narrowed', 20, 100);
  // The reload: the condition now takes the first 10 items only, the rest is withdrawn.
  narrow(items.slice(10));
  await waitUntil('the items still taken sent', 10_000, () => sent.filter((item) => !withdrawn.has(item)).length === 10);
  await sleep(300);
  const withdrawnUids = new Set([...withdrawn].map((item) => item.sopInstanceUid));
  const sentAfterWithdrawal = peer.stored.filter((uid) => withdrawnUids.has(uid));
  assert.deepEqual(sentAfterWithdrawal, [], 'withdrawn items went to the destination');
});

// Found in the forward review: the requests opened ahead of the window (LOOKAHEAD) were waiting for
// their place inside the association when the reload came, and went on the wire after it: items the
// reload had withdrawn reached the destination its narrowed condition no longer takes.
test('a reload that changes the condition of a destination sends none of the requests waiting for the window: only the one on the wire is answered', async (t) => {
  // The peer answers each request 300 ms after its dataset arrived, so the ones behind it wait.
  const { items, sent, peer, narrow } = await forwardingThenNarrowed(t, 'forward-narrowed-lookahead', 12, 300);
  // The reload withdraws every item not confirmed. Window 1: beyond the confirmed items, at most one
  // request is on the wire (the files open out of order: which one is not known).
  const confirmedOrOnTheWire = sent.length + 1;
  narrow(items.filter((queued) => !sent.includes(queued)));
  await sleep(1500);
  assert.ok(peer.stored.length <= confirmedOrOnTheWire, `withdrawn items that went to the destination after the reload: ${peer.stored.length - confirmedOrOnTheWire}`);
});

// Found in the forward review: the line that ends each association counted the requests it never sent
// (withdrawn by a reload, cut by a stop) as failed: after a reload an operator read failures where the
// destination had refused nothing.
test('the association log counts requests never sent apart from failures', async (t) => {
  const lines: Array<{ msg: string; sent?: number; failed?: number; unsent?: number }> = [];
  const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
  const { items, sent, peer, narrow } = await forwardingThenNarrowed(t, 'forward-unsent-logged', 8, 300, log);
  narrow(items.filter((queued) => !sent.includes(queued)));
  await waitUntil('the association ended', 5000, () => lines.some((line) => line.msg === 'association to destination done'));
  const done = lines.find((line) => line.msg === 'association to destination done');
  assert.equal(done?.failed, 0, JSON.stringify(done));
  assert.equal(done?.sent, peer.stored.length);
  assert.ok((done?.unsent ?? 0) > 0, JSON.stringify(done));
});

// Found in the logs review: a destination's Error Comment went to the log, the outbox and gantry status
// with only its UIDs masked; PACS quote the values they read ('...' or [...]).
test('a failure a destination explains quoting values is recorded without them', async (t) => {
  const storagePath = scratchDir('forward-error-comment');
  const items = storedItems(storagePath, 1, EXPLICIT);
  const recorded: string[] = [];
  const { outbox } = fakeOutbox(items, { markRetry: (_item: OutboxItem, _at: number, _status: string, error: string) => recorded.push(error) });
  const peer = await startCountingServer(() => 0xa700, "Patient 'GPKEPTNAME' [KEPT-ID-42] rejected");
  t.after(() => peer.close());
  const forwarder = new Forwarder({ outbox, storagePath, transcoder: asStored, log: silentLogger(), pollMs: 50, settings: () => forwardSettings(peer.port) });
  forwarder.start();
  t.after(() => forwarder.stop(1000));
  await waitUntil('the failure recorded', 5000, () => recorded.length > 0);
  assert.match(recorded[0] as string, /0xA700/i);
  assert.doesNotMatch(recorded[0] as string, /GPKEPTNAME|KEPT-ID-42/);
});
