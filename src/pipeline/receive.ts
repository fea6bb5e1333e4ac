/**
 * The C-STORE and C-ECHO services of the receive path: each dataset streams into an incoming file
 * behind a Part 10 header, its header is read for the index on the way, and the success response is
 * given only after the file is synced in its place and the index transaction is committed and synced.
 *
 * Stores of one SOP Instance UID are placed one at a time (a sender that re-sends on a new
 * association while the first store is still syncing is common), and a copy that replaces a stored
 * one is written under a name of its own: an acknowledged file is never overwritten, only deleted
 * once the index points at its durable successor.
 */
import { createReadStream, statSync } from 'node:fs';
import { createHeaderScanner, DatasetFormatError, type ByteScanner } from '../dicom/header-scanner.js';
import { encodePart10Header } from '../dicom/part10.js';
import { findTransferSyntax } from '../dicom/transfer-syntaxes.js';
import { DiscardingSink, type AssociationInfo, type DatasetSink, type ServiceHandlers, type StoreRequest } from '../dimse/services.js';
import { isWellFormedUid } from '../dimse/command.js';
import { DimseStatusError, resultFromError, Status, StoreFailure, type DimseResult } from '../dimse/status.js';
import { decodeIndexedAttributes, INDEXED_TAGS } from '../index/attributes.js';
import type { IndexWriter, InstanceIndex, InstanceRecord } from '../index/instance-index.js';
import type { FreeSpaceMonitor } from '../store/free-space.js';
import type { IncomingFile } from '../store/incoming-file.js';
import type { ObjectStore } from '../store/object-store.js';
import { stampOf } from '../index/file-stamp.js';
import { uidForMessage } from '../dicom/dataset-tree.js';
import { KeyedLock } from './keyed-lock.js';
import { withoutUids } from '../observability/redact.js';

export interface ReceiveSettings {
  minFreeBytes: number;
  duplicates: 'replace' | 'keepFirst';
}

export interface ReceiveDependencies {
  store: ObjectStore;
  index: InstanceIndex;
  writer: IndexWriter;
  freeSpace: FreeSpaceMonitor;
  /** Read at each request, so a reloaded config applies to the next store. */
  settings(): ReceiveSettings;
  /** Called after an instance is stored and indexed (the de-identifier looks for work). */
  onStored?(): void;
}

interface SinkContext extends ReceiveDependencies {
  locks: KeyedLock;
  inFlight: Set<Promise<unknown>>;
  /** Instances whose row names a file that could not be made durable, and could not be taken back
   * (the disk and the index failing together): their first copy is not kept, so keepFirst stores the
   * next copy over it rather than answering success for it. */
  notDurable: Set<string>;
}

export class ReceiveService implements ServiceHandlers {
  private readonly context: SinkContext;

  constructor(deps: ReceiveDependencies) {
    this.context = { ...deps, locks: new KeyedLock(), inFlight: new Set(), notDurable: new Set() };
  }

  /** Waits (up to `timeoutMs`) for stores that are placing their file and index row. Resolves with
   * whether none is left. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.context.inFlight.size > 0 && Date.now() < deadline) {
      await Promise.race([Promise.allSettled([...this.context.inFlight]), new Promise((resolve) => setTimeout(resolve, 100))]);
    }
    return this.context.inFlight.size === 0;
  }

  echo(_association: AssociationInfo): DimseResult {
    return { status: Status.Success };
  }

  store(request: StoreRequest): DatasetSink {
    const settings = this.context.settings();
    if (request.sopInstanceUid === '') {
      return new DiscardingSink({ status: StoreFailure.DatasetUnreadable, errorComment: 'C-STORE-RQ has no Affected SOP Instance UID' });
    }
    // Only a row no store of this UID is still working on: until that store has synced its file and
    // the index, or taken its row back after a failure, the first copy is not yet kept (the
    // receiving sink waits for it under the lock instead). Before the disk check: nothing is written.
    if (
      settings.duplicates === 'keepFirst' &&
      !this.context.locks.isHeld(request.sopInstanceUid) &&
      !this.context.notDurable.has(request.sopInstanceUid) &&
      this.context.index.hasInstance(request.sopInstanceUid)
    ) {
      request.association.log.debug('instance already stored; keeping the first copy');
      return new DiscardingSink({ status: Status.Success });
    }
    // What is free less what the copies of the instances waiting for de-identification will take.
    const free = this.context.freeSpace.availableBytes;
    if (free < settings.minFreeBytes) {
      // Logged once, by the association with the response ("operation failed"): one line per failure.
      return new DiscardingSink({
        status: Status.OutOfResources,
        // The floor first, and no words before it that 0xA700 says already: an Error Comment is cut at
        // 64 characters on the wire (the log has it whole), and "out of resources: " in front cut the
        // default floor of 10 digits to 8.
        errorComment: `free disk below storage.minFreeBytes (${settings.minFreeBytes} bytes; ${free} free under storage.path)`,
      });
    }
    return new ReceivingSink(request, this.context, settings);
  }
}

class ReceivingSink implements DatasetSink {
  private file: IncomingFile;
  /** The Part 10 header's length: the dataset's bytes start there in the file. */
  private readonly headerLength: number;
  private readonly scanner: ByteScanner;
  private scanError: Error | undefined;
  /** Set when a failed replacement leaves its durable copy in the index: it must stay. */
  private keepFile = false;
  /** Why the rest of the dataset is not written: the disk came down to storage.minFreeBytes. */
  private outOfSpace: string | undefined;
  /** The free-space reading this store last saw, and what it has written since (not in that reading). */
  private readingSeen: number;
  private writtenSinceReading = 0;

