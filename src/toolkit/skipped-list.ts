/**
 * Every file an import did not index, with its reason, one line each (tab-separated) in a file of
 * its own: the summary names the first few, and a tree with hundreds of files left out had the rest
 * only as counts (found in the toolkit review: two files of one SOP Instance UID may hold different
 * images, and the operator must be able to find the one left out). Made at the first file left
 * out; the paths may name patients, so it lives under storage.path, beside the index that holds PHI.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export class SkippedList {
  private fd: number | undefined;
  private failed = false;

  constructor(readonly path: string) {}

  /** Whether a line was written (the list exists). */
  get written(): boolean {
    return this.fd !== undefined;
  }

  add(file: string, reason: string): void {
    if (this.failed) return;
    try {
      if (this.fd === undefined) {
        mkdirSync(dirname(this.path), { recursive: true, mode: 0o750 });
        this.fd = openSync(this.path, 'wx', 0o640);
      }
      writeSync(this.fd, `${escaped(file)}\t${escaped(reason)}\n`);
    } catch {
      // The list is an aid: an import does not fail for it (the summary still counts every file).
      this.failed = true;
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
  }
}

/** A path or reason on one line: tabs, line ends and backslashes escaped. */
function escaped(text: string): string {
  return text.replace(/[\\\t\n\r]/g, (character) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[character] as string);
}
