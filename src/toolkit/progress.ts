/**
 * A progress line for the toolkit's long commands. On a terminal it redraws one line on stderr at most
 * ten times a second; elsewhere (a log, CI) it prints a line every ten seconds. Hand-written: the
 * machine that built this has no registry to add cli-progress from, and one line of output is all
 * that is needed.
 */
export class Progress {
  private done = 0;
  private bytes = 0;
  private readonly started = Date.now();
  private lastDraw = this.started;
  private readonly interactive: boolean;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private total?: number,
    private readonly quiet = false,
  ) {
    this.interactive = stream.isTTY === true;
  }

  /** The total once it is known (a folder walk finds it as it goes). */
  setTotal(total: number): void {
    this.total = total;
  }

  add(count: number, bytes = 0): void {
    this.done += count;
    this.bytes += bytes;
    const now = Date.now();
    if (now - this.lastDraw >= (this.interactive ? 100 : 10_000)) {
      this.lastDraw = now;
      this.draw(false);
    }
  }

  finish(): void {
    this.draw(true);
  }

  private draw(final: boolean): void {
    if (this.quiet) return;
    const seconds = Math.max((Date.now() - this.started) / 1000, 0.001);
    const rate = `${Math.round(this.done / seconds)} files/s, ${(this.bytes / 1e6 / seconds).toFixed(1)} MB/s`;
    const of = this.total !== undefined ? ` of ${this.total}` : '';
    const bar = this.total ? `[${'#'.repeat(Math.round((20 * this.done) / Math.max(this.total, 1))).padEnd(20, '.')}] ` : '';
    const line = `${this.label}: ${bar}${this.done}${of} (${rate}, ${seconds.toFixed(1)} s)`;
    if (this.interactive) this.stream.write(`\r${line}\u001b[K${final ? '\n' : ''}`);
    else this.stream.write(`${line}\n`);
  }
}

/** Counts a reason in a summary's tally: offsets, lengths and hex values folded to N, so that the
 * tally stays a few lines however many files fail alike (the examples keep the exact reason). */
export function tally(problems: Map<string, number>, label: string, reason: string): void {
  const key = `${label}: ${reason.replace(/0x[0-9a-f]+|\b\d{3,}\b/gi, 'N')}`;
  problems.set(key, (problems.get(key) ?? 0) + 1);
}
