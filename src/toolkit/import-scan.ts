/**
 * One file of a folder being imported: is it DICOM (PS3.10: preamble, "DICM", File Meta Information),
 * and if so its index record, read with the receive path's header scanner up to Pixel Data (never the
 * pixels). Runs in the import's worker threads; with --copy the worker also copies the file into the
 * storage layout, so the main thread only writes the index.
 */
import { closeSync, copyFileSync, fchmodSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { ITEM, PIXEL_DATA, SEQUENCE_DELIMITER, UNDEFINED_LENGTH } from '../dicom/dataset-tree.js';
import { createHeaderScanner, DatasetFormatError, tagText, type StopElement } from '../dicom/header-scanner.js';
import { MEDIA_STORAGE_DIRECTORY_SOP_CLASS_UID, readFileMeta } from '../dicom/part10.js';
import { findTransferSyntax, type DatasetEncoding } from '../dicom/transfer-syntaxes.js';
import { decodeIndexedAttributes, INDEXED_TAGS } from '../index/attributes.js';
import { stampOf, type FileStamp } from '../index/file-stamp.js';
import type { InstanceRecord } from '../index/instance-index.js';
import { ORIGINALS_DIR, pathSegment, STORED_FILE_MODE } from '../store/object-store.js';
import { makeDirectoryDurablySync, syncDirectorySync } from '../store/sync.js';
import { noteCopy } from './import-copies.js';

const CHUNK = 64 * 1024;
const firstChunk = Buffer.allocUnsafeSlow(CHUNK);

/** What the index needs of a file, as the receive path records it (InstanceRecord), and where it is. */
export type ScannedInstance = Pick<InstanceRecord, 'attributes' | 'studyInstanceUid' | 'seriesInstanceUid' | 'sopInstanceUid' | 'sopClassUid' | 'transferSyntaxUid'> & {
  kind: 'dicom';
  path: string;
  size: number;
  /** The stamp of the file the index will name: the one found, or with --copy its copy. */
  stamp: FileStamp;
  /** With --copy: where the copy was placed, relative to the storage root. */
  copiedTo?: string;
};

export type ImportScan = ScannedInstance | { kind: 'not-dicom' | 'unreadable'; path: string; reason: string };

export interface ScanTask {
  paths: string[];
  /** With --copy: the storage root to copy into, and the import's list of copies (import-copies.ts). */
  copyInto?: string;
  copyList?: string;
}

const trimUid = (value: Buffer | undefined) => (value?.toString('latin1') ?? '').replace(/[\0 ]+$/, '');

export async function scanForImport(path: string, copyInto?: string, copyList?: string): Promise<ImportScan> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    return { kind: 'unreadable', path, reason: `cannot be opened (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    const size = Number(stats.size);
    // The first chunk is read into one buffer per thread (the scanner copies what it keeps, and what
    // it holds of a chunk is dropped when the file is done); later chunks of a large header get their own.
    const first = firstChunk;
    const head = first.subarray(0, readSync(fd, first, 0, CHUNK, 0));
    let meta;
    try {
      meta = readFileMeta(head, size);
    } catch (error) {
      if (error instanceof DatasetFormatError) return { kind: 'unreadable', path, reason: error.message };
      return { kind: 'not-dicom', path, reason: 'no DICOM Part 10 preamble and prefix' };
    }
    const transferSyntaxUid = trimUid(meta.elements.get(0x0010));
    const syntax = findTransferSyntax(transferSyntaxUid);
    if (!syntax) return { kind: 'unreadable', path, reason: transferSyntaxUid ? 'a transfer syntax Gantry does not know' : 'no transfer syntax in its File Meta Information' };
    const scanner = createHeaderScanner(syntax.encoding, INDEXED_TAGS);
    // A File Meta Information longer than the first chunk: the dataset is read from where it starts.
    if (meta.datasetOffset < head.length) scanner.push(head.subarray(meta.datasetOffset));
    for (let position = Math.max(head.length, meta.datasetOffset); !scanner.done; ) {
      const chunk = Buffer.allocUnsafe(CHUNK);
      const read = readSync(fd, chunk, 0, CHUNK, position);
      if (read === 0) break;
      scanner.push(chunk.subarray(0, read));
      position += read;
      await scanner.ready();
    }
    const scan = await scanner.finish();
    // A file cut short inside Pixel Data (a copy interrupted) has a whole header: indexed, it stood
    // for the instance, and a whole copy of it found later was refused as a duplicate (found in the
    // toolkit review). The header says how long the rest is.
    const cutShort = syntax.encoding === 'deflated-explicit-le' || !scan.stopElement ? undefined : await cutShortReason(fd, size, meta.datasetOffset, scan.stopElement, syntax.encoding);
    if (cutShort) return { kind: 'unreadable', path, reason: cutShort };
    const attributes = decodeIndexedAttributes(scan.values);
    const sopInstanceUid = attributes.SOPInstanceUID ?? trimUid(meta.elements.get(0x0003));
    const sopClassUid = attributes.SOPClassUID ?? trimUid(meta.elements.get(0x0002));
    if (sopClassUid === MEDIA_STORAGE_DIRECTORY_SOP_CLASS_UID) return { kind: 'not-dicom', path, reason: 'a DICOMDIR (the directory of a medium, not an instance)' };
    const missing = [
      ['SOPInstanceUID', sopInstanceUid],
      ['SOPClassUID', sopClassUid],
      ['StudyInstanceUID', attributes.StudyInstanceUID],
      ['SeriesInstanceUID', attributes.SeriesInstanceUID],
    ].filter(([, value]) => !value);
    if (missing.length > 0) return { kind: 'unreadable', path, reason: `no ${missing.map(([keyword]) => keyword).join(', no ')}` };
    const scanned: ScannedInstance = {
      kind: 'dicom',
      path,
      size,
      stamp: stampOf(stats),
      attributes,
      studyInstanceUid: attributes.StudyInstanceUID as string,
      seriesInstanceUid: attributes.SeriesInstanceUID as string,
      sopInstanceUid,
      sopClassUid,
      transferSyntaxUid,
    };
    if (copyInto) {
      try {
        scanned.copiedTo = copyIntoStorage(path, copyInto, scanned, copyList);
      } catch (error) {
        // By its code only: Node's message quotes the user's path and the storage path, which is
        // named by the original Study and Series Instance UIDs (and would make a tally line per file).
        // (A file that changed while it was copied is refused by copyIntoStorage's own message.)
        const { code, syscall } = error as NodeJS.ErrnoException;
        if (code === undefined) return { kind: 'unreadable', path, reason: (error as Error).message };
        return { kind: 'unreadable', path, reason: `could not be copied into storage (${code}${syscall ? `, ${syscall}` : ''})` };
      }
    }
    return scanned;
  } catch (error) {
    // The scanner's messages name what is wrong in the structure (tags, offsets), never a value.
    return { kind: 'unreadable', path, reason: (error as Error).message.slice(0, 200) };
  } finally {
    closeSync(fd);
  }
}


/**
 * Why the file ends before the element the header scan stopped at (Pixel Data, usually) does, or
 * undefined: a defined length must fit in the file (PS3.5 7.1); encapsulated Pixel Data (PS3.5 A.4)
 * must reach its sequence delimiter, item by item (8 bytes read per fragment).
 */
async function cutShortReason(fd: number, size: number, datasetOffset: number, stop: StopElement, encoding: Exclude<DatasetEncoding, 'deflated-explicit-le'>): Promise<string | undefined> {
  const valueStart = datasetOffset + stop.offset + stop.headerLength;
  const element = `(${tagText(stop.tag)})`;
  if (stop.length !== UNDEFINED_LENGTH) {
    if (valueStart + stop.length > size) return `cut short: ${element} needs ${stop.length} bytes, ${Math.max(0, size - valueStart)} are in the file`;
    return tailProblem(fd, valueStart + stop.length, size, encoding);
  }
  if (stop.tag !== PIXEL_DATA) return undefined;
  const header = Buffer.alloc(8);
  for (let position = valueStart; ; ) {
    if (position + 8 > size || readSync(fd, header, 0, 8, position) < 8) return `cut short: ${element}'s fragments end without their sequence delimiter`;
    const tag = ((header.readUInt16LE(0) << 16) | header.readUInt16LE(2)) >>> 0;
    if (tag === SEQUENCE_DELIMITER) return undefined;
    const length = header.readUInt32LE(4);
    if (tag !== ITEM || length === UNDEFINED_LENGTH) return `${element} holds ${tagText(tag)} where a fragment was expected`;
    position += 8 + length;
  }
}

