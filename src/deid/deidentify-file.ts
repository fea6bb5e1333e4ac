/**
 * De-identifies one Part 10 file into a new file (the original is never modified): parse the element
 * tree, let the engine mark its edits, write a new File Meta Information and the dataset element by
 * element. Deflated datasets are inflated, de-identified and deflated again, so the transfer syntax
 * never changes.
 */
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { parseFile, type ByteSource, type ElementNode, type ItemNode } from '../dicom/dataset-tree.js';
import { DatasetWriter, type EditableElement, type EditableItem } from '../dicom/dataset-writer.js';
import { padOddValues } from '../dicom/even-lengths.js';
import { DeflatingWriter, encodePart10Header, MEDIA_STORAGE_DIRECTORY_SOP_CLASS_UID } from '../dicom/part10.js';
import type { DatasetEncoding } from '../dicom/transfer-syntaxes.js';
import { trimUid } from '../dicom/values.js';
import { tagText } from '../dicom/header-scanner.js';
import { embeddedOverlayGroup, embeddedOverlayText, repeatedTagReason } from './burned-in.js';
import { decide, type BaseSettings, type Decision } from './decide.js';
import { DeidEngine, type DeidOutcome, type DeidSettings } from './engine.js';
import type { CompiledProfile } from './rules.js';
import type { Pseudonymizer } from './pseudonyms.js';
import { AnotherInstanceError, anotherInstance, sopInstanceUidAsIndexed, type OriginalOrigin } from './original-check.js';
import { attributeReader, elementText } from '../dicom/element-value.js';
import { PIXEL_DATA, UNDEFINED_LENGTH } from '../dicom/dataset-tree.js';
import { findTransferSyntax } from '../dicom/transfer-syntaxes.js';
import { checkNativeLength, frameBits, maskBlanksAnything, PixelRedactionError, pixelGeometry, redactNativePixelData, type PixelGeometry, type RowMask } from '../pixels/native.js';
import { lossyMethodOf, markLossy } from '../pixels/lossy-history.js';
import { redactAttachedPixels } from '../pixels/attached.js';
import { FRAME_CODECS } from '../pixels/frame-codecs.js';
import { EXTENDED_OFFSET_TABLE, FRAGMENT_DESCRIPTIONS, frameBytes, framesOf, writeEncapsulatedFrames } from '../pixels/encapsulated.js';
import { J2K_MAIN_HEADER, J2K_STREAM_SYNTAXES } from '../pixels/j2k-metadata.js';
import { JPEG_HEADER, JPEG_STREAM_SYNTAXES } from '../pixels/jpeg-metadata.js';
import { cleanedCodestream, segmentsToCleanIn, withCleanCodestream, type HeaderGrammar } from '../pixels/marker-segments.js';
import { zoneMask } from '../pixels/ultrasound-regions.js';
import type { CompiledZone } from '../pixels/zones.js';

export interface DeidentifyFileOptions {
  /** The settings, or the profiles and rules to decide them per instance (decide.ts). */
  settings: DeidSettings | { profiles: readonly CompiledProfile[]; base: BaseSettings; callingAeTitle?: string };
  pseudonyms: Pseudonymizer;
  /** Sync the output before returning. */
  sync?: boolean;
  /** `output` is a temporary name of the caller's, which nothing reads until the caller moves it:
   * written in place (no rename), and removed if writing fails. Otherwise written through a
   * temporary name and renamed, so that `output` is never half-written. */
  outputIsTemporary?: boolean;
  /** A read window of FileSource.WINDOW bytes to reuse (a worker thread keeps one for every file). */
  window?: Buffer;
  /** Top-level attributes whose output values the result should carry (`values`), by tag: what an
   * export names its files by, without reading the output again. */
  collect?: readonly number[];
  /** The SOP Instance UID the index holds for `input`, and where the file came from: a file that
   * names another is not de-identified as this instance (AnotherInstanceError, original-check.ts). */
  expected?: { sopInstanceUid: string; origin: OriginalOrigin };
}

export type DeidFileResult =
  | (DeidOutcome & { kind: 'deidentified'; profile: string; values?: Map<number, string>; /** The output's size, once written. */ bytes?: number })
  | { kind: 'quarantined'; reason: string };

