/**
 * PS3.8 Section 9.3: the upper-layer PDUs. Encoding and decoding of A-ASSOCIATE-RQ/AC/RJ, A-RELEASE,
 * A-ABORT and the P-DATA-TF header. P-DATA-TF bodies are not decoded here; the PDU stream
 * (pdu-stream.ts) hands their PDVs on as they arrive.
 */

import { trimUid } from '../dicom/values.js';

export const PduType = {
  AssociateRq: 0x01,
  AssociateAc: 0x02,
  AssociateRj: 0x03,
  PDataTf: 0x04,
  ReleaseRq: 0x05,
  ReleaseRp: 0x06,
  Abort: 0x07,
} as const;

/** PS3.8 9.3.2.1: the one application context name of DICOM. */
export const DICOM_APPLICATION_CONTEXT = '1.2.840.10008.3.1.1.1';

/** A PDU that breaks PS3.8; the association answers it with A-ABORT (PS3.8 9.3.8). */
export class PduError extends Error {
  constructor(
    message: string,
    /** The A-ABORT reason: 1 unrecognized PDU, 2 unexpected PDU, 4 unrecognized parameter,
     * 5 unexpected parameter, 6 invalid parameter value. */
    readonly abortReason: AbortReasonCode,
  ) {
    super(message);
    this.name = 'PduError';
  }
}

export type AbortReasonCode = 0 | 1 | 2 | 4 | 5 | 6;

export const AbortSource = { ServiceUser: 0, ServiceProvider: 2 } as const;
export const AbortReason = {
  NotSpecified: 0,
  UnrecognizedPdu: 1,
  UnexpectedPdu: 2,
  UnrecognizedPduParameter: 4,
  UnexpectedPduParameter: 5,
  InvalidPduParameterValue: 6,
} as const;

/** PS3.8 Table 9-21: A-ASSOCIATE-RJ result, source and reason. */
export const RejectResult = { Permanent: 1, Transient: 2 } as const;
export const RejectSource = { ServiceUser: 1, ServiceProviderAcse: 2, ServiceProviderPresentation: 3 } as const;
export const RejectReason = {
  /** source 1 */
  NoReasonGiven: 1,
  ApplicationContextNotSupported: 2,
  CallingAeTitleNotRecognized: 3,
  CalledAeTitleNotRecognized: 7,
  /** source 2 */
  ProtocolVersionNotSupported: 2,
  /** source 3 */
  TemporaryCongestion: 1,
  LocalLimitExceeded: 2,
} as const;

/** PS3.8 Table 9-18: the result of one presentation context. */
export const ContextResult = {
  Acceptance: 0,
  UserRejection: 1,
  NoReason: 2,
  AbstractSyntaxNotSupported: 3,
  TransferSyntaxesNotSupported: 4,
} as const;

export interface RequestedContext {
  id: number;
  abstractSyntax: string;
  transferSyntaxes: string[];
}

export interface AcceptedContext {
  id: number;
  result: number;
  /** Meaningful only when result is Acceptance. */
  transferSyntax: string;
}

export interface RoleSelection {
  sopClassUid: string;
  scuRole: boolean;
  scpRole: boolean;
}

export interface AsyncOperationsWindow {
  /** 0 means unlimited (PS3.7 D.3.3.3). */
  maxOperationsInvoked: number;
  maxOperationsPerformed: number;
}

export interface ExtendedNegotiation {
  sopClassUid: string;
  info: Buffer;
}

export interface UserIdentity {
  type: number;
  positiveResponseRequested: boolean;
  primaryField: Buffer;
  secondaryField: Buffer;
}

export interface UserInformation {
  /** 0 means no limit (PS3.8 D.1). */
  maxPduLength: number;
  implementationClassUid: string;
  implementationVersionName?: string;
  asyncOperations?: AsyncOperationsWindow;
  roleSelections: RoleSelection[];
  extendedNegotiations: ExtendedNegotiation[];
  userIdentity?: UserIdentity;
}

export interface AssociateRequest {
  protocolVersion: number;
  calledAeTitle: string;
  callingAeTitle: string;
  applicationContext: string;
  presentationContexts: RequestedContext[];
  userInformation: UserInformation;
}

export interface AssociateAccept {
  protocolVersion: number;
  calledAeTitle: string;
  callingAeTitle: string;
  applicationContext: string;
  presentationContexts: AcceptedContext[];
  userInformation: UserInformation;
}

export interface AssociateReject {
  result: number;
  source: number;
  reason: number;
}

