/**
 * The C-STORE and C-ECHO services of the receive path: each dataset streams into an incoming file
 * behind a Part 10 header, its header is read for the index on the way, and the success response is
 * given only after the file is synced, moved into place, and the index transaction has committed.
 */
import { createHeaderScanner, DatasetFormatError, type ByteScanner } from '../dicom/header-scanner.js';
import { encodePart10Header } from '../dicom/part10.js';
import { findTransferSyntax } from '../dicom/transfer-syntaxes.js';
import { DiscardingSink, type AssociationInfo, type DatasetSink, type ServiceHandlers, type StoreRequest } from '../dimse/services.js';
import { DimseStatusError, Status, StoreFailure, type DimseResult } from '../dimse/status.js';
import { decodeIndexedAttributes, INDEXED_TAGS } from '../index/attributes.js';
import type { IndexWriter, InstanceIndex, InstanceRecord } from '../index/instance-index.js';
import type { FreeSpaceMonitor } from '../store/free-space.js';
import type { IncomingFile } from '../store/incoming-file.js';
import type { ObjectStore } from '../store/object-store.js';

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
}

export class ReceiveService implements ServiceHandlers {
  constructor(private readonly deps: ReceiveDependencies) {}

  echo(_association: AssociationInfo): DimseResult {
    return { status: Status.Success };
  }

  store(request: StoreRequest): DatasetSink {
    const settings = this.deps.settings();
    if (request.sopInstanceUid === '') {
      return new DiscardingSink({ status: StoreFailure.DatasetUnreadable, errorComment: 'C-STORE-RQ has no Affected SOP Instance UID' });
    }
    const free = this.deps.freeSpace.freeBytes;
    if (free < settings.minFreeBytes) {
      request.association.log.error({ freeBytes: free, minFreeBytes: settings.minFreeBytes }, 'store refused: free disk below storage.minFreeBytes');
      return new DiscardingSink({
        status: Status.OutOfResources,
        errorComment: `out of resources: free disk below storage.minFreeBytes (${settings.minFreeBytes})`,
      });
    }
    if (settings.duplicates === 'keepFirst' && this.deps.index.hasInstance(request.sopInstanceUid)) {
      request.association.log.debug('instance already stored; keeping the first copy');
      return new DiscardingSink({ status: Status.Success });
    }
    return new ReceivingSink(request, this.deps, settings);
  }
}

class ReceivingSink implements DatasetSink {
  private readonly file: IncomingFile;
  private readonly scanner: ByteScanner;
  private scanError: Error | undefined;
  private replacing = false;

  constructor(
    private readonly request: StoreRequest,
    private readonly deps: ReceiveDependencies,
    private readonly settings: ReceiveSettings,
  ) {
    const syntax = findTransferSyntax(request.transferSyntaxUid);
    if (!syntax) throw new DimseStatusError(StoreFailure.DatasetUnreadable, `transfer syntax ${request.transferSyntaxUid} is not supported`);
    this.scanner = createHeaderScanner(syntax.encoding, INDEXED_TAGS);
    this.file = deps.store.createIncoming(
      encodePart10Header({
        mediaStorageSopClassUid: request.sopClassUid,
        mediaStorageSopInstanceUid: request.sopInstanceUid,
        transferSyntaxUid: request.transferSyntaxUid,
        sourceApplicationEntityTitle: request.association.callingAeTitle,
      }),
    );
  }

  write(chunk: Buffer): boolean {
    if (!this.scanError && !this.scanner.done) {
      try {
        this.scanner.push(chunk);
      } catch (error) {
        this.scanError = error as Error;
      }
    }
    return this.file.write(chunk);
  }

  whenDrained(): Promise<void> {
    return this.file.whenDrained();
  }

  abort(): void {
    void this.file.discard();
  }

  async end(): Promise<DimseResult> {
    let record: InstanceRecord | undefined;
    try {
      record = await this.readRecord();
      const warning = this.sopClassWarning(record);
      const placed = this.deps.index.hasInstance(record.sopInstanceUid)
        ? await this.replaceExisting(record)
        : await this.placeNew(record);
      return placed ? (warning ?? { status: Status.Success }) : { status: Status.Success };
    } catch (error) {
      await this.cleanUpAfterFailure();
      return failureResult(error);
    }
  }

