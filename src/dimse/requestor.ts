/**
 * One association on the requestor side (PS3.8 9.2, seen from an SCU): connect, A-ASSOCIATE-RQ,
 * C-STORE requests whose datasets stream from a byte source in P-DATA-TF PDUs of the negotiated size,
 * responses matched to their requests, release and abort. With an asynchronous operations window
 * (PS3.7 D.3.3.3) granted by the peer, up to that many requests are outstanding at once.
 *
 * Knows nothing of storage or the index: the caller says what to send and gets the DIMSE result.
 */
import { GatheredBytes } from './gathered-bytes.js';
import { connect, type Socket } from 'node:net';
import type { Logger } from '../observability/logger.js';
import { CommandError, CommandField, DATASET_PRESENT, decodeCommand, encodeCommand, type DimseCommand } from './command.js';
import {
  AbortReason,
  AbortSource,
  ContextResult,
  decodeAbort,
  decodeAssociateAccept,
  decodeAssociateReject,
  DICOM_APPLICATION_CONTEXT,
  encodeAbort,
  encodeAssociateRequest,
  encodePData,
  encodeReleaseRequest,
  encodeReleaseResponse,
  PduError,
  PduType,
  type AssociateReject,
  type RequestedContext,
} from './pdu.js';
import { PduStream, type PduStreamSink } from './pdu-stream.js';
import { sendDatasetPdus, type DatasetBody } from './dataset-pdus.js';

export type { DatasetBody };

/** The longest response command set read (a C-STORE-RSP is a few hundred bytes). */
const MAX_RESPONSE_COMMAND_LENGTH = 64 * 1024;
import { isWarning, Status, statusHex, type DimseResult } from './status.js';
import { trimUid } from '../dicom/values.js';

export interface RequestorOptions {
  host: string;
  port: number;
  calledAeTitle: string;
  callingAeTitle: string;
  /** Presentation contexts to propose; ids are odd numbers 1–255 (PS3.8 9.3.2.2). */
  contexts: RequestedContext[];
  implementationClassUid: string;
  implementationVersionName: string;
  /** The largest PDU Gantry receives (announced in the request). */
  maxPduLength: number;
  /** The asynchronous operations window to propose; 1 proposes none. */
  maxOperations: number;
  connectTimeoutMs: number;
  /** How long to wait for A-ASSOCIATE-AC/RJ and for A-RELEASE-RP (the ARTIM timer). */
  artimMs: number;
  /** How long one request may wait for its response. */
  responseTimeoutMs: number;
  log: Logger;
  /** Ends the opening at once when aborted (a C-CANCEL of the C-MOVE it is opened for), instead of
   * after up to connectTimeoutMs and artimMs of a destination that does not answer. */
  signal?: AbortSignal;
}

/** What every association Gantry requests takes from its config (forwarding, C-MOVE). */
export interface ScuSettings {
  implementationClassUid: string;
  implementationVersionName: string;
  maxPduLength: number;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

/** Opens an association to `peer` for sending stored objects on `contexts`. */
export function openStoreAssociation(
  peer: { aeTitle: string; host: string; port: number },
  callingAeTitle: string,
  contexts: RequestedContext[],
  maxOperations: number,
  settings: ScuSettings,
  log: Logger,
  signal?: AbortSignal,
): Promise<RequestorAssociation> {
  return RequestorAssociation.open({
    ...(signal ? { signal } : {}),
    host: peer.host,
    port: peer.port,
    calledAeTitle: peer.aeTitle,
    callingAeTitle,
    contexts,
    implementationClassUid: settings.implementationClassUid,
    implementationVersionName: settings.implementationVersionName,
    maxPduLength: settings.maxPduLength,
    maxOperations,
    connectTimeoutMs: settings.connectTimeoutMs,
    artimMs: settings.connectTimeoutMs,
    responseTimeoutMs: settings.responseTimeoutMs,
    log,
  });
}

/** The A-ABORT of Gantry's own choosing: service user, no reason (PS3.8 9.3.8). */
const BY_GANTRY = { source: AbortSource.ServiceUser, reason: AbortReason.NotSpecified } as const;

/** Why an association could not be used: the operations on it did not complete. */
export class AssociationError extends Error {
  constructor(
    message: string,
    /** What kind of failure, for metrics and retry decisions. */
    readonly kind: 'connect' | 'rejected' | 'aborted' | 'timeout' | 'protocol' | 'closed',
    readonly reject?: AssociateReject,
    /** For a failed request: whether any of it had gone on the wire (false: it was never sent). */
    readonly requestSent = false,
  ) {
    super(message);
    this.name = 'AssociationError';
  }