export function deidentifyFile(input: string, output: string, options: DeidentifyFileOptions): DeidFileResult {
  const plan = planDeidentification(input, options);
  try {
    return plan.result.kind === 'quarantined' ? plan.result : plan.write(output, options);
  } finally {
    plan.close();
  }
}

/** A de-identification decided and applied to the element tree, not yet written. */
export interface DeidPlan {
  /** Held back (nothing to write), or what the output will carry: its UIDs, audit, findings, values. */
  readonly result: DeidFileResult;
  /**
   * Writes the output where the caller chose after reading `result` (gantry export names the file by
   * its de-identified values). An instance whose frames cannot be redacted shows only now: it comes
   * back quarantined, and nothing is left under `output`.
   */
  write(output: string, options?: Pick<DeidentifyFileOptions, 'sync' | 'outputIsTemporary'>): DeidFileResult;
  /** Closes the input; call once done, written or not. */
  close(): void;
}

export function planDeidentification(input: string, options: DeidentifyFileOptions): DeidPlan {
  const opened = openDataset(input, options.window);
  const plan = (result: DeidFileResult, write: DeidPlan['write'] = () => result): DeidPlan => ({ result, write, close: () => opened.close() });
  try {
    if (options.expected && sopInstanceUidAsIndexed(opened) !== options.expected.sopInstanceUid) throw new AnotherInstanceError(anotherInstance(options.expected.origin));
    // A DICOMDIR's records repeat each patient's attributes, and its Referenced File IDs are paths
    // that media writers name after patients (0004,1500): Table E.1-1 covers neither, and it
    // indexes files by their original names. It is not an instance to release.
    if (opened.sopClassUid === MEDIA_STORAGE_DIRECTORY_SOP_CLASS_UID) {
      return plan({ kind: 'quarantined', reason: 'a DICOMDIR (the directory of a medium, PS3.10 8.6): its records and file paths carry identifiers; de-identify the instances it lists instead' });
    }
    // A Part 10 file names its instance's class and UID (PS3.10 7.1, Type 1): a dataset with neither
    // (a fragment, a template) was written with both empty (found in the output review).
    if (!opened.sopClassUid || !sopInstanceUidAsIndexed(opened)) {
      return plan({ kind: 'quarantined', reason: 'it has no SOPClassUID or SOPInstanceUID (in the dataset or its File Meta Information): not a composite instance that a Part 10 file can name' });
    }
    const repeated = repeatedTagReason(opened.elements);
    if (repeated !== undefined) return plan({ kind: 'quarantined', reason: repeated });
    const decision = decideFor(opened, options);
    if (decision.kind === 'quarantine') return plan({ kind: 'quarantined', reason: decision.reason });
    let settings = decision.settings;
    const zone = decision.redact;
    // Where re-encoded frames wait while they are written: beside the output, known at write time.
    const scratch = { path: '' };
    const redaction = zone ? prepareRedaction(opened, zone, scratch) : undefined;
    if (redaction?.kind === 'quarantine') return plan({ kind: 'quarantined', reason: redaction.reason });
    if (zone && redaction?.kind === 'ready') settings = { ...settings, cleanedPixels: { zone: zone.rule.name, key: zone.key } };
    // Pixels that leave as they are leave without the codestream's own metadata (EXIF, comments).
    if (redaction?.kind !== 'ready') {
      const held = removeCodestreamMetadata(opened, scratch);
      if (held !== undefined) return plan({ kind: 'quarantined', reason: held });
    }
    const engine = new DeidEngine(settings, options.pseudonyms, opened.source, opened.encoding === 'explicit-be', opened.encoding === 'implicit-le');
    const outcome = engine.run(opened.elements as EditableElement[], opened.sopInstanceUid);
    if (zone) {
      // Pixels no zone reaches hold the instance, with Pixel Data beside them or not: without Pixel
      // Data there is nothing to redact, and the zone must not clear it of the burned-in text risk.
      const unredacted = pixelsLeftUnredacted(opened.elements as EditableElement[], redaction?.kind === 'ready');
      if (unredacted) return plan(heldByZone(zone, `${unredacted} would leave unredacted`));
    }
    if (zone && redaction?.kind === 'ready') {
      // What the de-identification kept of the attached pixels (icon, overlays) gets the zone too.
      try {
        redactAttachedPixels(opened.elements as EditableElement[], opened.source, opened.encoding === 'explicit-be', redaction.geometry, redaction.mask);
      } catch (error) {
        if (error instanceof PixelRedactionError) return plan(heldByZone(zone, error.message));
        throw error;
      }
    }
    // What is written anew has even lengths (PS3.5 7.1.1), whatever the original held.
    padOddValues(opened.elements as EditableElement[], opened.source, opened.encoding === 'explicit-be');
    const values = options.collect ? outputValues(opened, options.collect) : undefined;
    const result: DeidFileResult = { ...outcome, kind: 'deidentified', profile: decision.profile, ...(values ? { values } : {}) };
    const header = encodePart10Header({
      mediaStorageSopClassUid: opened.sopClassUid,
      mediaStorageSopInstanceUid: outcome.sopInstanceUid,
      transferSyntaxUid: opened.transferSyntaxUid,
    });
    return plan(result, (output, writing = {}) => {
      scratch.path = `${output}.frames`;
      let bytes = 0;
      try {
        writeThenRename(output, 0o640, writing.sync ?? false, (fd) => (bytes = writeDataset(fd, header, opened)), writing.outputIsTemporary);
      } catch (error) {
        // A frame that cannot be decoded or encoded again shows only while writing: hold the instance.
        if (zone && error instanceof PixelRedactionError) return heldByZone(zone, error.message);
        throw error;
      }
      return { ...result, bytes };
    });
  } catch (error) {
    opened.close();
    throw error;
  }
}

