/**
 * What the DICOM listener reports as it works, for metrics. The network layer knows nothing of
 * Prometheus; src/observability/metrics.ts implements this.
 */

/** Why an association was rejected: a bounded label (PS3.8 Table 9-21 and Gantry's own checks). */
export type RejectLabel =
  | 'protocol_version'
  | 'application_context'
  | 'called_ae_title'
  | 'calling_ae_title'
  | 'max_pdu_length'
  | 'no_presentation_context'
  | 'local_limit';

/** One DIMSE operation answered with its final response. */
export interface OperationDone {
  /** The request's command field (PS3.7 E.1), e.g. 0x0001 for C-STORE-RQ. */
  commandField: number;
  sopClassUid: string;
  transferSyntaxUid: string;
  status: number;
  /** From the request's command set to the final response. */
  seconds: number;
}

export interface DimseObserver {
  associationAccepted(callingAeTitle: string): void;
  associationRejected(reason: RejectLabel): void;
  bytesReceived(count: number): void;
  operationDone(operation: OperationDone): void;
}
