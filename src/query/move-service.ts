/**
 * The C-MOVE SCP (PS3.4 C.4.2): the instances an identifier names, in the caller's view of the index,
 * are sent with Gantry's own C-STORE SCU to a Move Destination known from `query.moveDestinations`.
 * Research callers get the de-identified copies; source callers get the originals only when
 * `query.sourceRetrievesOriginals` allows it and the destination is marked `sourceSide` — originals
 * never go to a research destination — and the de-identified copies otherwise.
 */
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Db } from '../db/database.js';
import { encodeTextDataset } from '../dicom/dataset-encoder.js';
import { IMPLICIT_VR_LITTLE_ENDIAN } from '../dicom/transfer-syntaxes.js';
import { AssociationError, openStoreAssociation, type RequestorAssociation, type ScuSettings } from '../dimse/requestor.js';
import type { FindRequest, MoveRequest, StoreChannel } from '../dimse/services.js';
import { DimseStatusError, isWarning, Status, type DimseResult, type SuboperationCounts } from '../dimse/status.js';
import { canonicalAddress } from '../dimse/peer-address.js';
import { candidateSyntaxes, chooseContext, proposeContexts } from '../dimse/store-contexts.js';
import type { AccessAudit } from '../index/access-audit.js';
import { openStoredDataset, type StoredDataset } from '../store/stored-dataset.js';
import type { Transcoder } from '../store/transcoder.js';
import { parseQuery } from './find-service.js';
import { filePresent, FROM_BY_LEVEL, inView, MODEL_OF_SOP_CLASS, type View } from './keys.js';
import { withoutValues } from '../observability/redact.js';


/** PS3.4 C.4.2.1.5: C-MOVE statuses. */
const MoveDestinationUnknown = 0xa801;
const UnableToPerformSuboperations = 0xa702;
const IdentifierDoesNotMatchSopClass = 0xa900;
const SuboperationsCompleteWithFailures = 0xb000;
const NotAuthorized = 0x0124;

export interface MoveDestination {
  aeTitle: string;
  host: string;
  port: number;
  /** A destination on the hospital side, which may receive originals. */
  sourceSide: boolean;
}

export interface MoveServiceOptions {
  db: Db;
  storagePath: string;
  /** Converts an object for a peer that refuses its stored transfer syntax. */
  transcoder: Transcoder;
  /** The view of a caller, by its AE title and the address it connected from. */
  viewFor(callingAeTitle: string, remoteAddress: string): View | undefined;
  settings(): ScuSettings & {
    aeTitle: string;
    destinations: readonly MoveDestination[];
    sourceRetrievesOriginals: boolean;
  };
  audit?: AccessAudit;
}

/** Sub-operations no accepted presentation context could carry, by "SOP class in transfer syntax". */
type Unsendable = Map<string, number>;

interface FileToSend {
  /** As the caller's view names the instance (a de-identified UID in the research view). */
  sopInstanceUid: string;
  filePath: string;
  sopClassUid: string;
  transferSyntaxUid: string;
}

export class MoveService {
  constructor(private readonly options: MoveServiceOptions) {}

  async *move(request: MoveRequest, signal: AbortSignal): AsyncGenerator<SuboperationCounts, DimseResult> {
    const view = this.viewOf(request);
    const settings = this.options.settings();
    const destination = settings.destinations.find((known) => known.aeTitle === request.moveDestination.trim());
    if (!destination) {
      // Refused before any matching, yet a source caller's attempt is audited as every retrieve of its.
      if (view === 'source') this.auditSource(request, 'C-MOVE', undefined, 0, MoveDestinationUnknown);
      return { status: MoveDestinationUnknown, errorComment: 'the Move Destination is not in query.moveDestinations' };
    }
    const originals = view === 'source' && settings.sourceRetrievesOriginals && destination.sourceSide;
    return yield* this.retrieve(request, view, originals, 'C-MOVE', signal, async function* (this: MoveService, files, counts, failed, unsendable) {
      // Batches of at most 128 presentation contexts; what does not fit goes in the next association.
      let pending = files;
      while (pending.length > 0 && !signal.aborted) {
        const { contexts, fitting } = proposeContexts(pending);
        yield* this.sendBatch(request, destination, fitting, contexts, counts, failed, unsendable, signal);
        const sent = new Set(fitting);
        pending = pending.filter((file) => !sent.has(file));
      }
    });
  }

