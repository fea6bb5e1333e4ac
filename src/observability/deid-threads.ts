/**
 * Whether the de-identification threads work: a readiness check for load balancers. A thread that
 * cannot start (its code fails to load, no memory for its heap) is replaced by piscina, fails again,
 * and after a few tries no task begins at all: instances are received, stored and wait for good while
 * /readyz said "ready", and a balancer kept sending PHI to a node that never de-identifies or forwards
 * it (found in a review). Only failures in a row with no task finished between them count: a thread
 * that dies on one instance (out of memory) is replaced, and the next task finishes.
 */
import type { ReadinessCheck } from './http-server.js';

/** Thread failures in a row, with no task finished, after which the node is not ready. */
export const THREAD_FAILURES_NOT_READY = 3;

export class DeidThreadHealth {
  private failuresInARow = 0;
  private lastFailure = '';

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
    return {
      name: 'deidentification',
      ok: false,
      detail:
        `the de-identification threads failed ${this.failuresInARow} times in a row with no task finished (last: ${this.lastFailure}): ` +
        'received instances are stored and wait. See the log from the start; a restart after the cause is mended (an installation, deid.workers, memory) de-identifies them',
    };
  }
}
