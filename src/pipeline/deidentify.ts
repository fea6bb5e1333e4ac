/**
 * Feeds the de-identification pool from the index: each instance in state `received` goes to a worker
 * thread, which decides (profile, quarantine rules, pixels that may show identity: decide.ts) and
 * de-identifies. Outcomes (deidentified, quarantined or failed, with its reason) are recorded a few at
 * a time, each in a savepoint of one transaction: a commit per outcome cost the receive path's thread
 * more than the outcome's own statements (see RECORD_DELAY_MS). The receive path only nudges the
 * scheduler; it never waits for it.
 */
import { mkdirSync, renameSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Piscina } from 'piscina';
import type { BaseSettings } from '../deid/decide.js';
import { heldOriginal, HeldOriginalError, originOf } from '../deid/original-check.js';
import { PROFILE_EDITION } from '../deid/profile.js';
import type { ProfileConfig } from '../deid/rules.js';
import type { DeidTask, DeidTaskResult } from '../deid/worker.js';
import type { DeidWork, WaitingInstance } from '../index/deid-work.js';
import { stampFromColumns } from '../index/file-stamp.js';
import type { Logger } from '../observability/logger.js';
import { observeSafely } from '../observability/observe.js';
import { withoutValues } from '../observability/redact.js';
import { outOfMemory, outOfMemoryReason } from '../deid/large-instances.js';
import { residualRiskReason } from '../deid/release-policy.js';
import { shareSettings, type SharedSettings } from '../deid/shared-settings.js';
import { DEID_INCOMING_DIR } from '../store/object-store.js';
import type { ReceiveFirst } from './receive-first.js';

export interface DeidSchedulerSettings {
  /** Named profiles first, the default last (settings.ts). */
  profiles: ProfileConfig[];
  base: BaseSettings;
  quarantineOnFindings: boolean;
}

export interface DeidSchedulerOptions {
  work: DeidWork;
  pool: Piscina;
  storagePath: string;
  log: Logger;
  settings(): DeidSchedulerSettings;
  /** Tasks handed to the pool at once (a few per thread keeps the threads busy). */
  maxInFlight: number;
  /** How often the index is looked at without a nudge (work left by a restart, releases). */
  pollMs?: number;
  /** Told of each outcome and how long the task took (metrics). */
  observer?: DeidObserver;
  /** Holds de-identification back while stores keep arriving (receive-first.ts); absent: never. */
  receiveFirst?: ReceiveFirst;
  /** How long de-identifying an original of this size may take (default deidTimeoutMs). */
  timeoutMs?: (fileBytes: number) => number;
  /** Where an instance that ran a thread of `pool` out of heap is done once more (deid.largeInstanceHeapMb):
   * a pool of one thread with a larger heap. Absent: such an instance fails at once. */
  largeInstances?: { pool: Piscina; heapMb: number };
}

/** What to do once deid.largeInstanceHeapMb is changed, said in the reason of an instance that failed for want of it. */
const AFTER_LARGER_HEAP = 'restart, then gantry quarantine release ID --again';

/**
 * How long de-identifying one instance may take before its thread is stopped and the instance is
 * recorded as failed: five minutes, and two seconds more per MB (redaction decodes and encodes every
 * frame; an instance of 0.5 MB takes tens of milliseconds here). A task caught in a damaged stream
 * would otherwise hold its thread forever, and as many such instances as threads would stop
 * de-identification, and forwarding with it, while stores were still acknowledged.
 */
export function deidTimeoutMs(fileBytes: number): number {
  return 300_000 + Math.ceil(fileBytes / 1_000_000) * 2000;
}

export type DeidOutcome = 'ok' | 'quarantined' | 'failed';

/**
 * How long a finished task's outcome may wait to be recorded with the ones finishing after it, and
 * how many may wait. Each commit writes every page its transaction touched to the WAL (the instance's
 * row and its indexes, the research view's rows, the audit), and consecutive outcomes touch mostly
 * the same pages: measured on the index alone (2,000 outcomes with a 40-entry audit), 265-330 us per
 * outcome recorded one per transaction, 122-167 us eight per transaction, on the thread that also
 * receives. The delay is small against the time a task takes, and the slot a task held goes to the
 * next task at once, not after the record.
 */
const RECORD_DELAY_MS = 20;
const MAX_OUTCOMES_PER_RECORD = 32;

/** Instances fetched beyond the free slots by one look at the index, for the next fills: a look per
 * finished task was a query per instance on the thread that also receives. */