  constructor(
    private readonly request: StoreRequest,
    private readonly deps: SinkContext,
    private readonly settings: ReceiveSettings,
  ) {
    const syntax = findTransferSyntax(request.transferSyntaxUid);
    if (!syntax) throw new DimseStatusError(StoreFailure.DatasetUnreadable, `transfer syntax ${request.transferSyntaxUid} is not supported`);
    // Read to the dataset's end: one that ends inside an element is refused (0xC000), not acknowledged.
    this.scanner = createHeaderScanner(syntax.encoding, INDEXED_TAGS, undefined, true);
    const header = this.part10Header(request.sopClassUid);
    this.headerLength = header.length;
    this.file = deps.store.createIncoming(header);
    this.readingSeen = deps.freeSpace.readAt;
  }

  private part10Header(sopClassUid: string): Buffer {
    return encodePart10Header({
      mediaStorageSopClassUid: sopClassUid,
      mediaStorageSopInstanceUid: this.request.sopInstanceUid,
      transferSyntaxUid: this.request.transferSyntaxUid,
      sourceApplicationEntityTitle: this.request.association.callingAeTitle,
    });
  }

  write(chunk: Buffer): boolean {
    if (!this.scanError && !this.scanner.done) {
      try {
        this.scanner.push(chunk);
      } catch (error) {
        this.scanError = error as Error;
      }
    }
    // A dataset that cannot be read is refused at its end (C000) and its file deleted: the rest of
    // it, which may be gigabytes, is not written.
    if (this.scanError || this.outOfSpace !== undefined) return true;
    if (this.reachesTheFloor(chunk.length)) {
      // Read to its end and answered 0xA700 then; what was written is deleted.
      this.outOfSpace = `free disk came down to storage.minFreeBytes (${this.settings.minFreeBytes} bytes) during the store`;
      return true;
    }
    const written = this.file.write(chunk);
    // A deflated dataset is inflated as it arrives (PS3.5 A.5): a sender faster than the inflater
    // waits for it, or the scanner gave up on a header a few MB in and the store failed with C001.
    return written && !this.scanner.busy;
  }

  /**
   * Whether writing `bytes` more takes the disk under storage.minFreeBytes. The floor was checked when
   * the store began; a dataset's size is not known before its end, and one store of 1.2 GB went 900 MB
   * under the floor, towards a full disk where the index and other stores fail (found in the resource
   * review). The monitor reads the disk every second: what this store wrote since is counted here.
   */
  private reachesTheFloor(bytes: number): boolean {
    const freeSpace = this.deps.freeSpace;
    if (freeSpace.readAt !== this.readingSeen) {
      this.readingSeen = freeSpace.readAt;
      this.writtenSinceReading = 0;
    }
    this.writtenSinceReading += bytes;
    return freeSpace.availableBytes - this.writtenSinceReading < this.settings.minFreeBytes;
  }

  whenDrained(): Promise<void> {
    if (!this.scanner.busy) return this.file.whenDrained();
    return Promise.all([this.file.whenDrained(), this.scanner.ready()]).then(() => undefined);
  }

  abort(): void {
    void this.file.discard();
  }

  end(): Promise<DimseResult> {
    const done = this.finish();
    this.deps.inFlight.add(done);
    void done.finally(() => this.deps.inFlight.delete(done));
    return done;
  }