  /**
   * Performs a C-GET (PS3.4 C.4.3): the same instances as a C-MOVE would send, back on the request's
   * own association, on the storage contexts where the caller took the SCP role. Originals go to a
   * source caller only when `query.sourceRetrievesOriginals` allows it and the caller is itself a
   * `sourceSide` entry of query.moveDestinations coming from that entry's address: an AE title alone
   * proves nothing.
   */
  async *get(request: FindRequest, channel: StoreChannel, signal: AbortSignal): AsyncGenerator<SuboperationCounts, DimseResult> {
    const view = this.viewOf(request);
    const settings = this.options.settings();
    // Addresses in one spelling, as for query.sourceCallers (an IPv4 peer on a '::' listener, an IPv6
    // address written in upper case or with its zeros).
    const address = canonicalAddress(request.association.remoteAddress);
    const callerIsSourceSide = settings.destinations.some(
      (known) => known.sourceSide && known.aeTitle === request.association.callingAeTitle && isIP(known.host) !== 0 && canonicalAddress(known.host) === address,
    );
    const originals = view === 'source' && settings.sourceRetrievesOriginals && callerIsSourceSide;
    return yield* this.retrieve(request, view, originals, 'C-GET', signal, async function* (this: MoveService, files, counts, failed, unsendable) {
      for (const file of files) {
        if (signal.aborted) break;
        counts.remaining -= 1;
        count(counts, failed, file, await this.getOne(request, channel, file, unsendable));
        yield { ...counts };
      }
    });
  }

  private viewOf(request: FindRequest): View {
    const view = this.options.viewFor(request.association.callingAeTitle, request.association.remoteAddress);
    if (!view) throw new DimseStatusError(NotAuthorized, 'this calling AE title may not retrieve (query.sourceCallers, query.researchCallers)');
    return view;
  }

  /**
   * What C-MOVE and C-GET share: the identifier must name unique keys at its level (a retrieve names
   * what it wants, PS3.4 C.4.2.2.1); the files in the caller's view; the counts; the final status; and
   * the audit of every source-view retrieve (its keys are original values).
   */
  private async *retrieve(
    request: FindRequest,
    view: View,
    originals: boolean,
    operation: 'C-MOVE' | 'C-GET',
    signal: AbortSignal,
    send: (this: MoveService, files: FileToSend[], counts: SuboperationCounts, failed: string[], unsendable: Unsendable) => AsyncGenerator<SuboperationCounts, void>,
  ): AsyncGenerator<SuboperationCounts, DimseResult> {
    const counts: SuboperationCounts = { remaining: 0, completed: 0, failed: 0, warning: 0 };
    const failed: string[] = [];
    const unsendable: Unsendable = new Map();
    let status: number = Status.Success;
    let query: ReturnType<typeof parseQuery> | undefined;
    try {
      query = parseQuery(request, request.transferSyntaxUid === IMPLICIT_VR_LITTLE_ENDIAN ? 'implicit-le' : 'explicit-le', view, 'retrieve');
      if (!query.uniqueKeyGiven) throw new DimseStatusError(IdentifierDoesNotMatchSopClass, `a ${query.level} retrieve names the ${query.level} unique key`);
      const { files, gone } = this.filesOf(query.conditions, view, originals);
      counts.remaining = files.length;
      // PS3.4 C.4.2.3.1: an instance the identifier names that cannot be sent is a failed
      // sub-operation, not one left out: the caller found it with C-FIND and must learn it did not come.
      counts.failed = gone.length;
      failed.push(...gone);
      yield* send.call(this, files, counts, failed, unsendable);
      const withoutContext = this.reportUnsendable(request, operation, unsendable);
      if (signal.aborted) status = Status.Cancel;
      // PS3.4 C.4.2.1.5: all sub-operations failed is a refusal; some is a warning.
      else if (counts.failed > 0 && counts.completed + counts.warning === 0) status = UnableToPerformSuboperations;
      else if (counts.failed > 0 || counts.warning > 0) status = SuboperationsCompleteWithFailures;
      return {
        status,
        suboperations: { ...counts },
        ...(counts.failed > 0 ? { errorComment: `${counts.failed} sub-operation(s) failed${withoutContext > 0 ? `, ${withoutContext} with no presentation context` : ''}` } : {}),
        ...(status !== Status.Success && failed.length > 0 ? { identifier: failedList(failed, request.transferSyntaxUid) } : {}),
      };
    } catch (error) {
      status = error instanceof DimseStatusError ? error.status : Status.ProcessingFailure;
      throw error;
    } finally {
      if (view === 'source') this.auditSource(request, operation, query, counts.completed + counts.warning, status);
    }
  }

