/**
 * The toolkit's commands on the session under storage.path: gantry import and gantry export. They
 * open the same index the node uses (SQLite in WAL mode: a running node and a command can share it).
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import type { Db } from '../db/database.js';
import { runningGantry } from '../pipeline/recovery.js';
import { openCommandIndex } from './command-index.js';
import { terminalText } from './terminal-text.js';
import { GENERATED_SECRET_FILE, requireOperatorSecret } from '../config/secret.js';
import { ConfigError } from '../config/load.js';
import { deidSecret } from '../session/deidentifier.js';
import { commandLogger } from '../observability/logger.js';
import { exportWithConfig, type ExportSelection, type ExportSummary } from '../toolkit/export.js';
import { importFolders, type ImportSummary } from '../toolkit/import.js';
import { Progress } from '../toolkit/progress.js';

export interface ImportCommandOptions {
  copy: boolean;
  forward: boolean;
  workers?: number;
  quiet?: boolean;
}

/**
 * SQLite's page cache for these commands, in KiB: 8 MB, half of better-sqlite3's default
 * (SQLITE_DEFAULT_CACHE_SIZE=-16000). A command walks the whole index (export counts and pages
 * through every instance), so the cache filled to its limit on a large session and stayed there:
 * the one part of peak RSS that grew with the corpus. Measured on bench/scale's corpora (two runs
 * each, bench/results-2026-11-29-scale.txt): 100,000 files, peak RSS of import 140-144 -> 131-132
 * MB, export 156-157 -> 147 MB; 10,000 files unchanged (116-119, 138-139 MB); CPU time within the
 * machine's noise. 4 MB saved 4 MB more, but one of its two exports of 100,000 files took 47 s of
 * CPU against 35-38 s.
 */
const PAGE_CACHE_KIB = 8000;

/** Where imports list the files they left out (skipped-list.ts), under storage.path. */
const IMPORT_REPORTS_DIR = 'import-reports';

/** Opens the index under storage.path; import creates it, export needs one there. */
function openSessionIndex(loaded: LoadedConfig, use: 'create' | 'existing'): { db: Db; storagePath: string } {
  // Found in a review: export on a wrong storage.path made an empty index (and, with the embedded
  // config, a new secret) there and said "exported 0 instance(s)", exit 0: 'existing' needs one.
  const { db, storagePath } = openCommandIndex(loaded, use);
  db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
  return { db, storagePath };
}

export async function runImport(loaded: LoadedConfig, roots: string[], options: ImportCommandOptions, print: (line: string) => void): Promise<ImportSummary> {
  const { db, storagePath } = openSessionIndex(loaded, 'create');
  try {
    const progress = new Progress('import', process.stderr, undefined, options.quiet);
    const summary = await importFolders(db, storagePath, {
      roots,
      copy: options.copy,
      forward: options.forward,
      // Every CPU, as a batch job (deid.workers is the serving node's); -w leaves some to a node serving
      // on the same host.
      workers: options.workers ?? availableParallelism(),
      progress,
      log: commandLogger(loaded.config.log.level),
      skippedList: join(storagePath, IMPORT_REPORTS_DIR, `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}.tsv`),
    });
    printImportSummary(summary, options, (await runningGantry(storagePath)) !== undefined, print);
    return summary;
  } finally {
    db.close();
  }
}

function printImportSummary(summary: ImportSummary, options: ImportCommandOptions, nodeRunning: boolean, print: (line: string) => void): void {
  print(
    `indexed ${summary.indexed} instance(s) (${(summary.bytes / 1e6).toFixed(1)} MB) of ${summary.files} file(s)` +
      `${options.copy ? ', copied into storage' : ', in place'}; already indexed ${summary.alreadyIndexed}${summary.released > 0 ? ` (${summary.released} now to be forwarded)` : ''}; ` +
      `${summary.moved > 0 ? `moved here since indexed ${summary.moved}; ` : ''}` +
      `duplicate SOP Instance UIDs ${summary.duplicates}; not DICOM ${summary.notDicom}; unreadable ${summary.unreadable}`,
  );
  for (const [reason, count] of [...summary.problems].sort((a, b) => b[1] - a[1])) print(`  ${count} × ${reason}`);
  for (const example of summary.examples) print(`  e.g. ${terminalText(example.path)}: ${terminalText(example.reason)}`);
  if (summary.skippedList) print(`every file not imported is listed, with its reason, in ${summary.skippedList}`);
  if (summary.indexed > 0) {
    // Said only when true: with no node running, nothing de-identifies them until one starts.
    const who = nodeRunning ? 'the running node de-identifies them' : 'no Gantry node runs on this storage: one started on it (gantry serve) de-identifies them';
    print(
      options.forward
        ? `${who} and forwards them like received instances`
        : `${who}; they are not forwarded (import with --forward for that); gantry export writes them out (de-identifying what is not yet)`,
    );
  }
}

export interface ExportCommandOptions {
  out: string;
  selection: ExportSelection;
  layout?: string;
  workers?: number;
  quiet?: boolean;
}

export async function runExport(loaded: LoadedConfig, options: ExportCommandOptions, print: (line: string) => void): Promise<ExportSummary> {
  const { db, storagePath } = openSessionIndex(loaded, 'existing');
  try {
    const secret = nodeSecret(loaded, storagePath);
    const summary = await exportWithConfig(db, loaded, secret, {
      out: options.out,
      selection: options.selection,
      ...(options.layout ? { layout: options.layout } : {}),
      ...(options.workers ? { workers: options.workers } : {}),
      progress: new Progress('export', process.stderr, undefined, options.quiet),
    });
    print(
      `exported ${summary.written} instance(s) (${(summary.bytes / 1e6).toFixed(1)} MB) into ${options.out}: ${summary.copied} copied from the node's de-identified copies, ` +
        `${summary.deidentified} de-identified now; ${summary.alreadyExported} already exported; ${summary.held} held back; ${summary.failed} failed (of ${summary.selected} selected)`,
    );
    for (const [reason, count] of [...summary.problems].sort((a, b) => b[1] - a[1])) print(`  ${count} × ${reason}`);
    return summary;
  } finally {
    db.close();
  }
}

/**
 * The node's secret, never a new one: generated here (the embedded config, no secret file yet), one
 * was written into the node's storage and then refused, and a later command there used it (found in
 * the secrets review).
 */
function nodeSecret(loaded: LoadedConfig, storagePath: string): string {
  requireOperatorSecret(loaded);
  try {
    return deidSecret(loaded, storagePath);
  } catch {
    throw new ConfigError(loaded.source, [`deid.secret: not set, and no ${GENERATED_SECRET_FILE} under ${storagePath}: gantry export uses the node's secret and never makes one; pass the node's config`]);
  }
}
