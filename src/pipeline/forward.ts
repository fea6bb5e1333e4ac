/**
 * Sends the outbox to the destinations: per destination up to `maxAssociations` senders, each taking a
 * batch of due items, opening one association for it (presentation contexts from what is stored) and
 * sending the stored bytes as they are, within the asynchronous operations window the destination
 * grants. Each confirmation is recorded at once, so a crash of the process re-sends at most what was in
 * flight. The record is not synced per instance (a WAL sync costs about as much as a send): a power
 * cut may also re-send what was confirmed since the last checkpoint's sync, under a second.
 *
 * Failures: an unreachable or refusing destination is retried with backoff forever (items are never
 * dropped for it); an instance the destination refuses is retried per item and goes to dead letter
 * after `maxAttempts`; an object whose transfer syntax the destination accepts in no form is dead
 * at once, with the reason.
 */
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { AssociationError, openStoreAssociation, type RequestorAssociation, type ScuSettings } from '../dimse/requestor.js';
import { candidateSyntaxes, chooseContext, proposeContexts } from '../dimse/store-contexts.js';
import { isWarning, Status } from '../dimse/status.js';
import { findTransferSyntax } from '../dicom/transfer-syntaxes.js';
import type { Logger } from '../observability/logger.js';
import type { Outbox, OutboxItem } from '../queue/outbox.js';
import { openStoredDataset, type StoredDataset } from '../store/stored-dataset.js';
import type { Transcoder } from '../store/transcoder.js';
import { PixelRedactionError } from '../pixels/native.js';
import { observeSafely } from '../observability/observe.js';
import { commentWithoutValues, withoutUids } from '../observability/redact.js';

export interface DestinationSettings {
  name: string;
  aeTitle: string;
  host: string;
  port: number;
  callingAeTitle: string;
  maxAssociations: number;
  maxOperations: number;
  /** Which instances the destination takes (its `when`, as JSON): a reload that changes it may
   * withdraw items of the batch in progress (route.ts withdrawUnmet). */
  conditions: string;
}

export interface ForwardSettings extends ScuSettings {
  destinations: DestinationSettings[];
  retry: { baseSeconds: number; multiplier: number; maxSeconds: number; maxAttempts: number };
  warningIsSuccess: boolean;
}

export interface ForwarderOptions {
  outbox: Outbox;
  storagePath: string;
  /** Converts an object for a destination that refuses its stored transfer syntax. */
  transcoder: Transcoder;
  log: Logger;
  settings(): ForwardSettings;
  /** How often senders look at the outbox without a nudge. */
  pollMs?: number;
  /** Told of attempts and their outcomes (metrics). */
  observer?: ForwardObserver;
  /** Bytes of converted objects held in memory at once (see CONVERTED_BYTES). */
  convertedBytes?: number;
}

/** Failures without a DIMSE status: the association ended with the request on the wire, or the
 * request never went out (no context fits, the copy is missing or unreadable, sending failed). */
export type ForwardFailureKind = 'association_ended' | 'refused' | 'missing' | 'unreadable' | 'send_error';

export interface ForwardObserver {
  /** A request went on the wire (it was answered, or its association ended under it). */
  forwardAttempted(destination: string): void;
  /** The destination confirmed an item; `routedAt` is when its study was routed (ms). */
  forwardStored(destination: string, status: number, routedAt: number): void;
  /** The last queued item of a routing of a study was confirmed. */
  forwardStudyDone(destination: string, routedAt: number): void;
  /** An item failed with the destination's DIMSE status or a kind; `deadLetter` when it was the last try. */
  forwardFailed(destination: string, failure: number | ForwardFailureKind, deadLetter: boolean): void;
  destinationUnreachable(destination: string): void;
}

/** Items one association carries before it is released and the outbox looked at again. */
const BATCH = 500;
/** Files up to this size are read whole while earlier ones are on the wire (stored-dataset.ts), into
 * buffers reused from one file to the next (at most window + LOOKAHEAD of them). */
