/**
 * A stored Part 10 file read back for sending: its File Meta Information, and its dataset bytes from
 * disk as they are (transcoder.ts converts them when the destination accepted another syntax).
 */
import { closeSync, openSync, read, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { parseFile } from '../dicom/dataset-tree.js';
import { readFileMeta } from '../dicom/part10.js';
import { reencodeElements } from '../dicom/reencode.js';
import { findTransferSyntax } from '../dicom/transfer-syntaxes.js';
import { InlinePace } from './inline-pace.js';

export interface StoredDataset {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** Dataset bytes (everything after the File Meta Information). */
  length: number;
  read(target: Buffer, position: number): Promise<number>;
  /** The dataset in memory, when the file was preloaded. */
  bytes?: Buffer;
  close(): Promise<void>;
}

/** The File Meta Information is a few hundred bytes; more than this is not a file Gantry wrote. */
const MAX_META_LENGTH = 64 * 1024;

/**
 * Opens a stored file for sending. A file that fits in `preloadInto` is read whole into it by one read
 * (open, read, close: no stat, the short read says where the file ends; a larger one is opened again
 * to be read as it is sent), so a sender that opens the next file while the current one is on the
 * wire has no disk I/O left on its critical path, and a reused buffer costs no fresh memory per file.
 * Preloads run inline while the page cache serves them (readStart); larger files are read as they are
 * sent, through the thread pool: a file that is not in the page cache would otherwise stall every
 * association.
 */
export async function openStoredDataset(path: string, preloadInto?: Buffer): Promise<StoredDataset> {
  if (preloadInto) {
    const bytesRead = await readStart(path, preloadInto);
    // Regular files read short only at their end.
    if (bytesRead < preloadInto.length) return fromBuffer(preloadInto.subarray(0, bytesRead));
  }
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const head = Buffer.alloc(Math.min(size, 144));
    await readFully(handle, head, 0);
    const metaEnd = metaLength(head, size);
    const metaBytes = Buffer.alloc(metaEnd);
    await readFully(handle, metaBytes, 0);
    return {
      ...metaOf(metaBytes),
      length: size - metaEnd,
      read: async (target, position) => (await handle.read(target, 0, target.length, metaEnd + position)).bytesRead,
      close: () => handle.close(),
    };
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw error;
  }
}

/** Whether preloads are read inline or in the pool (inline-pace.ts), for every sender of this thread. */
const pace = new InlinePace();

/** Preloads of this thread go to the thread pool for `ms` (what a slow read does; 0 lets them run
 * inline again at once: tests use it to check both paths). */
export function sendPreloadsToThreadPool(ms: number): void {
  pace.sendToThreadPool(ms);
}

/**
 * Reads the start of a file into `target` (open, read, close). Inline while the page cache serves
 * them: when all three went through the thread pool they cost the event loop 127 µs a 0.5 MB file,
 * and the forwarder used 7% less CPU an instance inline (2,000 instances to storescp, interleaved
 * A/B, 2026-12-01). A slow one (a file no longer cached) sends the next reads to the pool for a
 * while (readStartInPool: the read alone).
 */
async function readStart(path: string, target: Buffer): Promise<number> {
  if (!pace.shouldRunInline()) return readStartInPool(path, target);
  return pace.runInlineTimed(() => readStartInline(path, target));
}

function readStartInline(path: string, target: Buffer): number {
  const fd = openSync(path, 'r');
  try {
    return readSync(fd, target, 0, target.length, 0);
  } finally {
    closeQuietly(fd);
  }
}

/** Closes a descriptor only read from: a failure to close loses nothing, and must not hide the
 * read's own outcome (both paths close this way). */
function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing was written through it
  }
}

/**
 * The read alone through the thread pool; the open and the close, tens of microseconds for an inode
 * the kernel holds, run inline. Each trip through the pool wakes a pool thread and then the event
 * loop, on two cores shared with the destination: with open, read and close all in the pool, the
 * forwarder's main thread woke 7.4 times an instance, and 1.8 times like this; forwarding 2,000
 * instances to storescp (scratch harness, eight pairs alternated, 2026-12-01) ran at 671 against 507
 * instances/s (medians), faster in seven pairs of the eight. The callback API: a FileHandle and its
 * promises cost the event loop twice as much per file (0.30 against 0.15 ms for 2,000 files of
 * 0.5 MB in the page cache, this VM, 2026-11-30).
 */