const PREFETCH = 16;
/** At most one "postponed" line this often (with the count since the last). */
const POSTPONED_LOG_MS = 30_000;

/** A task's result (or failure) waiting to be recorded. */
interface FinishedTask {
  instance: WaitingInstance;
  task: DeidTask;
  settings: DeidSchedulerSettings;
  /** How long the task took (reported with its outcome; the wait to be recorded left out). */
  seconds: number;
  result?: DeidTaskResult;
  error?: Error;
  recorded(): void;
}

export interface DeidObserver {
  deidDone(outcome: DeidOutcome, seconds: number): void;
}

export class DeidScheduler {
  /** Instances handed to the pool and not yet recorded: never handed out twice. */
  private readonly inFlight = new Map<number, Promise<void>>();
  /** Tasks handed to the pool and not finished (at most maxInFlight); not those gone on to the
   * large-instance thread, which has a queue of its own. */
  private runningTasks = 0;
  private finished: FinishedTask[] = [];
  private recordTimer: NodeJS.Timeout | undefined;
  /** Outputs moved into place by the record under way: deleted again if its transaction fails. */
  private placed: string[] = [];
  /**
   * Instances the last look at the index found waiting and not handed out yet, oldest first. Looked
   * up afresh when empty and at every poll, so a change there (a release, a re-send) is seen within
   * pollMs. One that changed meanwhile costs a task at most: an outcome is recorded only while the
   * row still waits for the original the task read (markDeidentified and markHeld check).
   */
  private queued: WaitingInstance[] = [];
  /**
   * While receiving first: the earliest arrivals waiting, oldest first, as the last look found them.
   * An instance handed out leaves it; looked up afresh when none is left that is not in flight, and at
   * every poll. A store arriving meanwhile arrived after the first of them (unless the wall clock was
   * set back: see firstArrivalWaiting), and so cannot be the first.
   * (Looked up at every slot filled while stores kept arriving, it cost bench/forward's e2e 3,437 looks
   * for 2,000 instances, 0.65 s of the event loop.)
   */
  private arrivals: Array<{ id: number; receivedAt: number }> | undefined;
  /** The last look found nothing waiting that is not in flight: no look again until nudged (a store,
   * a record, the poll). Without it each finished task looked once more, while the pool kept up,
   * and found nothing: two of every three looks. */
  private foundNothing = false;
  private timer: NodeJS.Timeout | undefined;
  /** Armed while de-identification is held back for the senders (receive-first.ts). */
  private holdTimer: NodeJS.Timeout | undefined;
  private filling = false;
  private again = false;
  private stopped = false;
  private sequence = 0;
  /** Set when an outcome could not be recorded: wait for the poll rather than retry at once. */
  private backOff = false;
  /** Postponements for want of a resource since the last one logged, and when that was. */
  private postponed = { count: 0, loggedAt: Number.NEGATIVE_INFINITY };
  private shared: { of: DeidSchedulerSettings; shared: SharedSettings } | undefined;

  constructor(private readonly options: DeidSchedulerOptions) {}

  start(): void {
    this.timer = setInterval(() => {
      this.backOff = false;
      this.queued = [];
      this.arrivals = undefined;
      this.nudge();
    }, this.options.pollMs ?? 1000);
    this.timer.unref();
    this.nudge();
  }

  /** An instance was stored: it waits, and so may what waited before it while stores keep coming. */
  stored(): void {
    this.options.receiveFirst?.stored();
    // Held back for the senders already: a store only makes the hold longer, and the hold's timer
    // looks again when it ends. Looking at every store cost the receive path an index query each
    // (about 0.15 ms of the event loop per instance in bench/forward's e2e, 2026-11-30).
    if (this.holdTimer) {
      this.foundNothing = false;
      return;
    }
    this.nudge();
  }

  /** Something may be waiting: look soon (coalesced). */
  nudge(): void {
    this.foundNothing = false;
    this.refill();
  }

  /** Free slots are filled soon (coalesced), from what the last look found. */
  private refill(): void {
    if (this.stopped || this.backOff) return;
    if (this.filling) {
      this.again = true;
      return;
    }
    this.filling = true;
    setImmediate(() => {
      try {
        do {
          this.again = false;
          this.fill();
        } while (this.again && !this.stopped);
      } catch (error) {
        this.options.log.error({ err: (error as Error).message }, 'de-identification scheduling failed');
      } finally {
        this.filling = false;
      }
    });
  }

