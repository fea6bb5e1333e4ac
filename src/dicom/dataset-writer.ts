/**
 * Writes an element tree (dataset-tree.ts) back out, after edits, in the dataset's own encoding:
 * untouched elements are copied byte for byte from the source (large ones streamed in pieces), edited
 * ones encoded anew, and the lengths of defined-length sequences and items around an edit, and of a
 * group length element of an edited group, recomputed. Nothing else changes: no re-encoding of text,
 * no change of sequence length form, pixel data copied through (unless an edit streams it anew:
 * redaction, or the padding of odd fragments, even-lengths.ts).
 */
import type { ByteSource, ElementNode, ItemNode } from './dataset-tree.js';
import { UNDEFINED_LENGTH } from './dataset-tree.js';
import type { DatasetEncoding } from './transfer-syntaxes.js';
import { SHORT_VRS } from './values.js';

/** Marks an edit on a node of the tree. */
export interface Edited {
  /** The element is left out of the output. */
  removed?: boolean;
  /** The element gets this value (already padded to even length) and, if given, this VR. */
  replacement?: { value: Buffer; vr?: string };
  /** The element is new: it has no bytes in the source. */
  inserted?: boolean;
  /** The element's value is written by `write`, in pieces (redacted pixel data): `length` is the
   * header's length field (UNDEFINED_LENGTH for encapsulated pixel data, whose items and delimiter
   * `write` emits too). */
  stream?: { length: number; write(emit: (bytes: Buffer) => void): void };
}

export type EditableElement = ElementNode & Edited & { items?: EditableItem[] };
export type EditableItem = ItemNode & { removed?: boolean; inserted?: boolean; elements: EditableElement[] };

const COPY_PIECE = 1024 * 1024;

/**
 * `emit` gets each piece of output in order. A piece may be a view of the source's read buffer, valid
 * until `emit` returns: write it out at once, or copy it to keep it.
 */
export class DatasetWriter {
  private readonly implicit: boolean;
  private readonly bigEndian: boolean;

  constructor(
    private readonly source: ByteSource | undefined,
    encoding: Exclude<DatasetEncoding, 'deflated-explicit-le'>,
    private readonly emit: (bytes: Buffer) => void,
  ) {
    this.implicit = encoding === 'implicit-le';
    this.bigEndian = encoding === 'explicit-be';
  }

  writeElements(elements: readonly EditableElement[]): void {
    const groupLengths = this.groupLengths(elements);
    for (const element of elements) {
      if (element.removed) continue;
      const groupLength = groupLengths.get(element);
      if (groupLength !== undefined) {
        this.writeNew(element.tag, 'UL', this.u32(groupLength));
        continue;
      }
      this.writeElement(element);
    }
  }

  /** The output size of an element (0 when removed). */
  elementSize(element: EditableElement): number {
    if (element.removed) return 0;
    if (!isDirty(element)) return element.end - element.offset;
    if (element.stream) {
      // Only parents of defined length ask; top-level pixel data has none.
      if (element.stream.length === UNDEFINED_LENGTH) throw new Error('the size of a streamed value of undefined length is not known before it is written');
      return this.headerLength(element.vr, element.stream.length) + element.stream.length;
    }
    if (element.replacement || (element.inserted && !element.items)) {
      const vr = element.replacement?.vr ?? element.vr;
      const valueLength = element.replacement?.value.length ?? element.value?.length ?? 0;
      return this.headerLength(vr, valueLength) + valueLength;
    }
    const inner = this.innerWriter(element);
    const content = (element.items ?? []).reduce((sum, item) => sum + inner.itemSize(item), 0);
    return this.headerLength(element.vr === 'SQ' || element.implicitInside ? 'SQ' : element.vr) + content + (element.length === UNDEFINED_LENGTH ? 8 : 0);
  }

  /** Items inside a UN are implicit VR little endian whatever the dataset's encoding (PS3.5 6.2.2). */
  private innerWriter(element: EditableElement): DatasetWriter {
    return element.implicitInside && !this.implicit ? new DatasetWriter(this.source, 'implicit-le', this.emit) : this;
  }