const PRELOAD_BYTES = 1024 * 1024;
/** How long confirmed instances wait to be moved to `forwarded` together. */
const SETTLE_MS = 200;
/** The longest pause of a destination's sending while the index cannot record outcomes. */
const INDEX_PAUSE_MAX_MS = 30_000;
/** Items opened (and, when small, read) ahead of the window. */
const LOOKAHEAD = 3;
/** Bytes of converted objects (transcoder.ts: decompressed, held whole in memory until answered) that
 * the senders hold at once, over all destinations; one object is let through whatever its size. */
const CONVERTED_BYTES = 256 * 1024 * 1024;

/** What became of one item an association was to carry. */
type ItemOutcome = 'stored' | 'failed' | 'unsent';

/** What one association's batch met: the first outcome the index could not record. */
interface BatchState {
  indexFailure?: string;
  /** The association ended with an object on the wire (an attempt of that object). */
  endedOnItem?: boolean;
}

/** Delay before attempt `failures + 1`: base × multiplier^(failures − 1), capped. */
export function backoffMs(failures: number, retry: ForwardSettings['retry']): number {
  const seconds = retry.baseSeconds * retry.multiplier ** Math.max(0, failures - 1);
  return Math.min(seconds, retry.maxSeconds) * 1000;
}


export class Forwarder {
  private readonly destinations = new Map<string, DestinationQueue>();
  /** Items being sent, per destination: shared by a destination's queue and its successor after a
   * reload, so that nothing is taken twice. */
  private readonly claims = new Map<string, Set<number>>();
  /** Queues of destinations removed or resized by a reload, finishing what they had in flight. */
  private readonly retiring = new Set<Promise<void>>();
  /** Converted objects in memory, shared by every destination's senders. */
  private readonly conversions: ConversionBudget;
  private stopped = false;
  /** Aborted when the forwarder stops: a retired queue then stops settling (the index is closing). */
  private readonly stopSignal = new AbortController();

  constructor(private readonly options: ForwarderOptions) {
    this.conversions = new ConversionBudget(options.convertedBytes ?? CONVERTED_BYTES);
  }

  start(): void {
    for (const destination of this.options.settings().destinations) this.ensure(destination.name);
  }

  /** The outbox has new items: wake the senders. */
  nudge(): void {
    for (const destination of this.options.settings().destinations) this.ensure(destination.name)?.wake();
  }

  /** Destinations removed from config stop; new ones start; one whose number of associations changed
   * starts again with it (SIGHUP). Other settings are read at each association. Once stopping, a
   * reload changes nothing: a queue retired then would outlive the stop (and the index it writes to). */
  reconfigure(): void {
    if (this.stopped) return;
    const wanted = new Map(this.options.settings().destinations.map((destination) => [destination.name, destination]));
    for (const [name, queue] of this.destinations) {
      const destination = wanted.get(name);
      if (!destination || destination.maxAssociations !== queue.senderCount) {
        const stopping = queue.retire(10_000, this.stopSignal.signal).finally(() => this.retiring.delete(stopping));
        this.retiring.add(stopping);
        this.destinations.delete(name);
      } else queue.reconfigured();
    }
    this.nudge();
  }

  /** Stops taking items and waits (up to `graceMs`) for the responses in flight; then aborts. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    this.stopSignal.abort();
    await Promise.all([...[...this.destinations.values()].map((queue) => queue.stop(graceMs)), ...this.retiring]);
  }

  /** The destination's queue, started if need be; undefined once the forwarder stops. */
  private ensure(name: string): DestinationQueue | undefined {
    let queue = this.destinations.get(name);
    if (!queue && !this.stopped) {
      let claimed = this.claims.get(name);
      if (!claimed) {
        claimed = new Set<number>();
        this.claims.set(name, claimed);
      }
      queue = new DestinationQueue(name, this.options, claimed, this.conversions);
      this.destinations.set(name, queue);
      queue.start();
    }
    return queue;
  }
}