  /**
   * The sub-operations that failed because the peer accepted no presentation context that could carry
   * them (their SOP class not proposed, or refused, or none of the syntaxes Gantry can send them in):
   * one warning per retrieve naming the SOP classes and transfer syntaxes (no instance, no value), so
   * that whoever runs the peer learns what to add to it. Silent, they showed only as a failed count.
   * Returns how many there were.
   */
  private reportUnsendable(request: FindRequest, operation: 'C-MOVE' | 'C-GET', unsendable: Unsendable): number {
    let total = 0;
    for (const number of unsendable.values()) total += number;
    if (total > 0) {
      request.association.log.warn(
        { operation, ...(operation === 'C-MOVE' ? { destination: (request as MoveRequest).moveDestination } : {}), withoutContext: Object.fromEntries(unsendable) },
        'retrieve sub-operations failed: the peer accepted no presentation context for their SOP class in a transfer syntax Gantry can send',
      );
    }
    return total;
  }

  /** A source-view retrieve in the access audit (its keys are original values; never the values). */
  private auditSource(request: FindRequest, operation: 'C-MOVE' | 'C-GET', query: ReturnType<typeof parseQuery> | undefined, results: number, status: number): void {
    this.options.audit?.recordOperation(request.association, {
      operation,
      model: query?.model ?? MODEL_OF_SOP_CLASS.get(request.sopClassUid) ?? '?',
      level: query?.level ?? '?',
      results,
      status,
    });
  }

  private getOne(request: FindRequest, channel: StoreChannel, file: FileToSend, unsendable: Unsendable): Promise<'completed' | 'failed' | 'warning'> {
    return this.subOperation(request, file, unsendable, async (stored, path) => {
      // As for C-MOVE (chooseContext): the stored syntax, else little endian, decompressed if need be
      // (getscu proposes uncompressed syntaxes only). No context for any of them: the sub-operation fails.
      const context = candidateSyntaxes(stored.transferSyntaxUid)
        .map((syntax) => channel.contextFor(stored.sopClassUid, syntax))
        .find((accepted) => accepted !== undefined);
      if (!context) return undefined;
      const body = await this.options.transcoder.datasetInSyntax(path, stored, context.transferSyntax);
      return (await channel.store(context.id, stored.sopClassUid, stored.sopInstanceUid, body, subOperationPriority(request))).status;
    });
  }

