/**
 * The contract between the network layer and the services behind it (pynetdicom's handlers, Orthanc's
 * request handlers): one method per service. The network layer knows nothing of storage or indexes.
 * A handler that throws DimseStatusError answers with that status; any other exception answers
 * 0x0110 processing failure; neither ends the association.
 */
import type { Logger } from '../observability/logger.js';
import type { DimseResult } from './status.js';

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

export interface ServiceHandlers {
  echo(association: AssociationInfo): DimseResult | Promise<DimseResult>;
  store(request: StoreRequest): DatasetSink;
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