  /** The same failure, as seen by a request that was (or was not) on the wire. */
  forRequest(sent: boolean): AssociationError {
    return new AssociationError(this.message, this.kind, this.reject, sent);
  }
}

export interface AcceptedPresentationContext {
  id: number;
  abstractSyntax: string;
  transferSyntax: string;
}

export interface StoreResult extends DimseResult {
  /** The response's status as 0xXXXX, for logs and the outbox. */
  statusText: string;
}

interface Outstanding {
  /** What the request was about: a response that names other UIDs answers some other request. */
  sopClassUid: string;
  sopInstanceUid: string;
  resolve(result: StoreResult): void;
  onResponse: ((result: StoreResult) => void) | undefined;
  reject(error: Error): void;
  /** The whole request is on the wire: its answer is due (the response timer counts it). */
  answerDue: boolean;
}


type Phase = 'connecting' | 'requesting' | 'established' | 'releasing' | 'closed';

export class RequestorAssociation implements PduStreamSink {
  private readonly pdus = new PduStream(this);
  private phase: Phase = 'connecting';
  private socket!: Socket;
  private accepted = new Map<number, AcceptedPresentationContext>();
  /** Results of the contexts the peer did not accept (PS3.8 Table 9-18), by id. */
  private refused = new Map<number, number>();
  private peerMaxPduLength = 0;
  private window = 1;
  private nextMessageId = 1;
  private readonly outstanding = new Map<number, Outstanding>();
  /** Requests wait here for the wire (one message at a time) and for a place in the window. */
  private sending: Promise<void> = Promise.resolve();
  private windowWaiters: Array<() => void> = [];
  private readonly command = new GatheredBytes();
  private establishment: { resolve(): void; reject(error: Error): void } | undefined;
  private releaseDone: { resolve(): void; reject(error: Error): void } | undefined;
  private artimTimer: NodeJS.Timeout | undefined;
  /** Runs while answers are due (armResponseTimer). */
  private responseTimer: NodeJS.Timeout | undefined;
  /** Requests whose whole dataset is on the wire and not yet answered. */
  private answersDue = 0;
  private failure: AssociationError | undefined;

  private constructor(private readonly options: RequestorOptions) {}

  /** Connects and negotiates; rejects with AssociationError when no association results. */
  static async open(options: RequestorOptions): Promise<RequestorAssociation> {
    const association = new RequestorAssociation(options);
    const { signal } = options;
    signal?.throwIfAborted();
    const cancel = () => association.abort(new AssociationError('the association was given up while it was being opened', 'aborted'));
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      await association.establish();
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
    return association;
  }

  /** The contexts the peer accepted, by id. */
  get contexts(): ReadonlyMap<number, AcceptedPresentationContext> {
    return this.accepted;
  }

  /** The asynchronous operations window in use (1: one request at a time). */
  get operationsWindow(): number {
    return this.window;
  }

  get isUsable(): boolean {
    return this.phase === 'established';
  }

  /** Why the association ended, if it ended other than by release. */
  get failureReason(): AssociationError | undefined {
    return this.failure;
  }

  /**
   * Why the peer accepted no context for an abstract syntax (PS3.8 Table 9-18): the abstract syntax
   * itself (result 3 everywhere), its transfer syntaxes (result 4, or 3 and 4), or for no stated
   * reason (1 user rejection, 2 no reason: perhaps transient). Only the contexts that proposed one of
   * `transferSyntaxes` count, when given: another accepted context of the same class cannot carry the
   * object. Undefined when none was proposed.
   */
  refusalOf(abstractSyntax: string, transferSyntaxes?: readonly string[]): 'abstract-syntax' | 'transfer-syntax' | 'other' | undefined {
    const results = this.options.contexts
      .filter((context) => context.abstractSyntax === abstractSyntax && (!transferSyntaxes || context.transferSyntaxes.some((syntax) => transferSyntaxes.includes(syntax))))
      .map((context) => this.refused.get(context.id));
    if (results.length === 0) return undefined;
    if (results.every((result) => result === ContextResult.AbstractSyntaxNotSupported)) return 'abstract-syntax';
    const permanent: ReadonlyArray<number | undefined> = [ContextResult.AbstractSyntaxNotSupported, ContextResult.TransferSyntaxesNotSupported];
    if (results.every((result) => permanent.includes(result))) return 'transfer-syntax';
    return 'other';
  }

