/** Reading what Gantry stored: its index rows and its files, for assertions. */
import Database from 'better-sqlite3';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { datasetOffset, readFileMeta } from '../../src/dicom/part10.js';
import { trimUid } from '../../src/dicom/values.js';
import { SPARE_INCOMING_FILES } from '../../src/store/object-store.js';

export interface IndexedRow {
  sopInstanceUid: string;
  sopClassUid: string;
  seriesInstanceUid: string;
  studyInstanceUid: string;
  patientId: string;
  patientName: string | null;
  transferSyntaxUid: string;
  filePath: string;
  fileSize: number;
  /** The file's modification time (ns) and inode when indexed (migration 019), decimal. */
  fileMtimeNs: string | null;
  fileIno: string | null;
  state: string;
}

/** Every indexed instance with its hierarchy (read-only; safe while Gantry runs, WAL). */
export function indexedRows(storagePath: string): IndexedRow[] {
  const file = join(storagePath, 'index.sqlite');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true });
  try {
    return db
      .prepare(
        `SELECT i.sop_instance_uid AS sopInstanceUid, i.sop_class_uid AS sopClassUid,
           se.series_instance_uid AS seriesInstanceUid, st.study_instance_uid AS studyInstanceUid,
           p.patient_id AS patientId, p.patient_name AS patientName, i.transfer_syntax_uid AS transferSyntaxUid,
           i.file_path AS filePath, i.file_size AS fileSize, i.file_mtime_ns AS fileMtimeNs, i.file_ino AS fileIno, i.state AS state
         FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk
           JOIN patients p ON p.id = st.patient_pk`,
      )
      .all() as IndexedRow[];
  } finally {
    db.close();
  }
}

/** The originals copies received again replaced, listed until a retention sweep finds them deleted (migration 025). */
export function replacedOriginals(storagePath: string): string[] {
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT file_path FROM replaced_originals ORDER BY id').pluck().all() as string[];
  } finally {
    db.close();
  }
}

export function countRows(storagePath: string): { patients: number; studies: number; series: number; instances: number } {
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    return db
      .prepare(
        `SELECT (SELECT count(*) FROM patients) AS patients, (SELECT count(*) FROM studies) AS studies,
           (SELECT count(*) FROM series) AS series, (SELECT count(*) FROM instances) AS instances`,
      )
      .get() as { patients: number; studies: number; series: number; instances: number };
  } finally {
    db.close();
  }
}

/** The dataset bytes of a Part 10 file (everything after its File Meta Information). */
export function datasetBytes(path: string): Buffer {
  const file = readFileSync(path);
  return file.subarray(datasetOffset(file));
}

/** The value of a File Meta Information element, e.g. 0x0003 for MediaStorageSOPInstanceUID. */
export function metaValue(path: string, element: number): string | undefined {
  const value = readFileMeta(readFileSync(path)).elements.get(element);
  return value === undefined ? undefined : trimUid(value.toString('latin1'));
}

/**
 * What stores left in incoming/. Up to SPARE_INCOMING_FILES empty files there are made ahead for the
 * next stores (src/store/spare-files.ts): files with content, or more empty files than that, are left.
 */
export function leftoverIncoming(storagePath: string): string[] {
  const files = listFiles(join(storagePath, 'incoming')).flatMap((path) => {
    try {
      return [{ path, size: statSync(path).size }];
    } catch (error) {
      // Removed between the listing and here (an aborted store's file going): not left over.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  });
  const empty = files.filter((file) => file.size === 0);
  return (empty.length > SPARE_INCOMING_FILES ? files : files.filter((file) => file.size > 0)).map((file) => file.path);
}

export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? listFiles(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}
