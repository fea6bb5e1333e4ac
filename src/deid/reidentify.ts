/**
 * Re-identification (PS3.15 E.1.2): the holder of the recipient's private key opens the Encrypted
 * Attributes Sequence of a de-identified file and writes a new file with the original attributes
 * back in place, without the attributes the de-identification added.
 */
import { BufferSource, parseDataset, parseFile, type ByteSource, type ElementNode, type ItemNode } from '../dicom/dataset-tree.js';
import { DatasetWriter } from '../dicom/dataset-writer.js';
import { deflateDataset, encodePart10Header } from '../dicom/part10.js';
import { header, reencodeElements } from '../dicom/reencode.js';
import { elementText } from '../dicom/element-value.js';
import { trimUid } from '../dicom/values.js';
import { FRAGMENT_DESCRIPTIONS } from '../pixels/encapsulated.js';
import type { KeyObject } from 'node:crypto';
import { openEnvelope } from './cms.js';
import { checkBinding } from './envelope-binding.js';
import { writeAll, writeThenRename } from './deidentify-file.js';

const TAG = {
  SOPInstanceUID: 0x00080018,
  CodeValue: 0x00080100,
  DeidentificationMethodCodeSequence: 0x00120064,
  EncryptedAttributesSequence: 0x04000500,
  EncryptedContentTransferSyntaxUID: 0x04000510,
  EncryptedContent: 0x04000520,
  ModifiedAttributesSequence: 0x04000550,
} as const;

/** What the de-identification adds, and re-identification takes away again (unless original). */
const ADDED_BY_DEIDENTIFICATION = new Set([0x00120062, 0x00120063, 0x00120064, 0x00280303, TAG.EncryptedAttributesSequence]);

/**
 * `restored`: attributes put back; `checked`: whether the payload was bound to this instance and
 * checked (false for one made before Gantry bound them, envelope-binding.ts); `keptSopInstanceUid`:
 * the pixels were redacted, so the instance keeps its de-identified SOP Instance UID.
 */
export function reidentifyFile(input: string, output: string, privateKey: string | KeyObject): { restored: number; checked: boolean; keptSopInstanceUid: boolean } {
  const parsed = parseFile(input);
  try {
    // An instance without a SOPInstanceUID (or an empty one) is named by its File Meta Information's, as the engine bound it.
    const carrierUid = trimUid(elementText(find(parsed.elements, TAG.SOPInstanceUID), parsed.source, false) ?? '') || trimUid(parsed.meta.get(0x0003)?.toString('latin1') ?? '');
    const decrypted = decryptOriginals(parsed.elements, parsed.source, privateKey, carrierUid);
    // Redacted pixels are another object than the original's (the de-identification renamed it for
    // that): given the original's SOP Instance UID, it collided with the unredacted original in a
    // PACS (PS3.3 C.12.1.1.1; found in the reversible pseudonymisation review).
    const keptSopInstanceUid = pixelsRedacted(parsed.elements, parsed.source);
    // The Pixel Data stays as de-identified (redacted, its fragments written anew): the original
    // Extended Offset Table and lengths that described the original's fragments would lie about it
    // (found in a review: a reader trusting them read the wrong bytes).
    const notRestored = new Set<number>([...FRAGMENT_DESCRIPTIONS, ...(keptSopInstanceUid ? [TAG.SOPInstanceUID] : [])]);
    const originals = { ...decrypted, elements: decrypted.elements.filter((element) => !notRestored.has(element.tag)) };
    const restoredTags = new Set(originals.elements.map((element) => element.tag));
    const kept = parsed.elements.filter((element) => !restoredTags.has(element.tag) && !ADDED_BY_DEIDENTIFICATION.has(element.tag));
    let pieces: Buffer[] = [];
    const emit = (bytes: Buffer) => pieces.push(Buffer.from(bytes));
    const writer = new DatasetWriter(parsed.source, parsed.encoding, emit);
    const all = [...kept.map((element) => ({ element, original: false })), ...originals.elements.map((element) => ({ element, original: true }))].sort(
      (a, b) => a.element.tag - b.element.tag,
    );
    // Group lengths (PS3.5 7.2) are written anew from what the group now holds: the restored values
    // are not as long as the ones they replace, so neither the copy's nor the original's is right.
    const withGroupLength = new Set(all.filter(({ element }) => (element.tag & 0xffff) === 0).map(({ element }) => element.tag >>> 16));
    const groups = new Map<number, Buffer[]>();
    for (const { element, original } of all) {
      if ((element.tag & 0xffff) === 0) continue;
      pieces = [];
      if (original) reencodeElements([element], originals.source, originals.encoding, parsed.encoding, emit);
      else writer.writeElements([element]);
      const group = element.tag >>> 16;
      const bytes = groups.get(group) ?? [];
      for (const piece of pieces) bytes.push(piece);
      groups.set(group, bytes);
    }
    pieces = [];
    for (const [group, bytes] of groups) {
      if (withGroupLength.has(group)) pieces.push(groupLength(group, bytes.reduce((sum, piece) => sum + piece.length, 0), parsed.encoding));
      pieces.push(...bytes);
    }
    const sop = originals.elements.find((element) => element.tag === TAG.SOPInstanceUID);
    const meta = (element: number) => trimUid(parsed.meta.get(element)?.toString('latin1') ?? '');
    const header = encodePart10Header({
      mediaStorageSopClassUid: meta(0x0002),
      mediaStorageSopInstanceUid: sop?.value ? trimUid(sop.value.toString('latin1')) : meta(0x0003),
      transferSyntaxUid: parsed.transferSyntaxUid,
    });
    const dataset = Buffer.concat(pieces);
    writeThenRename(output, 0o600, false, (fd) => {
      writeAll(fd, header);
      writeAll(fd, parsed.deflated ? deflateDataset(dataset) : dataset);
    });
    return { restored: originals.elements.length, checked: decrypted.checked, keptSopInstanceUid };
  } finally {
    parsed.close();
  }
}