  /** The accepted context for an abstract syntax whose transfer syntax is one of `transferSyntaxes`,
   * in their order of preference. */
  contextFor(abstractSyntax: string, transferSyntaxes: readonly string[]): AcceptedPresentationContext | undefined {
    for (const syntax of transferSyntaxes) {
      for (const context of this.accepted.values()) {
        if (context.abstractSyntax === abstractSyntax && context.transferSyntax === syntax) return context;
      }
    }
    return undefined;
  }

  private establish(): Promise<void> {
    const { options } = this;
    return new Promise<void>((resolve, reject) => {
      this.establishment = { resolve, reject };
      const socket = connect({ host: options.host, port: options.port, noDelay: true });
      this.socket = socket;
      socket.setNoDelay(true);
      const connectTimer = setTimeout(
        () => this.fail(new AssociationError(`no connection to ${options.host}:${options.port} within ${options.connectTimeoutMs} ms`, 'timeout')),
        options.connectTimeoutMs,
      );
      socket.once('connect', () => {
        clearTimeout(connectTimer);
        this.phase = 'requesting';
        this.startArtim('no A-ASSOCIATE-AC or -RJ');
        socket.write(
          encodeAssociateRequest({
            protocolVersion: 1,
            calledAeTitle: options.calledAeTitle,
            callingAeTitle: options.callingAeTitle,
            applicationContext: DICOM_APPLICATION_CONTEXT,
            presentationContexts: options.contexts,
            userInformation: {
              maxPduLength: options.maxPduLength,
              implementationClassUid: options.implementationClassUid,
              implementationVersionName: options.implementationVersionName,
              ...(options.maxOperations > 1 ? { asyncOperations: { maxOperationsInvoked: options.maxOperations, maxOperationsPerformed: 1 } } : {}),
              roleSelections: [],
              extendedNegotiations: [],
            },
          }),
        );
      });
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.on('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(connectTimer);
        const kind = this.phase === 'connecting' ? 'connect' : 'closed';
        this.fail(new AssociationError(`${options.host}:${options.port}: ${error.code ?? error.message}`, kind));
      });
      socket.on('close', () => {
        clearTimeout(connectTimer);
        this.fail(new AssociationError('the peer closed the connection', 'closed'));
      });
    });
  }

  // --- requests ------------------------------------------------------------------------------