  private async finish(): Promise<DimseResult> {
    let record: InstanceRecord | undefined;
    let cleanedUp = false;
    try {
      if (this.outOfSpace !== undefined) throw new DimseStatusError(Status.OutOfResources, this.outOfSpace);
      // The device starts on the data now, while the header is decoded and the file renamed.
      if (!this.scanError) this.file.startSync();
      record = await this.readRecord();
      const warning = this.sopClassWarning(record);
      if (warning) await this.relabel(record);
      const placing = record;
      const result = await this.deps.locks.run(placing.sopInstanceUid, async () => {
        try {
          const existing = this.deps.index.findInstance(placing.sopInstanceUid);
          if (existing && this.settings.duplicates === 'keepFirst' && !this.deps.notDurable.has(placing.sopInstanceUid)) {
            await this.file.discard();
            return { status: Status.Success };
          }
          // An imported file in place is the user's: the new copy replaces it in the index only.
          if (existing) await this.replaceExisting(placing, existing.external ? undefined : existing.filePath);
          else await this.placeNew(placing);
          this.deps.notDurable.delete(placing.sopInstanceUid);
          return warning ?? { status: Status.Success };
        } catch (error) {
          // Under the lock: this store's file may already be at the instance's path, where the next
          // store of the same UID would put its own; cleaned up after the lock, the next one's
          // acknowledged file would be deleted.
          cleanedUp = true;
          await this.cleanUpAfterFailure(placing);
          throw error;
        }
      });
      this.deps.onStored?.();
      return result;
    } catch (error) {
      if (!cleanedUp) await this.cleanUpAfterFailure(record);
      return failureResult(error);
    }
  }

  /**
   * Deletes what this store wrote: its file, and its index row if one was committed. Neither can be
   * an acknowledged copy: a new instance had no row, and a replacement has a file name of its own.
   */
  private async cleanUpAfterFailure(record: InstanceRecord | undefined): Promise<void> {
    if (this.keepFile) return;
    if (record && this.deps.index.findInstance(record.sopInstanceUid)?.filePath === record.filePath) {
      try {
        this.deps.writer.takeBack(record.sopInstanceUid);
      } catch {
        // The database is failing too (a full disk fails its writes as well): the row stays, and so
        // does the file it names, or the index would point at nothing until an unclean stop's check
        // (a clean stop never runs it). The file is whole: only its sync or the index's failed; the
        // sender was told it failed, and a copy it sends again is stored, keepFirst or not.
        this.deps.notDurable.add(record.sopInstanceUid);
        await this.file.close().catch(() => undefined);
        return;
      }
    }
    await this.file.discard();
  }

  /**
   * A SOP Instance UID with no index row: nothing acknowledged is at its path, so the file is moved
   * there while its last bytes are still being written; its data sync, begun with the last byte
   * (finish), runs beside the directory's sync and the index commit. A crash between them can leave a
   * row whose file is short; the start-up check removes such rows (none was acknowledged).
   */
  private async placeNew(record: InstanceRecord): Promise<void> {
    record.fileSize = await this.moveWhileCompleting(record);
    const [synced, committed] = await Promise.allSettled([this.deps.store.syncPlaced(this.file), this.deps.writer.submit(record)]);
    if (synced.status === 'rejected') throw synced.reason;
    if (committed.status === 'rejected') throw committed.reason;
  }

  /**
   * A re-sent SOP Instance UID: the new copy gets a file name of its own and is made durable before
   * the index points at it; only then is the replaced file deleted.
   */
  private async replaceExisting(record: InstanceRecord, replacedFilePath: string | undefined): Promise<void> {
    record.filePath = this.deps.store.originalPath(record.studyInstanceUid, record.seriesInstanceUid, record.sopInstanceUid, this.deps.store.uniqueVariant());
    record.fileSize = await this.moveWhileCompleting(record);
    await this.deps.store.syncPlaced(this.file);
    try {
      await this.deps.writer.submit(record);
    } catch (error) {
      // Committed but not synced (the WAL sync failed): the row points at this copy, which is durable,
      // and may fall back to the replaced one after a crash, which is kept. Neither is deleted.
      if (this.deps.index.findInstance(record.sopInstanceUid)?.filePath === record.filePath) this.keepFile = true;
      throw error;
    }
    // Never the copy just made durable, whatever names the two were given.
    if (replacedFilePath === undefined || replacedFilePath === record.filePath) return;
    // The commit listed it in replaced_originals (migration 025) until a retention sweep finds it gone
    // and forgets it: no write to the index here, on the main thread, after the commit (one failed
    // delete is retried).
    await this.deps.store.remove(replacedFilePath).catch((error: Error) =>
      this.request.association.log.error({ err: withoutUids(error.message) }, 'could not delete a replaced copy; retention tries again'),
    );
  }

  /** Moves the file to record.filePath while its last writes finish; returns its size. Records the
   * placed file's stamp (file-stamp.ts): taken after the last write, it is what readers compare. */
  private async moveWhileCompleting(record: InstanceRecord): Promise<number> {
    const [moved, completed] = await Promise.allSettled([this.deps.store.moveIntoPlace(this.file, record.filePath), this.file.complete()]);
    if (moved.status === 'rejected') throw moved.reason;
    if (completed.status === 'rejected') throw completed.reason;
    this.deps.freeSpace.consumed(completed.value);
    // Synchronous: a few microseconds for an inode just written, where a stat through libuv's thread
    // pool added a round trip to every acknowledged store.
    record.fileStamp = stampOf(statSync(this.deps.store.absolute(record.filePath), { bigint: true }));
    return completed.value;
  }