export interface AbortPdu {
  source: number;
  reason: number;
}

const ItemType = {
  ApplicationContext: 0x10,
  PresentationContextRq: 0x20,
  PresentationContextAc: 0x21,
  AbstractSyntax: 0x30,
  TransferSyntax: 0x40,
  UserInformation: 0x50,
  MaxLength: 0x51,
  ImplementationClassUid: 0x52,
  AsyncOperationsWindow: 0x53,
  RoleSelection: 0x54,
  ImplementationVersionName: 0x55,
  ExtendedNegotiation: 0x56,
  CommonExtendedNegotiation: 0x57,
  UserIdentityRq: 0x58,
  UserIdentityAc: 0x59,
} as const;

// ---------------------------------------------------------------------------------------------
// Encoding

function pduHeader(type: number, bodyLength: number): Buffer {
  const header = Buffer.alloc(6);
  header[0] = type;
  header.writeUInt32BE(bodyLength, 2);
  return header;
}

function item(type: number, body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header[0] = type;
  header.writeUInt16BE(body.length, 2);
  return Buffer.concat([header, body]);
}

function asciiItem(type: number, text: string): Buffer {
  return item(type, Buffer.from(text, 'latin1'));
}

/** PS3.8 9.3.2: AE titles travel as 16 bytes, padded with spaces. */
function aeTitleField(aeTitle: string): Buffer {
  return Buffer.from(aeTitle.padEnd(16, ' ').slice(0, 16), 'latin1');
}

function encodeUserInformation(info: UserInformation, forRequest: boolean): Buffer {
  const subItems: Buffer[] = [];
  const maxLength = Buffer.alloc(4);
  maxLength.writeUInt32BE(info.maxPduLength);
  subItems.push(item(ItemType.MaxLength, maxLength));
  subItems.push(asciiItem(ItemType.ImplementationClassUid, info.implementationClassUid));
  if (info.asyncOperations) {
    const window = Buffer.alloc(4);
    window.writeUInt16BE(info.asyncOperations.maxOperationsInvoked, 0);
    window.writeUInt16BE(info.asyncOperations.maxOperationsPerformed, 2);
    subItems.push(item(ItemType.AsyncOperationsWindow, window));
  }
  for (const role of info.roleSelections) {
    const uid = Buffer.from(role.sopClassUid, 'latin1');
    const body = Buffer.alloc(2 + uid.length + 2);
    body.writeUInt16BE(uid.length, 0);
    uid.copy(body, 2);
    body[2 + uid.length] = role.scuRole ? 1 : 0;
    body[3 + uid.length] = role.scpRole ? 1 : 0;
    subItems.push(item(ItemType.RoleSelection, body));
  }
  if (info.implementationVersionName) {
    subItems.push(asciiItem(ItemType.ImplementationVersionName, info.implementationVersionName));
  }
  for (const negotiation of info.extendedNegotiations) {
    const uid = Buffer.from(negotiation.sopClassUid, 'latin1');
    const length = Buffer.alloc(2);
    length.writeUInt16BE(uid.length);
    subItems.push(item(ItemType.ExtendedNegotiation, Buffer.concat([length, uid, negotiation.info])));
  }
  if (info.userIdentity && forRequest) {
    const identity = info.userIdentity;
    const body = Buffer.alloc(2 + 2 + identity.primaryField.length + 2 + identity.secondaryField.length);
    body[0] = identity.type;
    body[1] = identity.positiveResponseRequested ? 1 : 0;
    body.writeUInt16BE(identity.primaryField.length, 2);
    identity.primaryField.copy(body, 4);
    body.writeUInt16BE(identity.secondaryField.length, 4 + identity.primaryField.length);
    identity.secondaryField.copy(body, 6 + identity.primaryField.length);
    subItems.push(item(ItemType.UserIdentityRq, body));
  }
  return item(ItemType.UserInformation, Buffer.concat(subItems));
}

function associateFixedFields(protocolVersion: number, called: string, calling: string): Buffer {
  const fixed = Buffer.alloc(68);
  fixed.writeUInt16BE(protocolVersion, 0);
  aeTitleField(called).copy(fixed, 4);
  aeTitleField(calling).copy(fixed, 20);
  return fixed;
}