  /** One C-STORE sub-operation of a stored file: `send` answers its status, undefined when no context
   * can carry it (counted in `unsendable`), or null when the association ended before it; a file that
   * cannot be read, or a send that fails, is a failed one. */
  private async subOperation(
    request: FindRequest,
    file: FileToSend,
    unsendable: Unsendable,
    send: (stored: StoredDataset, path: string) => Promise<number | undefined | null>,
  ): Promise<'completed' | 'failed' | 'warning'> {
    const path = join(this.options.storagePath, file.filePath);
    let stored: StoredDataset;
    try {
      stored = await openStoredDataset(path);
    } catch {
      return 'failed';
    }
    try {
      const status = await send(stored, path);
      if (status === null) return 'failed';
      if (status !== undefined) return outcomeOf(status);
      const key = `${stored.sopClassUid} in ${stored.transferSyntaxUid}`;
      unsendable.set(key, (unsendable.get(key) ?? 0) + 1);
      return 'failed';
    } catch (error) {
      // Without quoted values: the transcoder's thread opens the file again, and Node's message quotes
      // its path, which for a file imported in place is its user's (folders named after patients).
      if (!(error instanceof AssociationError)) request.association.log.warn({ err: withoutValues((error as Error).message) }, 'a retrieve sub-operation failed');
      return 'failed';
    } finally {
      await stored.close().catch(() => undefined);
    }
  }

  /** Sends files over one association, reporting the counts after each. */
  private async *sendBatch(
    request: MoveRequest,
    destination: MoveDestination,
    files: readonly FileToSend[],
    contexts: ReturnType<typeof proposeContexts>['contexts'],
    counts: SuboperationCounts,
    failed: string[],
    unsendable: Unsendable,
    signal: AbortSignal,
  ): AsyncGenerator<SuboperationCounts, void> {
    const settings = this.options.settings();
    let association: RequestorAssociation;
    try {
      // A C-CANCEL (or a stop) while the destination is slow to answer ends the opening at once.
      association = await openStoreAssociation(destination, settings.aeTitle, contexts, 1, settings, request.association.log, signal);
    } catch (error) {
      // PS3.4 C.4.2.3.1: sub-operations that could not be started count as failed.
      if (!signal.aborted) request.association.log.warn({ destination: destination.aeTitle, why: (error as Error).message }, 'C-MOVE: the Move Destination cannot be reached');
      counts.failed += files.length;
      counts.remaining -= files.length;
      failed.push(...files.map((file) => file.sopInstanceUid));
      return;
    }
    // A C-CANCEL (or a stop) ends the sub-operation on the wire too: awaited, one a destination did
    // not answer held the Cancel response up to forward.responseTimeoutSeconds (found in the retrieve
    // review). It counts as failed, and goes on the Failed SOP Instance UID List.
    const cancel = () => association.abort(new AssociationError('the C-MOVE was cancelled', 'aborted'));
    signal.addEventListener('abort', cancel, { once: true });
    try {
      for (const file of files) {
        if (signal.aborted) break;
        counts.remaining -= 1;
        count(counts, failed, file, await this.sendOne(association, request, file, unsendable));
        yield { ...counts };
      }
      if (!signal.aborted) await association.release();
    } finally {
      signal.removeEventListener('abort', cancel);
      association.abort();
    }
  }

  private sendOne(association: RequestorAssociation, request: MoveRequest, file: FileToSend, unsendable: Unsendable): Promise<'completed' | 'failed' | 'warning'> {
    return this.subOperation(request, file, unsendable, async (stored, path) => {
      if (!association.isUsable) return null;
      const context = chooseContext(association, stored.sopClassUid, stored.transferSyntaxUid);
      if (!context) return undefined;
      // A compressed object the destination refuses is decompressed, on the transcoder's thread.
      const body = await this.options.transcoder.datasetInSyntax(path, stored, context.transferSyntax);
      const result = await association.store(context, stored.sopInstanceUid, body, {
        moveOriginator: { aeTitle: request.association.callingAeTitle, messageId: request.messageId },
        priority: subOperationPriority(request),
      });
      return result.status;
    });
  }