  private async readRecord(): Promise<InstanceRecord> {
    if (this.scanError) throw unreadable(this.scanError);
    let scan;
    try {
      scan = await this.scanner.finish();
    } catch (error) {
      throw unreadable(error as Error);
    }
    const attributes = decodeIndexedAttributes(scan.values);
    const request = this.request;
    if (attributes.SOPInstanceUID !== undefined && attributes.SOPInstanceUID !== request.sopInstanceUid) {
      throw new DimseStatusError(
        StoreFailure.SopInstanceUidMismatch,
        // Shown only when they are UIDs: the dataset's value could be anything (a name), and the
        // comment is logged (found in a review).
        `SOPInstanceUID of the dataset (${uidForMessage(attributes.SOPInstanceUID)}) differs from the command's (${uidForMessage(request.sopInstanceUid)})`,
      );
    }
    const missing = (['StudyInstanceUID', 'SeriesInstanceUID'] as const).filter((keyword) => !attributes[keyword]);
    if (missing.length > 0) {
      throw new DimseStatusError(StoreFailure.MissingHierarchyUid, `the dataset has no ${missing.join(' and no ')}`);
    }
    const studyInstanceUid = attributes.StudyInstanceUID as string;
    const seriesInstanceUid = attributes.SeriesInstanceUID as string;
    return {
      attributes,
      studyInstanceUid,
      seriesInstanceUid,
      sopInstanceUid: request.sopInstanceUid,
      sopClassUid: request.sopClassUid,
      transferSyntaxUid: request.transferSyntaxUid,
      filePath: this.deps.store.originalPath(studyInstanceUid, seriesInstanceUid, request.sopInstanceUid),
      fileSize: 0,
      callingAeTitle: request.association.callingAeTitle,
      receivedAt: Date.now(),
    };
  }

  /**
   * A dataset of another SOP class than its command's (B007) is stored as what it is: PS3.10 7.1 has
   * the Media Storage SOP Class UID identify the data set's class, and the index, the de-identified
   * copy and the forward's presentation context follow the file. The header was written before the
   * dataset's class was known, so the file is written again behind a new one: rare, and paid only here.
   */
  private async relabel(record: InstanceRecord): Promise<void> {
    const sopClassUid = record.attributes.SOPClassUID ?? '';
    if (!isWellFormedUid(sopClassUid)) return;
    const received = this.file;
    await received.complete();
    this.file = this.deps.store.createIncoming(this.part10Header(sopClassUid));
    try {
      await copyFileInto(this.file, received.path, this.headerLength);
    } finally {
      await received.discard();
    }
    this.file.startSync();
    record.sopClassUid = sopClassUid;
  }

  /** PS3.4 B.2.3: a dataset whose SOP Class UID differs from the command's is stored with warning B007. */
  private sopClassWarning(record: InstanceRecord): DimseResult | undefined {
    const inDataset = record.attributes.SOPClassUID;
    if (inDataset === undefined || inDataset === record.sopClassUid) return undefined;
    return {
      status: Status.WarningDatasetMismatch,
      errorComment: `SOPClassUID of the dataset (${uidForMessage(inDataset)}) differs from the command's (${uidForMessage(record.sopClassUid)})`,
    };
  }
}

/** Appends a file's bytes from `start` on, at the pace the incoming file writes them. */
async function copyFileInto(file: IncomingFile, path: string, start: number): Promise<void> {
  for await (const chunk of createReadStream(path, { start, highWaterMark: 1024 * 1024 })) {
    if (!file.write(chunk as Buffer)) await file.whenDrained();
  }
  await file.complete();
}

function unreadable(error: Error): DimseStatusError {
  const reason = error instanceof DatasetFormatError ? error.message : `unexpected parse failure: ${error.message}`;
  return new DimseStatusError(StoreFailure.DatasetUnreadable, `dataset cannot be read: ${reason}`);
}

/** File system and database failures are "out of resources" (A700): the peer may retry later. */
const RESOURCE_ERRNO = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EIO', 'EROFS', 'EMFILE', 'ENFILE', 'ENOMEM', 'EACCES', 'EPERM', 'ENOENT']);

function failureResult(error: unknown): DimseResult {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && (RESOURCE_ERRNO.has(code) || code.startsWith('SQLITE_'))) {
    return { status: Status.OutOfResources, errorComment: `out of resources: ${(error as Error).message}` };
  }
  return resultFromError(error);
}