  /** Stops taking work and waits (up to `graceMs`) for the tasks running; the outcomes of those that
   * finish meanwhile are recorded. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.recordFinished();
    const deadline = new Promise((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.allSettled([...this.inFlight.values()]), deadline]);
  }

  get running(): number {
    return this.runningTasks;
  }

  private fill(): void {
    for (let room = this.options.maxInFlight - this.runningTasks; room > 0; room -= 1) {
      // While the instance that arrived first may still wait for the senders, so may every other.
      const holdMs = this.options.receiveFirst?.waitMs(() => this.firstArrivalWaiting()) ?? 0;
      if (holdMs > 0) {
        this.lookAgainIn(holdMs);
        return;
      }
      const next = this.nextWaiting(room);
      if (!next) return;
      this.dispatch(next);
    }
  }

  /** When the instance that arrived first of those waiting and not in flight was received. */
  private firstArrivalWaiting(): number | undefined {
    const first = () => this.arrivals?.find((row) => !this.inFlight.has(row.id));
    const remembered = first();
    // One received "later" than now (the wall clock was set back since) may come after a store of
    // now: looked up afresh.
    if (remembered !== undefined && remembered.receivedAt <= Date.now()) return remembered.receivedAt;
    // Those in flight now are left out: their rows stay waiting until their outcomes are recorded,
    // and remembered past that, one would decide with an arrival no longer waiting (the hold ended
    // early for every instance after it, until the poll).
    this.arrivals = this.options.work.earliestArrivals(this.inFlight.size + 1 + PREFETCH).filter((row) => !this.inFlight.has(row.id));
    return first()?.receivedAt;
  }

  /** Fills again once `ms` have passed. One timer: a store meanwhile may make it early, and the fill
   * it runs then holds back again for what is left. */
  private lookAgainIn(ms: number): void {
    if (this.holdTimer || this.stopped) return;
    this.holdTimer = setTimeout(() => {
      this.holdTimer = undefined;
      this.refill();
    }, ms);
    this.holdTimer.unref();
  }

  /** The oldest instance waiting that is not in flight, from the prefetched ones or a new look. */
  private nextWaiting(room: number): WaitingInstance | undefined {
    const fromQueue = () => {
      let next = this.queued.shift();
      while (next && this.inFlight.has(next.id)) next = this.queued.shift();
      return next;
    };
    const next = fromQueue();
    if (next || this.foundNothing) return next;
    this.queued = this.options.work.waiting(this.inFlight.size + room + PREFETCH).filter((instance) => !this.inFlight.has(instance.id));
    this.foundNothing = this.queued.length === 0;
    return fromQueue();
  }

  private dispatch(instance: WaitingInstance): void {
    if (this.arrivals) this.arrivals = this.arrivals.filter((row) => row.id !== instance.id);
    const settings = this.options.settings();
    this.sequence += 1;
    const task: DeidTask = {
      input: join(this.options.storagePath, instance.filePath),
      temporary: join(this.options.storagePath, DEID_INCOMING_DIR, `${process.pid}-${this.sequence}.dcm`),
      settings: this.sharedSettings(settings),
      callingAeTitle: instance.callingAeTitle,
      ...(instance.override?.pass ? { pass: true } : {}),
      expected: { sopInstanceUid: instance.sopInstanceUid, origin: originOf(instance.imported) },
    };
    const renames = this.options.work.renamesForStudy(instance.studyPk, instance.id);
    if (renames.size > 0) task.renamedUids = [...renames];
    const started = performance.now();
    const timeoutMs = (this.options.timeoutMs ?? deidTimeoutMs)(instance.fileSize);
    const held = originalHeld(task.input, instance);
    let recorded = () => {};
    this.inFlight.set(instance.id, new Promise<void>((resolve) => (recorded = resolve)));
    this.runningTasks += 1;
    let holdsSlot = true;
    const freeSlot = () => {
      if (holdsSlot) this.runningTasks -= 1;
      holdsSlot = false;
    };
    // A task waiting for the large-instance thread leaves its slot to the next instance: several such
    // instances would otherwise hold every slot while they wait their turn, one at a time.
    const waitsForLargeThread = () => {
      freeSlot();
      this.refill();
    };
    // Aborting a running task stops its thread (piscina); the pool starts another.
    const running = held ? Promise.reject(held) : this.runOrRunLarge(task, timeoutMs, instance.id, waitsForLargeThread);
    const finish = (outcome: { result: DeidTaskResult } | { error: Error }) => {
      freeSlot();
      if (this.stopped && 'error' in outcome) {
        // Ended by the stop (the pool destroyed after the grace): no failure, done again at the next
        // start, and nothing to record in an index that may be closed by now.
        removeTaskFiles(task);
        this.inFlight.delete(instance.id);
        recorded();
        return;
      }
      this.finished.push({ instance, task, settings, seconds: (performance.now() - started) / 1000, ...outcome, recorded });
      this.scheduleRecord();
      this.refill();
    };
    running.then(
      (result) => finish({ result }),
      (error: Error) => finish({ error }),
    );
  }

