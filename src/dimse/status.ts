/** DIMSE status codes (PS3.7 Annex C; the C-STORE ones in PS3.4 B.2.3). */
export const Status = {
  Success: 0x0000,
  /** PS3.4 B.2.3: coercion of data elements. */
  WarningCoercion: 0xb000,
  /** PS3.4 B.2.3: data set does not match SOP class. */
  WarningDatasetMismatch: 0xb007,
  /** PS3.4 B.2.3: elements discarded. */
  WarningElementsDiscarded: 0xb006,
  /** PS3.4 B.2.3 (C-STORE) and C.4.1.1.4 (C-FIND): refused, out of resources. */
  OutOfResources: 0xa700,
  /** PS3.4 C.4.2.1.5 and C.4.3.1.4 (C-MOVE, C-GET): refused, out of resources, unable to calculate the
   * number of matches (0xA700 is not theirs). */
  OutOfResourcesMatches: 0xa701,
  /** PS3.4 B.2.3: error, data set does not match SOP class. */
  DatasetDoesNotMatchSopClass: 0xa900,
  /** PS3.4 B.2.3: error, cannot understand (0xC000–0xCFFF). */
  CannotUnderstand: 0xc000,
  /** PS3.7 C.4.2 */
  ProcessingFailure: 0x0110,
  NoSuchSopClass: 0x0118,
  ClassInstanceConflict: 0x0119,
  SopClassNotSupported: 0x0122,
  NotAuthorized: 0x0124,
  DuplicateInvocation: 0x0210,
  UnrecognizedOperation: 0x0211,
  MistypedArgument: 0x0212,
  Cancel: 0xfe00,
  Pending: 0xff00,
  /** C-FIND pending: one or more optional keys were not supported for matching (PS3.4 C.4.1.1.4). */
  PendingOptionalKeysUnsupported: 0xff01,
} as const;

/** The outcome of one DIMSE operation, as it goes into the response's command set. */
export interface DimseResult {
  status: number;
  errorComment?: string;
  offendingElements?: number[];
  /** C-MOVE and C-GET: the sub-operation counts (PS3.7 9.1.4.1.6–9). */
  suboperations?: SuboperationCounts;
  /** A data set that goes with the final response (C-MOVE and C-GET: the Failed SOP Instance UID
   * List), encoded in the request's transfer syntax. */
  identifier?: Buffer;
}

export interface SuboperationCounts {
  remaining: number;
  completed: number;
  failed: number;
  warning: number;
}

/**
 * Thrown by a service handler to answer with a given status (the dcm4che way): the association turns
 * it into the response and carries on. Any other exception becomes 0x0110 processing failure.
 */
export class DimseStatusError extends Error {
  constructor(
    readonly status: number,
    readonly errorComment: string,
  ) {
    super(errorComment);
    this.name = 'DimseStatusError';
  }
}

export function resultFromError(error: unknown, fallbackStatus: number = Status.ProcessingFailure): DimseResult {
  if (error instanceof DimseStatusError) return { status: error.status, errorComment: error.errorComment };
  const message = error instanceof Error ? error.message : String(error);
  return { status: fallbackStatus, errorComment: message };
}

/** PS3.7 C.1.3, PS3.4 B.2.3: 0x0001 and 0xBxxx are warnings: the operation was performed. So are
 * the general 0x0107 (Attribute List Error) and 0x0116 (Attribute Value Out of Range) of PS3.7 C.4,
 * which some SCPs answer a C-STORE with after storing the object. */
export function isWarning(status: number): boolean {
  return status === 0x0001 || status === 0x0107 || status === 0x0116 || (status & 0xf000) === 0xb000;
}

export function statusHex(status: number): string {
  return `0x${status.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Gantry's own codes in the C-STORE "Cannot understand" range (PS3.4 B.2.3: 0xCxxx). */
export const StoreFailure = {
  /** The dataset cannot be parsed in its transfer syntax. */
  DatasetUnreadable: 0xc000,
  /** StudyInstanceUID or SeriesInstanceUID is missing or empty: the object has no place in the index. */
  MissingHierarchyUid: 0xc001,
  /** The dataset's SOPInstanceUID differs from the command's AffectedSOPInstanceUID. */
  SopInstanceUidMismatch: 0xc002,
} as const;