  /**
   * Sends a C-STORE request (PS3.7 9.1.1) with its dataset and resolves with the response. Requests
   * go out in the order of the calls; with a window, the next starts before earlier ones answer.
   * `onResponse` runs synchronously when the response arrives, before any further request goes out;
   * a Success or warning that arrives before the whole dataset was sent, once it has been (never if it
   * cannot be).
   */
  store(
    context: AcceptedPresentationContext,
    sopInstanceUid: string,
    body: DatasetBody,
    options: {
      priority?: number;
      onResponse?: (result: StoreResult) => void;
      /** A C-STORE sub-operation of a C-MOVE carries who asked for it (PS3.7 9.1.1.1.8–9). */
      moveOriginator?: { aeTitle: string; messageId: number };
      /** Asked when the request's turn on the wire comes (it may have waited for the window): false
       * leaves it unsent, failed as never sent, and the association goes on. */
      stillWanted?: () => boolean;
    } = {},
  ): Promise<StoreResult> {
    if (this.phase !== 'established') return Promise.reject(this.failure ?? new AssociationError('the association is not established', 'closed'));
    const messageId = this.takeMessageId();
    const command: DimseCommand = {
      commandField: CommandField.CStoreRq,
      messageId,
      priority: options.priority ?? 0,
      commandDataSetType: DATASET_PRESENT,
      affectedSopClassUid: context.abstractSyntax,
      affectedSopInstanceUid: sopInstanceUid,
      ...(options.moveOriginator ? { moveOriginatorAeTitle: options.moveOriginator.aeTitle, moveOriginatorMessageId: options.moveOriginator.messageId } : {}),
    };
    // A Success or warning answered before the whole dataset went out is told to onResponse (a durable
    // confirmation) only once it has: if the rest cannot be sent, the destination cannot have stored it.
    let datasetSent = false;
    let earlySuccess: StoreResult | undefined;
    const onResponse = options.onResponse;
    const confirm = onResponse
      ? (result: StoreResult) => {
          if (datasetSent || !(result.status === Status.Success || isWarning(result.status))) onResponse(result);
          else earlySuccess = result;
        }
      : undefined;
    let pending!: Outstanding;
    const response = new Promise<StoreResult>((resolve, reject) => {
      pending = { sopClassUid: context.abstractSyntax, sopInstanceUid, resolve, reject, onResponse: confirm, answerDue: false };
    });
    let onWire = false;
    let withdrawn = false;
    const begin = (): Promise<void> => {
      if (this.phase !== 'established') throw this.failure ?? new AssociationError('the association ended', 'closed');
      if (options.stillWanted && !options.stillWanted()) {
        withdrawn = true;
        throw new AssociationError('the request was withdrawn before it was sent', 'closed');
      }
      this.outstanding.set(messageId, pending);
      onWire = true;
      return this.sendRequest(context.id, command, body);
    };
    const sent = this.sending.then(async () => {
      await this.inWindow(begin);
      datasetSent = true;
      // Before the next request goes out: it waits for this one's dataset (this.sending).
      if (earlySuccess) onResponse?.(earlySuccess);
      // The peer answers once it has the whole dataset: from now on an answer is due.
      if (this.outstanding.has(messageId)) {
        pending.answerDue = true;
        this.answersDue += 1;
        if (!this.responseTimer) this.armResponseTimer();
      }
    });
    this.sending = sent.catch(() => undefined);
    sent.catch((error: Error) => {
      const failure =
        error instanceof AssociationError ? error : new AssociationError(`cannot send the dataset: ${(error as NodeJS.ErrnoException).code ?? error.message}`, 'aborted');
      // Not yet on the wire: only this request fails. Part-way: the peer waits mid-message, so the
      // association is unusable.
      if (!this.outstanding.has(messageId)) pending.reject(failure.forRequest(onWire));
      // A request its caller withdrew never began: the association is as usable as before.
      if (!withdrawn) this.abort(failure);
    });
    // Settles once the request is done with its body too (a peer may answer early): the caller may
    // then reuse the body's memory. An early answer whose dataset then could not be sent whole is not
    // the outcome: a peer that said Success before it had the dataset cannot have stored it.
    return response.then(
      async (result) => {
        const failed = await sent.then(
          () => undefined,
          (error: unknown) => error,
        );
        if (failed !== undefined && (result.status === Status.Success || isWarning(result.status))) {
          throw new AssociationError('the peer answered before the whole dataset was sent, which then could not be', 'aborted').forRequest(true);
        }
        return result;
      },
      async (error: unknown) => {
        await sent.catch(() => undefined);
        throw error;
      },
    );
  }

  private takeMessageId(): number {
    const id = this.nextMessageId;
    this.nextMessageId = id >= 0xffff ? 1 : id + 1;
    return id;
  }

  /**
   * Runs `begin` once fewer than `window` sent requests wait for their response (or the association
   * ended: `begin` then throws). When the window is full, `begin` runs synchronously in the handling
   * of the response that frees a place, so the next request is on the wire before the promise
   * continuations of the answered one (its caller reading files ahead, say) take the event loop:
   * measured on the forwarding bench, those put 85 µs (median) between a response and the next
   * request, and the destination waited for them.
   */
  private inWindow(begin: () => Promise<void>): Promise<void> {
    if (this.phase !== 'established' || this.outstanding.size < this.window) return begin();
    return new Promise<void>((resolve, reject) => {
      const waiter = () => {
        if (this.phase === 'established' && this.outstanding.size >= this.window) {
          this.windowWaiters.push(waiter);
          return;
        }
        // Never throws into the response's handling (the PDU parser would take it for a protocol error).
        try {
          begin().then(resolve, reject);
        } catch (error) {
          reject(error as Error);
        }
      };
      this.windowWaiters.push(waiter);
    });
  }