/** Why an instance is held back when a zone matches but cannot be applied. */
function zoneHoldReason(zone: CompiledZone, why: string): string {
  return `pixel data: zone "${zone.rule.name}" matches, but ${why}`;
}

function heldByZone(zone: CompiledZone, why: string): { kind: 'quarantined'; reason: string } {
  return { kind: 'quarantined', reason: zoneHoldReason(zone, why) };
}

/** Writes the output; answers its size in bytes. */
function writeDataset(fd: number, header: Buffer, opened: OpenedDataset): number {
  // The writer emits an element or two at a time: gathered into large writes, a small file is one
  // write instead of dozens (measured: the system calls were a third of a small file's cost).
  const out = new GatheredWrites(fd);
  out.write(header);
  if (opened.deflated) {
    const deflating = new DeflatingWriter((bytes) => out.write(bytes));
    new DatasetWriter(opened.source, 'explicit-le', (bytes) => deflating.add(bytes)).writeElements(opened.elements);
    deflating.end();
  } else {
    new DatasetWriter(opened.source, opened.encoding, (bytes) => out.write(bytes)).writeElements(opened.elements);
  }
  out.flush();
  return out.written;
}

function decideFor(opened: OpenedDataset, options: DeidentifyFileOptions): Decision {
  if ('options' in options.settings) return { kind: 'deidentify', settings: options.settings, profile: 'given' };
  const { profiles, base, callingAeTitle } = options.settings;
  return decide(
    profiles,
    {
      // Stored originals carry the calling AE title as Source Application Entity Title (PS3.10).
      callingAeTitle: callingAeTitle ?? opened.sourceAeTitle,
      sopClassUid: opened.sopClassUid,
      attribute: attributeReader(opened.elements, opened.source, opened.encoding === 'explicit-be', opened.meta),
    },
    base,
  );
}

/**
 * Readies the redaction of the pixel data with a zone: the Pixel Data element streams its frames
 * through the zone when written. Pixel data that cannot be redacted (yet) holds the instance back,
 * with the reason: redaction was asked for, so the instance must not leave unredacted.
 */
