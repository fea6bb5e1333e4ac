/**
 * `gantry status`: one screen for an operator — whether the node runs and is ready, the instances by
 * state, the outbox per destination, and the latest failures (forwarding, de-identification and
 * quarantine). It reads the index under storage.path (the running node shares it through SQLite WAL)
 * and asks the running node's /readyz. Reasons are stored free of PHI, so the screen is too.
 */
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { DATABASE_FILE, indexSizeBytes } from '../db/database.js';
import { INSTANCE_STATES, InstanceIndex } from '../index/instance-index.js';
import { DeidWork } from '../index/deid-work.js';
import { heldId, QuarantineWork } from '../index/quarantine-work.js';
import { runningGantry } from '../pipeline/recovery.js';
import { Outbox, type DestinationCounts } from '../queue/outbox.js';
import { openIndex } from './queue.js';
import { terminalText } from './terminal-text.js';

export interface StatusOptions {
  /** Failures listed per kind. */
  limit: number;
  now?: number;
}

export async function printStatus(loaded: LoadedConfig, options: StatusOptions, write: (line: string) => void): Promise<void> {
  const now = options.now ?? Date.now();
  const { db, storagePath } = openIndex(loaded);
  try {
    write(`Gantry at ${storagePath} (${loaded.source})`);
    write(await nodeLine(loaded, storagePath));
    const index = new InstanceIndex(db);
    write(await diskLine(storagePath, loaded.config.storage.minFreeBytes, index.waitingBytes()));

    const byState = index.countsByState();
    const { patients, studies, series, instances } = index.counts();
    write('');
    write(`instances: ${instances} (patients ${patients}, studies ${studies}, series ${series})`);
    write(`  ${INSTANCE_STATES.map((state) => `${state} ${byState[state] ?? 0}`).join(', ')}`);
    write(waitingLine(byState.received ?? 0, new DeidWork(db).oldestWaitingSince(), now));

    const outbox = new Outbox(db);
    write('');
    writeOutbox(outbox.counts(), loaded.config.forward.destinations.map((destination) => destination.name), now, write);

    const failures = outbox.recentFailures(options.limit);
    write('');
    if (failures.length === 0) write('forward failures: none waiting');
    else write('latest forward failures (newest first): time, destination, state, attempts, status, reason');
    for (const row of failures) {
      write(`  ${iso(row.failedAt)}  ${row.destination}  ${row.state}  ${row.attempts}  ${row.lastStatus ?? '-'}  ${terminalText(row.lastError)}`);
    }

    const held = new QuarantineWork(db).list(['quarantined', 'failed'], options.limit, 'latestHeld');
    write('');
    if (held.length === 0) write('held instances: none');
    else write('latest held instances (newest first): time, id, state, calling AE, modality, reason');
    for (const row of held) {
      write(`  ${iso(row.heldAt)}  ${heldId(row)}  ${row.state}  ${terminalText(row.callingAeTitle)}  ${terminalText(row.modality ?? '-')}  ${terminalText(row.reason)}`);
    }
    // ls lists failed instances only with --failed.
    if (held.length > 0) write(`  (gantry quarantine ls${held.some((row) => row.state === 'failed') ? ' --failed' : ''} | show ID | release ID)`);
  } finally {
    db.close();
  }
}

/** The de-identification backlog and its age (gantry_deid_oldest_waiting_seconds): a burst being
 * worked through, or a pool that is stuck. */
function waitingLine(waiting: number, oldestSince: number | undefined, now: number): string {
  if (waiting === 0 || oldestSince === undefined) return '  waiting for de-identification: none';
  return `  waiting for de-identification: ${waiting}, the oldest for ${duration(now - oldestSince)} (since ${iso(oldestSince)})`;
}

function writeOutbox(counts: readonly DestinationCounts[], configured: readonly string[], now: number, write: (line: string) => void): void {
  const byName = new Map(counts.map((row) => [row.destination, row]));
  const names = [...new Set([...configured, ...byName.keys()])].sort();
  if (names.length === 0) {
    write('outbox: no destinations (forward.destinations is empty)');
    return;
  }
  const rows = names.map((name) => {
    const row = byName.get(name);
    const age = row?.oldestQueuedAt == null ? '-' : duration(now - row.oldestQueuedAt);
    const note = configured.includes(name) ? '' : ' (not in the config)';
    return [name + note, String(row?.queued ?? 0), String(row?.sent ?? 0), String(row?.dead ?? 0), age];
  });
  writeTable(['outbox destination', 'queued', 'sent', 'dead', 'oldest queued'], rows, write);
}

function writeTable(header: string[], rows: string[][], write: (line: string) => void): void {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join('  ');
  write(line(header));
  for (const row of rows) write(line(row));
}

async function nodeLine(loaded: LoadedConfig, storagePath: string): Promise<string> {
  const pid = await runningGantry(storagePath);
  if (pid === undefined) return 'node: not running';
  const { host, port } = loaded.config.http;
  const address = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  try {
    const response = await fetch(`http://${address.includes(':') ? `[${address}]` : address}:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
    if (response.ok) return `node: running (pid ${pid}), ready`;
    if (response.status !== 503) return `node: running (pid ${pid}); /readyz answered HTTP ${response.status}`;
    const body = (await response.json()) as { checks?: Array<{ name: string; ok: boolean; detail?: string }> };
    const failing = (body.checks ?? []).filter((check) => !check.ok).map((check) => check.detail ?? check.name);
    return `node: running (pid ${pid}), NOT READY: ${failing.join('; ')}`;
  } catch (error) {
    // The node reads http.host and http.port at its start only: an edited file names another port.
    return `node: running (pid ${pid}); /readyz on ${address}:${port} (http.host, http.port) does not answer: ${(error as Error).message} (if http.host or http.port changed since the node started, it listens where they were then)`;
  }
}

/** Free disk, and what the waiting instances' de-identified copies will take of it: C-STORE is
 * refused when what is left is under the floor (free-space.ts). */
async function diskLine(storagePath: string, minFreeBytes: number, reserved: number): Promise<string> {
  const fs = await statfs(storagePath);
  const free = fs.bavail * fs.bsize;
  const kept = reserved > 0 ? `, ${bytes(reserved)} of it kept for the copies of the instances waiting for de-identification` : '';
  const low = free - reserved < minFreeBytes ? ' — BELOW the floor: C-STORE answers 0xA700' : '';
  return `disk: ${bytes(free)} free${kept} (storage.minFreeBytes ${bytes(minFreeBytes)})${low}; index ${bytes(indexSizeBytes(join(storagePath, DATABASE_FILE)))}`;
}

function bytes(count: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function duration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
