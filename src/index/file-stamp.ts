/**
 * An original's file as it was when indexed, beyond its size: its modification time in nanoseconds and
 * its inode (migration 019). A reader compares them with a stat, never the file's bytes, so that a
 * check costs the same for a 1 GB object as for a 1 KB one.
 */
import { statSync, type BigIntStats } from 'node:fs';

/** Decimal text, as the index stores it: exact (both exceed 2^53), and a record holding it can still be
 * logged or passed as JSON, which a bigint cannot. */
export interface FileStamp {
  /** st_mtime in nanoseconds since the epoch. */
  mtimeNs: string;
  ino: string;
}

/** The stamp of a file from its stat (taken with `{ bigint: true }`: nanoseconds and 64-bit inodes). */
export function stampOf(stats: BigIntStats): FileStamp {
  return { mtimeNs: stats.mtimeNs.toString(), ino: stats.ino.toString() };
}

/** The stamp of the file at `path` now. */
export function fileStampAt(path: string): FileStamp {
  return stampOf(statSync(path, { bigint: true }));
}

/** What the index records of a file: its size, and its stamp when it was indexed after migration 019. */
export interface IndexedFile {
  size: number;
  stamp?: FileStamp;
}

/**
 * How the file at `path` differs from what the index recorded, in words for an error ("it ends at
 * byte 300, short of the 998 bytes indexed"), or undefined when it does not; undefined too when there is no file (the
 * caller's open then says so). Size and modification time decide: a file rewritten in place or
 * replaced by another changes them. The inode alone does not: a storage folder copied or restored
 * with its times kept (cp -a, rsync -a) gets new inodes for the same bytes. It is named when it
 * changed too, to tell a file replaced from one rewritten in place.
 */
export function fileChange(path: string, indexed: IndexedFile): string | undefined {
  const difference = fileDifference(path, indexed);
  return difference !== undefined && 'change' in difference ? difference.change : undefined;
}

/** As fileChange, and `gone` when there is no file at `path` (deleted, or its folder moved): one stat
 * either way. Errors other than a missing file (EACCES, EIO) are thrown. */
export function fileDifference(path: string, indexed: IndexedFile): { change: string } | { gone: true } | undefined {
  const now = statSync(path, { bigint: true, throwIfNoEntry: false });
  if (now === undefined) return { gone: true };
  const changes: string[] = [];
  if (now.size < BigInt(indexed.size)) changes.push(`it ends at byte ${now.size}, short of the ${indexed.size} bytes indexed`);
  else if (now.size > BigInt(indexed.size)) changes.push(`its size is ${now.size} bytes, not ${indexed.size}`);
  const stamp = indexed.stamp;
  const current = stampOf(now);
  if (stamp !== undefined && current.mtimeNs !== stamp.mtimeNs) changes.push(`it was modified at ${isoNs(now.mtimeNs)}, not ${isoNs(BigInt(stamp.mtimeNs))}`);
  if (changes.length === 0) return undefined;
  if (stamp !== undefined && current.ino !== stamp.ino) changes.push(`it is another file (inode ${current.ino}, not ${stamp.ino})`);
  return { change: changes.join('; ') };
}

/** An instant in nanoseconds as ISO 8601 with its nanoseconds: two writes within a millisecond differ. */
function isoNs(ns: bigint): string {
  const ms = ns / 1_000_000n;
  const iso = new Date(Number(ms)).toISOString();
  return `${iso.slice(0, 19)}.${(((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

/** A stamp from the index's columns; undefined for a row indexed before migration 019. */
export function stampFromColumns(mtimeNs: string | null | undefined, ino: string | null | undefined): FileStamp | undefined {
  return mtimeNs === undefined || mtimeNs === null || ino === undefined || ino === null ? undefined : { mtimeNs, ino };
}
