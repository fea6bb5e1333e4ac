/**
 * Whether an original is still the file the index describes, before the node or `gantry export`
 * de-identifies it. A file imported in place is its user's, who may rewrite it or put another
 * instance under its name (of the same size or not), or delete it; a received original in storage
 * may be changed by hand or by a restore. De-identified, such a file would be recorded, forwarded or
 * exported as the indexed instance, though its attributes, UIDs and patient may be another's (the
 * research view, the routing conditions and the pseudonym ledger come from the index). One stat
 * (file-stamp.ts): size and, for a file imported in place, modification time, and whether the file is
 * there at all, for rows indexed with a stamp (migration 019); by size alone for older rows. The reasons name neither the file (a folder may be named after its patient)
 * nor a value in it: `gantry quarantine show` gives the path.
 */
import type { ParsedFile } from '../dicom/dataset-tree.js';
import { elementText } from '../dicom/element-value.js';
import { trimUid } from '../dicom/values.js';
import { fileDifference, type IndexedFile } from '../index/file-stamp.js';

/** Where the original came from: `gantry import` (in place or --copy), or a C-STORE. */
export type OriginalOrigin = 'imported' | 'received';

/** The origin of a row by its `source_path IS NOT NULL AS imported` column. */
export function originOf(imported: number | boolean): OriginalOrigin {
  return imported ? 'imported' : 'received';
}

/**
 * What of the indexed file is compared with the file now. A received original is Gantry's own file: a
 * copy or restore of storage.path (cp -r, a backup tool) gives it a new modification time without
 * changing a byte, so its size is what is compared. Held on a time alone, every instance waiting after
 * such a restore failed, with the advice to delete it and have it sent again, which a sender may not
 * be able to do (found in the final review). A file imported is its user's: its time counts too.
 */
export function comparedOf(indexed: IndexedFile, origin: OriginalOrigin): IndexedFile {
  return origin === 'received' ? { size: indexed.size } : indexed;
}

export interface HeldOriginal {
  /** Why, with what changed (its size, its modification time, another inode), and how to recover. */
  reason: string;
  /** The same without what changed: one line for every such instance in an export's summary. */
  brief: string;
}

/** Why the original at `path` must not be de-identified as the indexed instance, or undefined. */
export function heldOriginal(path: string, indexed: IndexedFile, origin: OriginalOrigin): HeldOriginal | undefined {
  const difference = fileDifference(path, comparedOf(indexed, origin));
  if (difference === undefined) return undefined;
  if ('gone' in difference) {
    // A row indexed before migration 019 keeps what it had: its task's open fails with ENOENT.
    if (indexed.stamp === undefined) return undefined;
    const reason =
      origin === 'imported'
        ? 'the original is gone since it was imported (deleted, or moved with its folder): run gantry import on its folder where it is now (a moved tree is found there), then gantry quarantine release --again; or delete this row (gantry quarantine delete)'
        : 'the original is gone from storage since it was received: delete this row (gantry quarantine delete) and have the instance sent again';
    return { reason, brief: reason };
  }
  const changed = (what: string) =>
    origin === 'imported'
      ? `the original changed since it was imported (${what}): it is not the instance the index describes; delete this row (gantry quarantine delete) and import the file again`
      : `the original changed since it was received (${what}): it is not the instance the index describes; delete this row (gantry quarantine delete) and have the instance sent again`;
  return { reason: changed(difference.change), brief: changed(indexed.stamp && origin === 'imported' ? 'its size or modification time differs' : 'its size differs') };
}

/**
 * The original names another SOP Instance UID than its row: replaced after the stat that checked it
 * (heldOriginal), or, on a row indexed before file stamps (migration 019), by another instance of the
 * same size. Told by the thread that parsed it (the dataset's SOPInstanceUID, or its File Meta
 * Information's without one, against the index's), before anything is written.
 */
export class AnotherInstanceError extends Error {
  constructor(readonly held: HeldOriginal) {
    super(held.reason);
    this.name = 'AnotherInstanceError';
  }
}

/** Why an original that names another instance is held, and how to recover (under 200 characters:
 * the node's worker sends it as an error message, which the scheduler records cut there). */
export function anotherInstance(origin: OriginalOrigin): HeldOriginal {
  const reason =
    origin === 'imported'
      ? 'the original is another instance than the one imported (its SOP Instance UID differs): delete this row (gantry quarantine delete) and import the file again'
      : 'the original is another instance than the one received (its SOP Instance UID differs): delete this row (gantry quarantine delete) and have it sent again';
  return { reason, brief: reason };
}

/** A parsed file's SOP Instance UID as the index took it, padding removed as decodeIndexedAttributes
 * removes it: the dataset's, or its File Meta Information's when the dataset has none (import-scan.ts;
 * a received dataset's equals the command's, which Gantry wrote into the meta, receive.ts). */
export function sopInstanceUidAsIndexed(file: Pick<ParsedFile, 'elements' | 'source' | 'encoding'> & { meta: ReadonlyMap<number, Buffer> }): string {
  const element = file.elements.find((candidate) => candidate.tag === SOP_INSTANCE_UID);
  const text = element ? elementText(element, file.source, file.encoding === 'explicit-be') : undefined;
  return trimUid(text ?? '').trim() || trimUid(file.meta.get(0x0003)?.toString('latin1') ?? '');
}

const SOP_INSTANCE_UID = 0x00080018;

/** An original held by heldOriginal: its reason is recorded as it is (no value in it to remove, and
 * longer than the 200 characters other failure reasons are cut to). */
export class HeldOriginalError extends Error {
  constructor(readonly held: HeldOriginal) {
    super(held.reason);
    this.name = 'HeldOriginalError';
  }
}
