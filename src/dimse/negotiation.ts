/**
 * A-ASSOCIATE-RQ → A-ASSOCIATE-AC or -RJ (PS3.8 9.3.2–9.3.4, PS3.7 D.3.3). Pure: the policy says who
 * may call, which abstract syntaxes map to which service, and which transfer syntaxes each accepts.
 */
import type { RejectLabel } from './observer.js';
import { hasLittleEndianForm } from './store-contexts.js';
import { LITTLE_ENDIAN_SYNTAXES } from '../dicom/transfer-syntaxes.js';
import {
  ContextResult,
  DICOM_APPLICATION_CONTEXT,
  RejectReason,
  RejectResult,
  RejectSource,
  type AcceptedContext,
  type AssociateAccept,
  type AssociateReject,
  type AssociateRequest,
  type RoleSelection,
  type UserInformation,
} from './pdu.js';

/** What a presentation context is for: C-ECHO, C-STORE, C-FIND, C-MOVE or C-GET (Query/Retrieve models). */
export type ServiceKind = 'verification' | 'storage' | 'find' | 'move' | 'get';

/** The smallest maximum PDU length Gantry accepts from a peer. */
export const MIN_PEER_MAX_PDU_LENGTH = 1024;

export interface NegotiationPolicy {
  aeTitle: string;
  implementationClassUid: string;
  implementationVersionName: string;
  maxPduLength: number;
  maxAsyncOperations: number;
  callerAllowed(callingAeTitle: string, remoteAddress: string): boolean;
  /** Reserves a place for the caller under the association limits; false when a limit is reached. */
  admit(callingAeTitle: string): boolean;
  /** The service of an abstract syntax for this caller; undefined refuses the context (result 3). */
  serviceFor(abstractSyntax: string, callingAeTitle: string, remoteAddress: string): ServiceKind | undefined;
  transferSyntaxAccepted(kind: ServiceKind, transferSyntax: string): boolean;
  /** Whether this caller may retrieve with C-GET: then it may take the SCP role of storage classes
   * (PS3.7 D.3.3.4), and Gantry sends it C-STORE requests on the association. */
  mayGet?(callingAeTitle: string, remoteAddress: string): boolean;
}

export interface NegotiatedContext {
  id: number;
  abstractSyntax: string;
  transferSyntax: string;
  service: ServiceKind;
  /** The requester took the SCP role for this storage context (C-GET sub-operations go to it). */
  requesterIsScp?: boolean;
  /** The requester proposed no SCU role for this context's SOP class (PS3.7 D.3.3.4): it may not
   * send requests on it. */
  requesterDeclinedScu?: boolean;
}

export type NegotiationOutcome =
  | { kind: 'reject'; reject: AssociateReject; why: string; label: RejectLabel }
  | {
      kind: 'accept';
      accept: AssociateAccept;
      contexts: Map<number, NegotiatedContext>;
      /** The largest PDU the peer receives (0: no limit). */
      peerMaxPduLength: number;
      /** The asynchronous operations window granted: how many requests the peer may have outstanding. */
      operationsWindow: number;
    };

/**
 * An AE title as PS3.5 6.2 defines the VR (and PS3.8 9.3.2 sends it): the default repertoire without
 * control characters or backslash, not empty or all spaces (the PDU's padding is trimmed already).
 * A calling title outside it was accepted, written into the stored original's Source Application
 * Entity Title (0002,0016) and matched against the policy keys (found in the upper layer review: an
 * escape and a backslash made the element invalid and two-valued).
 */
export function isValidAeTitle(title: string): boolean {
  return /^[\x20-\x5b\x5d-\x7e]{1,16}$/.test(title);
}

function reject(label: RejectLabel, result: number, source: number, reason: number, why: string): NegotiationOutcome {
  return { kind: 'reject', reject: { result, source, reason }, why, label };
}