/** A Group Length element (gggg,0000), UL, in the dataset's encoding. */
function groupLength(group: number, length: number, encoding: 'implicit-le' | 'explicit-le' | 'explicit-be'): Buffer {
  const value = Buffer.alloc(4);
  if (encoding === 'explicit-be') value.writeUInt32BE(length);
  else value.writeUInt32LE(length);
  return Buffer.concat([header(((group << 16) >>> 0), 'UL', 4, encoding), value]);
}

function find(elements: readonly ElementNode[], tag: number): ElementNode | undefined {
  return elements.find((element) => element.tag === tag);
}

/** Whether the de-identification redacted the pixels: code 113101 (Clean Pixel Data Option) in the
 * De-identification Method Code Sequence (PS3.16 CID 7050). */
function pixelsRedacted(elements: readonly ElementNode[], source: ByteSource): boolean {
  const codes = elements.find((element) => element.tag === TAG.DeidentificationMethodCodeSequence)?.items ?? [];
  return codes.some((item) => elementText(find(item.elements, TAG.CodeValue), source, false) === '113101');
}

function decryptOriginals(elements: readonly ElementNode[], source: ByteSource, privateKey: string | KeyObject, carrierSopInstanceUid: string) {
  const sequence = elements.find((element) => element.tag === TAG.EncryptedAttributesSequence);
  const items = sequence?.items ?? [];
  if (items.length === 0) throw new Error('the file has no Encrypted Attributes Sequence: it was not de-identified reversibly');
  // PS3.3 C.12.1.1.4.1: one item per recipient. The one this key opens; only the first was tried, and
  // a file whose first item was for someone else was refused as an OAEP decoding error (found in the
  // reversible pseudonymisation review).
  const failures: string[] = [];
  for (const item of items) {
    let content: Buffer;
    try {
      content = openEnvelope(itemField(item, source, TAG.EncryptedContent), privateKey);
    } catch (error) {
      failures.push((error as Error).message);
      continue;
    }
    return originalsIn(content, item, source, carrierSopInstanceUid);
  }
  throw new Error(`no item of the Encrypted Attributes Sequence (${items.length}) opens with this key: encrypted for another recipient? (${failures.join('; ')})`);
}

function itemField(item: ItemNode, source: ByteSource, tag: number): Buffer {
  const element = find(item.elements, tag);
  if (!element) throw new Error(`the Encrypted Attributes Sequence lacks (${tag.toString(16)})`);
  return element.value ?? Buffer.from(source.read(element.valueOffset, element.length));
}

/** The original attributes in an item's decrypted content, checked against the carrier. */
function originalsIn(content: Buffer, item: ItemNode, source: ByteSource, carrierSopInstanceUid: string) {
  const field = (tag: number) => itemField(item, source, tag);
  const syntax = trimUid(field(TAG.EncryptedContentTransferSyntaxUID).toString('latin1'));
  const encoding = syntax === '1.2.840.10008.1.2.2' ? 'explicit-be' : syntax === '1.2.840.10008.1.2.1' ? 'explicit-le' : undefined;
  if (!encoding) throw new Error(`encrypted content in transfer syntax ${syntax} is not supported`);
  const inner = new BufferSource(content);
  let dataset: ElementNode[];
  try {
    dataset = parseDataset(inner, encoding);
  } catch (error) {
    // A changed byte garbles a block of the decrypted dataset (AES-CBC): what it says cannot be trusted.
    throw new Error(`the encrypted attributes cannot be read (${(error as Error).message}): changed since they were made, or not written by Gantry; nothing restored`);
  }
  const modified = dataset.find((element) => element.tag === TAG.ModifiedAttributesSequence);
  const originals = modified?.items?.[0]?.elements;
  if (!modified || !originals) throw new Error('the encrypted content holds no Modified Attributes Sequence');
  const checked = checkBinding(dataset, inner, modified, carrierSopInstanceUid);
  return { elements: originals, source: inner, encoding, checked } as const;
}