export function encodeAssociateRequest(rq: AssociateRequest): Buffer {
  const parts: Buffer[] = [
    associateFixedFields(rq.protocolVersion, rq.calledAeTitle, rq.callingAeTitle),
    asciiItem(ItemType.ApplicationContext, rq.applicationContext),
  ];
  for (const context of rq.presentationContexts) {
    const subItems = [
      asciiItem(ItemType.AbstractSyntax, context.abstractSyntax),
      ...context.transferSyntaxes.map((syntax) => asciiItem(ItemType.TransferSyntax, syntax)),
    ];
    parts.push(item(ItemType.PresentationContextRq, Buffer.concat([Buffer.from([context.id, 0, 0, 0]), ...subItems])));
  }
  parts.push(encodeUserInformation(rq.userInformation, true));
  const body = Buffer.concat(parts);
  return Buffer.concat([pduHeader(PduType.AssociateRq, body.length), body]);
}

export function encodeAssociateAccept(ac: AssociateAccept): Buffer {
  const parts: Buffer[] = [
    associateFixedFields(ac.protocolVersion, ac.calledAeTitle, ac.callingAeTitle),
    asciiItem(ItemType.ApplicationContext, ac.applicationContext),
  ];
  for (const context of ac.presentationContexts) {
    // PS3.8 9.3.3.2: a rejected context still carries one transfer syntax sub-item, whose value is
    // not significant.
    const syntax = asciiItem(ItemType.TransferSyntax, context.transferSyntax);
    parts.push(item(ItemType.PresentationContextAc, Buffer.concat([Buffer.from([context.id, 0, context.result, 0]), syntax])));
  }
  parts.push(encodeUserInformation(ac.userInformation, false));
  const body = Buffer.concat(parts);
  return Buffer.concat([pduHeader(PduType.AssociateAc, body.length), body]);
}

export function encodeAssociateReject(rj: AssociateReject): Buffer {
  return Buffer.concat([pduHeader(PduType.AssociateRj, 4), Buffer.from([0, rj.result, rj.source, rj.reason])]);
}

export function encodeReleaseRequest(): Buffer {
  return Buffer.concat([pduHeader(PduType.ReleaseRq, 4), Buffer.alloc(4)]);
}

export function encodeReleaseResponse(): Buffer {
  return Buffer.concat([pduHeader(PduType.ReleaseRp, 4), Buffer.alloc(4)]);
}

export function encodeAbort(abort: AbortPdu): Buffer {
  return Buffer.concat([pduHeader(PduType.Abort, 4), Buffer.from([0, 0, abort.source, abort.reason])]);
}

/** The header of a P-DATA-TF PDU that holds one PDV of `dataLength` bytes (PS3.8 9.3.5). */
export function encodePDataHeader(presentationContextId: number, isCommand: boolean, isLast: boolean, dataLength: number): Buffer {
  const header = Buffer.alloc(12);
  header[0] = PduType.PDataTf;
  header.writeUInt32BE(6 + dataLength, 2);
  header.writeUInt32BE(2 + dataLength, 6);
  header[10] = presentationContextId;
  header[11] = (isCommand ? 1 : 0) | (isLast ? 2 : 0);
  return header;
}

/** One P-DATA-TF PDU per fragment of `data`, each at most `maxPduLength` long (0: no limit). */
export function encodePData(presentationContextId: number, isCommand: boolean, data: Buffer, maxPduLength: number): Buffer[] {
  const maxFragment = maxPduLength === 0 ? Math.max(data.length, 1) : maxPduLength - 6;
  if (maxFragment <= 0) throw new Error(`maximum PDU length ${maxPduLength} cannot carry a PDV`);
  const pdus: Buffer[] = [];
  let offset = 0;
  do {
    const fragment = data.subarray(offset, offset + maxFragment);
    offset += fragment.length;
    const isLast = offset >= data.length;
    pdus.push(Buffer.concat([encodePDataHeader(presentationContextId, isCommand, isLast, fragment.length), fragment]));
  } while (offset < data.length);
  return pdus;
}

// ---------------------------------------------------------------------------------------------
// Decoding

interface Item {
  type: number;
  body: Buffer;
}

function* readItems(buffer: Buffer, where: string): Generator<Item> {
  let offset = 0;
  while (offset < buffer.length) {
    if (offset + 4 > buffer.length) throw new PduError(`${where}: truncated item header`, AbortReason.InvalidPduParameterValue);
    const type = buffer[offset] as number;
    const length = buffer.readUInt16BE(offset + 2);
    const end = offset + 4 + length;
    if (end > buffer.length) {
      throw new PduError(`${where}: item 0x${type.toString(16)} runs past its container`, AbortReason.InvalidPduParameterValue);
    }
    yield { type, body: buffer.subarray(offset + 4, end) };
    offset = end;
  }
}

