/**
 * One association on the acceptor side (PS3.8 9.2, the upper-layer state machine seen from an SCP):
 * ARTIM while waiting for the request, negotiation, DIMSE messages (PS3.7) assembled from PDVs and
 * dispatched to the service handlers, release, abort, and an idle timeout.
 *
 * Datasets stream: each PDV slice goes to the handler's sink (small ones gathered first,
 * dataset-fragments.ts), and the socket is paused while the sink is behind, so memory does not grow
 * with the object's size.
 */
import { GatheredBytes } from './gathered-bytes.js';
import type { Socket } from 'node:net';
import type { Logger } from '../observability/logger.js';
import { observeSafely } from '../observability/observe.js';
import { DatasetFragments } from './dataset-fragments.js';
import { withoutUids } from '../observability/redact.js';
import { CommandError, CommandField, DATASET_PRESENT, decodeCommand, encodeCommand, isRequest, isWellFormedUid, NO_DATASET, type DimseCommand } from './command.js';
import type { NegotiatedContext, NegotiationOutcome } from './negotiation.js';
import type { DimseObserver } from './observer.js';
import {
  AbortReason,
  AbortSource,
  decodeAbort,
  decodeAssociateRequest,
  encodeAbort,
  encodeAssociateAccept,
  encodeAssociateReject,
  encodePData,
  encodeReleaseResponse,
  PduError,
  PduType,
  type AbortReasonCode,
  type AssociateRequest,
} from './pdu.js';
import { PduStream, type PduStreamSink } from './pdu-stream.js';
import { CollectingSink, DiscardingSink, type AssociationInfo, type DatasetSink, type FindRequest, type MoveRequest, type ServiceHandlers, type StoreChannel } from './services.js';
import { sendDatasetPdus, type DatasetBody } from './dataset-pdus.js';
import { resultFromError, Status, statusHex, type DimseResult, type SuboperationCounts } from './status.js';
import { canonicalAddress } from './peer-address.js';
import { trimUid } from '../dicom/values.js';
import { LITTLE_ENDIAN_SYNTAXES } from '../dicom/transfer-syntaxes.js';

export interface AcceptorOptions {
  id: string;
  socket: Socket;
  log: Logger;
  artimMs: number;
  idleMs: number;
  negotiate(request: AssociateRequest, remoteAddress: string): NegotiationOutcome;
  handlers: ServiceHandlers;
  /** Told of accepted and rejected associations, bytes and answered operations (metrics). */
  observer?: DimseObserver;
  /** Called once when the connection is gone, with whether the association had been accepted. */
  onClosed(association: AcceptorAssociation, wasAccepted: boolean): void;
}

type Phase = 'awaitingRequest' | 'established' | 'releasing' | 'closing' | 'closed';

/** Command sets are small; a larger one is a broken peer. */
const MAX_COMMAND_LENGTH = 64 * 1024;

/** Failed operations logged one by one per association; the rest are counted in its summary. */
export const FAILURES_LOGGED = 20;
/** Bytes that count as progress for the idle timeout without a message completed: a peer slower
 * than this per idle timeout (64 KiB in 300 s by default, 218 bytes a second) is taken for idle. */
export const PROGRESS_BYTES = 64 * 1024;

interface IncomingDataset {
  context: NegotiatedContext;
  command: DimseCommand;
  sink: DatasetSink;
  responseField: number;
  /** The operation runs while reading goes on (a C-FIND must let its C-CANCEL in). */
  keepReading?: boolean;
  /** When the command set arrived (performance.now()). */
  startedAt: number;
}

/** C-FIND identifiers are a few hundred bytes; a larger one is refused. */
const MAX_IDENTIFIER_LENGTH = 1024 * 1024;

export interface AssociationSummary {
  operations: number;
  failures: number;
  bytesReceived: number;
}

export class AcceptorAssociation implements PduStreamSink, StoreChannel {
  readonly id: string;
  private readonly socket: Socket;
  private log: Logger;
  private readonly pdus: PduStream;
  private phase: Phase = 'awaitingRequest';
  private accepted = false;
  private callingAeTitle = '';
  private contexts = new Map<number, NegotiatedContext>();
  private peerMaxPduLength = 0;
  private operationsWindow = 1;
  private info: AssociationInfo | undefined;
  private readonly command = new GatheredBytes();
  /** The presentation context of the command being assembled (its first fragment's). */
  private commandContextId: number | undefined;
  private incoming: IncomingDataset | undefined;
  /** The incoming dataset's fragments, small ones gathered (dataset-fragments.ts). */
  private readonly fragments = new DatasetFragments((bytes) => this.deliverFragment(bytes));
  private readonly operations = new Set<Promise<void>>();
  /** The Message IDs of the operations not yet answered, with how many use each. */
  private readonly outstandingIds = new Map<number, number>();
  /** C-FINDs, C-MOVEs and C-GETs running, by message ID, for C-CANCEL (PS3.7 9.3.2.3). */
  private readonly finds = new Map<number, AbortController>();
  /** C-STORE sub-operations of a C-GET sent on this association, waiting for their responses. */
  /** C-STORE sub-operations of a C-GET awaiting their response, by Message ID, with the UIDs they name. */
  private readonly outgoing = new Map<number, { sopClassUid: string; sopInstanceUid: string; resolve(result: DimseResult): void; reject(error: Error): void }>();
  private nextOutgoingId = 1;
  private storeChain: Promise<void> = Promise.resolve();
  private streamingDataset: Promise<void> | undefined;
  private pauses = 0;
  /** Of `pauses`, those waiting for the peer to read what was written: they do not keep an idle
   * association alive (a peer that reads nothing for the idle timeout is aborted). */
  private writePauses = 0;
  private drainWait: Promise<void> | undefined;
  private artimTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Bytes read since the idle timer was last put back. */
  private bytesSinceProgress = 0;
  private closeWhenIdle = false;
  private readonly startedAt = Date.now();
  private readonly summary: AssociationSummary = { operations: 0, failures: 0, bytesReceived: 0 };