function prepareRedaction(
  opened: OpenedDataset,
  zone: CompiledZone,
  scratch: { path: string },
): { kind: 'ready'; geometry: PixelGeometry; mask: RowMask } | { kind: 'nothing' } | { kind: 'quarantine'; reason: string } {
  const hold = (why: string) => ({ kind: 'quarantine' as const, reason: zoneHoldReason(zone, why) });
  const byTag = new Map(opened.elements.map((element) => [element.tag, element as EditableElement]));
  const pixelData = byTag.get(PIXEL_DATA);
  const syntax = findTransferSyntax(opened.transferSyntaxUid);
  // An instance of the device without pixels (a report, a presentation state): nothing to redact.
  if (!pixelData) return { kind: 'nothing' };
  // The zone's rectangles say where the device writes into the image; an overlay plane in the unused
  // bits of Pixel Data is drawn over all of it, and `gantry zones preview` does not show it (burned-in.ts).
  const overlayGroup = embeddedOverlayGroup((tag) => elementText(byTag.get(tag), opened.source, opened.encoding === 'explicit-be'));
  if (overlayGroup !== undefined) return hold(`${embeddedOverlayText(overlayGroup)}, which it may draw outside the rectangles`);
  const encapsulated = syntax?.encapsulated || pixelData.encapsulated || pixelData.length === UNDEFINED_LENGTH;
  const codec = encapsulated ? FRAME_CODECS.get(opened.transferSyntaxUid) : undefined;
  if (encapsulated && !codec) return hold(`pixel data in ${syntax?.name ?? opened.transferSyntaxUid} cannot be redacted: Gantry has no decoder for it`);
  try {
    const bigEndian = opened.encoding === 'explicit-be';
    const geometry = pixelGeometry(byTag, opened.source, bigEndian);
    const mask = zoneMask(zone, byTag, opened.source, bigEndian, geometry);
    // A rectangle wholly outside the image, or a mask that blanks nothing, means the zone was made for
    // another image size: it must not clear the instance.
    const outside = zone.rule.rects.find(([x, y]) => x >= geometry.columns || y >= geometry.rows);
    if (outside) return hold(`its rectangle [${outside.join(', ')}] lies outside the ${geometry.columns}×${geometry.rows} image`);
    if (!maskBlanksAnything(mask, geometry.rows)) return hold('it blanks nothing in this image');
    const source = opened.source;
    if (!codec) {
      // Explicit VR big endian holds 8-bit and 1-bit samples in swapped 16-bit words (OW).
      if (bigEndian && geometry.bitsAllocated <= 8 && pixelData.vr === 'OW') return hold(`${geometry.bitsAllocated}-bit pixel data in explicit VR big endian words`);
      checkNativeLength(pixelData, geometry);
      pixelData.stream = { length: pixelData.length, write: (emit) => redactNativePixelData(pixelData, source, geometry, mask, emit) };
      return { kind: 'ready', geometry, mask };
    }
    const redact = codec.redactor(geometry, mask);
    const frames = framesOf(pixelData, source, geometry.frames, byTag.get(EXTENDED_OFFSET_TABLE));
    keepLossyHistory(opened, byTag, geometry, frames);
    pixelData.stream = {
      length: UNDEFINED_LENGTH,
      write: (emit) => writeEncapsulatedFrames(frames.length, (index) => redact(frameBytes(frames[index] ?? [], source)), scratch.path, emit),
    };
    // OpenJPEG encodes colour with the reversible colour transform, and says so (PS3.5 A.4.4).
    const photometric = byTag.get(PHOTOMETRIC_INTERPRETATION);
    if (codec.colourBecomesYbrRct && geometry.samplesPerPixel === 3 && photometric) photometric.replacement = { value: Buffer.from('YBR_RCT ', 'latin1') };
    dropStaleOffsets(byTag);
    return { kind: 'ready', geometry, mask };
  } catch (error) {
    if (error instanceof PixelRedactionError) return hold(error.message);
    throw error;
  }
}

/**
 * JPEG-LS near-lossless and JPEG 2000 (.91, which allows loss) frames are encoded again losslessly
 * (NEAR 0, the 5-3 wavelet) once redacted: their codestreams no longer say they lost anything, so the
 * dataset says it (lossy-history.ts; found in the pixel review). JPEG baseline and extended stay in their transfer
 * syntax, which says it.
 */
function keepLossyHistory(opened: OpenedDataset, byTag: ReadonlyMap<number, EditableElement>, geometry: PixelGeometry, frames: readonly ItemNode[][]): void {
  if (!REENCODED_LOSSLESSLY.has(opened.transferSyntaxUid) || frames.length === 0) return;
  const method = lossyMethodOf(opened.transferSyntaxUid, frameBytes(frames[0] ?? [], opened.source));
  if (!method) return;
  const compressed = frames.flat().reduce((sum, fragment) => sum + fragment.length, 0);
  markLossy(opened.elements as EditableElement[], byTag, opened.source, method, ((frameBits(geometry) / 8) * geometry.frames) / compressed);
}