/** UIDs in PDUs shall not be padded (PS3.8 9.3.2.1), but some peers pad with NUL or space. */
function readUid(body: Buffer): string {
  return trimUid(body.toString('latin1'));
}

function readAeTitle(body: Buffer, offset: number): string {
  return body.toString('latin1', offset, offset + 16).trim();
}

function decodeUserInformation(body: Buffer): UserInformation {
  const info: UserInformation = { maxPduLength: 0, implementationClassUid: '', roleSelections: [], extendedNegotiations: [] };
  let sawMaxLength = false;
  for (const sub of readItems(body, 'user information')) {
    switch (sub.type) {
      case ItemType.MaxLength:
        if (sub.body.length !== 4) throw new PduError('maximum length sub-item is not 4 bytes', AbortReason.InvalidPduParameterValue);
        info.maxPduLength = sub.body.readUInt32BE(0);
        sawMaxLength = true;
        break;
      case ItemType.ImplementationClassUid:
        info.implementationClassUid = readUid(sub.body);
        break;
      case ItemType.ImplementationVersionName:
        info.implementationVersionName = sub.body.toString('latin1').trim();
        break;
      case ItemType.AsyncOperationsWindow:
        if (sub.body.length !== 4) throw new PduError('asynchronous operations window sub-item is not 4 bytes', AbortReason.InvalidPduParameterValue);
        info.asyncOperations = {
          maxOperationsInvoked: sub.body.readUInt16BE(0),
          maxOperationsPerformed: sub.body.readUInt16BE(2),
        };
        break;
      case ItemType.RoleSelection: {
        if (sub.body.length < 4) throw new PduError('role selection sub-item too short', AbortReason.InvalidPduParameterValue);
        const uidLength = sub.body.readUInt16BE(0);
        if (2 + uidLength + 2 !== sub.body.length) throw new PduError('role selection sub-item length mismatch', AbortReason.InvalidPduParameterValue);
        info.roleSelections.push({
          sopClassUid: readUid(sub.body.subarray(2, 2 + uidLength)),
          scuRole: sub.body[2 + uidLength] === 1,
          scpRole: sub.body[3 + uidLength] === 1,
        });
        break;
      }
      case ItemType.ExtendedNegotiation: {
        if (sub.body.length < 2) throw new PduError('extended negotiation sub-item too short', AbortReason.InvalidPduParameterValue);
        const uidLength = sub.body.readUInt16BE(0);
        if (2 + uidLength > sub.body.length) throw new PduError('extended negotiation sub-item length mismatch', AbortReason.InvalidPduParameterValue);
        info.extendedNegotiations.push({
          sopClassUid: readUid(sub.body.subarray(2, 2 + uidLength)),
          info: Buffer.from(sub.body.subarray(2 + uidLength)),
        });
        break;
      }
      case ItemType.UserIdentityRq: {
        if (sub.body.length < 6) throw new PduError('user identity sub-item too short', AbortReason.InvalidPduParameterValue);
        const primaryLength = sub.body.readUInt16BE(2);
        if (6 + primaryLength > sub.body.length) throw new PduError('user identity sub-item length mismatch', AbortReason.InvalidPduParameterValue);
        const secondaryLength = sub.body.readUInt16BE(4 + primaryLength);
        info.userIdentity = {
          type: sub.body[0] as number,
          positiveResponseRequested: sub.body[1] === 1,
          primaryField: Buffer.from(sub.body.subarray(4, 4 + primaryLength)),
          secondaryField: Buffer.from(sub.body.subarray(6 + primaryLength, 6 + primaryLength + secondaryLength)),
        };
        break;
      }
      default:
        // Common extended negotiation, user identity AC and unknown sub-items: not used by Gantry.
        // PS3.7 D.3.3: an acceptor that does not support a sub-item ignores it.
        break;
    }
  }
  if (!sawMaxLength) throw new PduError('user information has no maximum length sub-item', AbortReason.InvalidPduParameterValue);
  return info;
}

function decodeAssociateCommon(body: Buffer, what: string) {
  if (body.length < 68) throw new PduError(`${what} shorter than its fixed fields`, AbortReason.InvalidPduParameterValue);
  return {
    protocolVersion: body.readUInt16BE(0),
    calledAeTitle: readAeTitle(body, 4),
    callingAeTitle: readAeTitle(body, 20),
    items: body.subarray(68),
  };
}

