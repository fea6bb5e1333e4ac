/**
 * For tests of Gantry's requestor (src/dimse/requestor.ts) against a hand-made peer: the requestor's
 * options for a peer on loopback, and the A-ASSOCIATE-AC of a peer that accepts everything.
 */
import { decodeAssociateRequest, encodeAssociateAccept, type UserInformation } from '../../src/dimse/pdu.js';
import type { RequestorOptions } from '../../src/dimse/requestor.js';
import { silentLogger } from '../../src/observability/logger.js';

const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

/** Gantry (GANTRY) proposing CT Image Storage in explicit VR little endian to PEER on 127.0.0.1:`port`. */
export function requestorOptions(port: number, overrides: Partial<RequestorOptions> = {}): RequestorOptions {
  return {
    host: '127.0.0.1',
    port,
    calledAeTitle: 'PEER',
    callingAeTitle: 'GANTRY',
    contexts: [{ id: 1, abstractSyntax: CT_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_VR_LITTLE_ENDIAN] }],
    implementationClassUid: '1.2.3',
    implementationVersionName: 'TEST',
    maxPduLength: 16384,
    maxOperations: 1,
    connectTimeoutMs: 2000,
    artimMs: 1000,
    responseTimeoutMs: 3000,
    log: silentLogger(),
    ...overrides,
  };
}

/** The A-ASSOCIATE-AC of a peer that accepts every context of `rqPdu` (a whole A-ASSOCIATE-RQ PDU) in
 * its first transfer syntax (or `transferSyntax`, proposed or not); `userInformation` overrides the
 * peer's (maximum PDU length 16384). */
export function acceptEverything(rqPdu: Buffer, userInformation: Partial<UserInformation> = {}, transferSyntax?: string): Buffer {
  const request = decodeAssociateRequest(rqPdu.subarray(6, 6 + rqPdu.readUInt32BE(2)));
  return encodeAssociateAccept({
    protocolVersion: 1,
    calledAeTitle: request.calledAeTitle,
    callingAeTitle: request.callingAeTitle,
    applicationContext: request.applicationContext,
    presentationContexts: request.presentationContexts.map((context) => ({ id: context.id, result: 0, transferSyntax: transferSyntax ?? (context.transferSyntaxes[0] as string) })),
    userInformation: { maxPduLength: 16384, implementationClassUid: '1.2.3.4', roleSelections: [], extendedNegotiations: [], ...userInformation },
  });
}