const REENCODED_LOSSLESSLY: ReadonlySet<string> = new Set(['1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.91']);

/** The header grammar whose metadata segments go, by transfer syntax (marker-segments.ts). */
function metadataGrammarFor(transferSyntaxUid: string): HeaderGrammar | undefined {
  if (JPEG_STREAM_SYNTAXES.has(transferSyntaxUid)) return JPEG_HEADER;
  if (J2K_STREAM_SYNTAXES.has(transferSyntaxUid)) return J2K_MAIN_HEADER;
  return undefined;
}

/**
 * Sets Pixel Data to be written without the metadata of its frames: the APPn and COM segments of
 * JPEG and JPEG-LS, before any scan, and the bytes after their EOI (jpeg-metadata.ts), the comments
 * of JPEG 2000 and the bytes after its EOC (j2k-metadata.ts), when
 * any frame has some; frames without any are copied as they are. A dataset whose frames cannot be told
 * apart is left as it was (its pixels are not read, only copied) when no fragment opens with metadata;
 * when one does, the reason to hold the instance is returned: the metadata cannot be taken out. So it
 * is when a frame's codestream cannot be read from its start: what it carries cannot be told.
 */
function removeCodestreamMetadata(opened: OpenedDataset, scratch: { path: string }): string | undefined {
  const grammar = metadataGrammarFor(opened.transferSyntaxUid);
  if (!grammar) return undefined;
  const byTag = new Map(opened.elements.map((element) => [element.tag, element as EditableElement]));
  const pixelData = byTag.get(PIXEL_DATA);
  if (!pixelData || !(pixelData.encapsulated || pixelData.length === UNDEFINED_LENGTH)) return undefined;
  const source = opened.source;
  const fragments = (pixelData.items ?? []).slice(1);
  let frames: ItemNode[][];
  let count: number | undefined;
  try {
    count = pixelGeometry(byTag, source, false).frames;
    frames = framesOf(pixelData, source, count, byTag.get(EXTENDED_OFFSET_TABLE));
  } catch (error) {
    if (!(error instanceof PixelRedactionError)) throw error;
    if (count === 1 && fragments.length > 0) {
      // One frame: every fragment is its (PS3.5 A.4), whatever a table listing each of them says
      // (found in the review of the session's diff: such files were held).
      frames = [fragments];
    } else {
      // Copied as they are, the fragments would release what the metadata holds (a COM segment, EXIF).
      // Each must be a whole codestream shown to hold none: a fragment that continues another (it does
      // not open with one) cannot be read on its own, and may hold a segment or bytes past the end
      // marker all the same (found in a review).
      const states = fragments.map((fragment) => segmentsToCleanIn(frameBytes([fragment], source), grammar));
      if (states.every((state) => state === 'none')) return undefined;
      const why = states.includes('present')
        ? 'a fragment holds codestream metadata (comments, application segments or other segments no decoder needs, or bytes outside the codestream) that would leave with them'
        : 'a fragment is not a whole codestream: whether it carries metadata (comments, application segments, bytes outside the codestream) cannot be checked';
      return `its frames cannot be told apart (${error.message}), and ${why}`;
    }
  }
  // The metadata is nearly always in the frame's first fragment, which tells when the frame is one
  // fragment; a frame cut in several is read whole: its later fragments may hold bytes past the end
  // marker (found in a review). Every frame is looked at: one that cannot be read holds the instance.
  const outcomes = frames.map((fragments): 'clean' | 'to clean' | 'unreadable' => {
    const first = fragments[0];
    const state = first ? segmentsToCleanIn(frameBytes([first], source), grammar) : 'none';
    if (state === 'present') return 'to clean';
    if (state === 'none' && fragments.length <= 1) return 'clean';
    const outcome = cleanedCodestream(frameBytes(fragments, source), grammar);
    return typeof outcome === 'string' ? outcome : 'to clean';
  });
  const unreadable = outcomes.indexOf('unreadable');
  if (unreadable >= 0) {
    // Copied as it is, whatever it carries (a comment, EXIF) would leave with it.
    return `frame ${unreadable + 1} of ${frames.length} is not a codestream that can be read from its start: whether it carries metadata (comments, application segments) cannot be checked`;
  }
  if (!outcomes.includes('to clean')) return undefined;
  pixelData.stream = {
    length: UNDEFINED_LENGTH,
    write: (emit) =>
      writeEncapsulatedFrames(
        frames.length,
        (index) => {
          const frame = frameBytes(frames[index] ?? [], source);
          return withCleanCodestream(frame, grammar) ?? frame;
        },
        scratch.path,
        emit,
      ),
  };
  dropStaleOffsets(byTag);
  return undefined;
}