export function negotiate(rq: AssociateRequest, remoteAddress: string, policy: NegotiationPolicy): NegotiationOutcome {
  // PS3.8 9.3.2: bit 0 of the protocol version is version 1, the only one there is.
  if ((rq.protocolVersion & 1) === 0) {
    return reject('protocol_version', RejectResult.Permanent, RejectSource.ServiceProviderAcse, RejectReason.ProtocolVersionNotSupported, `protocol version ${rq.protocolVersion} not supported`);
  }
  if (rq.applicationContext !== DICOM_APPLICATION_CONTEXT) {
    return reject('application_context', RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.ApplicationContextNotSupported, `application context ${rq.applicationContext} not supported`);
  }
  if (rq.calledAeTitle !== policy.aeTitle) {
    return reject('called_ae_title', RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CalledAeTitleNotRecognized, `called AE title "${rq.calledAeTitle}" is not "${policy.aeTitle}"`);
  }
  if (!isValidAeTitle(rq.callingAeTitle)) {
    return reject('calling_ae_title', RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CallingAeTitleNotRecognized, `calling AE title ${JSON.stringify(rq.callingAeTitle)} is not an AE title (PS3.5 6.2: 1 to 16 characters of the default repertoire, no control character or backslash, not all spaces)`);
  }
  if (!policy.callerAllowed(rq.callingAeTitle, remoteAddress)) {
    return reject('calling_ae_title', RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CallingAeTitleNotRecognized, `calling AE title "${rq.callingAeTitle}" from ${remoteAddress} is not on dicom.allowedCallers`);
  }

  const contexts = new Map<number, NegotiatedContext>();
  const mayGet = policy.mayGet?.(rq.callingAeTitle, remoteAddress) ?? false;
  // The storage classes whose SCP role alone the caller will be granted (replyToRoleSelections): on
  // those contexts Gantry sends a C-GET's instances, and the caller sends none.
  const sentOn = new Set(mayGet ? rq.userInformation.roleSelections.filter((role) => role.scpRole && !role.scuRole).map((role) => role.sopClassUid) : []);
  const results: AcceptedContext[] = rq.presentationContexts.map((context) => {
    const service = policy.serviceFor(context.abstractSyntax, rq.callingAeTitle, remoteAddress);
    if (service === undefined) return { id: context.id, result: ContextResult.AbstractSyntaxNotSupported, transferSyntax: context.transferSyntaxes[0] ?? '' };
    const readable = context.transferSyntaxes.filter((syntax) => policy.transferSyntaxAccepted(service, syntax));
    // The caller lists its syntaxes in its order of preference; take the first one Gantry reads. Where
    // Gantry sends (a C-GET's storage contexts), a little-endian one first when the caller's first has
    // a little-endian form Gantry makes (it sends what it holds, or that form, and encodes nothing): a
    // first JPEG accepted there failed every uncompressed object's sub-operation though the caller
    // offered little endian beside it (PS3.8 9.3.3.2 lets the acceptor choose; found in the retrieve
    // review). A first syntax Gantry can only send as stored (MPEG, HTJ2K) stays the choice: little
    // endian would leave such objects no context at all (found in the review of the session's diff).
    const first = readable[0];
    const preferLittleEndian = service === 'storage' && sentOn.has(context.abstractSyntax) && first !== undefined && hasLittleEndianForm(first);
    const sendable = preferLittleEndian ? readable.find((syntax) => LITTLE_ENDIAN_SYNTAXES.includes(syntax)) : undefined;
    const chosen = sendable ?? readable[0];
    if (chosen === undefined) return { id: context.id, result: ContextResult.TransferSyntaxesNotSupported, transferSyntax: context.transferSyntaxes[0] ?? '' };
    contexts.set(context.id, { id: context.id, abstractSyntax: context.abstractSyntax, transferSyntax: chosen, service });
    return { id: context.id, result: ContextResult.Acceptance, transferSyntax: chosen };
  });
  // PS3.8 D.1: 0 means no limit. A limit too small to carry a PDV of a command set is a broken peer;
  // honouring it would mean endless fragmentation.
  const peerMax = rq.userInformation.maxPduLength;
  if (peerMax !== 0 && peerMax < MIN_PEER_MAX_PDU_LENGTH) {
    return reject('max_pdu_length', RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.NoReasonGiven, `maximum PDU length ${peerMax} is below ${MIN_PEER_MAX_PDU_LENGTH}`);
  }
  if (contexts.size === 0) {
    return reject('no_presentation_context', RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.NoReasonGiven, 'no acceptable presentation context');
  }
  // The limits are checked last, so that a refused caller or syntax never takes a place.
  if (!policy.admit(rq.callingAeTitle)) {
    return reject('local_limit', RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded, 'association limit reached (dicom.maxAssociations or dicom.maxAssociationsPerCaller)');
  }

  const offered = rq.userInformation;
  const userInformation: UserInformation = {
    maxPduLength: policy.maxPduLength,
    implementationClassUid: policy.implementationClassUid,
    implementationVersionName: policy.implementationVersionName,
    roleSelections: replyToRoleSelections(offered.roleSelections, contexts, mayGet),
    extendedNegotiations: [],
  };
  let operationsWindow = 1;
  if (offered.asyncOperations) {
    // PS3.7 D.3.3.3: 0 means unlimited. Gantry performs up to its window and invokes none of its own.
    const invoked = offered.asyncOperations.maxOperationsInvoked;
    operationsWindow = invoked === 0 ? policy.maxAsyncOperations : Math.min(invoked, policy.maxAsyncOperations);
    userInformation.asyncOperations = { maxOperationsInvoked: operationsWindow, maxOperationsPerformed: 1 };
  }
  return {
    kind: 'accept',
    accept: {
      protocolVersion: 1,
      calledAeTitle: rq.calledAeTitle,
      callingAeTitle: rq.callingAeTitle,
      applicationContext: DICOM_APPLICATION_CONTEXT,
      presentationContexts: results,
      userInformation,
    },
    contexts,
    peerMaxPduLength: offered.maxPduLength,
    operationsWindow,
  };
}

/** PS3.7 D.3.3.4: for each SOP class of an accepted context, the caller may act as SCU (Gantry is
 * the SCP) when it proposed to (a class it proposed only the SCP role for carries no requests from
 * it: those contexts are marked); a caller that may use C-GET may also take the SCP role of storage classes, so that Gantry
 * sends it the retrieved instances on this association (the contexts are marked for that). One reply
 * per SOP class, to its first proposal: the standard has one sub-item per SOP class, and echoing
 * repeats could overflow the user information item's 16-bit length (then the association would be
 * aborted instead of accepted). */
function replyToRoleSelections(proposed: RoleSelection[], contexts: Map<number, NegotiatedContext>, mayGet: boolean): RoleSelection[] {
  const accepted = new Set([...contexts.values()].map((context) => context.abstractSyntax));
  const answered = new Set<string>();
  return proposed
    .filter((role) => accepted.has(role.sopClassUid) && !answered.has(role.sopClassUid) && answered.add(role.sopClassUid))
    .map((role) => {
      const ofClass = [...contexts.values()].filter((context) => context.abstractSyntax === role.sopClassUid);
      const storage = ofClass.filter((context) => context.service === 'storage');
      const scpRole = mayGet && role.scpRole && storage.length > 0;
      if (scpRole) for (const context of storage) context.requesterIsScp = true;
      if (!role.scuRole) for (const context of ofClass) context.requesterDeclinedScu = true;
      return { sopClassUid: role.sopClassUid, scuRole: role.scuRole, scpRole };
    });
}
