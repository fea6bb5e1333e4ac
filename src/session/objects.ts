/**
 * Patient, Study, Series and Instance: rows of the index as objects. The indexed attributes are plain
 * properties named by their DICOM keywords and cost no file access; anything else is read from the
 * file when first asked (attribute), frames are decoded when asked (frame, frames), and the children
 * of a level are listed page by page (queries.ts), so that walking the whole index holds one page.
 *
 * Each object is a snapshot of its row when it was listed: a running node may change an instance's
 * state and files meanwhile; `session.instance(uid)` reads it afresh.
 */
import { realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { PIXEL_DATA, type ElementNode, type ParsedFile } from '../dicom/dataset-tree.js';
import { DatasetFormatError } from '../dicom/header-scanner.js';
import type { DeidFileResult } from '../deid/deidentify-file.js';
import { AnotherInstanceError, comparedOf, originOf, sopInstanceUidAsIndexed } from '../deid/original-check.js';
import { fileDifference, stampFromColumns } from '../index/file-stamp.js';
import { INSTANCE_STATES, type InstanceState } from '../index/instance-index.js';
import { loadCodecs } from '../pixels/codecs.js';
import { decodeFrame, type FrameSamples } from '../pixels/frames.js';
import { pixelGeometry, PixelRedactionError, type PixelGeometry } from '../pixels/native.js';
import type { Deidentifier, DeidentifyOptions } from './deidentifier.js';
import { LazyHeader, OriginalUnreadableError, parseOriginal, type AttributeKey } from './header.js';
import {
  pagedRows,
  type IndexQueries,
  type InstanceAttributes,
  type InstanceRow,
  type PatientAttributes,
  type PatientRow,
  type SeriesAttributes,
  type SeriesRow,
  type StudyAttributes,
  type StudyRow,
} from './queries.js';

/** What the objects need of their session. */
export interface SessionContext {
  readonly storagePath: string;
  /** The index's queries; throws once the session is closed. */
  queries(): IndexQueries;
  /** Built on first use (it needs deid.secret). */
  deidentifier(): Deidentifier;
}

/**
 * The original of an instance is no longer the file that was indexed: its size differs, or, for a file
 * imported, its modification time (a file rewritten, or another put under its name). Its attributes, frames and
 * de-identification are refused; the message names the file and what changed, never a value in it.
 */
export class OriginalChangedError extends Error {
  constructor(
    /** The original's path, absolute. */
    readonly filePath: string,
    /** What differs from the index, in words. */
    readonly change: string,
  ) {
    super(`the original ${filePath} changed since it was indexed (${change}): it is not the instance the index describes`);
    this.name = 'OriginalChangedError';
  }
}

/** What an OriginalChangedError says of a file that names another instance. */
const ANOTHER_SOP_INSTANCE_UID = 'it names another SOP Instance UID';
const ORIGINAL_GONE = 'the file is gone: deleted, or moved with its folder';

/** A row's parent was deleted (by the node or an operator) after the row was listed. */
function stillIndexed<T>(row: T | undefined, what: string): T {
  if (row === undefined) throw new Error(`the ${what} is no longer in the index`);
  return row;
}

/** A misspelt state would match nothing and read as "none in that state" (JavaScript callers have no type check). */
export function checkState(state: string | undefined): void {
  if (state !== undefined && !(INSTANCE_STATES as readonly string[]).includes(state)) {
    throw new RangeError(`state "${state}" is not one of ${INSTANCE_STATES.join(', ')}`);
  }
}

// Each class below is merged with an interface of its indexed attributes: the attributes are copied
// onto the object in its constructor, so that `study.StudyDate` reads as plainly as the keyword.

export interface Patient extends Readonly<PatientAttributes> {}

export class Patient {
  readonly #context: SessionContext;
  readonly #id: number;

  constructor(context: SessionContext, row: PatientRow) {
    const { id, ...attributes } = row;
    this.#context = context;
    this.#id = id;
    Object.assign(this, attributes);
  }

  /** The patient's studies, in the order they were first received. */
  *studies(): Generator<Study> {
    for (const row of pagedRows((afterId) => this.#context.queries().studiesOfPatientAfter(this.#id, afterId))) yield new Study(this.#context, row);
  }
}

export interface Study extends Readonly<StudyAttributes> {}

export class Study {
  readonly #context: SessionContext;
  readonly #id: number;
  readonly #patientPk: number;

  constructor(context: SessionContext, row: StudyRow) {
    const { id, patientPk, ...attributes } = row;
    this.#context = context;
    this.#id = id;
    this.#patientPk = patientPk;
    Object.assign(this, attributes);
  }

  patient(): Patient {
    return new Patient(this.#context, stillIndexed(this.#context.queries().patientByPk(this.#patientPk), 'patient of this study'));
  }

  *series(): Generator<Series> {
    for (const row of pagedRows((afterId) => this.#context.queries().seriesOfStudyAfter(this.#id, afterId))) yield new Series(this.#context, row);
  }

  /** Every instance of the study, series by series. */
  *instances(): Generator<Instance> {
    for (const series of this.series()) yield* series.instances();
  }
}

export interface Series extends Readonly<SeriesAttributes> {}

export class Series {
  readonly #context: SessionContext;
  readonly #id: number;
  readonly #studyPk: number;

  constructor(context: SessionContext, row: SeriesRow) {
    const { id, studyPk, ...attributes } = row;
    this.#context = context;
    this.#id = id;
    this.#studyPk = studyPk;
    Object.assign(this, attributes);
  }

  study(): Study {
    return new Study(this.#context, stillIndexed(this.#context.queries().studyByPk(this.#studyPk), 'study of this series'));
  }

  /** The series' instances, in the order they were first received; with `state`, only those in it. */
  *instances(state?: InstanceState): Generator<Instance> {
    checkState(state);
    for (const row of pagedRows((afterId) => this.#context.queries().instancesOfSeriesAfter(this.#id, state, afterId))) yield new Instance(this.#context, row);
  }
}

export interface Instance extends Readonly<InstanceAttributes> {}

export class Instance {
  /** received (waiting for de-identification), deidentified, quarantined, failed or forwarded. */
  readonly state: InstanceState;
  /** Why it is quarantined or failed (never patient data). */
  readonly stateReason: string | undefined;
  /** The original, absolute. */
  readonly filePath: string;
  /** The de-identified copy the node made, absolute; undefined until there is one, or once retention deleted it. */
  readonly deidentifiedFilePath: string | undefined;
  readonly fileSize: number;
  /** The AE title that sent it (or the one `gantry import` recorded). */
  readonly callingAeTitle: string;
  readonly receivedAt: Date;
  /** When retention deleted the original (storage.retainOriginals): from then on attribute(),
   * frame() and deidentify() throw, and the indexed attributes and the de-identified copy remain. */
  readonly originalDeletedAt: Date | undefined;
  readonly #context: SessionContext;
  readonly #row: InstanceRow;
  readonly #header: LazyHeader;

  constructor(context: SessionContext, row: InstanceRow) {
    const { id, seriesPk, studyPk, filePath, fileSize, fileMtimeNs, fileIno, imported, callingAeTitle, receivedAt, state, stateReason, deidFilePath, deidDeletedAt, originalDeletedAt, deidOverride, ...attributes } = row;
    this.#context = context;
    this.#row = row;
    Object.assign(this, attributes);
    this.state = state;
    this.stateReason = stateReason;
    // Relative to the storage folder; "../" paths name files imported where they were.
    this.filePath = resolve(context.storagePath, filePath);
    this.deidentifiedFilePath = deidFilePath !== undefined && deidDeletedAt === undefined ? resolve(context.storagePath, deidFilePath) : undefined;
    this.fileSize = fileSize;
    this.callingAeTitle = callingAeTitle;
    this.receivedAt = new Date(receivedAt);
    this.originalDeletedAt = originalDeletedAt === undefined ? undefined : new Date(originalDeletedAt);
    this.#header = new LazyHeader(() => this.#originalPath(), (file) => this.#checkIdentity(file));
  }

  series(): Series {
    return new Series(this.#context, stillIndexed(this.#context.queries().seriesByPk(this.#row.seriesPk), 'series of this instance'));
  }

  /**
   * A top-level attribute of the original as text (several values joined by "\", binary numbers in
   * decimal, tags (AT) as "ggggeeee", padding removed), by keyword ("PhotometricInterpretation") or tag (0x00280004,
   * "(0028,0004)"). The file's header is read on the first call and kept; "" for an attribute present
   * without a value, undefined for one absent, a sequence, bulk binary data or longer than 64 KiB.
   * Throws OriginalChangedError when the file's size (and, for a file imported, its modification time) is not what the index
   * recorded, or the file names another SOP Instance UID (as do frame, frames and deidentify), OriginalUnreadableError when it cannot be parsed
   * (cut short or damaged: the error says where the file ends).
   */
  attribute(key: AttributeKey): string | undefined {
    return this.#header.text(key);
  }

  /** The first value of a numeric attribute (US, SS, UL, SL, FL, FD, IS, DS, SV, UV), or of an AT as
   * its tag's number ((0018,1063) is 0x00181063); undefined for any other VR. */
  attributeNumber(key: AttributeKey): number | undefined {
    return this.#header.number(key);
  }

  /**
   * Frame `index` (from 0) of the original's Pixel Data, decoded: native frames as stored, RLE, JPEG,
   * JPEG-LS and JPEG 2000 through Gantry's codecs. `layout` says how the samples lie (a codec may
   * change bit depth, planar configuration and byte order from the stored image's). Native 1-bit
   * frames (a BINARY segmentation) come unpacked, one byte of 0 or 1 per pixel (`layout.bitsAllocated`
   * 8, `layout.bitsStored` 1); 1-bit frames in an encapsulated syntax are refused.
   */
  async frame(index = 0): Promise<FrameSamples> {
    // Untyped callers: frame("0") read "there is no frame 0 (frames 0 to 0)" (found in a review).
    if (typeof index !== 'number' || !Number.isInteger(index)) throw new TypeError(`a frame index is an integer from 0, not ${typeof index === 'string' ? `"${index}"` : String(index)}`);
    await loadCodecsIfPossible();
    const image = this.#openImage();
    try {
      return decodeFrame(image.byTag, image.file.source, image.file.transferSyntaxUid, image.geometry, index);
    } finally {
      image.file.close();
    }
  }

  /** Every frame in turn, decoded one at a time, the file opened once. */
  async *frames(): AsyncGenerator<FrameSamples> {
    await loadCodecsIfPossible();
    const image = this.#openImage();
    try {
      for (let index = 0; index < image.geometry.frames; index += 1) {
        yield decodeFrame(image.byTag, image.file.source, image.file.transferSyntaxUid, image.geometry, index);
      }
    } finally {
      image.file.close();
    }
  }

  /**
   * De-identifies the original into `outputPath` as the node would (the config's profiles, rules and
   * pixel zones, pseudonyms keyed by deid.secret, the calling AE title it came from); the original
   * and the index are not changed. `outputPath` may not lie inside the storage folder or be a file
   * imported in place. Resolves with what was done, or why the node would hold the
   * instance back (then nothing is written): residual risk under deid.quarantineOnFindings included
   * (any finding but empty-patient-id), unless an operator released it with --ignore-findings. A
   * deid.secret other than the one the node recorded for the storage is refused, as by Session.export.
   */
  async deidentify(outputPath: string, options: DeidentifyOptions = {}): Promise<DeidFileResult> {
    const input = this.#originalPath();
    const output = resolve(outputPath);
    // By file, not only by name: the original reached through a link, or a hard link to it, would be
    // replaced by its copy just the same.
    if (output === input || sameFile(output, input)) throw new Error('the output path is the original itself: the original is never modified');
    refuseSessionFile(output, this.#context);
    const facts = {
      callingAeTitle: this.callingAeTitle,
      ...releaseOf(this.#row.deidOverride),
      renamedUids: this.#context.queries().renamesForStudy(this.#row.studyPk, this.#row.id),
      expected: { sopInstanceUid: this.#row.SOPInstanceUID, origin: originOf(this.#row.imported) },
    };
    try {
      return await this.#context.deidentifier().deidentify(input, output, facts, options);
    } catch (error) {
      if (error instanceof AnotherInstanceError) throw new OriginalChangedError(this.filePath, ANOTHER_SOP_INSTANCE_UID);
      // Cut short or damaged: as attribute() and frame() say it, with where the file ends.
      if (error instanceof DatasetFormatError || (error as Error).name === 'DatasetFormatError') {
        throw new OriginalUnreadableError(this.filePath, statSync(this.filePath, { throwIfNoEntry: false })?.size, (error as Error).message);
      }
      throw error;
    }
  }

  /** A file of another instance under the original's name (on a row without a stamp, of the same size,
   * which the stat cannot tell) is refused as changed, as the node and gantry export refuse it. */
  #checkIdentity(file: ParsedFile): void {
    if (sopInstanceUidAsIndexed(file) !== this.#row.SOPInstanceUID) throw new OriginalChangedError(this.filePath, ANOTHER_SOP_INSTANCE_UID);
  }

  #originalPath(): string {
    if (this.#row.originalDeletedAt !== undefined) {
      throw new Error(`the original of this instance was deleted by retention (storage.retainOriginals) on ${new Date(this.#row.originalDeletedAt).toISOString()}`);
    }
    // A file imported in place is its user's, who may put another instance under its name, which must
    // not be read or de-identified as the one the index describes. By size and modification time (ns),
    // from a stat: a file of the same size rewritten passed the size check alone. A received original
    // is compared by size only, as the node and gantry export compare it (original-check.ts).
    const stamp = stampFromColumns(this.#row.fileMtimeNs, this.#row.fileIno);
    const difference = fileDifference(this.filePath, comparedOf({ size: this.fileSize, ...(stamp ? { stamp } : {}) }, originOf(this.#row.imported)));
    // Gone: said as a change too, not the open's bare ENOENT (found in a review).
    if (difference !== undefined) throw new OriginalChangedError(this.filePath, 'change' in difference ? difference.change : this.#whyGone());
    return this.filePath;
  }

  /** An original gone from its path: replaced by a copy of the instance received since (written under
   * a new name; said as "deleted, or moved", its user looked for a deletion that never happened), or
   * deleted or moved. */
  #whyGone(): string {
    const now = this.#context.queries().instanceByPk(this.#row.id);
    if (now !== undefined && now.filePath !== this.#row.filePath) {
      return `replaced by the copy received again since, ${resolve(this.#context.storagePath, now.filePath)}: session.instance() reads it`;
    }
    return ORIGINAL_GONE;
  }

  #openImage(): { file: ParsedFile; byTag: Map<number, ElementNode>; geometry: PixelGeometry } {
    // Values up to 64 KiB are loaded with the header; frames are read from the file when decoded.
    const file = parseOriginal(this.#originalPath(), { loadLimit: 64 * 1024 });
    try {
      this.#checkIdentity(file);
      const byTag = new Map(file.elements.map((element) => [element.tag, element]));
      // Before the geometry: a report or plan has no Image Pixel module either, and "BitsAllocated is
      // missing" would read as a damaged image.
      if (!byTag.has(PIXEL_DATA)) throw new PixelRedactionError('the instance has no Pixel Data');
      return { file, byTag, geometry: pixelGeometry(byTag, file.source, file.encoding === 'explicit-be') };
    } catch (error) {
      file.close();
      throw error;
    }
  }
}

/** JPEG-LS and JPEG 2000 are WebAssembly modules, loaded once per thread. One that cannot load fails
 * only the frames that need it, with the reason (codecs.ts), not native or RLE frames. */
async function loadCodecsIfPossible(): Promise<void> {
  await loadCodecs().catch(() => undefined);
}

/**
 * Refuses an output among the node's files (the index, originals, de-identified copies) or over a
 * file imported in place, another instance's original: as `gantry export` refuses such a folder.
 * Both by the path given and by the real one (a folder reached through a link is the same folder).
 */
function refuseSessionFile(output: string, context: SessionContext): void {
  const names = [...new Set([output, realPathOf(output)])];
  const storages = [...new Set([context.storagePath, realPathOf(context.storagePath)])];
  if (names.some((name) => storages.some((storage) => name.startsWith(storage + sep)))) {
    throw new Error('the output path lies inside the storage folder (storage.path): choose one outside the session');
  }
  if (names.some((name) => context.queries().isImportedInPlace(name))) {
    throw new Error('the output path is a file imported in place (gantry import), the original of another instance');
  }
}

/** The real path of `path`, or of its nearest existing folder joined with the rest. */
function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const parent = dirname(path);
    return parent === path ? path : join(realPathOf(parent), basename(path));
  }
}

/** Whether two paths name one file (device and inode); false when either is not there. */
function sameFile(a: string, b: string): boolean {
  const first = statSync(a, { bigint: true, throwIfNoEntry: false });
  const second = statSync(b, { bigint: true, throwIfNoEntry: false });
  return first !== undefined && second !== undefined && first.dev === second.dev && first.ino === second.ino;
}

/** An operator's release of the instance (gantry quarantine release --pass, --ignore-findings). */
function releaseOf(override: string | undefined): { pass: boolean; ignoreFindings: boolean } {
  const release = override === undefined ? {} : (JSON.parse(override) as { pass?: boolean; ignoreFindings?: boolean });
  return { pass: release.pass === true, ignoreFindings: release.ignoreFindings === true };
}