  /** Writes the command and, when the body is in memory, the dataset's first PDUs in one go (one
   * system call instead of two); the rest of the dataset follows as the socket takes it. */
  private sendRequest(contextId: number, command: DimseCommand, body: DatasetBody): Promise<void> {
    this.socket.cork();
    try {
      this.writeAll(encodePData(contextId, true, encodeCommand(command), this.peerMaxPduLength));
      return this.sendDataset(contextId, body);
    } finally {
      this.socket.uncork();
    }
  }

  private sendDataset(contextId: number, body: DatasetBody): Promise<void> {
    return sendDatasetPdus(
      {
        write: (buffers) => this.writeAll(buffers),
        drained: () => this.drained(this.options.responseTimeoutMs),
        checkUsable: () => {
          if (this.phase !== 'established') throw this.failure ?? new AssociationError('the association ended', 'closed');
        },
      },
      contextId,
      body,
      this.peerMaxPduLength,
    );
  }

  /** Writes PDUs in one go (Nagle is off: one write per PDU group). False: the socket is full. */
  private writeAll(buffers: Buffer[]): boolean {
    if (buffers.length === 1) return this.socket.write(buffers[0] as Buffer);
    this.socket.cork();
    let ok = true;
    for (const buffer of buffers) ok = this.socket.write(buffer) && ok;
    this.socket.uncork();
    return ok;
  }