  /**
   * Runs the task on the pool; one whose header ran its thread out of heap (the thread died; piscina
   * starts another, and the tasks of the other threads go on) runs once more on the large-instance
   * thread, one at a time, so that memory stays bounded. The instance stays in flight meanwhile (never
   * handed out again), and its outcome is recorded once: de-identified, or failed with what to change.
   */
  private async runOrRunLarge(task: DeidTask, timeoutMs: number, instanceId: number, waitsForLargeThread: () => void): Promise<DeidTaskResult> {
    try {
      return await this.runWithin(this.options.pool, task, timeoutMs);
    } catch (error) {
      if (!outOfMemory(error) || this.stopped) throw error;
      const large = this.options.largeInstances;
      if (!large) throw new Error(outOfMemoryReason(undefined, AFTER_LARGER_HEAP));
      // The thread died while writing: its partial output goes before the next try writes it anew.
      removeTaskFiles(task);
      this.options.log.warn({ instance: instanceId, heapMb: large.heapMb }, 'an instance ran a de-identification thread out of memory: done again in the large-instance thread');
      waitsForLargeThread();
      try {
        return await this.runWithin(large.pool, task, timeoutMs);
      } catch (largeError) {
        throw outOfMemory(largeError) ? new Error(outOfMemoryReason(large.heapMb, AFTER_LARGER_HEAP)) : largeError;
      }
    }
  }

