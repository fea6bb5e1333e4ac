/**
 * Whether the de-identification threads work: a readiness check for load balancers. A thread that
 * cannot start (its code fails to load, no memory for its heap) is replaced by piscina, fails again,
 * and after a few tries no task begins at all: instances are received, stored and wait for good while
 * /readyz said "ready", and a balancer kept sending PHI to a node that never de-identifies or forwards
 * it (found in a review). Only failures in a row with no task finished between them count: a thread
 * that dies on one instance (out of memory) is replaced, and the next task finishes.
 *
 * Unready, the check probes the threads with a task of no work: piscina starts a thread only for a
 * task, so threads that failed while the node was idle and could start now (memory freed) were never
 * tried again, no instance came to a node that said it was not ready, and it stayed so (found in the
 * review of the check).
 */
import type { Piscina } from 'piscina';
import type { ReadinessCheck } from './http-server.js';

/** Thread failures in a row, with no task finished, after which the node is not ready. */
export const THREAD_FAILURES_NOT_READY = 3;
/** At most one probe this often; one that has not run by then is withdrawn (a thread still cannot start). */
export const PROBE_EVERY_MS = 10_000;

/** Runs a task of no work in a de-identification thread; rejects when the signal aborts it. */
export type ThreadProbe = (signal: AbortSignal) => Promise<unknown>;

/** The probe of a pool whose thread entry exports `ready` (src/deid/worker.ts). */
export function readyProbe(pool: Pick<Piscina, 'run'>): ThreadProbe {
  return (signal) => pool.run(undefined, { name: 'ready', signal });
}

export class DeidThreadHealth {
  private failuresInARow = 0;
  private lastFailure = '';
  private lastProbeAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly probe?: ThreadProbe, private readonly probeEveryMs = PROBE_EVERY_MS) {}

  threadFailed(error: Error): void {
    this.failuresInARow += 1;
    this.lastFailure = error.message;
  }

  /** A task finished, whatever its outcome: the threads work. */
  taskFinished(): void {
    this.failuresInARow = 0;
  }

  check(): ReadinessCheck {
    if (this.failuresInARow < THREAD_FAILURES_NOT_READY) return { name: 'deidentification', ok: true };
    this.probeThreads();
    return {
      name: 'deidentification',
      ok: false,
      detail:
        `the de-identification threads failed ${this.failuresInARow} times in a row with no task finished (last: ${this.lastFailure}): ` +
        'received instances are stored and wait. See the log from the start; a restart after the cause is mended (an installation, deid.workers, memory) de-identifies them',
    };
  }

  /** A probe that finishes counts as a task finished: the next check says ready. */
  private probeThreads(): void {
    if (!this.probe || Date.now() - this.lastProbeAt < this.probeEveryMs) return;
    this.lastProbeAt = Date.now();
    this.probe(AbortSignal.timeout(this.probeEveryMs)).then(
      () => this.taskFinished(),
      () => undefined, // withdrawn or failed: the thread failures say why
    );
  }
}