  constructor(private readonly options: AcceptorOptions) {
    this.id = options.id;
    this.socket = options.socket;
    this.log = options.log;
    this.pdus = new PduStream(this);
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (error) => this.log.debug({ err: error.message }, 'connection error'));
    this.socket.on('close', () => this.onSocketClosed());
    // The peer closed its side: after a release or an abort that is the end; otherwise it is an
    // abrupt end (PS3.8 9.2: A-P-ABORT), reported when the socket closes.
    this.socket.on('end', () => this.socket.destroy());
    this.startArtim();
  }

  get calling(): string {
    return this.callingAeTitle;
  }

  get isAccepted(): boolean {
    return this.accepted;
  }

  /** Connected, but no association yet: no A-ASSOCIATE-RQ has come. */
  get isAwaitingRequest(): boolean {
    return this.phase === 'awaitingRequest';
  }

  /** Refused, aborted or released: waiting for the peer to close (ARTIM). Not once the connection
   * is cut (its close is then only an event away). */
  get isEnding(): boolean {
    return this.phase === 'closing' && !this.socket.destroyed;
  }

  // --- socket input ------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.phase === 'closing' || this.phase === 'closed') return;
    this.summary.bytesReceived += chunk.length;
    this.observe((observer) => observer.bytesReceived(chunk.length));
    // Progress puts the idle timer back: a message completed (pdvEnd), or PROGRESS_BYTES read. A byte
    // every few seconds inside a dataset announced as 4 GB did it at every byte and held a place under
    // dicom.maxAssociations for good (found in the hostile-peer review).
    this.bytesSinceProgress += chunk.length;
    if (this.bytesSinceProgress >= PROGRESS_BYTES) this.progressed();
    try {
      this.pdus.push(chunk);
    } catch (error) {
      if (error instanceof PduError) this.abortForProtocolError(error.message, error.abortReason);
      else this.abortForProtocolError(`internal error: ${(error as Error).message}`, AbortReason.NotSpecified);
    }
  }

  controlPdu(type: number, body: Buffer): void {
    switch (type) {
      case PduType.AssociateRq:
        if (this.phase !== 'awaitingRequest') throw new PduError('A-ASSOCIATE-RQ on an established association', AbortReason.UnexpectedPdu);
        this.onAssociateRequest(decodeAssociateRequest(body));
        return;
      case PduType.ReleaseRq:
        if (this.phase !== 'established') throw new PduError('A-RELEASE-RQ outside an established association', AbortReason.UnexpectedPdu);
        if (this.incoming || this.command.length > 0) throw new PduError('A-RELEASE-RQ in the middle of a message', AbortReason.UnexpectedPdu);
        // A message: the wait for the operations in progress counts from here, as it did.
        this.progressed();
        this.onReleaseRequest();
        return;
      case PduType.Abort: {
        const abort = decodeAbort(body);
        this.log.info({ source: abort.source, reason: abort.reason, ...this.summaryFields() }, 'peer aborted the association');
        this.close();
        return;
      }
      default:
        throw new PduError(`unexpected PDU type 0x${type.toString(16)} for an association acceptor`, AbortReason.UnexpectedPdu);
    }
  }

  pdvData(presentationContextId: number, isCommand: boolean, data: Buffer): void {
    this.requireEstablished();
    if (isCommand) {
      if (this.incoming) throw new PduError('command fragment while a dataset is being received (PS3.7 9.1.2)', AbortReason.UnexpectedPduParameter);
      this.requireCommandContext(presentationContextId);
      if (this.command.length + data.length > MAX_COMMAND_LENGTH) throw new PduError('command set longer than 64 KiB', AbortReason.InvalidPduParameterValue);
      this.command.append(data);
      return;
    }
    this.requireDatasetContext(presentationContextId);
    this.fragments.push(data);
  }

  private deliverFragment(bytes: Buffer): void {
    const incoming = this.incoming;
    if (incoming && !incoming.sink.write(bytes)) this.pauseUntil(incoming.sink.whenDrained());
  }

  pdvEnd(presentationContextId: number, isCommand: boolean, isLast: boolean): void {
    // Checked here too: a PDV without data never reaches pdvData.
    this.requireEstablished();
    if (isCommand) this.requireCommandContext(presentationContextId);
    else this.requireDatasetContext(presentationContextId);
    if (!isLast) return;
    this.progressed();
    if (isCommand) {
      const context = this.requireContext(presentationContextId);
      const bytes = this.command.take();
      this.commandContextId = undefined;
      let command: DimseCommand;
      try {
        command = decodeCommand(bytes);
      } catch (error) {
        if (error instanceof CommandError) throw new PduError(`malformed command set: ${error.message}`, AbortReason.InvalidPduParameterValue);
        throw error;
      }
      this.onCommand(context, command);
      return;
    }
    const incoming = this.incoming;
    if (!incoming) return;
    this.fragments.flush();
    this.incoming = undefined;
    if (incoming.responseField === 0) {
      void incoming.sink.end(); // the dataset of an unexpected response: read, discarded, not answered
      return;
    }
    this.track(incoming.context, incoming.command, incoming.responseField, () => incoming.sink.end(), !incoming.keepReading, incoming.startedAt);
  }

  // --- association establishment and release ------------------------------------------------

  private onAssociateRequest(request: AssociateRequest): void {
    this.stopArtim();
    this.callingAeTitle = request.callingAeTitle;
    // IPv4 peers on a dual-stack socket appear as ::ffff:a.b.c.d: the address in the one spelling config is compared in.
    const remoteAddress = canonicalAddress(this.socket.remoteAddress ?? '');
    const outcome = this.options.negotiate(request, remoteAddress);
    const who = { calling: request.callingAeTitle, called: request.calledAeTitle, remote: remoteAddress };
    const { calling: _calling, ...whoElse } = who;
    if (outcome.kind === 'reject') {
      this.log.warn({ ...who, result: outcome.reject.result, source: outcome.reject.source, reason: outcome.reject.reason, why: outcome.why }, 'association rejected');
      this.observe((observer) => observer.associationRejected(outcome.label));
      this.socket.write(encodeAssociateReject(outcome.reject));
      this.phase = 'closing';
      this.finishAfterArtim();
      return;
    }
    this.accepted = true;
    this.contexts = outcome.contexts;
    this.peerMaxPduLength = outcome.peerMaxPduLength;
    this.operationsWindow = outcome.operationsWindow;
    this.log = this.log.child({ calling: request.callingAeTitle });
    this.info = {
      id: this.id,
      callingAeTitle: request.callingAeTitle,
      calledAeTitle: request.calledAeTitle,
      remoteAddress,
      remotePort: this.socket.remotePort ?? 0,
      log: this.log,
    };
    this.socket.write(encodeAssociateAccept(outcome.accept));
    this.phase = 'established';
    this.observe((observer) => observer.associationAccepted(request.callingAeTitle));
    this.log.info(
      {
        ...whoElse,
        implementation: request.userInformation.implementationClassUid,
        contexts: this.contexts.size,
        offered: request.presentationContexts.length,
        window: this.operationsWindow,
        peerMaxPdu: this.peerMaxPduLength,
      },
      'association accepted',
    );
    this.idleTimer = setTimeout(() => this.onIdle(), this.options.idleMs);
    this.idleTimer.unref();
  }

  private onReleaseRequest(): void {
    this.phase = 'releasing';
    void this.whenOperationsDone().then(() => {
      if (this.phase !== 'releasing') return;
      this.socket.write(encodeReleaseResponse());
      this.log.info({ ...this.summaryFields() }, 'association released');
      this.phase = 'closing';
      this.finishAfterArtim();
    });
  }

  /**
   * Ends the association for a shutdown: in-flight operations finish and are answered, then the
   * association is aborted (the peer loses nothing it was told was stored).
   */
  shutdown(): void {
    if (this.phase === 'awaitingRequest') {
      this.close();
      return;
    }
    this.closeWhenIdle = true;
    // Queries and retrieves under way end as a C-CANCEL ends them, each with its final response (a
    // retrieve's counts and failed list, PS3.4 C.4.2.3.1): left to run, a C-MOVE kept starting
    // sub-operations through the grace period, and its caller was then aborted without either (found
    // in the retrieve review).
    for (const find of this.finds.values()) find.abort();
    this.abortIfIdle();
  }

  private progressed(): void {
    this.bytesSinceProgress = 0;
    this.idleTimer?.refresh();
  }

  private abortIfIdle(): void {
    if (!this.closeWhenIdle || this.phase !== 'established') return;
    if (this.operations.size > 0 || this.incoming || this.command.length > 0) return;
    this.log.info({ ...this.summaryFields() }, 'association aborted for shutdown');
    this.sendAbort(AbortSource.ServiceUser, AbortReason.NotSpecified);
  }

  private onIdle(): void {
    if (this.phase === 'releasing') {
      // The release waits for operations that have not ended within the idle timeout: give up.
      this.log.warn({ idleSeconds: this.options.idleMs / 1000, ...this.summaryFields() }, 'release waited too long for operations: aborted');
      this.sendAbort(AbortSource.ServiceProvider, AbortReason.NotSpecified);
      return;
    }
    if (this.phase !== 'established') return;
    if (this.operations.size > 0 || this.pauses > this.writePauses) {
      this.idleTimer?.refresh();
      return;
    }
    this.log.warn({ idleSeconds: this.options.idleMs / 1000, ...this.summaryFields() }, 'association idle too long: aborted');
    this.sendAbort(AbortSource.ServiceProvider, AbortReason.NotSpecified);
  }

  private abortForProtocolError(message: string, reason: AbortReasonCode): void {
    this.log.warn({ why: message, reason, ...this.summaryFields() }, 'protocol error: association aborted');
    // PS3.8 9.2.3: before an A-ASSOCIATE-RQ (Sta2) any other or invalid PDU is action AA-1, an A-ABORT
    // of service-user source, whose reason is not significant; after it, AA-8, service-provider source
    // with the reason (found in the hostile-peer review).
    if (this.phase === 'awaitingRequest') this.sendAbort(AbortSource.ServiceUser, AbortReason.NotSpecified);
    else this.sendAbort(AbortSource.ServiceProvider, reason);
  }

  private sendAbort(source: number, reason: number): void {
    if (this.phase === 'closing' || this.phase === 'closed') return;
    this.phase = 'closing';
    this.abortIncoming();
    this.socket.write(encodeAbort({ source, reason }));
    this.finishAfterArtim();
  }

  /** PS3.8 9.2: after A-ASSOCIATE-RJ, A-RELEASE-RP or A-ABORT, wait (ARTIM) for the peer to close. */
  private finishAfterArtim(): void {
    this.socket.end();
    this.startArtim();
  }

  /** Cuts the connection at once (end of a shutdown's grace period). */
  destroy(): void {
    this.close();
  }

  private close(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closing';
    this.abortIncoming();
    this.socket.destroy();
  }

  private onSocketClosed(): void {
    if (this.phase === 'closed') return;
    const wasEstablished = this.phase === 'established' || this.phase === 'releasing';
    this.phase = 'closed';
    this.stopArtim();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.abortIncoming();
    for (const find of this.finds.values()) find.abort();
    for (const pending of this.outgoing.values()) pending.reject(new Error('the association ended'));
    this.outgoing.clear();
    if (wasEstablished) this.log.warn({ ...this.summaryFields() }, 'connection closed without release');
    this.options.onClosed(this, this.accepted);
  }

  private abortIncoming(): void {
    const incoming = this.incoming;
    this.incoming = undefined;
    this.fragments.discard();
    this.command.clear();
    this.commandContextId = undefined;
    if (incoming) {
      try {
        incoming.sink.abort();
      } catch (error) {
        this.log.error({ err: (error as Error).message }, 'a dataset sink failed to abort');
      }
    }
  }

  private startArtim(): void {
    this.stopArtim();
    this.artimTimer = setTimeout(() => {
      if (this.phase === 'awaitingRequest') this.log.warn('no A-ASSOCIATE-RQ before the ARTIM timer expired');
      this.socket.destroy();
    }, this.options.artimMs);
    this.artimTimer.unref();
  }

  private stopArtim(): void {
    if (this.artimTimer) clearTimeout(this.artimTimer);
    this.artimTimer = undefined;
  }

  // --- DIMSE messages ----------------------------------------------------------------------

  private onCommand(context: NegotiatedContext, command: DimseCommand): void {
    const info = this.info as AssociationInfo;
    const hasDataset = command.commandDataSetType !== NO_DATASET;
    if (command.commandField === CommandField.CStoreRsp && this.outgoing.has(command.messageIdBeingRespondedTo ?? -1)) {
      // The answer to a C-STORE sub-operation of a C-GET (PS3.4 C.4.3).
      const pending = this.outgoing.get(command.messageIdBeingRespondedTo ?? -1);
      // PS3.7 9.3.1.2: the response's Affected SOP Class and Instance UIDs are optional, but when present
      // equal the request's; one that names another instance confirms nothing (as for the requestor).
      if (
        pending &&
        ((command.affectedSopInstanceUid && command.affectedSopInstanceUid !== trimUid(pending.sopInstanceUid)) ||
          (command.affectedSopClassUid && command.affectedSopClassUid !== trimUid(pending.sopClassUid)))
      ) {
        throw new PduError(`the C-STORE-RSP for message ${command.messageIdBeingRespondedTo} names another SOP instance or class than its request`, AbortReason.UnexpectedPduParameter);
      }
      this.outgoing.delete(command.messageIdBeingRespondedTo ?? -1);
      pending?.resolve({ status: command.status ?? 0xffff, ...(command.errorComment !== undefined ? { errorComment: command.errorComment } : {}) });
      if (hasDataset) this.incoming = { context, command, sink: new DiscardingSink({ status: Status.Success }), responseField: 0, startedAt: performance.now() };
      return;
    }
    if (!isRequest(command.commandField)) {
      // A response to an operation Gantry did not invoke on this association.
      this.log.warn({ commandField: command.commandField }, 'unexpected DIMSE response ignored');
      if (hasDataset) this.incoming = { context, command, sink: new DiscardingSink({ status: Status.Success }), responseField: 0, startedAt: performance.now() };
      return;
    }
    // PS3.7 9.1: every request but C-CANCEL carries a Message ID (M), which its responses name; one
    // without it cannot be answered, and an answer to message 0 could confirm another request.
    if (command.messageId === undefined && command.commandField !== CommandField.CCancelRq) {
      throw new PduError(`malformed command set: request 0x${command.commandField.toString(16)} has no Message ID (0000,0110)`, AbortReason.InvalidPduParameterValue);
    }
    const responseField = command.commandField | 0x8000;
    // PS3.7 9.1.2.1.1: outstanding operations have distinct Message IDs, and a C-CANCEL names one (a
    // C-STORE or C-ECHO reusing one was performed and answered with the same Message ID Being
    // Responded To, found in the hostile-peer review; only C-FIND, C-MOVE and C-GET were refused).
    if (command.commandField !== CommandField.CCancelRq && this.outstandingIds.has(command.messageId ?? 0)) {
      this.refuse(context, command, responseField, { status: Status.DuplicateInvocation, errorComment: `Message ID ${command.messageId ?? 0} is already in use by an outstanding operation` });
      return;
    }
    if (context.requesterDeclinedScu && command.commandField !== CommandField.CCancelRq) {
      // PS3.7 D.3.3.4: the role selection left the requester no SCU role for this SOP class.
      const refusal: DimseResult = {
        status: Status.UnrecognizedOperation,
        errorComment: `the association gave the requester no SCU role for ${context.abstractSyntax} (PS3.7 D.3.3.4)`,
      };
      this.refuse(context, command, responseField, refusal);
      return;
    }
    // A message belongs to the abstract syntax of the context it came on (PS3.7 9.1.1, PS3.8 9.3.5):
    // a C-STORE of a class refused at negotiation, sent on another class's context, is refused too.
    if (command.affectedSopClassUid !== undefined && command.affectedSopClassUid !== context.abstractSyntax) {
      const refusal: DimseResult = {
        status: Status.SopClassNotSupported,
        errorComment: `Affected SOP Class UID ${command.affectedSopClassUid} is not the abstract syntax of presentation context ${context.id} (${context.abstractSyntax})`,
      };
      this.refuse(context, command, responseField, refusal);
      return;
    }
    if (command.commandField === CommandField.CStoreRq && context.service === 'storage') {
      if (!hasDataset) {
        this.track(context, command, responseField, () => ({ status: Status.CannotUnderstand, errorComment: 'C-STORE-RQ without a dataset' }));
        return;
      }
      this.incoming = { context, command, sink: this.openStoreSink(context, command, info), responseField, startedAt: performance.now() };
      return;
    }
    if (command.commandField === CommandField.CEchoRq && context.service === 'verification') {
      if (hasDataset) {
        // PS3.7 9.3.5: a C-ECHO-RQ has no data set; one announced is read and the request refused.
        const refusal = { status: Status.MistypedArgument, errorComment: 'C-ECHO-RQ announces a data set (Command Data Set Type must be 0x0101, PS3.7 9.3.5)' };
        this.incoming = { context, command, sink: new DiscardingSink(refusal), responseField, startedAt: performance.now() };
        return;
      }
      this.track(context, command, responseField, () => this.options.handlers.echo(info));
      return;
    }
    const { find, move, get } = this.options.handlers;
    const queryRetrieve =
      command.commandField === CommandField.CFindRq && context.service === 'find' && find
        ? 'find'
        : command.commandField === CommandField.CMoveRq && context.service === 'move' && move
          ? 'move'
          : command.commandField === CommandField.CGetRq && context.service === 'get' && get
            ? 'get'
            : undefined;
    if (queryRetrieve) {
      this.startQueryRetrieve(context, command, responseField, hasDataset, queryRetrieve);
      return;
    }
    if (command.commandField === CommandField.CCancelRq) {
      // PS3.7 9.3.2.3: the C-FIND it names ends with Cancel; a C-CANCEL for anything else is ignored.
      this.finds.get(command.messageIdBeingRespondedTo ?? -1)?.abort();
      return;
    }
    const refusal: DimseResult = {
      status: Status.UnrecognizedOperation,
      errorComment: `command 0x${command.commandField.toString(16)} is not supported on a ${context.service} context`,
    };
    this.refuse(context, command, responseField, refusal);
  }

  /** Answers a request with a refusal, after reading (and discarding) the dataset it announces. */
  private refuse(context: NegotiatedContext, command: DimseCommand, responseField: number, refusal: DimseResult): void {
    if (command.commandDataSetType !== NO_DATASET) this.incoming = { context, command, sink: new DiscardingSink(refusal), responseField, startedAt: performance.now() };
    else this.track(context, command, responseField, () => refusal);
  }

  private openStoreSink(context: NegotiatedContext, command: DimseCommand, info: AssociationInfo): DatasetSink {
    try {
      return this.options.handlers.store({
        association: info,
        messageId: command.messageId ?? 0,
        priority: command.priority ?? 0,
        sopClassUid: command.affectedSopClassUid ?? context.abstractSyntax,
        sopInstanceUid: command.affectedSopInstanceUid ?? '',
        transferSyntaxUid: context.transferSyntax,
        ...(command.moveOriginatorAeTitle !== undefined
          ? { moveOriginator: { aeTitle: command.moveOriginatorAeTitle, messageId: command.moveOriginatorMessageId ?? 0 } }
          : {}),
      });
    } catch (error) {
      this.log.error({ err: (error as Error).message }, 'store handler failed to start');
      return new DiscardingSink(resultFromError(error));
    }
  }

  /** A C-FIND, C-MOVE or C-GET: its identifier is collected, then the operation runs while reading goes
   * on (its C-CANCEL, a C-GET's C-STORE responses), and C-CANCEL can name it. */
  private startQueryRetrieve(context: NegotiatedContext, command: DimseCommand, responseField: number, hasDataset: boolean, kind: 'find' | 'move' | 'get'): void {
    const name = `C-${kind.toUpperCase()}-RQ`;
    if (!hasDataset) {
      this.track(context, command, responseField, () => ({ status: Status.CannotUnderstand, errorComment: `${name} without an identifier` }));
      return;
    }
    // The identifier follows whatever is wrong with the command: it is read (and dropped) before the
    // refusal, as a message's data set belongs to it (PS3.7 6.3.1); left unread, it was taken for a
    // data set with no command before it, and the association aborted before the refusal went out.
    const refusal =
      kind === 'move' && !command.moveDestination
        ? { status: Status.CannotUnderstand, errorComment: `${name} without a Move Destination (PS3.7 9.1.4.1.3)` }
        : this.queryRetrieveRefusal(kind);
    if (refusal) {
      this.incoming = { context, command, sink: new DiscardingSink(refusal), responseField, startedAt: performance.now() };
      return;
    }
    const controller = new AbortController();
    this.finds.set(command.messageId ?? 0, controller);
    const run = (identifier: Buffer) => {
      const request: MoveRequest = {
        association: this.info as AssociationInfo,
        messageId: command.messageId ?? 0,
        sopClassUid: command.affectedSopClassUid ?? context.abstractSyntax,
        transferSyntaxUid: context.transferSyntax,
        identifier,
        moveDestination: command.moveDestination ?? '',
        priority: command.priority ?? 0,
      };
      return kind === 'find' ? this.runFind(context, request, controller) : this.runRetrieve(context, request, controller, kind);
    };
    const sink = this.forgettingWhenEnded(new CollectingSink(MAX_IDENTIFIER_LENGTH, run), command.messageId ?? 0, controller);
    this.incoming = { context, command, sink, responseField, keepReading: true, startedAt: performance.now() };
  }

  /**
   * However a C-FIND, C-MOVE or C-GET ends, run or refused before it ran (an identifier over the limit
   * never reaches the handler), it is no longer outstanding once answered: its Message ID may be used
   * again (PS3.7 9.1.2.1.1) and its place in the asynchronous operations window is free (D.3.3.3).
   * Kept otherwise, the ID would be refused as a duplicate and, in a window of 1, every later C-FIND,
   * C-MOVE and C-GET on the association as out of resources (0xA700, 0xA701).
   */
  private forgettingWhenEnded(sink: DatasetSink, messageId: number, controller: AbortController): DatasetSink {
    return {
      write: (chunk) => sink.write(chunk),
      whenDrained: () => sink.whenDrained(),
      end: () =>
        sink.end().finally(() => {
          if (this.finds.get(messageId) === controller) this.finds.delete(messageId);
        }),
      abort: () => sink.abort(),
    };
  }

  /**
   * Why a C-FIND, C-MOVE or C-GET cannot start, if it cannot. These keep the association reading (for
   * their C-CANCEL), so the window is enforced here rather than by pausing the socket.
   */
  private queryRetrieveRefusal(kind: 'find' | 'move' | 'get'): DimseResult | undefined {
    // A reused Message ID was refused with every other request's (onCommand: outstandingIds).
    // PS3.7 D.3.3.3: no more outstanding operations than the asynchronous operations window negotiated.
    // Each service's own "out of resources" status (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
    if (Math.max(this.finds.size, this.operations.size) >= this.operationsWindow) {
      return { status: kind === 'find' ? Status.OutOfResources : Status.OutOfResourcesMatches, errorComment: `out of resources: the negotiated asynchronous operations window (${this.operationsWindow}) is full` };
    }
    return undefined;
  }

  /**
   * Answers a C-FIND (PS3.4 C.4.1): each match goes out as a pending response (0xFF00) with its
   * identifier, as soon as the handler yields it and the socket takes it; the final response (success,
   * or cancel after a C-CANCEL) is sent by track().
   */
  private async runFind(context: NegotiatedContext, request: FindRequest, controller: AbortController): Promise<DimseResult> {
    const { messageId } = request;
    const find = this.options.handlers.find;
    if (!find) return { status: Status.UnrecognizedOperation, errorComment: 'C-FIND is not served' };
    for await (const match of find(request, controller.signal)) {
      if (controller.signal.aborted || (this.phase !== 'established' && this.phase !== 'releasing')) break;
      const { identifier, status } = Buffer.isBuffer(match) ? { identifier: match, status: Status.Pending } : match;
      const pending: DimseCommand = {
        commandField: CommandField.CFindRsp,
        messageIdBeingRespondedTo: messageId,
        affectedSopClassUid: request.sopClassUid,
        commandDataSetType: DATASET_PRESENT,
        status,
      };
      const pdus = [...encodePData(context.id, true, encodeCommand(pending), this.peerMaxPduLength), ...encodePData(context.id, false, identifier, this.peerMaxPduLength)];
      if (this.streamingDataset) await this.streamingDataset;
      if (!this.socket.write(Buffer.concat(pdus))) await this.peerTakesMore();
    }
    return controller.signal.aborted ? { status: Status.Cancel } : { status: Status.Success };
  }

  /**
   * Performs a C-MOVE (PS3.4 C.4.2) or C-GET (C.4.3): the handler runs the sub-operations (on an
   * association of its own to the Move Destination, or back on this one for C-GET); each progress it
   * reports goes out as a pending response (0xFF00) with the counts, and its result, with the final
   * counts, is the final response (sent by track()).
   */
  private async runRetrieve(context: NegotiatedContext, request: MoveRequest, controller: AbortController, kind: 'move' | 'get'): Promise<DimseResult> {
    const { messageId } = request;
    const { move, get } = this.options.handlers;
    const progress = kind === 'move' ? move?.(request, controller.signal) : get?.(request, this, controller.signal);
    if (!progress) return { status: Status.UnrecognizedOperation, errorComment: `C-${kind.toUpperCase()} is not served` };
    for (;;) {
      const next = await progress.next();
      if (next.done) return next.value;
      if (this.phase !== 'established' && this.phase !== 'releasing') continue;
      const pending: DimseCommand = {
        commandField: kind === 'move' ? CommandField.CMoveRsp : CommandField.CGetRsp,
        messageIdBeingRespondedTo: messageId,
        affectedSopClassUid: request.sopClassUid,
        commandDataSetType: NO_DATASET,
        status: Status.Pending,
        ...countFields(next.value),
      };
      if (this.streamingDataset) await this.streamingDataset;
      if (!this.socket.write(Buffer.concat(encodePData(context.id, true, encodeCommand(pending), this.peerMaxPduLength)))) await this.peerTakesMore();
    }
  }

  // --- C-STORE sub-operations of a C-GET, on this association (StoreChannel) ---------------------

  contextFor(sopClassUid: string, transferSyntaxUid: string): { id: number; transferSyntax: string } | undefined {
    const usable = [...this.contexts.values()].filter((context) => context.requesterIsScp && context.abstractSyntax === sopClassUid);
    const exact = usable.find((context) => context.transferSyntax === transferSyntaxUid);
    if (exact) return exact;
    if (!LITTLE_ENDIAN_SYNTAXES.includes(transferSyntaxUid)) return undefined;
    return usable.find((context) => LITTLE_ENDIAN_SYNTAXES.includes(context.transferSyntax));
  }

  /**
   * One C-STORE sub-operation at a time on this association (Gantry invokes at most one operation,
   * PS3.7 D.3.3.3), and while its dataset streams, other messages (responses) wait for it: PDVs of two
   * messages never interleave.
   */
  store(contextId: number, sopClassUid: string, sopInstanceUid: string, body: DatasetBody, priority = 0): Promise<DimseResult> {
    const turn = this.storeChain.then(() => this.storeNow(contextId, sopClassUid, sopInstanceUid, body, priority));
    this.storeChain = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  private async storeNow(contextId: number, sopClassUid: string, sopInstanceUid: string, body: DatasetBody, priority: number): Promise<DimseResult> {
    if (this.phase !== 'established') throw new Error('the association ended');
    const messageId = this.nextOutgoingId;
    this.nextOutgoingId = messageId >= 0xffff ? 1 : messageId + 1;
    const response = new Promise<DimseResult>((resolve, reject) => this.outgoing.set(messageId, { sopClassUid, sopInstanceUid, resolve, reject }));
    // Rejected when the association ends; awaited below only if the dataset went out whole.
    response.catch(() => undefined);
    const command: DimseCommand = {
      commandField: CommandField.CStoreRq,
      messageId,
      priority,
      commandDataSetType: DATASET_PRESENT,
      affectedSopClassUid: sopClassUid,
      affectedSopInstanceUid: sopInstanceUid,
    };
    let streamed!: () => void;
    this.streamingDataset = new Promise<void>((resolve) => (streamed = resolve));
    try {
      this.socket.write(Buffer.concat(encodePData(contextId, true, encodeCommand(command), this.peerMaxPduLength)));
      await sendDatasetPdus(
        {
          write: (buffers) => this.socket.write(Buffer.concat(buffers)),
          drained: () => this.peerTakesMore(),
          checkUsable: () => {
            if (this.phase !== 'established') throw new Error('the association ended');
          },
        },
        contextId,
        body,
        this.peerMaxPduLength,
      );
    } catch (error) {
      this.outgoing.delete(messageId);
      // The peer waits in the middle of a dataset: this association cannot carry another message.
      this.sendAbort(AbortSource.ServiceUser, AbortReason.NotSpecified);
      throw error;
    } finally {
      this.streamingDataset = undefined;
      streamed();
    }
    // A peer that never answers holds the C-GET no longer than the idle timeout allows.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.outgoing.delete(messageId);
        this.sendAbort(AbortSource.ServiceUser, AbortReason.NotSpecified);
        reject(new Error(`no C-STORE response within ${this.options.idleMs / 1000} s`));
      }, this.options.idleMs);
      timer.unref();
    });
    try {
      return await Promise.race([response, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Writes a whole message now, or after the dataset of a C-STORE sub-operation being streamed. */
  private writeMessage(buffer: Buffer): void {
    const streaming = this.streamingDataset;
    if (!streaming) {
      this.writeHoldingBack(buffer);
      return;
    }
    void streaming.then(() => {
      if (this.phase === 'established' || this.phase === 'releasing') this.writeHoldingBack(buffer);
    });
  }

  /**
   * Writes, and stops reading requests while the peer does not read the responses: a peer that sends
   * C-ECHO-RQs without reading would otherwise fill this process's memory with its unread responses
   * (about 8 bytes of memory per byte it sent, measured), each request being answered at once.
   */
  private writeHoldingBack(buffer: Buffer): void {
    // Requests already read (a 64 KiB chunk holds hundreds of C-ECHOs) are answered after the pause
    // began: one hold-back is enough for all of them.
    if (this.socket.write(buffer) || this.writePauses > 0) return;
    this.writePauses += 1;
    this.pauseUntil(this.writable().finally(() => (this.writePauses -= 1)));
  }

  /**
   * Resolves when the socket takes more, as writable() does, for an operation that writes as it goes
   * (C-FIND matches, C-MOVE/C-GET progress, a C-GET sub-operation's dataset). An operation in progress
   * keeps the association from idling out, so without a bound a peer that reads nothing would hold the
   * operation, the association and its place under dicom.maxAssociations for ever: after the idle
   * timeout it is aborted instead (A-ABORT source 2, reason 0, as for an idle association: PS3.8 9.3.8;
   * conformance statement 4.2.1.4), and the wait rejects.
   */
  private async peerTakesMore(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.log.warn({ idleSeconds: this.options.idleMs / 1000, ...this.summaryFields() }, 'peer read nothing for the idle timeout: aborted');
        this.sendAbort(AbortSource.ServiceProvider, AbortReason.NotSpecified);
        reject(new Error(`the peer read nothing for ${this.options.idleMs / 1000} s`));
      }, this.options.idleMs);
      timer.unref();
    });
    try {
      await Promise.race([this.writable(), gaveUp]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves when the socket takes more, or is gone; one wait shared by every writer behind it. */
  private writable(): Promise<void> {
    this.drainWait ??= new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        this.drainWait = undefined;
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
    return this.drainWait;
  }

  /** Runs one operation and answers it; reading pauses while the peer has more outstanding than
   * the negotiated window allows (unless `pauses` is false: an operation that must let a C-CANCEL in). */
  private track(
    context: NegotiatedContext,
    command: DimseCommand,
    responseField: number,
    run: () => DimseResult | Promise<DimseResult>,
    pauses = true,
    startedAt = performance.now(),
  ): void {
    const operation = (async () => {
      let result: DimseResult;
      try {
        result = await run();
      } catch (error) {
        result = resultFromError(error);
      }
      // An operation cut with its association (shutdown, abort) was never answered: not counted.
      if (!this.respond(context, command, responseField, result)) return;
      this.observe((observer) =>
        observer.operationDone({
          commandField: command.commandField,
          sopClassUid: command.affectedSopClassUid ?? context.abstractSyntax,
          transferSyntaxUid: context.transferSyntax,
          status: result.status,
          seconds: (performance.now() - startedAt) / 1000,
        }),
      );
    })();
    const messageId = command.messageId ?? 0;
    this.operations.add(operation);
    this.outstandingIds.set(messageId, (this.outstandingIds.get(messageId) ?? 0) + 1);
    void operation.finally(() => {
      this.operations.delete(operation);
      const uses = (this.outstandingIds.get(messageId) ?? 1) - 1;
      if (uses > 0) this.outstandingIds.set(messageId, uses);
      else this.outstandingIds.delete(messageId);
      this.abortIfIdle();
    });
    if (pauses && this.operations.size >= this.operationsWindow) this.pauseUntil(operation);
  }

  /** Sends the final response; false when the association can no longer carry it. */
  private respond(context: NegotiatedContext, request: DimseCommand, responseField: number, result: DimseResult): boolean {
    this.summary.operations += 1;
    if (result.status !== Status.Success && (result.status & 0xf000) !== 0xb000) {
      this.summary.failures += 1;
      // Each of the first failures has a line; the rest are counted in the association's summary: a
      // peer sending requests beyond its window wrote 24,384 lines in 20 s (found in the hostile-peer review).
      if (this.summary.failures <= FAILURES_LOGGED) {
        this.log.warn({ status: statusHex(result.status), comment: result.errorComment === undefined ? undefined : withoutUids(result.errorComment), command: request.commandField }, 'operation failed');
      }
      if (this.summary.failures === FAILURES_LOGGED) this.log.warn({ ...this.summaryFields() }, `${FAILURES_LOGGED} operations of this association failed: the next failures are counted in its summary, not logged each`);
    }
    if (this.phase !== 'established' && this.phase !== 'releasing') return false;
    // The affected UIDs of a response are optional and, when present, the request's (PS3.7 9.1,
    // "U(=)"): one the request spelled wrong is left out rather than echoed, since no peer can take it.
    const { affectedSopClassUid, affectedSopInstanceUid } = request;
    const response: DimseCommand = {
      commandField: responseField,
      messageIdBeingRespondedTo: request.messageId ?? 0,
      commandDataSetType: result.identifier ? DATASET_PRESENT : NO_DATASET,
      status: result.status,
    };
    if (affectedSopClassUid === undefined) response.affectedSopClassUid = context.abstractSyntax;
    else if (isWellFormedUid(affectedSopClassUid)) response.affectedSopClassUid = affectedSopClassUid;
    if (affectedSopInstanceUid !== undefined && isWellFormedUid(affectedSopInstanceUid)) response.affectedSopInstanceUid = affectedSopInstanceUid;
    if (result.errorComment !== undefined && result.status !== Status.Success) response.errorComment = result.errorComment;
    if (result.offendingElements) response.offendingElements = result.offendingElements;
    if (result.suboperations) {
      // PS3.4 C.4.2.1.6, C.4.3.1.6: a final response carries Number of Remaining Sub-operations only
      // when it is a Cancel; Success, Warning and Failure shall not.
      const counts = countFields(result.suboperations);
      if (result.status !== Status.Cancel) delete counts.numberOfRemainingSuboperations;
      Object.assign(response, counts);
    }
    const pdus = encodePData(context.id, true, encodeCommand(response), this.peerMaxPduLength);
    if (result.identifier) pdus.push(...encodePData(context.id, false, result.identifier, this.peerMaxPduLength));
    this.writeMessage(pdus.length === 1 ? (pdus[0] as Buffer) : Buffer.concat(pdus));
    return true;
  }

  private async whenOperationsDone(): Promise<void> {
    while (this.operations.size > 0) await Promise.allSettled([...this.operations]);
  }

  private pauseUntil(promise: Promise<unknown>): void {
    this.pauses += 1;
    if (this.pauses === 1) this.socket.pause();
    void promise
      .catch(() => undefined)
      .finally(() => {
        this.pauses -= 1;
        if (this.pauses === 0 && this.phase !== 'closed') this.socket.resume();
      });
  }

  private requireEstablished(): void {
    if (this.phase !== 'established') throw new PduError('P-DATA-TF outside an established association', AbortReason.UnexpectedPdu);
  }

  /** PS3.8 9.3.5.1 and PS3.7 6.3.1: every fragment of a message comes on one presentation context. */
  private requireCommandContext(id: number): void {
    this.requireContext(id);
    if (this.commandContextId === undefined) this.commandContextId = id;
    else if (this.commandContextId !== id) {
      throw new PduError(`command fragment on context ${id}, the command began on ${this.commandContextId}`, AbortReason.InvalidPduParameterValue);
    }
  }

  /** PS3.8 9.3.5.1 and PS3.7 6.3.1: a dataset fragment, even an empty last one, belongs to the message
   * whose command came before it, on that command's presentation context. */
  private requireDatasetContext(id: number): IncomingDataset {
    const incoming = this.incoming;
    if (!incoming) throw new PduError('dataset fragment with no command before it', AbortReason.UnexpectedPduParameter);
    if (incoming.context.id !== id) {
      throw new PduError(`dataset fragment on context ${id}, its command came on ${incoming.context.id}`, AbortReason.InvalidPduParameterValue);
    }
    return incoming;
  }

  private requireContext(id: number): NegotiatedContext {
    const context = this.contexts.get(id);
    if (!context) throw new PduError(`PDV on presentation context ${id}, which was not accepted`, AbortReason.InvalidPduParameterValue);
    return context;
  }

  /** Metrics never break an association. */
  private observe(report: (observer: DimseObserver) => void): void {
    observeSafely(this.options.observer, report, this.log);
  }

  private summaryFields() {
    return {
      operations: this.summary.operations,
      failures: this.summary.failures,
      bytes: this.summary.bytesReceived,
      ms: Date.now() - this.startedAt,
    };
  }
}


/** PS3.7 9.3.4.2: the sub-operation counts of a C-MOVE or C-GET response. */
function countFields(counts: SuboperationCounts): Partial<DimseCommand> {
  return {
    numberOfRemainingSuboperations: counts.remaining,
    numberOfCompletedSuboperations: counts.completed,
    numberOfFailedSuboperations: counts.failed,
    numberOfWarningSuboperations: counts.warning,
  };
}