  /**
   * Runs the task on the pool, stopped once it has run `timeoutMs`. Counted from when its thread began
   * it, which the thread writes in `startedAt`: up to twice as many tasks as threads are handed over,
   * and one waiting behind a long task, or one caught in a damaged stream, was stopped as it waited and
   * recorded as failed without having been tried (found in a review).
   */
  private async runWithin(pool: Piscina, task: DeidTask, timeoutMs: number): Promise<DeidTaskResult> {
    const controller = new AbortController();
    task.startedAt = new BigInt64Array(new SharedArrayBuffer(8));
    const startedAt = task.startedAt;
    let timer: NodeJS.Timeout | undefined;
    const check = () => {
      const started = Number(Atomics.load(startedAt, 0));
      // Not begun yet: looked at again shortly (a second at most), so the limit is kept to within it.
      const left = started === 0 ? Math.min(timeoutMs, 1000) : started + timeoutMs - Date.now();
      if (started !== 0 && left <= 0) controller.abort();
      else timer = setTimeout(check, left).unref();
    };
    check();
    try {
      return (await pool.run(task, { signal: controller.signal })) as DeidTaskResult;
    } catch (error) {
      throw controller.signal.aborted ? new Error(`de-identification did not finish within ${(timeoutMs / 1000).toFixed(0)} s`) : error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Records the finished tasks once RECORD_DELAY_MS has passed since the first, or at once when
   * MAX_OUTCOMES_PER_RECORD wait or the scheduler stops. */
  private scheduleRecord(): void {
    if (this.stopped || this.finished.length >= MAX_OUTCOMES_PER_RECORD) {
      setImmediate(() => this.recordFinished());
      return;
    }
    this.recordTimer ??= setTimeout(() => this.recordFinished(), RECORD_DELAY_MS);
  }

  /**
   * One transaction for the outcomes waiting, each in a savepoint of its own (a failure of one is
   * recorded as its failure; the others are kept). A transaction that cannot commit, or that SQLite
   * rolled back whole (an I/O error, a full disk), records none of them: the outputs it moved into
   * place are deleted again, and the instances wait still and are done again after the next poll.
   */
  private recordFinished(): void {
    if (this.recordTimer) clearTimeout(this.recordTimer);
    this.recordTimer = undefined;
    const batch = this.finished;
    this.finished = [];
    if (batch.length === 0) return;
    const { work } = this.options;
    let outcomes: Array<DeidOutcome | undefined> = [];
    this.placed = [];
    try {
      work.inOneTransaction(() => {
        for (const finished of batch) {
          outcomes.push(this.record(finished));
          // What follows would be recorded outside the transaction, each on its own.
          if (!work.inTransaction()) throw new Error('the transaction was rolled back');
        }
      });
    } catch (error) {
      this.options.log.error({ err: withoutValues((error as Error).message), outcomes: batch.length }, 'could not record de-identification outcomes');
      for (const finished of batch) removeQuietly(finished.task.temporary);
      for (const target of this.placed) removeQuietly(target);
      outcomes = [];
      this.backOff = true;
    }
    this.placed = [];
    batch.forEach((finished, i) => {
      this.report(outcomes[i], finished.seconds);
      this.inFlight.delete(finished.instance.id);
      finished.recorded();
    });
    // An outcome not recorded leaves its instance waiting, out of flight now, and one recorded may
    // have sent others back (redoReferencing): the next look finds them (once the entries fetched
    // ahead are used, or at the poll).
    this.nudge();
  }

  private record(finished: FinishedTask): DeidOutcome | undefined {
    const { instance, task, settings, result, error } = finished;
    if (result === undefined) return this.fail(instance, task, error ?? new Error('the task ended without a result'));
    try {
      return this.settle(instance, task, settings, result);
    } catch (settleError) {
      // Rolled back whole: recording the failure now would record it alone, outside the transaction.
      if (!this.options.work.inTransaction()) throw settleError;
      return this.fail(instance, task, settleError as Error);
    }
  }

  /** The settings as the workers take them, shared again only when a reload changed them. */
  private sharedSettings(settings: DeidSchedulerSettings): SharedSettings {
    if (this.shared?.of !== settings) this.shared = { of: settings, shared: shareSettings(settings.profiles, settings.base) };
    return this.shared.shared;
  }

  private report(outcome: DeidOutcome | undefined, seconds: number): void {
    if (outcome === undefined) return;
    observeSafely(this.options.observer, (observer) => observer.deidDone(outcome, seconds), this.options.log);
  }

  /** Records the outcome of a task, and puts a wanted output in its place; returns the outcome, or
   * undefined when a newer copy made this one stale (nothing was recorded). */
  private settle(instance: WaitingInstance, task: DeidTask, settings: DeidSchedulerSettings, result: DeidTaskResult): DeidOutcome | undefined {
    const { work, storagePath } = this.options;
    const earlier = work.earlierCopies(instance);
    // A rule or the pixel check held it back (decide.ts): nothing was written.
    if (result.kind === 'quarantined') {
      if (!work.markHeld(instance.id, instance, 'quarantined', result.reason)) return undefined;
      this.removeEarlierCopies([earlier.superseded]);
      return 'quarantined';
    }
    const reason = residualRiskReason(result.findings, settings.quarantineOnFindings, instance.override?.ignoreFindings);
    if (reason !== undefined) {
      const recorded = work.markQuarantinedWithFindings(instance.id, instance, reason, result.audit, result.findings);
      removeQuietly(task.temporary);
      if (!recorded) return undefined;
      this.removeEarlierCopies([earlier.superseded]);
      return 'quarantined';
    }
    const target = join(storagePath, result.filePath);
    const place = () => {
      mkdirSync(dirname(target), { recursive: true });
      renameSync(task.temporary, target);
      this.placed.push(target);
    };
    const recorded = work.markDeidentified(instance.id, instance, { ...result, profile: `${result.profile}: PS3.15 ${PROFILE_EDITION}` }, place);
    // A re-sent copy replaced the original meanwhile, or an instance it references was renamed while
    // it was being done: this output is stale; the instance waits still and is done again.
    if (!recorded) {
      removeQuietly(task.temporary);
      return undefined;
    }
    this.removeEarlierCopies([earlier.superseded, earlier.current], result.filePath);
    return 'ok';
  }

  /**
   * Deletes de-identified copies that a recorded outcome made obsolete (DeidWork.earlierCopies), except
   * the path the new copy took. Nothing serves them any more: the instance was received again or sent
   * back to be done again, so it is neither routed nor retrievable until its new outcome. Should the
   * transaction then roll back, the row only names a copy that is gone while it waits to be done again.
   */
  private removeEarlierCopies(paths: ReadonlyArray<string | undefined>, newCopy?: string): void {
    for (const path of new Set(paths)) {
      if (path !== undefined && path !== newCopy) removeQuietly(join(this.options.storagePath, path));
    }
  }

  /** One line a period, with how many were postponed since the last: on a full disk every instance
   * waiting was postponed at every poll, 3,155 lines in 2.5 min (found in the failure review), written
   * to the log's volume, maybe the same full one. */
  private logPostponed(instance: WaitingInstance, shortage: string): void {
    this.postponed.count += 1;
    const now = Date.now();
    if (now - this.postponed.loggedAt < POSTPONED_LOG_MS) return;
    this.options.log.warn({ instance: instance.id, err: shortage, postponed: this.postponed.count }, 'de-identification postponed: the machine is short of a resource');
    this.postponed = { count: 0, loggedAt: now };
  }

  private fail(instance: WaitingInstance, task: DeidTask, error: Error): DeidOutcome | undefined {
    removeTaskFiles(task);
    // Stopping ends the tasks running: they are not failures, and are done again at the next start.
    if (this.stopped) return undefined;
    // An original that is not the indexed file any more: the reason is Gantry's own, free of values.
    const reason = error instanceof HeldOriginalError ? error.message : withoutValues(error.message);
    const shortage = error instanceof HeldOriginalError ? undefined : resourceShortage(error);
    if (shortage) {
      // Not this instance's fault: a full disk or too many open files passes. Recorded as failed, it
      // would wait for an operator; it waits for the next poll instead, and so does the rest.
      this.logPostponed(instance, shortage);
      this.backOff = true;
      return undefined;
    }
    try {
      const earlier = this.options.work.earlierCopies(instance);
      if (!this.options.work.markHeld(instance.id, instance, 'failed', reason)) {
        // The row no longer holds the copy the task read (replaced, deleted, or no longer waiting):
        // not a failure of what the row holds now.
        this.options.log.debug({ instance: instance.id, err: reason }, 'de-identification of a copy no longer waiting failed');
        return undefined;
      }
      this.removeEarlierCopies([earlier.superseded]);
      this.options.log.warn({ instance: instance.id, err: reason }, 'de-identification failed');
    } catch (recordError) {
      this.options.log.warn({ instance: instance.id, err: reason }, 'de-identification failed');
      // The index cannot take it (disk full, read-only): the instance stays waiting and is tried
      // again at the next poll, not in a tight loop.
      this.options.log.error({ instance: instance.id, err: (recordError as Error).message }, 'could not record a failed de-identification');
      this.backOff = true;
      return undefined;
    }
    return 'failed';
  }
}

/** Error codes (errno) that say the machine, not the instance, is at fault for now. A message carries
 * the code first (`ENOSPC: no space left on device, write`): an error that crossed from a worker
 * thread keeps its message but not its `code` property. */
const RESOURCE_SHORTAGES = ['ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN'];

/** The errno of a resource shortage that `error` reports, if it reports one. */
export function resourceShortage(error: Error): string | undefined {
  const code = (error as NodeJS.ErrnoException).code ?? /^([A-Z]+):/.exec(error.message)?.[1];
  return code !== undefined && RESOURCE_SHORTAGES.includes(code) ? code : undefined;
}

/**
 * Why an original is no longer the file its row describes, or undefined (original-check.ts). A file
 * imported in place is its user's, who may replace it (another patient's instance under the same
 * name, of the same size or not) or delete it; de-identified, it would be recorded, and forwarded, as
 * the indexed instance. Held as failed before any thread reads it: one stat on this thread, as the
 * size check before it. A stat that fails otherwise (EACCES, EIO) leaves it to the task, whose open
 * fails with the error's code.
 */
function originalHeld(path: string, instance: WaitingInstance): HeldOriginalError | undefined {
  try {
    const held = heldOriginal(path, { size: instance.fileSize, stamp: stampFromColumns(instance.fileMtimeNs, instance.fileIno) }, originOf(instance.imported));
    return held ? new HeldOriginalError(held) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Deletes what a task that failed or was ended may have left: its output, and the scratch file of
 * frames beside it (deidentify-file.ts), which holds pixel data. A thread stopped at the time limit,
 * or by the stop, ends without deleting either itself.
 */
function removeTaskFiles(task: DeidTask): void {
  removeQuietly(task.temporary);
  removeQuietly(`${task.temporary}.frames`);
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
