/**
 * Feeds the de-identification pool from the index: each instance in state `received` goes to a worker
 * thread, which decides (profile, quarantine rules, pixels that may show identity: decide.ts) and
 * de-identifies; each outcome is one transaction (deidentified, quarantined or failed, with its reason). The receive path
 * only nudges the scheduler; it never waits for it.
 */
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Piscina } from 'piscina';
import type { BaseSettings } from '../deid/decide.js';
import { PROFILE_EDITION } from '../deid/profile.js';
import type { ProfileConfig } from '../deid/rules.js';
import type { DeidTask, DeidTaskResult } from '../deid/worker.js';
import type { DeidWork, WaitingInstance } from '../index/deid-work.js';
import type { Logger } from '../observability/logger.js';
import { DEID_INCOMING_DIR } from '../store/object-store.js';

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
}

export class DeidScheduler {
  private readonly inFlight = new Map<number, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private filling = false;
  private again = false;
  private stopped = false;
  private sequence = 0;

  constructor(private readonly options: DeidSchedulerOptions) {}

  start(): void {
    this.timer = setInterval(() => this.nudge(), this.options.pollMs ?? 1000);
    this.timer.unref();
    this.nudge();
  }

  /** Something may be waiting: look soon (coalesced). */
  nudge(): void {
    if (this.stopped) return;
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

  /** Stops taking work and waits (up to `graceMs`) for the tasks running. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const deadline = new Promise((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.allSettled([...this.inFlight.values()]), deadline]);
  }

  get running(): number {
    return this.inFlight.size;
  }

  private fill(): void {
    const room = this.options.maxInFlight - this.inFlight.size;
    if (room <= 0) return;
    const waiting = this.options.work.waiting(0, room + this.inFlight.size).filter((instance) => !this.inFlight.has(instance.id));
    for (const instance of waiting.slice(0, room)) this.dispatch(instance);
  }

  private dispatch(instance: WaitingInstance): void {
    const settings = this.options.settings();
    this.sequence += 1;
    const task: DeidTask = {
      input: join(this.options.storagePath, instance.filePath),
      temporary: join(this.options.storagePath, DEID_INCOMING_DIR, `${process.pid}-${this.sequence}.dcm`),
      root: this.options.storagePath,
      profiles: settings.profiles,
      base: settings.base,
      callingAeTitle: instance.callingAeTitle,
      // A de-identified copy can always be made again from its original (the engine is
      // deterministic), so it is not synced: syncing every copy measured as halving the receive
      // path, whose syncs waited behind these on the same disk. After an unclean stop the start-up
      // check sends copies that did not survive back to `received`.
      sync: false,
    };
    const done = (this.options.pool.run(task) as Promise<DeidTaskResult>)
      .then(async (result) => {
        // A rule or the pixel check held it back (decide.ts): nothing was written.
        if (result.kind === 'quarantined') {
          this.options.work.markHeld(instance.id, instance.filePath, 'quarantined', result.reason);
          return;
        }
        const profile = `${result.profile}: PS3.15 ${PROFILE_EDITION}`;
        const risks = result.findings.filter((finding) => finding.code !== 'empty-patient-id');
        if (settings.quarantineOnFindings && risks.length > 0) {
          const reason = `residual risk: ${risks.map((finding) => finding.message).join('; ')}`.slice(0, 500);
          this.options.work.markQuarantinedWithFindings(instance.id, instance.filePath, reason, result.audit, result.findings);
          await unlink(join(this.options.storagePath, result.filePath)).catch(() => undefined);
          return;
        }
        const recorded = this.options.work.markDeidentified(instance.id, instance.filePath, { ...result, profile });
        // A re-sent copy replaced the original meanwhile: this output is stale, the new one comes.
        if (!recorded) await unlink(join(this.options.storagePath, result.filePath)).catch(() => undefined);
      })
      .catch((error: Error) => {
        this.options.log.warn({ instance: instance.id, err: withoutValues(error.message) }, 'de-identification failed');
        this.options.work.markHeld(instance.id, instance.filePath, 'failed', withoutValues(error.message));
        void unlink(task.temporary).catch(() => undefined);
      })
      .finally(() => {
        this.inFlight.delete(instance.id);
        this.nudge();
      });
    this.inFlight.set(instance.id, done);
  }
}

/** Failure reasons are stored and logged: keep them free of UIDs and quoted values. */
function withoutValues(message: string): string {
  return message.replace(/\b[0-9]+(\.[0-9]+){3,}\b/g, '<uid>').replace(/\[[^\]]*\]|"[^"]*"/g, '<value>').slice(0, 200);
}
