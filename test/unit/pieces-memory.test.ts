/**
 * Bytes that arrive in many small pieces: a control PDU a byte per TCP segment, a command set a byte
 * per PDV. Found in the resource review: each piece was kept as a Buffer of its own, so a peer that
 * sent 4.5 MB grew the node by 250 MB (32 connections, before any AE title was checked), and command
 * sets in PDVs of one byte cost about 90 times their size. The memory held is measured after a full
 * garbage collection, in this process (the parser and the acceptor run here).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PduStream } from '../../src/dimse/pdu-stream.js';
import { Status } from '../../src/dimse/status.js';
import { sleep } from '../helpers/processes.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { startTestServer } from '../helpers/test-server.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap and buffers in use after a full collection. */
function heldBytes(): number {
  gc();
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

const VERIFICATION = '1.2.840.10008.1.1';

test('a control PDU arriving a byte at a time is held in about its own size', () => {
  const stream = new PduStream({ controlPdu: () => undefined, pdvData: () => undefined, pdvEnd: () => undefined });
  const declared = 200_000;
  const header = Buffer.from([0x01, 0, 0, 0, 0, 0]);
  header.writeUInt32BE(declared, 2);
  stream.push(header);
  const before = heldBytes();
  const byte = Buffer.from([0x20]);
  for (let i = 0; i < 150_000; i += 1) stream.push(byte);
  const grown = heldBytes() - before;
  // Used after the measure: a stream no longer referenced would be collected with all it holds.
  assert.equal(stream.atPduBoundary, false, 'the PDU is not complete');
  assert.ok(grown < 1_000_000, `150,000 bytes of an A-ASSOCIATE-RQ held ${grown} bytes`);
});

test('a command set arriving in PDVs of one byte is held in about its own size', async (t) => {
  const { server, port } = await startTestServer({
    serviceFor: (abstractSyntax) => (abstractSyntax === VERIFICATION ? 'verification' : undefined),
    handlers: { echo: () => ({ status: Status.Success }), store: () => assert.fail('no store') },
  });
  t.after(() => server.close(1000));
  const raw = await RawAssociation.open(port);
  t.after(() => raw.socket.destroy());
  assert.equal((await raw.associate({ called: 'GANTRY', calling: 'PIECES', contexts: [{ id: 1, abstractSyntax: VERIFICATION, transferSyntaxes: ['1.2.840.10008.1.2'] }] })).kind, 'accept');
  const before = heldBytes();
  // 60,000 command PDVs of one byte, none the last: PDUs within the node's 16 KiB.
  const PDVS_PER_PDU = 2000;
  for (let sent = 0; sent < 60_000; sent += PDVS_PER_PDU) {
    const pdu = Buffer.alloc(6 + PDVS_PER_PDU * 7);
    pdu[0] = 0x04;
    pdu.writeUInt32BE(PDVS_PER_PDU * 7, 2);
    for (let i = 0; i < PDVS_PER_PDU; i += 1) {
      const at = 6 + i * 7;
      pdu.writeUInt32BE(3, at);
      pdu[at + 4] = 1;
      pdu[at + 5] = 0x01; // a command fragment, not the last
    }
    if (!raw.socket.write(pdu)) await once(raw.socket, 'drain');
  }
  // Until the acceptor has read them all (the socket's buffers are empty).
  for (let waited = 0; raw.socket.writableLength > 0 && waited < 5000; waited += 20) await sleep(20);
  await sleep(200);
  const grown = heldBytes() - before;
  assert.ok(grown < 1_500_000, `60,000 bytes of a command set held ${grown} bytes`);
});
