/**
 * Free disk under storage.path, kept fresh without a system call per C-STORE: re-read every
 * `intervalMs`, and lowered at once by what each store writes, so a burst cannot overshoot the floor
 * by more than the objects in flight.
 */
export class FreeSpaceMonitor {
  private bytes = Number.POSITIVE_INFINITY;
  private lastReadAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly read: () => Promise<number>,
    private readonly intervalMs = 1000,
  ) {}

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The last known free bytes. */
  get freeBytes(): number {
    return this.bytes;
  }

  /** When the last reading succeeded (ms; 0: never). */
  get readAt(): number {
    return this.lastReadAt;
  }

  /** Counts bytes just written, until the next reading. */
  consumed(bytes: number): void {
    this.bytes -= bytes;
  }

  async refresh(): Promise<number> {
    try {
      this.bytes = await this.read();
      this.lastReadAt = Date.now();
    } catch {
      // Keep the last reading; a failing statfs shows up as write errors soon enough.
    }
    return this.bytes;
  }
}