export function decodeAssociateRequest(body: Buffer): AssociateRequest {
  const common = decodeAssociateCommon(body, 'A-ASSOCIATE-RQ');
  let applicationContext: string | undefined;
  let userInformation: UserInformation | undefined;
  const presentationContexts: RequestedContext[] = [];
  for (const entry of readItems(common.items, 'A-ASSOCIATE-RQ')) {
    switch (entry.type) {
      case ItemType.ApplicationContext:
        applicationContext = readUid(entry.body);
        break;
      case ItemType.PresentationContextRq: {
        if (entry.body.length < 4) throw new PduError('presentation context item too short', AbortReason.InvalidPduParameterValue);
        const context: RequestedContext = { id: entry.body[0] as number, abstractSyntax: '', transferSyntaxes: [] };
        for (const sub of readItems(entry.body.subarray(4), 'presentation context')) {
          if (sub.type === ItemType.AbstractSyntax) context.abstractSyntax = readUid(sub.body);
          else if (sub.type === ItemType.TransferSyntax) context.transferSyntaxes.push(readUid(sub.body));
          // Any other sub-item is skipped (PS3.8 9.3.1: items of unrecognized types are ignored).
        }
        if (context.id % 2 === 0) throw new PduError(`presentation context ID ${context.id} is not odd (PS3.8 9.3.2.2)`, AbortReason.InvalidPduParameterValue);
        // Each ID names one context, with one result in the A-ASSOCIATE-AC (PS3.8 9.3.2.2, 9.3.3.2):
        // with two, the peer and Gantry could each read the data on it in a different transfer syntax.
        if (presentationContexts.some((known) => known.id === context.id)) {
          throw new PduError(`presentation context ID ${context.id} is proposed twice (PS3.8 9.3.2.2)`, AbortReason.InvalidPduParameterValue);
        }
        presentationContexts.push(context);
        break;
      }
      case ItemType.UserInformation:
        userInformation = decodeUserInformation(entry.body);
        break;
      default:
        // PS3.8 9.3.1: items of unrecognized types are ignored and skipped (a peer of a later edition
        // may send items this one does not define); aborted, such a peer could never associate.
        break;
    }
  }
  if (applicationContext === undefined) throw new PduError('A-ASSOCIATE-RQ has no application context item', AbortReason.InvalidPduParameterValue);
  if (userInformation === undefined) throw new PduError('A-ASSOCIATE-RQ has no user information item', AbortReason.InvalidPduParameterValue);
  return { ...withoutItems(common), applicationContext, presentationContexts, userInformation };
}

export function decodeAssociateAccept(body: Buffer): AssociateAccept {
  const common = decodeAssociateCommon(body, 'A-ASSOCIATE-AC');
  let applicationContext = '';
  let userInformation: UserInformation | undefined;
  const presentationContexts: AcceptedContext[] = [];
  for (const entry of readItems(common.items, 'A-ASSOCIATE-AC')) {
    if (entry.type === ItemType.ApplicationContext) applicationContext = readUid(entry.body);
    else if (entry.type === ItemType.PresentationContextAc) {
      if (entry.body.length < 4) throw new PduError('presentation context item too short', AbortReason.InvalidPduParameterValue);
      let transferSyntax = '';
      for (const sub of readItems(entry.body.subarray(4), 'presentation context')) {
        if (sub.type === ItemType.TransferSyntax) transferSyntax = readUid(sub.body);
      }
      presentationContexts.push({ id: entry.body[0] as number, result: entry.body[2] as number, transferSyntax });
    } else if (entry.type === ItemType.UserInformation) userInformation = decodeUserInformation(entry.body);
  }
  if (userInformation === undefined) throw new PduError('A-ASSOCIATE-AC has no user information item', AbortReason.InvalidPduParameterValue);
  return { ...withoutItems(common), applicationContext, presentationContexts, userInformation };
}

function withoutItems<T extends { items: Buffer }>(common: T): Omit<T, 'items'> {
  const { items: _items, ...rest } = common;
  return rest;
}

export function decodeAssociateReject(body: Buffer): AssociateReject {
  if (body.length !== 4) throw new PduError('A-ASSOCIATE-RJ is not 4 bytes', AbortReason.InvalidPduParameterValue);
  return { result: body[1] as number, source: body[2] as number, reason: body[3] as number };
}

export function decodeAbort(body: Buffer): AbortPdu {
  if (body.length !== 4) throw new PduError('A-ABORT is not 4 bytes', AbortReason.InvalidPduParameterValue);
  return { source: body[2] as number, reason: body[3] as number };
}