/** The elements after the one the scan stopped at, read as the receive path reads them (to the end:
 * header-scanner.ts readToEnd), when they are few: bytes there that are no element failed
 * de-identification for good after an import that said nothing (found in the review of the session's
 * diff). A tail over MAX_TAIL is not read (a signature or padding that large is no copy's debris). */
async function tailProblem(fd: number, from: number, size: number, encoding: Exclude<DatasetEncoding, 'deflated-explicit-le'>): Promise<string | undefined> {
  const length = size - from;
  if (length === 0 || length > MAX_TAIL) return undefined;
  const tail = Buffer.alloc(length);
  readSync(fd, tail, 0, length, from);
  const scanner = createHeaderScanner(encoding, NO_TAGS, 0xffffffff);
  try {
    scanner.push(tail);
    await scanner.finish();
    return undefined;
  } catch (error) {
    return `cut short after Pixel Data: ${(error as Error).message}`;
  }
}

const MAX_TAIL = 1024 * 1024;
const NO_TAGS: ReadonlySet<number> = new Set();

/** Copies the file into the instance's series folder under originals/, as the receive path does: a
 * temporary name, synced, then renamed, so that the index never names a copy a power cut left short
 * (a run again skips indexed paths). A file whose size changed since it was scanned (still being
 * written) is refused: the row would give the copy a size it does not have, and the check after an
 * unclean stop deletes a newest row whose file is short or long. */
