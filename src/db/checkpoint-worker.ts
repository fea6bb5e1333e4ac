/**
 * The thread that checkpoints the index (background-checkpoints.ts): a connection of its own that
 * copies the WAL's committed pages into the database file, PASSIVE (it never waits for, nor blocks,
 * the node's readers and writer; sqlite.org/c3ref/wal_checkpoint_v2.html), every BUSY_MS while the WAL
 * grows and every IDLE_MS while it does not. A checkpoint with nothing new to copy reads the WAL
 * index's header and returns, without a write or a sync.
 */
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

export interface CheckpointWorkerData {
  databaseFile: string;
  busyMs: number;
  idleMs: number;
}

/** What the thread tells its owner. */
export type CheckpointMessage =
  | { kind: 'checkpointed'; log: number; checkpointed: number }
  | { kind: 'failed'; message: string; code?: string };

const { databaseFile, busyMs, idleMs } = workerData as CheckpointWorkerData;
const port = parentPort;
if (!port) throw new Error('checkpoint-worker.js runs as a worker thread');

const db = new Database(databaseFile, { fileMustExist: true });
let timer: NodeJS.Timeout | undefined;
let last = '';

function pass(): void {
  let delay = idleMs;
  try {
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
    if (result) {
      const state = `${result.log}:${result.checkpointed}`;
      if (state !== last) {
        delay = busyMs;
        port?.postMessage({ kind: 'checkpointed', log: result.log, checkpointed: result.checkpointed } satisfies CheckpointMessage);
      }
      last = state;
    }
  } catch (error) {
    // A disk error, say: told, and tried again at the idle pace; the node's own connection still
    // checkpoints at its bound (background-checkpoints.ts), so the WAL cannot grow without end.
    const { message, code } = error as NodeJS.ErrnoException;
    port?.postMessage({ kind: 'failed', message, ...(code ? { code } : {}) } satisfies CheckpointMessage);
  }
  timer = setTimeout(pass, delay);
}

port.on('message', (message: unknown) => {
  if (message !== 'stop') return;
  if (timer) clearTimeout(timer);
  db.close();
  port.close();
});

pass();