  /**
   * The instances the identifier names, in the caller's view: the files to send, and the SOP Instance
   * UIDs of those without one (an original or copy deleted by retention, a copy not made).
   */
  private filesOf(conditions: ReturnType<typeof parseQuery>['conditions'], view: View, originals: boolean): { files: FileToSend[]; gone: string[] } {
    const where = conditions.map((condition) => condition.sql);
    const params = conditions.flatMap((condition) => condition.params);
    // filePresent is also what C-FIND's InstanceAvailability reads (keys.ts): ONLINE there is a file here.
    const file =
      view === 'research'
        ? { join: 'JOIN instances f ON f.id = i.id', path: 'f.deid_file_path', present: filePresent('copy', 'f') }
        : originals
          ? { join: '', path: 'i.file_path', present: filePresent('original', 'i') }
          : { join: '', path: 'i.deid_file_path', present: filePresent('copy', 'i') };
    const sql = inView(
      `SELECT i.sop_instance_uid AS sopInstanceUid, CASE WHEN ${file.present} THEN ${file.path} END AS filePath,
         i.sop_class_uid AS sopClassUid, i.transfer_syntax_uid AS transferSyntaxUid
       FROM ${FROM_BY_LEVEL.IMAGE} ${file.join} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY i.id`,
      view,
      originals ? 'original' : 'copy',
    );
    const rows = this.options.db.prepare(sql).all(...params) as Array<Omit<FileToSend, 'filePath'> & { filePath: string | null }>;
    return {
      files: rows.filter((row): row is FileToSend => row.filePath !== null),
      gone: rows.filter((row) => row.filePath === null).map((row) => row.sopInstanceUid),
    };
  }
}

/** Counts a sub-operation's outcome; a failed one's SOP Instance UID goes on the failed list. */
function count(counts: SuboperationCounts, failed: string[], file: FileToSend, outcome: 'completed' | 'failed' | 'warning'): void {
  counts[outcome] += 1;
  if (outcome === 'failed') failed.push(file.sopInstanceUid);
}

/** An explicit VR UI's length field holds 65,534 bytes at most (PS3.5 7.1.2): about 1,000 UIDs. */
const MAX_FAILED_LIST_BYTES = 65_534;
const FAILED_SOP_INSTANCE_UID_LIST = 0x00080058;

/**
 * The identifier of a final C-MOVE or C-GET response whose status is not Success: the Failed SOP
 * Instance UID List (0008,0058), PS3.4 C.4.2.1.4 and C.4.3.1.4 (found in a review: it was left out).
 * In explicit VR a list longer than the length field holds ends at the last UID that fits; implicit
 * VR's length field has 32 bits, and the list names every failed sub-operation (it was cut there too).
 */
export function failedList(uids: readonly string[], transferSyntaxUid: string): Buffer {
  const encoding = transferSyntaxUid === IMPLICIT_VR_LITTLE_ENDIAN ? 'implicit-le' : 'explicit-le';
  if (encoding === 'implicit-le') return encodeTextDataset([{ tag: FAILED_SOP_INSTANCE_UID_LIST, value: uids.join('\\') }], encoding);
  let value = '';
  for (const uid of uids) {
    const next = value === '' ? uid : `${value}\\${uid}`;
    if (Buffer.byteLength(next) > MAX_FAILED_LIST_BYTES) break;
    value = next;
  }
  return encodeTextDataset([{ tag: FAILED_SOP_INSTANCE_UID_LIST, value }], encoding);
}

/** PS3.7 9.3: the values of Priority (0000,0700). */
const MEDIUM = 0x0000;
const PRIORITIES = new Set([MEDIUM, 0x0001, 0x0002]);

/**
 * The Priority of a retrieve's C-STORE sub-operations: the C-MOVE's or C-GET's own. PS3.4 C.4.2.1.2 and
 * C.4.3.1.2: its Priority "defines the requested priority of the C-MOVE [C-GET] operation and
 * corresponding C-STORE sub-operations", the same for all of them (they went out MEDIUM whatever was
 * asked). A value PS3.7 does not define: MEDIUM.
 */
function subOperationPriority(request: FindRequest): number {
  return request.priority !== undefined && PRIORITIES.has(request.priority) ? request.priority : MEDIUM;
}

/** PS3.4 C.4.2.3.1: how a C-STORE sub-operation's status counts. */
function outcomeOf(status: number): 'completed' | 'failed' | 'warning' {
  if (status === Status.Success) return 'completed';
  return isWarning(status) ? 'warning' : 'failed';
}