/** Pixel Data written in new fragments has new offsets and a new length: the Extended Offset Table,
 * the value's total length and a group length would lie, and go. */
function dropStaleOffsets(byTag: ReadonlyMap<number, EditableElement>): void {
  for (const tag of [...FRAGMENT_DESCRIPTIONS, PIXEL_GROUP_LENGTH]) {
    const stale = byTag.get(tag);
    if (stale) stale.removed = true;
  }
}

/** The values the output has for these top-level tags (as written: replaced, kept or absent). */
function outputValues(opened: OpenedDataset, tags: readonly number[]): Map<number, string> {
  const values = new Map<number, string>();
  for (const tag of tags) {
    const element = (opened.elements as EditableElement[]).find((candidate) => candidate.tag === tag);
    if (!element || element.removed) continue;
    const text = element.replacement ? element.replacement.value.toString('latin1').replace(/^[ \0]+|[ \0]+$/g, '') : elementText(element, opened.source, opened.encoding === 'explicit-be');
    if (text !== undefined) values.set(tag, text);
  }
  return values;
}

/** Pixels no zone reaches that the de-identification kept (Float and Double Float Pixel Data next to
 * Pixel Data): described, or undefined. Icons and overlays are redacted with the image's mask
 * (attached.ts) when the image is (`imageRedacted`); without Pixel Data there is no mask, and a kept
 * icon or overlay, a copy of the image and text drawn over it, would leave as it came. */
function pixelsLeftUnredacted(elements: readonly EditableElement[], imageRedacted: boolean): string | undefined {
  if (elements.some((element) => !element.removed && (element.tag === FLOAT_PIXEL_DATA || element.tag === DOUBLE_FLOAT_PIXEL_DATA))) return 'float pixel data';
  // An icon inside a sequence item (an SR's or a referenced image's, PS3.3 C.7.6.1.1.6) shows
  // another image: this one's zone cannot be placed on it.
  const nested = keptNestedIcon(elements, false);
  if (nested !== undefined) return `the icon image inside (${tagText(nested)}) (it shows another image; the zone cannot be placed on it)`;
  if (imageRedacted) return undefined;
  const kept = elements.filter((element) => !element.removed);
  if (kept.some((element) => element.tag === ICON_IMAGE_SEQUENCE && ((element.items ?? []) as EditableItem[]).some((item) => !item.removed && (item.elements as EditableElement[]).some((inner) => inner.tag === PIXEL_DATA && !inner.removed)))) {
    return 'the icon image (without Pixel Data to take the zone from)';
  }
  if (kept.some((element) => element.tag >>> 16 >= 0x6000 && element.tag >>> 16 <= 0x601e && (element.tag & 0xffff) === 0x3000)) return 'overlay data (without Pixel Data to take the zone from)';
  return undefined;
}

/** The sequence holding an Icon Image Sequence with Pixel Data that the de-identification kept
 * inside a sequence item (at any depth), if there is one. */
