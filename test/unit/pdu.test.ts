import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeAbort,
  decodeAssociateAccept,
  decodeAssociateRequest,
  DICOM_APPLICATION_CONTEXT,
  encodeAbort,
  encodeAssociateAccept,
  encodeAssociateReject,
  encodeAssociateRequest,
  encodePData,
  PduError,
  type AssociateRequest,
} from '../../src/dimse/pdu.js';
import { PduStream } from '../../src/dimse/pdu-stream.js';

const request: AssociateRequest = {
  protocolVersion: 1,
  calledAeTitle: 'GANTRY',
  callingAeTitle: 'MODALITY',
  applicationContext: DICOM_APPLICATION_CONTEXT,
  presentationContexts: [
    { id: 1, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: ['1.2.840.10008.1.2'] },
    { id: 3, abstractSyntax: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxes: ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.1'] },
  ],
  userInformation: {
    maxPduLength: 32768,
    implementationClassUid: '1.2.3.4',
    implementationVersionName: 'TEST_1',
    asyncOperations: { maxOperationsInvoked: 8, maxOperationsPerformed: 1 },
    roleSelections: [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', scuRole: true, scpRole: true }],
    extendedNegotiations: [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', info: Buffer.from([1, 0, 1]) }],
  },
};

/** Strips the 6-byte PDU header. */
const body = (pdu: Buffer) => pdu.subarray(6);

test('A-ASSOCIATE-RQ encodes and decodes to the same request', () => {
  const pdu = encodeAssociateRequest(request);
  assert.equal(pdu[0], 0x01);
  assert.equal(pdu.readUInt32BE(2), pdu.length - 6);
  assert.deepEqual(decodeAssociateRequest(body(pdu)), request);
});

test('AE titles are 16 bytes padded with spaces (PS3.8 9.3.2)', () => {
  const pdu = encodeAssociateRequest(request);
  assert.equal(pdu.toString('latin1', 10, 26), 'GANTRY          ');
  assert.equal(pdu.toString('latin1', 26, 42), 'MODALITY        ');
});

test('A-ASSOCIATE-AC round-trips with results and the chosen syntax', () => {
  const accept = {
    protocolVersion: 1,
    calledAeTitle: 'GANTRY',
    callingAeTitle: 'MODALITY',
    applicationContext: DICOM_APPLICATION_CONTEXT,
    presentationContexts: [
      { id: 1, result: 0, transferSyntax: '1.2.840.10008.1.2' },
      { id: 3, result: 4, transferSyntax: '1.2.840.10008.1.2.4.80' },
    ],
    userInformation: { maxPduLength: 65536, implementationClassUid: '1.2.3', implementationVersionName: 'X', roleSelections: [], extendedNegotiations: [] },
  };
  assert.deepEqual(decodeAssociateAccept(body(encodeAssociateAccept(accept))), accept);
});

test('A-ASSOCIATE-RJ and A-ABORT carry result, source and reason', () => {
  assert.deepEqual([...encodeAssociateReject({ result: 2, source: 3, reason: 2 })], [3, 0, 0, 0, 0, 4, 0, 2, 3, 2]);
  assert.deepEqual(decodeAbort(body(encodeAbort({ source: 2, reason: 6 }))), { source: 2, reason: 6 });
});

test('an even presentation context ID is an invalid PDU parameter', () => {
  const bad = encodeAssociateRequest({ ...request, presentationContexts: [{ id: 2, abstractSyntax: '1.2', transferSyntaxes: ['1.2.840.10008.1.2'] }] });
  assert.throws(() => decodeAssociateRequest(body(bad)), (error: unknown) => error instanceof PduError && error.abortReason === 6);
});

/** An item of PS3.8 9.3: type, a reserved byte, a 2-byte length, its body. */
function item(type: number, itemBody: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header[0] = type;
  header.writeUInt16BE(itemBody.length, 2);
  return Buffer.concat([header, itemBody]);
}

// Found in the upper layer review: an A-ASSOCIATE-RQ with an item or a presentation context sub-item of
// a type this edition does not define was aborted, and such a peer could never associate.
test('items and presentation context sub-items of unknown types are skipped (PS3.8 9.3.1)', () => {
  const original = body(encodeAssociateRequest(request));
  const items: Buffer[] = [];
  for (let at = 68; at < original.length; ) {
    const type = original[at] as number;
    const length = original.readUInt16BE(at + 2);
    let entry = original.subarray(at, at + 4 + length);
    // The first presentation context gets an unknown sub-item (0x41) after its abstract syntax.
    if (type === 0x20 && items.every((known) => known[0] !== 0x20)) {
      const contextBody = entry.subarray(4);
      const abstractLength = contextBody.readUInt16BE(6);
      entry = item(0x20, Buffer.concat([contextBody.subarray(0, 8 + abstractLength), item(0x41, Buffer.from('vendor')), contextBody.subarray(8 + abstractLength)]));
    }
    items.push(entry);
    at += 4 + length;
  }
  // An unknown item (0x60) between the application context and the presentation contexts.
  const withUnknown = Buffer.concat([original.subarray(0, 68), items[0] as Buffer, item(0x60, Buffer.from('a later edition')), ...items.slice(1)]);
  assert.deepEqual(decodeAssociateRequest(withUnknown), request);
});

test('an item that runs past its PDU is refused', () => {
  const pdu = encodeAssociateRequest(request);
  const truncated = pdu.subarray(0, pdu.length - 5);
  assert.throws(() => decodeAssociateRequest(body(truncated)), PduError);
});

test('P-DATA fragments respect the maximum PDU length and mark the last one', () => {
  const data = Buffer.alloc(100, 7);
  const pdus = encodePData(5, false, data, 46);
  assert.equal(pdus.length, 3);
  for (const pdu of pdus) assert.ok(pdu.length <= 46 + 6);
  assert.deepEqual(pdus.map((pdu) => pdu[11]), [0, 0, 2]);
  assert.deepEqual(encodePData(1, true, Buffer.alloc(0), 0).map((pdu) => pdu[11]), [3]);
});

test('the PDU stream hands on PDV data in order, whatever the chunk boundaries', () => {
  const dataset = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff));
  const command = Buffer.from('command-bytes');
  const wire = Buffer.concat([
    encodeAssociateRequest(request),
    ...encodePData(3, true, command, 1000),
    ...encodePData(3, false, dataset, 1000),
    encodeAbort({ source: 0, reason: 0 }),
  ]);
  for (const chunkSize of [1, 7, 100, 4096, wire.length]) {
    const seen: string[] = [];
    const datasetParts: Buffer[] = [];
    const commandParts: Buffer[] = [];
    const stream = new PduStream({
      controlPdu: (type) => seen.push(`pdu${type}`),
      pdvData: (id, isCommand, data) => (isCommand ? commandParts : datasetParts).push(Buffer.from(data)),
      pdvEnd: (id, isCommand, isLast) => {
        if (isLast) seen.push(`${isCommand ? 'command' : 'dataset'}-end@${id}`);
      },
    });
    for (let offset = 0; offset < wire.length; offset += chunkSize) stream.push(wire.subarray(offset, offset + chunkSize));
    assert.deepEqual(seen, ['pdu1', 'command-end@3', 'dataset-end@3', 'pdu7'], `chunk size ${chunkSize}`);
    assert.deepEqual(Buffer.concat(datasetParts), dataset);
    assert.deepEqual(Buffer.concat(commandParts), command);
    assert.ok(stream.atPduBoundary);
  }
});

test('the PDU stream refuses an unknown PDU type and a PDV longer than its PDU', () => {
  const sink = { controlPdu() {}, pdvData() {}, pdvEnd() {} };
  assert.throws(() => new PduStream(sink).push(Buffer.from([0x09, 0, 0, 0, 0, 0])), (e: unknown) => e instanceof PduError && e.abortReason === 1);
  const lying = Buffer.from([0x04, 0, 0, 0, 0, 8, 0, 0, 0, 50, 1, 0, 0, 0]);
  assert.throws(() => new PduStream(sink).push(lying), (e: unknown) => e instanceof PduError && e.abortReason === 6);
});

test('reserved bits of a PDV message control header are ignored, not refused (PS3.8 E.2)', () => {
  const pdus = [...encodePData(1, true, Buffer.from('cmd'), 100), ...encodePData(1, false, Buffer.from('data'), 100)];
  for (const pdu of pdus) pdu[11] = (pdu[11] as number) | 0xfc;
  const ends: string[] = [];
  const stream = new PduStream({
    controlPdu() {},
    pdvData() {},
    pdvEnd: (id, isCommand, isLast) => ends.push(`${isCommand ? 'command' : 'dataset'}:${isLast}`),
  });
  stream.push(Buffer.concat(pdus));
  assert.deepEqual(ends, ['command:true', 'dataset:true']);
});

test('a maximum PDU length that cannot carry a PDV is an error, not an endless loop', () => {
  assert.throws(() => encodePData(1, true, Buffer.alloc(10), 6), /cannot carry a PDV/);
});