/** The senders of one destination, sharing its backoff. */
class DestinationQueue {
  private readonly preloadBuffers: Buffer[] = [];
  private readonly toSettle = new Set<number>();
  /** Routings (study, routedAt) with items confirmed since the last settle, to tell when one is done. */
  private readonly routingsToCheck = new Map<string, OutboxItem>();
  private settleTimer: NodeJS.Timeout | undefined;
  private readonly senders: Promise<void>[] = [];
  private readonly open = new Set<RequestorAssociation>();
  private wakers: Array<() => void> = [];
  /** Senders waiting for an association of the destination to end (waitForAnotherToEnd). */
  private readonly associationEndWaiters: Array<() => void> = [];
  /** Whether the destination was said to take fewer associations than configured. */
  private warnedOfLimit = false;
  private stopping = false;
  /** The abort of the associations a stop's grace period left open: Gantry's own, not the destination's. */
  private stopAbort: AssociationError | undefined;
  private consecutiveFailures = 0;
  /** Whether the last association ended with an object on the wire and the rest was tried at once. */
  private triedRestAtOnce = false;
  /** How many batches in a row met an outcome the index could not record. */
  private indexFailures = 0;
  private retryAt: number | undefined;
  /** When the backoff that retryAt ends began: items an operator re-queues after it are tried at once. */
  private backoffSince = 0;
  /** The address (AE titles, host, port) that failed last, while backing off. */
  private failedAddress: string | undefined;
  private readonly log: Logger;

  constructor(
    private readonly name: string,
    private readonly options: ForwarderOptions,
    private readonly claimed: Set<number>,
    private readonly conversions: ConversionBudget,
  ) {
    this.log = options.log.child({ destination: name });
  }

  start(): void {
    const count = this.settings()?.maxAssociations ?? 1;
    for (let index = 0; index < count; index += 1) this.senders.push(this.runSender());
  }

  get senderCount(): number {
    return this.senders.length;
  }

  wake(): void {
    for (const wake of this.wakers.splice(0)) wake();
  }