export function copyIntoStorage(path: string, root: string, scanned: ScannedInstance, copyList?: string): string {
  const directory = join(ORIGINALS_DIR, pathSegment(scanned.studyInstanceUid), pathSegment(scanned.seriesInstanceUid));
  // Always a name of the import's own, never the instance's plain name: a node serving this storage
  // may place a received copy there at any moment (no lock spans the two processes), and the import
  // deletes its copy when the index already has the instance. With the plain name, the import's
  // rename could overwrite the node's acknowledged file, or its clean-up delete it. The index
  // decides which copy stays.
  const relative = join(directory, `${pathSegment(scanned.sopInstanceUid)}.import-${randomBytes(6).toString('hex')}.dcm`);
  const target = join(root, relative);
  // Noted before it is made: a copy whose batch never commits is found and deleted (import-copies.ts).
  if (copyList) noteCopy(copyList, scanned.sopInstanceUid, relative);
  // The folders made here are synced into their parents, and the copy's name into its folder after
  // the rename, before the batch commits the row (found in the durability review: the row could
  // survive a power cut that lost the name, and the data was left under a temporary name).
  makeDirectoryDurablySync(dirname(target));
  const temporary = `${target}.import-${process.pid}`;
  try {
    copyFileSync(path, temporary);
    const fd = openSync(temporary, 'r+');
    try {
      // Received originals are 0640 (incoming-file.ts); a copy took its source's mode, world-readable
      // or even writable (found in the PHI leftovers review).
      fchmodSync(fd, STORED_FILE_MODE);
      const copied = fstatSync(fd, { bigint: true });
      if (Number(copied.size) !== scanned.size) throw new Error('the file changed while it was imported (still being written?); import it again once it is complete');
      fsyncSync(fd);
      // The index names the copy: its stamp is the copy's (a rename keeps both time and inode).
      scanned.stamp = stampOf(copied);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, target);
    syncDirectorySync(dirname(target));
  } catch (error) {
    // A copy cut short (disk full), or of a file that changed, is not left in storage, where nothing
    // would ever name it.
    rmSync(temporary, { force: true });
    throw error;
  }
  return relative;
}

/** The worker's entry (piscina): a batch of paths, scanned one after the other. */
export default async function scanBatch(task: ScanTask): Promise<ImportScan[]> {
  const results: ImportScan[] = [];
  for (const path of task.paths) results.push(await scanForImport(path, task.copyInto, task.copyList));
  return results;
}