  private itemSize(item: EditableItem): number {
    if (item.removed) return 0;
    if (!isItemDirty(item)) return item.end - item.offset;
    const content = item.elements.reduce((sum, element) => sum + this.elementSize(element), 0);
    return 8 + content + (item.length === UNDEFINED_LENGTH ? 8 : 0);
  }

  private writeElement(element: EditableElement): void {
    if (!isDirty(element)) {
      this.copy(element.offset, element.end);
      return;
    }
    if (element.stream) {
      this.emit(this.header(element.tag, element.vr, element.stream.length));
      let written = 0;
      element.stream.write((bytes) => {
        written += bytes.length;
        this.emit(bytes);
      });
      if (element.stream.length !== UNDEFINED_LENGTH && written !== element.stream.length) {
        throw new Error(`a streamed value of ${element.stream.length} bytes wrote ${written}`);
      }
      return;
    }
    if (element.replacement || (element.inserted && !element.items)) {
      this.writeNew(element.tag, element.replacement?.vr ?? element.vr, element.replacement?.value ?? element.value ?? Buffer.alloc(0));
      return;
    }
    // A sequence (or UN of undefined length) with edits inside: its own header, then its items.
    const items = element.items ?? [];
    const inner = this.innerWriter(element);
    const undefinedLength = element.length === UNDEFINED_LENGTH;
    const length = undefinedLength ? UNDEFINED_LENGTH : items.reduce((sum, item) => sum + inner.itemSize(item), 0);
    this.emit(this.header(element.tag, element.vr, length));
    for (const item of items) inner.writeItem(item);
    // The delimiter of a UN's items is in their encoding, implicit VR little endian (PS3.5 6.2.2),
    // as the reader expects it: in the dataset's big endian it ended the output's readable part.
    if (undefinedLength) this.emit(inner.delimiter(0xfffee0dd));
  }

  private writeItem(item: EditableItem): void {
    if (item.removed) return;
    if (!isItemDirty(item)) {
      this.copy(item.offset, item.end);
      return;
    }
    const undefinedLength = item.length === UNDEFINED_LENGTH;
    const length = undefinedLength ? UNDEFINED_LENGTH : item.elements.reduce((sum, element) => sum + this.elementSize(element), 0);
    this.emit(this.itemHeader(length));
    this.writeElements(item.elements);
    if (undefinedLength) this.emit(this.delimiter(0xfffee00d));
  }

  private writeNew(tag: number, vr: string, value: Buffer): void {
    this.emit(this.header(tag, vr, value.length));
    if (value.length > 0) this.emit(value);
  }

  /** Group length elements (gggg,0000) of a group with edits get the group's new length. */
  private groupLengths(elements: readonly EditableElement[]): Map<EditableElement, number> {
    const result = new Map<EditableElement, number>();
    for (const element of elements) {
      if ((element.tag & 0xffff) !== 0 || element.removed) continue;
      const group = element.tag >>> 16;
      const members = elements.filter((other) => other.tag >>> 16 === group && other !== element);
      if (!members.some((member) => isDirty(member) || member.removed)) continue;
      result.set(element, members.reduce((sum, member) => sum + this.elementSize(member), 0));
    }
    return result;
  }

  private copy(start: number, end: number): void {
    if (!this.source) throw new Error('an untouched element needs its source');
    for (let offset = start; offset < end; offset += COPY_PIECE) {
      const length = Math.min(COPY_PIECE, end - offset);
      this.emit(this.source.read(offset, length));
    }
  }

  private headerLength(vr: string, length = 0): number {
    if (this.implicit) return 8;
    return isShortVr(vr) && length <= 0xffff ? 8 : 12;
  }

