/**
 * Receiving first: while a sender's stores keep arriving, de-identification waits, so that a burst is
 * acknowledged at the rate of the receive path alone. On two cores, de-identifying alongside cost the
 * receive path about a third of its rate (bench/results-2026-11-30.txt): the worker threads' CPU and,
 * more, their output written to the disk that each received instance is synced to before its
 * response. Lowering the threads' scheduling priority (worker.ts) gives back the CPU, not the disk.
 *
 * The wait is bounded by what it is for. A study is forwarded only once nothing arrived for it for
 * forward.stableSeconds; an instance de-identified within half of that after its arrival is done
 * before its study can be forwarded, with the other half left to work through what waited. So an
 * instance waits at most `maxWaitMs` after it was received, however busy the senders stay: a steady
 * feed is de-identified that far behind it, at its own rate. A pause of `quietMs` between stores ends
 * the wait (a modality sending one image every second holds it 250 ms after each). The instance
 * that arrived first decides (a re-sent one arrived anew, with its old row), whatever its row.
 */

/** A pause between stores this long ends the wait: the sender is done or slow. */
export const QUIET_MS = 250;

export interface ReceiveFirstSettings {
  /** Off: de-identification starts as soon as an instance is stored. */
  enabled: boolean;
  /** The longest an instance waits after it was received (half of forward.stableSeconds). */
  maxWaitMs: number;
}

/** Now, on both clocks: the pause is timed on the monotonic one (a wall clock stepped back must not
 * stretch it), an instance's wait from its received_at (ms since the epoch, as the index keeps it). */
export interface Now {
  wall: number;
  monotonic: number;
}

function now(): Now {
  return { wall: Date.now(), monotonic: performance.now() };
}

export class ReceiveFirst {
  private lastStoreAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly settings: () => ReceiveFirstSettings,
    private readonly quietMs = QUIET_MS,
  ) {}

  /** An instance was stored (`monotonicNow`: performance.now()). */
  stored(monotonicNow = performance.now()): void {
    this.lastStoreAt = monotonicNow;
  }

  /**
   * How long de-identification should still wait: 0 to go on now; else the time until the senders
   * count as paused or the instance waiting that arrived first has waited its longest, whichever comes
   * first. `firstArrival` gives when that instance was received (ms since the epoch, undefined: none
   * waits); it is asked only while the senders are busy.
   */
  waitMs(firstArrival: () => number | undefined, at: Now = now()): number {
    const { enabled, maxWaitMs } = this.settings();
    if (!enabled) return 0;
    const untilQuiet = this.lastStoreAt + this.quietMs - at.monotonic;
    if (untilQuiet <= 0) return 0;
    const receivedAt = firstArrival();
    if (receivedAt === undefined) return 0;
    // Never more than the longest wait at one time, whatever the wall clock did. (Set back, it gives
    // the instances received since smaller times: those become the first arrivals, and the wait is
    // bounded from theirs.)
    const untilDue = Math.min(receivedAt + maxWaitMs - at.wall, maxWaitMs);
    return Math.max(0, Math.min(untilQuiet, untilDue));
  }
}