function keptNestedIcon(elements: readonly EditableElement[], nested: boolean, within?: number): number | undefined {
  for (const element of elements) {
    if (element.removed || !element.items) continue;
    const items = (element.items as EditableItem[]).filter((item) => !item.removed);
    if (nested && element.tag === ICON_IMAGE_SEQUENCE && items.some((item) => (item.elements as EditableElement[]).some((inner) => inner.tag === PIXEL_DATA && !inner.removed))) {
      return within ?? element.tag;
    }
    for (const item of items) {
      const found = keptNestedIcon(item.elements as EditableElement[], true, within ?? element.tag);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

const FLOAT_PIXEL_DATA = 0x7fe00008;
const ICON_IMAGE_SEQUENCE = 0x00880200;
const DOUBLE_FLOAT_PIXEL_DATA = 0x7fe00009;
const PHOTOMETRIC_INTERPRETATION = 0x00280004;
const PIXEL_GROUP_LENGTH = 0x7fe00000;


/** Writes `output` through a temporary file renamed into place, so no half-written file ever has
 * its name; the temporary file goes if writing fails. A caller whose `output` is a temporary name of
 * its own (`direct`: the node's worker, gantry deid) has it written in place: the caller moves it
 * when done, and a second rename per file would only cost. */
export function writeThenRename(output: string, mode: number, sync: boolean, fill: (fd: number) => void, direct = false): void {
  const temporary = direct ? output : `${output}.partial`;
  const fd = openSync(temporary, 'w', mode);
  try {
    fill(fd);
    if (sync) fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temporary);
    throw error;
  }
  closeSync(fd);
  if (!direct) renameSync(temporary, output);
}

/** Writes gathered into a buffer of GATHER_BYTES and written when it fills (or at flush); a piece
 * larger than the buffer goes straight out. Pieces are copied, so a view of a read buffer may be
 * reused once `write` returns. */
class GatheredWrites {
  /** One per thread: a file is written by one synchronous call, so writes never interleave, and a
   * buffer per file would be garbage per file. */
  private static shared: Buffer | undefined;
  private readonly buffer = (GatheredWrites.shared ??= Buffer.allocUnsafeSlow(256 * 1024));
  private used = 0;
  /** Bytes given to write() so far. */
  written = 0;

  constructor(private readonly fd: number) {}

  write(bytes: Buffer): void {
    this.written += bytes.length;
    if (this.used + bytes.length > this.buffer.length) this.flush();
    if (bytes.length >= this.buffer.length) {
      writeAll(this.fd, bytes);
      return;
    }
    bytes.copy(this.buffer, this.used);
    this.used += bytes.length;
  }

  flush(): void {
    if (this.used === 0) return;
    writeAll(this.fd, this.buffer.subarray(0, this.used));
    this.used = 0;
  }
}

/** writeSync may write less than asked: loop until all is written. */
export function writeAll(fd: number, bytes: Buffer): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

interface OpenedDataset {
  elements: ElementNode[];
  source: ByteSource;
  encoding: Exclude<DatasetEncoding, 'deflated-explicit-le'>;
  transferSyntaxUid: string;
  sopClassUid: string;
  sopInstanceUid: string;
  sourceAeTitle: string;
  /** File Meta Information values by element number. */
  meta: ReadonlyMap<number, Buffer>;
  deflated: boolean;
  close(): void;
}

/**
 * Values up to this size are loaded when the input is parsed; larger ones (pixel data) are read from
 * the file only if an edit needs them. The writer copies untouched elements from the file either way,
 * so loading a 0.5 MB Pixel Data value only cost an allocation and a copy per instance.
 */
const LOAD_LIMIT = 64 * 1024;

const SOP_CLASS_UID = 0x00080016;

/** A top-level UID of the dataset, as text ('' when absent). */
function datasetUid(parsed: Pick<OpenedDataset, 'elements' | 'source' | 'encoding'>, tag: number): string {
  const element = parsed.elements.find((candidate) => candidate.tag === tag);
  return trimUid((element ? elementText(element, parsed.source, parsed.encoding === 'explicit-be') : undefined) ?? '').trim();
}

function openDataset(input: string, window?: Buffer): OpenedDataset {
  const parsed = parseFile(input, window ? { window, loadLimit: LOAD_LIMIT } : { loadLimit: LOAD_LIMIT });
  const meta = (element: number) => trimUid(parsed.meta.get(element)?.toString('latin1') ?? '');
  return {
    elements: parsed.elements,
    source: parsed.source,
    encoding: parsed.encoding,
    transferSyntaxUid: parsed.transferSyntaxUid,
    // The File Meta Information's, or else the dataset's (a meta header written without it).
    sopClassUid: meta(0x0002) || datasetUid(parsed, SOP_CLASS_UID),
    sopInstanceUid: meta(0x0003),
    sourceAeTitle: meta(0x0016),
    meta: parsed.meta,
    deflated: parsed.deflated,
    close: parsed.close,
  };
}