  private header(tag: number, vr: string, length: number): Buffer {
    const header = Buffer.alloc(this.headerLength(vr, length));
    this.writeTag(header, tag);
    if (this.implicit) {
      this.writeU32(header, 4, length);
    } else if (isShortVr(vr) && length > 0xffff) {
      // A value grown past the 16-bit length of its VR (a list of UIDs remapped to longer ones) is
      // written UN, whose length is 32-bit (PS3.5 6.2.2), rather than not at all.
      header.write('UN', 4, 'latin1');
      this.writeU32(header, 8, length);
    } else if (isShortVr(vr)) {
      header.write(vr, 4, 'latin1');
      if (this.bigEndian) header.writeUInt16BE(length, 6);
      else header.writeUInt16LE(length, 6);
    } else {
      header.write(vr, 4, 'latin1');
      this.writeU32(header, 8, length);
    }
    return header;
  }

  private itemHeader(length: number): Buffer {
    const header = Buffer.alloc(8);
    this.writeTag(header, 0xfffee000);
    this.writeU32(header, 4, length);
    return header;
  }

  private delimiter(tag: number): Buffer {
    const header = Buffer.alloc(8);
    this.writeTag(header, tag);
    return header;
  }

  private writeTag(buffer: Buffer, tag: number): void {
    if (this.bigEndian) {
      buffer.writeUInt16BE(tag >>> 16, 0);
      buffer.writeUInt16BE(tag & 0xffff, 2);
    } else {
      buffer.writeUInt16LE(tag >>> 16, 0);
      buffer.writeUInt16LE(tag & 0xffff, 2);
    }
  }

  private writeU32(buffer: Buffer, offset: number, value: number): void {
    if (this.bigEndian) buffer.writeUInt32BE(value >>> 0, offset);
    else buffer.writeUInt32LE(value >>> 0, offset);
  }

  private u32(value: number): Buffer {
    const out = Buffer.alloc(4);
    this.writeU32(out, 0, value);
    return out;
  }
}

/** PS3.5 7.1.2: the VRs of Table 7.1-2 have a 2-byte length; every other VR, one this dictionary does
 * not know included, a 4-byte one, as dataset-tree.ts reads it. */
function isShortVr(vr: string): boolean {
  return SHORT_VRS.has(vr);
}

export function isDirty(element: EditableElement): boolean {
  if (element.removed || element.replacement || element.inserted || element.stream) return true;
  return (element.items ?? []).some((item) => isItemDirty(item));
}

function isItemDirty(item: EditableItem): boolean {
  return Boolean(item.removed || item.inserted) || item.elements.some((element) => isDirty(element));
}

/** Inserts a new element in tag order (PS3.5 7.1: ascending), replacing one with the same tag. */
export function insertElement(elements: EditableElement[], tag: number, vr: string, value: Buffer): EditableElement {
  const existing = elements.find((element) => element.tag === tag);
  if (existing) {
    existing.removed = false;
    existing.replacement = { value, vr };
    return existing;
  }
  const node: EditableElement = { tag, vr, offset: 0, headerLength: 0, length: value.length, valueOffset: 0, end: 0, value, inserted: true };
  const at = elements.findIndex((element) => element.tag > tag);
  elements.splice(at < 0 ? elements.length : at, 0, node);
  return node;
}

/** A new sequence of the given items (each a list of new elements), in tag order. */
export function insertSequence(elements: EditableElement[], tag: number, items: EditableElement[][]): EditableElement {
  const existing = elements.findIndex((element) => element.tag === tag);
  if (existing >= 0) elements.splice(existing, 1);
  const node: EditableElement = {
    tag,
    vr: 'SQ',
    offset: 0,
    headerLength: 0,
    length: 0,
    valueOffset: 0,
    end: 0,
    inserted: true,
    items: items.map((itemElements) => ({ offset: 0, length: 0, valueOffset: 0, end: 0, inserted: true, elements: itemElements })),
  };
  const at = elements.findIndex((element) => element.tag > tag);
  elements.splice(at < 0 ? elements.length : at, 0, node);
  return node;
}

/** A new element to put in a new item (see insertSequence). */
export function newElement(tag: number, vr: string, value: Buffer): EditableElement {
  return { tag, vr, offset: 0, headerLength: 0, length: value.length, valueOffset: 0, end: 0, value, inserted: true };
}
