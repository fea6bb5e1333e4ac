/**
 * The contract between the network layer and the services behind it (pynetdicom's handlers, Orthanc's
 * request handlers): one method per service. The network layer knows nothing of storage or indexes.
 * A handler that throws DimseStatusError answers with that status; any other exception answers
 * 0x0110 processing failure; neither ends the association.
 */
import type { Logger } from '../observability/logger.js';
import type { DatasetBody } from './dataset-pdus.js';
import type { DimseResult, SuboperationCounts } from './status.js';

/** What a service may know about the association a request came on. */
export interface AssociationInfo {
  id: string;
  callingAeTitle: string;
  calledAeTitle: string;
  remoteAddress: string;
  remotePort: number;
  log: Logger;
}

export interface StoreRequest {
  association: AssociationInfo;
  messageId: number;
  priority: number;
  sopClassUid: string;
  sopInstanceUid: string;
  /** The transfer syntax of the presentation context: the encoding of the dataset that follows. */
  transferSyntaxUid: string;
  moveOriginator?: { aeTitle: string; messageId: number };
}

/** Receives one dataset as it streams in from the association. */
export interface DatasetSink {
  /** Takes the next slice of the dataset. False asks the caller to stop reading until drained. */
  write(chunk: Buffer): boolean;
  /** Resolves once the sink can take more. */
  whenDrained(): Promise<void>;
  /** The whole dataset has arrived: resolves with the outcome to answer with. */
  end(): Promise<DimseResult>;
  /** The association ended before the dataset was complete: discard it. */
  abort(): void;
}

/** A C-FIND request (PS3.7 9.1.2): its identifier, encoded in the context's transfer syntax. */
export interface FindRequest {
  association: AssociationInfo;
  messageId: number;
  /** The Query/Retrieve Information Model (the affected SOP class). */
  sopClassUid: string;
  transferSyntaxUid: string;
  identifier: Buffer;
  /** Priority (0000,0700) of the request (PS3.7 9.1.2–9.1.4: 0 MEDIUM, 1 HIGH, 2 LOW); absent: MEDIUM. */
  priority?: number;
}

/** A C-FIND match with the pending status of its response (0xFF00, or 0xFF01 when keys of the
 * request were not used for matching). */
export interface FindMatch {
  identifier: Buffer;
  status: number;
}

/** A C-MOVE request (PS3.7 9.1.4): where to, and which instances (its identifier). */
export interface MoveRequest extends FindRequest {
  moveDestination: string;
}

/** The association a C-GET runs on, as seen by its handler: C-STORE sub-operations go back on it. */
export interface StoreChannel {
  /** The accepted storage context (the requester in the SCP role) for this SOP class that carries this
   * transfer syntax, or, for an uncompressed little-endian object, the other little-endian one. */
  contextFor(sopClassUid: string, transferSyntaxUid: string): { id: number; transferSyntax: string } | undefined;
  /** Sends one C-STORE-RQ with its dataset, at `priority` (default MEDIUM), and resolves with the
   * response's status. */
  store(contextId: number, sopClassUid: string, sopInstanceUid: string, body: DatasetBody, priority?: number): Promise<DimseResult>;
}

export interface ServiceHandlers {
  echo(association: AssociationInfo): DimseResult | Promise<DimseResult>;
  store(request: StoreRequest): DatasetSink;
  /**
   * Answers a C-FIND: yields each match's identifier, encoded in the request's transfer syntax (alone:
   * pending 0xFF00, or with the pending status to give it), and stops when `signal` aborts (C-CANCEL).
   * Throwing DimseStatusError answers with that status.
   */
  find?(request: FindRequest, signal: AbortSignal): AsyncIterable<Buffer | FindMatch>;
  /**
   * Performs a C-MOVE: yields the sub-operation counts as it goes (each becomes a pending response) and
   * returns the final result with the last counts; stops when `signal` aborts (C-CANCEL).
   */
  move?(request: MoveRequest, signal: AbortSignal): AsyncGenerator<SuboperationCounts, DimseResult>;
  /** Performs a C-GET: like move, with the sub-operations sent on the request's own association. */
  get?(request: FindRequest, channel: StoreChannel, signal: AbortSignal): AsyncGenerator<SuboperationCounts, DimseResult>;
}

/** A sink that reads and discards a dataset, then answers with a fixed result: for requests that are
 * refused before their data arrives (the peer sends the data anyway). */
export class DiscardingSink implements DatasetSink {
  constructor(private readonly result: DimseResult) {}
  write(): boolean {
    return true;
  }
  whenDrained(): Promise<void> {
    return Promise.resolve();
  }
  end(): Promise<DimseResult> {
    return Promise.resolve(this.result);
  }
  abort(): void {}
}

/** Collects a small dataset (a C-FIND identifier) in memory, up to a limit, then hands it on. */
export class CollectingSink implements DatasetSink {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private tooLong = false;

  constructor(
    private readonly limit: number,
    private readonly onComplete: (dataset: Buffer) => Promise<DimseResult>,
  ) {}

  write(chunk: Buffer): boolean {
    this.length += chunk.length;
    if (this.length > this.limit) this.tooLong = true;
    else this.chunks.push(Buffer.from(chunk));
    return true;
  }

  whenDrained(): Promise<void> {
    return Promise.resolve();
  }

  end(): Promise<DimseResult> {
    if (this.tooLong) return Promise.resolve({ status: 0xc000, errorComment: `identifier longer than ${this.limit} bytes` });
    return this.onComplete(Buffer.concat(this.chunks));
  }

  abort(): void {}
}