function readStartInPool(path: string, target: Buffer): Promise<number> {
  const fd = openSync(path, 'r');
  return new Promise((resolve, reject) => {
    read(fd, target, 0, target.length, 0, (readError, bytesRead) => {
      closeQuietly(fd);
      if (readError) reject(readError);
      else resolve(bytesRead);
    });
  });
}

function fromBuffer(file: Buffer): StoredDataset {
  const metaEnd = metaLength(file, file.length);
  const dataset = file.subarray(metaEnd);
  return {
    ...metaOf(file.subarray(0, metaEnd)),
    length: dataset.length,
    read: async (target, position) => dataset.copy(target, 0, position, Math.min(dataset.length, position + target.length)),
    bytes: dataset,
    close: async () => undefined,
  };
}

/** Where the dataset starts: after the File Meta Information, whose group length says how long it is. */
function metaLength(head: Buffer, size: number): number {
  if (head.length < 144 || head.toString('latin1', 128, 132) !== 'DICM' || head.readUInt32LE(132) !== 0x00000002) {
    throw new Error('not a DICOM Part 10 file with a File Meta Information Group Length');
  }
  const metaEnd = 144 + head.readUInt32LE(140);
  if (metaEnd > Math.min(size, MAX_META_LENGTH)) throw new Error('File Meta Information longer than the file or 64 KiB');
  return metaEnd;
}

function metaOf(metaBytes: Buffer): Pick<StoredDataset, 'sopClassUid' | 'sopInstanceUid' | 'transferSyntaxUid'> {
  const { elements } = readFileMeta(metaBytes);
  const text = (element: number) => (elements.get(element)?.toString('latin1') ?? '').replace(/[\0 ]+$/, '');
  return { sopClassUid: text(0x0002), sopInstanceUid: text(0x0003), transferSyntaxUid: text(0x0010) };
}

/** The dataset bytes to send: a stored dataset, or one converted for the destination (transcoder.ts). */
export type DatasetBody = Pick<StoredDataset, 'length' | 'read' | 'bytes'>;

/** Whether sending on a context of `transferSyntaxUid` decompresses the object (codecs needed). */
export function needsDecompression(stored: Pick<StoredDataset, 'transferSyntaxUid'>, transferSyntaxUid: string): boolean {
  return transferSyntaxUid !== stored.transferSyntaxUid && findTransferSyntax(stored.transferSyntaxUid)?.encapsulated === true;
}

/**
 * The dataset of a stored file in another little-endian encoding (explicit ↔ implicit VR, a deflated
 * one inflated, a big-endian one byte-swapped), in memory: used only when a destination refuses the
 * stored one, for uncompressed objects.
 */
export function reencodedDataset(path: string, toTransferSyntaxUid: string): Buffer {
  const to = findTransferSyntax(toTransferSyntaxUid);
  if (!to || to.encapsulated || (to.encoding !== 'explicit-le' && to.encoding !== 'implicit-le')) {
    throw new Error(`cannot re-encode into transfer syntax ${toTransferSyntaxUid}`);
  }
  const parsed = parseFile(path);
  try {
    // A deflated file is parsed from its inflated bytes, explicit VR little endian (PS3.5 A.5).
    const parts: Buffer[] = [];
    reencodeElements(parsed.elements, parsed.source, parsed.encoding, to.encoding, (bytes) => parts.push(Buffer.from(bytes)));
    return Buffer.concat(parts);
  } finally {
    parsed.close();
  }
}

async function readFully(handle: FileHandle, target: Buffer, position: number): Promise<void> {
  let filled = 0;
  while (filled < target.length) {
    const { bytesRead } = await handle.read(target, filled, target.length - filled, position + filled);
    if (bytesRead === 0) throw new Error('the file ended early');
    filled += bytesRead;
  }
}