  /** Resolves when the socket takes more; a peer that stops reading for `timeoutMs` is aborted. */
  private drained(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        reject(new AssociationError(`the peer read nothing for ${timeoutMs} ms`, 'timeout'));
      }, timeoutMs);
      timer.unref();
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  // --- release and abort --------------------------------------------------------------------

  /** Waits for the outstanding responses, then releases (PS3.8 7.2). */
  async release(): Promise<void> {
    await this.sending;
    while (this.outstanding.size > 0 && this.phase === 'established') {
      await new Promise<void>((resolve) => this.windowWaiters.push(resolve));
    }
    if (this.phase !== 'established') return;
    this.phase = 'releasing';
    await new Promise<void>((resolve, reject) => {
      this.releaseDone = { resolve, reject };
      this.socket.write(encodeReleaseRequest());
      this.startArtim('no A-RELEASE-RP');
    }).catch(() => undefined);
    this.socket.destroy();
  }

  /** Aborts (A-ABORT, of service-user source unless `signal` says otherwise) and fails what is outstanding. */
  abort(error: AssociationError = new AssociationError('aborted by Gantry', 'aborted'), signal: { source: number; reason: number } = BY_GANTRY): void {
    if (this.phase === 'closed') return;
    if (this.phase === 'connecting') {
      this.fail(error);
      return;
    }
    // The A-ABORT goes out after what is buffered; the connection is cut once it is written, or after
    // ARTIM if the peer reads nothing.
    const socket = this.socket;
    socket.end(encodeAbort(signal));
    setTimeout(() => socket.destroy(), this.options.artimMs).unref();
    this.fail(error, false);
  }

  private fail(error: AssociationError, destroy = true): void {
    if (this.phase === 'closed') return;
    const wasReleasing = this.phase === 'releasing';
    this.phase = 'closed';
    // A peer that closes instead of answering A-RELEASE-RQ has still answered everything.
    if (!wasReleasing) this.failure = error;
    this.stopArtim();
    if (destroy) this.socket.destroy();
    this.establishment?.reject(error);
    this.establishment = undefined;
    if (wasReleasing) this.releaseDone?.resolve();
    this.stopResponseTimer();
    this.answersDue = 0;
    for (const [id, pending] of this.outstanding) {
      pending.reject(error.forRequest(true));
      this.outstanding.delete(id);
    }
    for (const wake of this.windowWaiters.splice(0)) wake();
  }

  /**
   * The response timer: the peer must answer within responseTimeoutMs of the last answer (or of the
   * first dataset it has whole). Timed per request, a request in the asynchronous window counted the
   * time the peer spent on the ones before it (PS3.7 D.3.3.3 lets it work one at a time): a slow but
   * healthy destination was aborted, sent everything again and had instances dead-lettered (found in
   * the forward review).
   */
  private armResponseTimer(): void {
    this.responseTimer = setTimeout(() => {
      this.abort(new AssociationError(`no C-STORE response within ${this.options.responseTimeoutMs} ms`, 'timeout'));
    }, this.options.responseTimeoutMs);
    this.responseTimer.unref();
  }

  private stopResponseTimer(): void {
    if (this.responseTimer) clearTimeout(this.responseTimer);
    this.responseTimer = undefined;
  }

  private startArtim(what: string): void {
    this.stopArtim();
    this.artimTimer = setTimeout(() => this.fail(new AssociationError(`${what} within ${this.options.artimMs} ms`, 'timeout')), this.options.artimMs);
    this.artimTimer.unref();
  }

  private stopArtim(): void {
    if (this.artimTimer) clearTimeout(this.artimTimer);
    this.artimTimer = undefined;
  }

  // --- socket input ------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.phase === 'closed') return;
    try {
      this.pdus.push(chunk);
    } catch (error) {
      const message = error instanceof PduError || error instanceof CommandError ? error.message : `internal error: ${(error as Error).message}`;
      this.options.log.warn({ why: message }, 'protocol error from the peer: association aborted');
      // PS3.8 9.2.3, AA-8: an invalid or unexpected PDU is answered by an A-ABORT of service-provider
      // source with its reason (as the listener does), so that the peer can tell it from Gantry's own
      // abort (found in the upper layer review: both were 0/0).
      this.abort(new AssociationError(`protocol error: ${message}`, 'protocol'), error instanceof PduError ? { source: AbortSource.ServiceProvider, reason: error.abortReason } : BY_GANTRY);
    }
  }

  controlPdu(type: number, body: Buffer): void {
    switch (type) {
      case PduType.AssociateAc:
        if (this.phase !== 'requesting') throw new PduError('unexpected A-ASSOCIATE-AC', AbortReason.UnexpectedPdu);
        this.onAccept(body);
        return;
      case PduType.AssociateRj: {
        if (this.phase !== 'requesting') throw new PduError('unexpected A-ASSOCIATE-RJ', AbortReason.UnexpectedPdu);
        const reject = decodeAssociateReject(body);
        this.fail(
          new AssociationError(`association rejected (result ${reject.result}, source ${reject.source}, reason ${reject.reason})`, 'rejected', reject),
        );
        return;
      }
      case PduType.ReleaseRp:
        if (this.phase !== 'releasing') throw new PduError('unexpected A-RELEASE-RP', AbortReason.UnexpectedPdu);
        this.phase = 'closed';
        this.stopArtim();
        this.releaseDone?.resolve();
        return;
      case PduType.ReleaseRq:
        this.onPeerRelease();
        return;
      case PduType.Abort: {
        const abort = decodeAbort(body);
        this.fail(new AssociationError(`the peer aborted the association (source ${abort.source}, reason ${abort.reason})`, 'aborted'));
        return;
      }
      default:
        throw new PduError(`unexpected PDU type 0x${type.toString(16)} for an association requestor`, AbortReason.UnexpectedPdu);
    }
  }

  /**
   * PS3.8 7.2: either user may release. Established (state table AR-2, AR-4): the release is answered
   * with A-RELEASE-RP, and what was outstanding fails as ended by the peer (sent again later). While
   * Gantry releases too, a release collision (AR-8, then AR-9 for the requestor): the A-RELEASE-RP
   * goes out, and Gantry's own release still waits for the peer's.
   */
  private onPeerRelease(): void {
    if (this.phase === 'releasing') {
      this.socket.write(encodeReleaseResponse());
      return;
    }
    if (this.phase !== 'established') throw new PduError('unexpected A-RELEASE-RQ', AbortReason.UnexpectedPdu);
    const socket = this.socket;
    socket.end(encodeReleaseResponse());
    // The acceptor closes the connection once it has the answer (PS3.8 AR-4, Sta13); ARTIM bounds it.
    setTimeout(() => socket.destroy(), this.options.artimMs).unref();
    this.fail(new AssociationError('the peer released the association', 'closed'), false);
  }

  private onAccept(body: Buffer): void {
    const accept = decodeAssociateAccept(body);
    this.stopArtim();
    const proposed = new Map(this.options.contexts.map((context) => [context.id, context]));
    for (const context of accept.presentationContexts) {
      const asked = proposed.get(context.id);
      if (!asked) continue;
      if (context.result !== ContextResult.Acceptance) {
        this.refused.set(context.id, context.result);
        continue;
      }
      // PS3.8 9.3.3.2: the accepted syntax must be one that was proposed. Skipped, the association
      // opened with no usable context and every item lost an attempt as the object's fault.
      if (!asked.transferSyntaxes.includes(context.transferSyntax)) {
        throw new PduError(`the peer accepted presentation context ${context.id} in transfer syntax ${context.transferSyntax}, which was not proposed for it`, AbortReason.InvalidPduParameterValue);
      }
      this.accepted.set(context.id, { id: context.id, abstractSyntax: asked.abstractSyntax, transferSyntax: context.transferSyntax });
    }
    this.peerMaxPduLength = accept.userInformation.maxPduLength;
    if (this.peerMaxPduLength !== 0 && this.peerMaxPduLength < 1024) {
      throw new PduError(`the peer's maximum PDU length ${this.peerMaxPduLength} is too small`, AbortReason.InvalidPduParameterValue);
    }
    const granted = accept.userInformation.asyncOperations?.maxOperationsInvoked;
    // 0 is "unlimited" (PS3.7 D.3.3.3.1): Gantry still keeps to what it proposed.
    this.window = this.options.maxOperations > 1 && granted !== undefined ? (granted === 0 ? this.options.maxOperations : Math.min(granted, this.options.maxOperations)) : 1;
    this.phase = 'established';
    this.establishment?.resolve();
    this.establishment = undefined;
  }

  pdvData(_contextId: number, isCommand: boolean, data: Buffer): void {
    if (this.phase !== 'established' && this.phase !== 'releasing') throw new PduError('P-DATA-TF outside an established association', AbortReason.UnexpectedPdu);
    if (isCommand) {
      // A C-STORE-RSP command set is a few hundred bytes: one that never ends is a protocol error
      // (PS3.7 6.3.1), not something to buffer (the acceptor's limit is the same, association.ts).
      if (this.command.length + data.length > MAX_RESPONSE_COMMAND_LENGTH) throw new PduError('response command set longer than 64 KiB', AbortReason.InvalidPduParameterValue);
      this.command.append(data);
    }
    // Datasets in responses (none for C-STORE) are read and dropped.
  }

  pdvEnd(_contextId: number, isCommand: boolean, isLast: boolean): void {
    if (!isCommand || !isLast) return;
    this.onResponse(decodeCommand(this.command.take()));
  }

  private onResponse(command: DimseCommand): void {
    if (command.commandField !== CommandField.CStoreRsp) {
      throw new PduError(`unexpected DIMSE command 0x${command.commandField.toString(16)} on a storage association`, AbortReason.UnexpectedPduParameter);
    }
    const id = command.messageIdBeingRespondedTo ?? -1;
    const pending = this.outstanding.get(id);
    if (!pending) throw new PduError(`a C-STORE-RSP for message ${id}, which is not outstanding`, AbortReason.UnexpectedPduParameter);
    // PS3.7 9.3.1.2: the response's Affected SOP Class and Instance UIDs are optional, but when present
    // equal the request's. One that names another instance is not a confirmation of this one.
    if (
      (command.affectedSopInstanceUid && command.affectedSopInstanceUid !== trimUid(pending.sopInstanceUid)) ||
      (command.affectedSopClassUid && command.affectedSopClassUid !== trimUid(pending.sopClassUid))
    ) {
      throw new PduError(`the C-STORE-RSP for message ${id} names another SOP instance or class than its request`, AbortReason.UnexpectedPduParameter);
    }
    this.outstanding.delete(id);
    // Any answer is progress: the timer starts again for the answers still due.
    if (pending.answerDue) this.answersDue -= 1;
    this.stopResponseTimer();
    if (this.answersDue > 0) this.armResponseTimer();
    const status = command.status ?? 0xffff;
    const result: StoreResult = {
      status,
      statusText: statusHex(status),
      ...(command.errorComment !== undefined ? { errorComment: command.errorComment } : {}),
      ...(command.offendingElements !== undefined ? { offendingElements: command.offendingElements } : {}),
    };
    // The caller's synchronous handling (a durable record of the outcome) comes before the next
    // request is let through, so that no more than the window is ever unrecorded. When it throws, the
    // next request stays off the wire: the parser's handler aborts the association, and the abort
    // fails the waiting requests as never sent.
    let handled = false;
    try {
      pending.onResponse?.(result);
      handled = true;
    } finally {
      if (handled) for (const wake of this.windowWaiters.splice(0)) wake();
      pending.resolve(result);
    }
  }
}