  /** A reload kept this destination: if it changed the address that failed, the backoff earned there
   * ends, and sending starts again at once (an operator mending a port or an AE title otherwise waited
   * up to forward.retry.maxSeconds). */
  reconfigured(): void {
    const destination = this.settings();
    if (this.retryAt === undefined || !destination || addressOf(destination) === this.failedAddress) return;
    this.consecutiveFailures = 0;
    this.retryAt = undefined;
    this.failedAddress = undefined;
    this.wake();
  }

  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.wake();
    const timer = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), graceMs).unref());
    if ((await Promise.race([Promise.all(this.senders), timer])) === 'late') {
      this.stopAbort = new AssociationError('aborted by Gantry: stopping', 'aborted');
      for (const association of this.open) association.abort(this.stopAbort);
      await Promise.all(this.senders);
    }
  }

  /** Stops as for a reload: the instances it confirmed are settled all the same, tried again until
   * that succeeds or the forwarder stops (the node's stop leaves them to the next start). A failed
   * last settle otherwise left them `deidentified` until a restart, and retention kept their originals. */
  async retire(graceMs: number, forwarderStopped: AbortSignal): Promise<void> {
    await this.stop(graceMs);
    while (this.toSettle.size > 0 && !forwarderStopped.aborted) {
      const waited = await delay(this.settleRetryMs, true, { signal: forwarderStopped, ref: false }).catch(() => false);
      if (!waited) return;
      this.settle();
    }
  }

  private settings(): DestinationSettings | undefined {
    return this.options.settings().destinations.find((destination) => destination.name === this.name);
  }

  private async runSender(): Promise<void> {
    while (!this.stopping) {
      const now = Date.now();
      const pollMs = this.options.pollMs ?? 1000;
      if (this.retryAt !== undefined && now < this.retryAt) {
        // Items an operator re-queued (gantry queue retry) are tried at the next poll, not after the
        // backoff (up to forward.retry.maxSeconds): one attempt per retry asked; when it fails, the
        // backoff goes on, longer, so a destination still down is not hammered.
        if (this.retryAsked(this.backoffSince)) {
          this.log.info('items re-queued by an operator: trying the destination now, before its backoff ends');
          this.retryAt = undefined;
          continue;
        }
        await this.sleep(Math.min(this.retryAt - now, pollMs));
        continue;
      }
      const destination = this.settings();
      if (!destination) return;
      let due: OutboxItem[];
      try {
        due = this.options.outbox.due(this.name, BATCH + this.claimed.size, now);
      } catch (error) {
        this.log.error({ err: (error as Error).message }, 'cannot read the outbox');
        await this.sleep(pollMs);
        continue;
      }
      const items = due.filter((item) => !this.claimed.has(item.id)).slice(0, BATCH);
      if (items.length === 0) {
        // Nothing due, or all of it taken by the other senders (they wake this one when done).
        const next = due.length === 0 ? this.options.outbox.nextDueAt(this.name) : undefined;
        await this.sleep(next === undefined ? pollMs : Math.max(10, Math.min(next - now, pollMs)));
        continue;
      }
      for (const item of items) this.claimed.add(item.id);
      try {
        await this.sendBatch(destination, items);
      } catch (error) {
        this.log.error({ err: withoutUids((error as Error).message) }, 'forwarding a batch failed');
        await this.sleep(pollMs);
      } finally {
        for (const item of items) this.claimed.delete(item.id);
        this.wake();
      }
    }
  }

  private retryAsked(since: number): boolean {
    try {
      return this.options.outbox.retryAskedSince(this.name, since);
    } catch (error) {
      this.log.error({ err: (error as Error).message }, 'cannot read the outbox');
      return false;
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers = this.wakers.filter((waker) => waker !== done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wakers.push(done);
    });
  }

  private async sendBatch(destination: DestinationSettings, items: OutboxItem[]): Promise<void> {
    const settings = this.options.settings();
    const { contexts, fitting } = proposeContexts(items);
    let association: RequestorAssociation;
    try {
      association = await openStoreAssociation(destination, destination.callingAeTitle, contexts, destination.maxOperations, settings, this.log);
    } catch (error) {
      if (this.open.size > 0 && !this.stopping) {
        await this.waitForAnotherToEnd((error as Error).message);
        return;
      }
      this.unreachable(fitting, (error as Error).message, destination);
      return;
    }
    this.open.add(association);
    const started = Date.now();
    let sent = 0;
    let failed = 0;
    /** Requests never sent (withdrawn by a reload, cut by a stop): not failures, they stay queued. */
    let unsent = 0;
    /** The first outcome the index could not record: the batch takes no more items. */
    const batch: BatchState = {};
    try {
      const inFlight = new Set<Promise<void>>();
      for (const item of fitting) {
        if (this.stopping || !association.isUsable || this.reconfiguredSince(destination) || batch.indexFailure !== undefined) break;
        const operation = this.sendItem(association, destination, item, batch).then(
          (outcome) => {
            if (outcome === 'stored') sent += 1;
            else if (outcome === 'failed') failed += 1;
            else unsent += 1;
          },
          (error: Error) => {
            // Recording the outcome failed (the index is full or locked): the item stays queued, and
            // the batch takes no more (below).
            failed += 1;
            batch.indexFailure ??= error.message;
            this.log.error({ item: item.id, err: withoutUids(error.message) }, 'cannot record the outcome of an item');
          },
        );
        inFlight.add(operation);
        void operation.finally(() => inFlight.delete(operation));
        // The next files are read while the window is full, so each is ready when its turn comes.
        if (inFlight.size >= association.operationsWindow + LOOKAHEAD) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      if (association.isUsable) await association.release();
    } finally {
      this.settle();
      association.abort();
      this.open.delete(association);
      for (const ended of this.associationEndWaiters.splice(0)) ended();
    }
    this.afterBatch(destination, association.failureReason, sent, batch);
    this.log.info({ sent, failed, unsent, window: association.operationsWindow, ms: Date.now() - started }, 'association to destination done');
  }

  /**
   * An association failed while another sender's to the same destination is open: the destination is
   * up, and takes fewer associations than maxAssociations (a transient "local limit exceeded", PS3.8
   * 9.3.4, or no answer until the other ends, as a single-process storescp). Not a failure: counted or
   * backed off, it made the destination look unreachable once a batch, and a retry at each poll or
   * nudge would knock on its door while the other association works. This sender waits for an
   * association of the destination to end, and says once what to configure.
   */
  private waitForAnotherToEnd(why: string): Promise<void> {
    if (!this.warnedOfLimit) {
      this.warnedOfLimit = true;
      this.log.warn(
        { why, maxAssociations: this.settings()?.maxAssociations, open: this.open.size },
        'destination refused an association while another was open: sending with fewer; set forward.destinations[].maxAssociations to what it accepts',
      );
    }
    return new Promise<void>((resolve) => this.associationEndWaiters.push(resolve));
  }

  /** The destination's backoff after an association: paused for the index when it could not record an
   * outcome (an association it ended for that too), backed off when the association failed, else none. */
  private afterBatch(destination: DestinationSettings, failure: Error | undefined, sent: number, batch: BatchState): void {
    if (batch.indexFailure !== undefined) {
      this.pauseForIndex(batch.indexFailure, destination);
      return;
    }
    this.indexFailures = 0;
    if (failure && !this.stopping) {
      // An association that stored instances before it ended found the destination up: the failures
      // before it were not consecutive to this one. Otherwise a destination (or a firewall) that ends
      // every association after N instances made the delay grow to maxSeconds, N instances an hour.
      if (sent > 0) {
        this.consecutiveFailures = 0;
        this.triedRestAtOnce = false;
      }
      // A destination that accepted the association and then ended it on an object may have ended it
      // for that object (DCMTK aborts a dataset it cannot read): the object took an attempt and waits
      // its own backoff, and the rest is tried at once, once. Backed off as a whole, the destination
      // held every instance behind an object it refused, 10 s, 20 s, 40 s... until that object's
      // last attempt (found in the quirks review). A second such end in a row backs it off.
      if (batch.endedOnItem && !this.triedRestAtOnce) {
        this.triedRestAtOnce = true;
        this.log.warn({ why: failure.message }, 'association ended on an object: trying the other items at once');
        return;
      }
      this.triedRestAtOnce = false;
      this.unreachable([], failure.message, destination);
    } else if (!failure) {
      this.consecutiveFailures = 0;
      this.triedRestAtOnce = false;
      this.retryAt = undefined;
      this.failedAddress = undefined;
    }
  }

  /** Whether a reload pointed the destination elsewhere, changed its condition or removed it since
   * `destination` was read: the association takes no more items (a wrong address mended, a PACS moved:
   * the rest of a batch, up to BATCH, went there and was recorded sent; a condition narrowed: items
   * withdrawn from the outbox went all the same). The next batch reads the outbox again. */
  private reconfiguredSince(destination: DestinationSettings): boolean {
    const current = this.settings();
    return this.moved(destination, current) || current?.conditions !== destination.conditions;
  }

  /** Whether a reload pointed the destination elsewhere (or removed it) since `destination` was read. */
  private moved(destination: DestinationSettings, current = this.settings()): boolean {
    return !current || addressOf(current) !== addressOf(destination);
  }

  /** Sends one item: stored by the destination, failed (an attempt, or dead letter), or never sent
   * and left queued. Throws only when its outcome cannot be recorded. */
  private async sendItem(association: RequestorAssociation, destination: DestinationSettings, item: OutboxItem, batch: BatchState): Promise<ItemOutcome> {
    const { outbox } = this.options;
    const settings = this.options.settings();
    let stored: StoredDataset;
    // A new buffer's pages are touched here, not by the first read into it: the read is timed, and a
    // megabyte of page faults would count as a slow disk (inline-pace.ts).
    const buffer = this.preloadBuffers.pop() ?? Buffer.allocUnsafeSlow(PRELOAD_BYTES).fill(0);
    try {
      stored = await openStoredDataset(join(this.options.storagePath, item.filePath), buffer);
    } catch (error) {
      this.preloadBuffers.push(buffer);
      const code = (error as NodeJS.ErrnoException).code;
      // The copy is gone (an operator, a lost disk): nothing to send until it is made again.
      if (code === 'ENOENT') {
        outbox.markDead(item, null, 'the de-identified copy is missing', false);
        this.observe((observer) => observer.forwardFailed(this.name, 'missing', true));
      } else this.itemFailed(item, 'unreadable', `the de-identified copy cannot be read: ${code ?? withoutUids((error as Error).message)}`);
      return 'failed';
    }
    let conversion: Conversion | undefined;
    try {
      const context = chooseContext(association, stored.sopClassUid, stored.transferSyntaxUid);
      if (!context) return this.refused(association, destination, item, stored);
      // A compressed object the destination refuses is decompressed, on the transcoder's thread, and
      // held whole until answered: only within the budget, not one per place in the window.
      if (context.transferSyntax !== stored.transferSyntaxUid) {
        conversion = await this.conversions.start();
        // The association ended during the wait (a stop, an abort): never on the wire, it stays queued,
        // and no conversion is made for nothing.
        if (!association.isUsable) return 'unsent';
      }
      const body = await this.options.transcoder.datasetInSyntax(join(this.options.storagePath, item.filePath), stored, context.transferSyntax);
      conversion?.converted(body.length);
      const isStored = (status: number) => status === Status.Success || (settings.warningIsSuccess && isWarning(status));
      const result = await association.store(context, stored.sopInstanceUid, body, {
        // A request opened ahead (LOOKAHEAD) may wait for the window past a reload: one that moved the
        // destination or withdrew items (a narrowed condition) sends it nowhere; it stays queued, or
        // is gone from the outbox.
        stillWanted: () => !this.reconfiguredSince(destination),
        onResponse: (response) => {
          this.observe((observer) => observer.forwardAttempted(this.name));
          if (isStored(response.status)) this.confirmed(item, response, batch);
        },
      });
      if (isStored(result.status)) return 'stored';
      this.itemFailed(item, result, `${destination.name} answered ${result.statusText}${result.errorComment ? `: ${result.errorComment}` : ''}`);
      return 'failed';
    } catch (error) {
      if (error instanceof PixelRedactionError) {
        // It cannot be converted (frames that cannot be decoded, pixels the converter does not take):
        // no later attempt would do better. Said as a conversion, not a decompression: an uncompressed
        // big-endian object read "cannot be decompressed" (found in the forward review).
        const from = findTransferSyntax(stored.transferSyntaxUid)?.name ?? stored.transferSyntaxUid;
        const reason = `cannot be converted from ${from} for ${destination.name}: ${withoutUids(error.message)}`;
        outbox.markDead(item, null, reason, false);
        this.observe((observer) => observer.forwardFailed(this.name, 'send_error', true));
        this.log.warn({ item: item.id, why: reason }, 'item cannot be sent: dead letter');
        return 'failed';
      } else if (!(error instanceof AssociationError)) {
        this.itemFailed(item, 'send_error', `cannot send: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
        return 'failed';
      } else if (error.requestSent && association.failureReason !== this.stopAbort) {
        // The association ended with this item on the wire: an attempt, so that an object that makes
        // the destination abort every time ends in dead letter rather than looping. (The destination
        // as a whole backs off once, in sendBatch.)
        this.observe((observer) => observer.forwardAttempted(this.name));
        this.itemFailed(item, 'association_ended', `association ended while sending: ${error.message}`);
        batch.endedOnItem = true;
        return 'failed';
      }
      // Never on the wire, or cut by a stop (the end of its grace period, or a reload retiring the
      // queue: no fault of the object nor of the destination, and with maxAttempts 1 it went to dead
      // letter): not an attempt; it stays queued for the next association.
      return 'unsent';
    } finally {
      conversion?.done();
      await stored.close().catch(() => undefined);
      // The request is done with the buffer (sent and answered, or its association gone).
      this.preloadBuffers.push(buffer);
    }
  }

  /** No accepted context fits the object: refused for good (abstract or transfer syntax not
   * supported: dead letter at once, with the reason) or for no stated reason (an attempt). */
  private refused(association: RequestorAssociation, destination: DestinationSettings, item: OutboxItem, stored: StoredDataset): 'failed' {
    const refusal = association.refusalOf(stored.sopClassUid, candidateSyntaxes(stored.transferSyntaxUid));
    if (refusal === 'other' || refusal === undefined) {
      this.itemFailed(item, 'refused', `${destination.name} accepted no presentation context for the object`);
      return 'failed';
    }
    const syntax = findTransferSyntax(stored.transferSyntaxUid)?.name ?? stored.transferSyntaxUid;
    const reason =
      refusal === 'abstract-syntax'
        ? `SOP class ${stored.sopClassUid} not accepted by ${destination.name}`
        : `transfer syntax ${syntax} not accepted by ${destination.name}`;
    this.options.outbox.markDead(item, null, reason, false);
    this.observe((observer) => observer.forwardFailed(this.name, 'refused', true));
    this.log.warn({ item: item.id, why: reason }, 'item cannot be sent: dead letter');
    return 'failed';
  }

  /**
   * A confirmation is one small commit, made when the response arrives and before the next request
   * goes out (the requestor's onResponse), so that a crash re-sends at most the window in flight.
   * The instance's move to `forwarded` follows in batches.
   */
  private confirmed(item: OutboxItem, response: { status: number; statusText: string }, batch: BatchState): void {
    try {
      this.options.outbox.markSent(item, response.statusText);
    } catch (error) {
      // The destination has it; the index cannot say so, and it is sent again later (the destination
      // keeps one copy per SOP Instance UID). Thrown on: the requestor then lets no further request
      // onto the wire and the association ends, so the destination backs off. Swallowed, the batch
      // went on and was sent again at once, over and over, while the index refused writes (found in
      // a review).
      this.log.error({ item: item.id, err: (error as Error).message }, 'cannot record a confirmed item');
      batch.indexFailure ??= (error as Error).message;
      throw error;
    }
    this.observe((observer) => observer.forwardStored(this.name, response.status, item.routedAt));
    this.toSettle.add(item.instancePk);
    if (this.options.observer) this.routingsToCheck.set(`${item.studyPk}:${item.routedAt}`, item);
    this.settleAgainIn(SETTLE_MS);
  }

  /** Instances whose items were confirmed lately move to `forwarded` if every destination has them. */
  private settle(): void {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
    if (this.toSettle.size === 0) return;
    const instancePks = [...this.toSettle];
    this.toSettle.clear();
    try {
      this.options.outbox.settleForwarded(instancePks);
    } catch (error) {
      // Tried again shortly (and at the next start, reconcileForwarded): dropped, they stayed
      // `deidentified` until a restart, months maybe, and retention kept their originals.
      this.log.error({ instances: instancePks.length, err: (error as Error).message }, 'cannot mark instances forwarded: will try again');
      for (const instancePk of instancePks) this.toSettle.add(instancePk);
      // Stopping, the index is about to close: the next start settles them.
      if (!this.stopping) this.settleAgainIn(this.settleRetryMs);
    }
    this.reportStudiesDone();
  }

  /** How long a settle that failed waits before it is tried again. */
  private get settleRetryMs(): number {
    return Math.max(SETTLE_MS, this.options.pollMs ?? 1000);
  }

  private settleAgainIn(ms: number): void {
    if (this.settleTimer) return;
    this.settleTimer = setTimeout(() => this.settle(), ms);
    this.settleTimer.unref();
  }

  /** Routings of studies whose last queued item was just confirmed: their forwarding time (metrics). */
  private reportStudiesDone(): void {
    const routings = [...this.routingsToCheck.values()];
    this.routingsToCheck.clear();
    for (const { studyPk, routedAt } of routings) {
      this.observe((observer) => {
        if (!this.options.outbox.routingPending(this.name, studyPk, routedAt)) observer.forwardStudyDone(this.name, routedAt);
      });
    }
  }

  /** An attempt failed, with the destination's status or, when there is none, the kind of failure. */
  private itemFailed(item: OutboxItem, failure: { status: number; statusText: string } | ForwardFailureKind, reason: string): void {
    const { retry } = this.options.settings();
    const attempts = item.attempts + 1;
    // A destination's Error Comment may quote what it read ('...' or [...], as dcm4chee does): kept
    // values, or a pseudonym, go no further than the status (found in the logs review).
    const error = commentWithoutValues(reason, 500);
    const status = typeof failure === 'string' ? null : failure.statusText;
    this.observe((observer) => observer.forwardFailed(this.name, typeof failure === 'string' ? failure : failure.status, attempts >= retry.maxAttempts));
    if (attempts >= retry.maxAttempts) {
      this.options.outbox.markDead(item, status, error);
      this.log.warn({ item: item.id, status, attempts, why: error }, 'item failed its last attempt: dead letter (gantry queue retry)');
    } else {
      this.options.outbox.markRetry(item, Date.now() + backoffMs(attempts, retry), status, error);
      this.log.warn({ item: item.id, status, attempts, why: error }, 'item failed: will retry');
    }
  }

  /** Metrics never stop forwarding. */
  private observe(report: (observer: ForwardObserver) => void): void {
    observeSafely(this.options.observer, report, this.log);
  }

  /**
   * The index could not record what the destination answered (a full disk, a lock held too long):
   * sending pauses, since every item sent would go again at once, answered or failed, and nothing
   * would count its attempts (found in a review: 3,039 requests in 17 s for 10 instances). Not the
   * destination's fault: it is not counted or logged unreachable, and the pause stays short, so
   * sending resumes soon after the index can write again.
   */
  private pauseForIndex(message: string, destination: DestinationSettings): void {
    this.indexFailures += 1;
    const delay = Math.min(INDEX_PAUSE_MAX_MS, 1000 * 2 ** (this.indexFailures - 1));
    this.backoffSince = Date.now();
    this.retryAt = this.backoffSince + delay;
    // A reload that changes nothing of the address does not end the pause (reconfigured()).
    this.failedAddress = addressOf(destination);
    this.log.error({ err: message, failures: this.indexFailures, retryInSeconds: delay / 1000 }, 'the index cannot record what the destination answered: sending to it paused');
  }

  /** The destination cannot be reached or refused the association: back off, drop nothing. */
  private unreachable(items: readonly OutboxItem[], message: string, destination: DestinationSettings): void {
    // A reload changed the address while this association was being opened (reconfigured() found no
    // backoff to end): the failure says nothing of the address now configured, which is tried at once.
    if (this.settings() !== undefined && this.moved(destination)) {
      this.log.warn({ why: message }, 'destination unreachable at its former address: trying the reloaded one');
      return;
    }
    this.consecutiveFailures += 1;
    this.failedAddress = addressOf(destination);
    const delay = backoffMs(this.consecutiveFailures, this.options.settings().retry);
    this.backoffSince = Date.now();
    this.retryAt = this.backoffSince + delay;
    this.observe((observer) => observer.destinationUnreachable(this.name));
    try {
      this.options.outbox.noteUnreachable(items, `${this.name} unreachable: ${message}`);
    } catch {
      // informational only
    }
    this.log.warn({ why: message, failures: this.consecutiveFailures, retryInSeconds: delay / 1000 }, 'destination unreachable: will retry');
  }
}

/** What a reload may mend of a destination that cannot be reached or refuses the association. */
function addressOf(destination: DestinationSettings): string {
  return JSON.stringify([destination.aeTitle, destination.host, destination.port, destination.callingAeTitle]);
}

/** One object converted for a destination: its size once known, and the end of its request. */
interface Conversion {
  converted(bytes: number): void;
  done(): void;
}

/**
 * How many converted objects the senders hold at once. A converted object is in memory whole (up to
 * 1 GB decompressed) from its conversion to its response; without a bound each place of the window
 * and of the lookahead held one (19 by default: gigabytes of decompressed multi-frame objects). A
 * conversion starts when no other is under way (their size is not known yet; the transcoder runs one
 * at a time anyway) and the objects held are under the budget, or none is held.
 */
class ConversionBudget {
  private held = 0;
  private objects = 0;
  private converting = false;
  private waiters: Array<() => void> = [];

  constructor(private readonly bytes: number) {}

  async start(): Promise<Conversion> {
    while (this.converting || (this.objects > 0 && this.held >= this.bytes)) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    this.converting = true;
    this.objects += 1;
    let size = 0;
    let state: 'converting' | 'held' | 'done' = 'converting';
    return {
      converted: (bytes) => {
        if (state !== 'converting') return;
        state = 'held';
        size = bytes;
        this.held += bytes;
        this.converting = false;
        this.wake();
      },
      done: () => {
        if (state === 'done') return;
        if (state === 'converting') this.converting = false;
        else this.held -= size;
        state = 'done';
        this.objects -= 1;
        this.wake();
      },
    };
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}
