/**
 * A WAL checkpoint of the index, run as a task of a worker thread (background-checkpoints.ts): PASSIVE,
 * so it never waits for, nor blocks, the node's readers and writer
 * (sqlite.org/c3ref/wal_checkpoint_v2.html). A checkpoint with nothing new to copy reads the WAL
 * index's header and returns, without a write or a sync. Each thread keeps a connection of its own
 * per database file, opened at its first task.
 */
import Database from 'better-sqlite3';

export interface CheckpointTask {
  databaseFile: string;
}

export interface WalCheckpoint {
  /** Frames in the WAL. */
  log: number;
  /** Of them, copied into the database file (all unless a reader still needs some). */
  checkpointed: number;
}

const connections = new Map<string, Database.Database>();

export default function checkpoint({ databaseFile }: CheckpointTask): WalCheckpoint {
  let db = connections.get(databaseFile);
  if (!db) connections.set(databaseFile, (db = new Database(databaseFile, { fileMustExist: true })));
  const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
  return { log: result?.log ?? 0, checkpointed: result?.checkpointed ?? 0 };
}