  /** Deletes what this store wrote, but never a file that replaced an acknowledged copy: it is
   * durable and is the instance now. */
  private async cleanUpAfterFailure(): Promise<void> {
    const stillIncoming = this.file.path.startsWith(this.deps.store.incomingDir);
    if (this.replacing && !stillIncoming) await this.file.close().catch(() => undefined);
    else await this.file.discard();
  }

  /**
   * A SOP Instance UID seen for the first time: nothing acknowledged can be at its path, so the file
   * is moved there while its last bytes are still being written, and its sync runs beside the index
   * commit (the device flushes once, not twice). If the sync fails after the commit, the row is
   * taken back. A crash between the two leaves a row whose file is short or missing; the start-up
   * check removes such rows (none was acknowledged).
   */
  private async placeNew(record: InstanceRecord): Promise<true> {
    const [moved, completed] = await Promise.allSettled([this.deps.store.moveIntoPlace(this.file, record.filePath), this.file.complete()]);
    if (moved.status === 'rejected') throw moved.reason;
    if (completed.status === 'rejected') throw completed.reason;
    record.fileSize = completed.value;
    this.deps.freeSpace.consumed(record.fileSize);
    const [synced, committed] = await Promise.allSettled([this.deps.store.syncPlaced(this.file), this.deps.writer.submit(record)]);
    if (synced.status === 'rejected') {
      if (committed.status === 'fulfilled') this.deps.writer.takeBack(record.sopInstanceUid);
      throw synced.reason;
    }
    if (committed.status === 'rejected') throw committed.reason;
    return true;
  }

  /** A re-sent SOP Instance UID: the stored copy is acknowledged, so it is replaced only by a copy
   * that is already durable (or kept, with storage.duplicates keepFirst). */
  private async replaceExisting(record: InstanceRecord): Promise<boolean> {
    this.replacing = true;
    record.fileSize = await this.file.complete();
    this.deps.freeSpace.consumed(record.fileSize);
    const overwrite = this.settings.duplicates === 'replace';
    const placed = await this.deps.store.placeOverExisting(this.file, record.filePath, overwrite);
    if (!placed) return false;
    const outcome = await this.deps.writer.submit(record);
    if (outcome.replacedFilePath) await this.deps.store.remove(outcome.replacedFilePath);
    return true;
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
        `SOPInstanceUID of the dataset (${attributes.SOPInstanceUID}) differs from the command's (${request.sopInstanceUid})`,
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

  /** PS3.4 B.2.3: a dataset whose SOP Class UID differs from the command's is stored with warning B007. */
  private sopClassWarning(record: InstanceRecord): DimseResult | undefined {
    const inDataset = record.attributes.SOPClassUID;
    if (inDataset === undefined || inDataset === record.sopClassUid) return undefined;
    return {
      status: Status.WarningDatasetMismatch,
      errorComment: `SOPClassUID of the dataset (${inDataset}) differs from the command's (${record.sopClassUid})`,
    };
  }
}

function unreadable(error: Error): DimseStatusError {
  const reason = error instanceof DatasetFormatError ? error.message : `unexpected parse failure: ${error.message}`;
  return new DimseStatusError(StoreFailure.DatasetUnreadable, `dataset cannot be read: ${reason}`);
}

/** File system and database failures are "out of resources" (A700): the peer may retry later. */
const RESOURCE_ERRNO = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EMFILE', 'ENFILE', 'ENOMEM', 'EACCES', 'EPERM', 'ENOENT']);

function failureResult(error: unknown): DimseResult {
  if (error instanceof DimseStatusError) return { status: error.status, errorComment: error.errorComment };
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  if ((typeof code === 'string' && (RESOURCE_ERRNO.has(code) || code.startsWith('SQLITE_')))) {
    return { status: Status.OutOfResources, errorComment: `out of resources: ${code}: ${message}`.slice(0, 64) };
  }
  return { status: Status.ProcessingFailure, errorComment: message.slice(0, 64) };
}
