/**
 * Whether storage.path takes writes. Free disk alone does not say so: a file system that ext4 remounted
 * read-only after an error (EROFS), a volume whose permissions changed (EACCES) or a failing device
 * (EIO) has room, and every C-STORE fails. The probe creates and removes a small file in incoming/
 * every `intervalMs` (no sync: a name is enough to tell), so that /readyz says so while no store
 * arrives, and says again when it is mended.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ProbeStatus {
  /** When the last probe ended (ms; 0: none yet). */
  at: number;
  /** The error code of the last probe, or undefined when it could write. */
  failure?: string;
}

export class StorageProbe {
  private last: ProbeStatus = { at: 0 };
  private timer: NodeJS.Timeout | undefined;
  /** A probe under way: on a device that stopped answering it never ends, and each probe started
   * beside it would hold another thread of libuv's pool (four), which the rest of the node needs. */
  private probing = false;
  private readonly file: string;

  constructor(
    directory: string,
    private readonly intervalMs = 10_000,
  ) {
    // Incoming files of an earlier run are deleted at start (ObjectStore.init): so is a probe's.
    this.file = join(directory, `.probe-${process.pid}`);
  }

  async start(): Promise<void> {
    await this.probe();
    this.timer = setInterval(() => {
      if (this.probing) return;
      this.probing = true;
      void this.probe().finally(() => (this.probing = false));
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get status(): ProbeStatus {
    return this.last;
  }

  async probe(): Promise<ProbeStatus> {
    try {
      await writeFile(this.file, 'gantry');
      await rm(this.file, { force: true });
      this.last = { at: Date.now() };
    } catch (error) {
      this.last = { at: Date.now(), failure: (error as NodeJS.ErrnoException).code ?? 'error' };
    }
    return this.last;
  }
}

/** A probe this old means probing itself hangs (a device that stopped answering): not ready either. */
const PROBE_STALE_MS = 60_000;

/** What readiness says of the probe: writable, or why not and what to do. */
export function storageWritable(status: ProbeStatus, now = Date.now()): { ok: true } | { ok: false; detail: string } {
  if (status.failure !== undefined) {
    return { ok: false, detail: `storage.path does not take writes (${status.failure}): C-STORE fails; make it writable (a read-only remount after a disk error, permissions)` };
  }
  if (now - status.at > PROBE_STALE_MS) return { ok: false, detail: `storage.path has not answered a write for ${Math.round((now - status.at) / 1000)} s: check the device under it (a disk or a network file system that stopped answering)` };
  return { ok: true };
}
