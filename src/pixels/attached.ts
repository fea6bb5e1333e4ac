/**
 * Pixels attached to an image that a retain rule may keep: the Icon Image Sequence (PS3.3 C.7.6.1.1.6,
 * a reduced copy of the image) and overlay planes (PS3.3 C.9.2, 60xx,3000). When a zone redacts the
 * image, what it covers is blanked in them too: in the icon the zone scaled to the icon's size (widened
 * to whole icon pixels), in an overlay the zone moved by the overlay's origin.
 */
import { repeatedTagReason } from '../deid/burned-in.js';
import type { ByteSource, ElementNode } from '../dicom/dataset-tree.js';
import type { EditableElement } from '../dicom/dataset-writer.js';
import { elementNumber, elementText } from '../dicom/element-value.js';
import { blankFrame, checkNativeLength, frameBits, mergeRanges, pixelGeometry, PixelRedactionError, type PixelGeometry, type RowMask } from './native.js';

const ICON_IMAGE_SEQUENCE = 0x00880200;
const PIXEL_DATA = 0x7fe00010;

/** Blanks the zone in the kept icon and overlays of `elements`; throws PixelRedactionError when one
 * of them cannot be redacted. */
export function redactAttachedPixels(elements: readonly EditableElement[], source: ByteSource, bigEndian: boolean, image: PixelGeometry, mask: RowMask): void {
  for (const element of elements) {
    if (element.removed) continue;
    if (element.tag === ICON_IMAGE_SEQUENCE) for (const item of element.items ?? []) redactIcon(item.elements as EditableElement[], source, bigEndian, image, mask);
    else if (isOverlayData(element.tag)) redactOverlay(element, elements, source, bigEndian, image, mask);
  }
}

function isOverlayData(tag: number): boolean {
  const group = tag >>> 16;
  return group >= 0x6000 && group <= 0x601e && group % 2 === 0 && (tag & 0xffff) === 0x3000;
}

function valueCopy(element: ElementNode, source: ByteSource): Buffer {
  return Buffer.from(element.value ?? source.read(element.valueOffset, element.length));
}

function redactIcon(elements: EditableElement[], source: ByteSource, bigEndian: boolean, image: PixelGeometry, mask: RowMask): void {
  // An item with an element twice (PS3.5 7.5): the map below keeps the last, a reader shows the first.
  const repeated = repeatedTagReason(elements);
  if (repeated !== undefined) throw new PixelRedactionError(`in the kept Icon Image Sequence, ${repeated.replace(/^the dataset has/, 'an item has')}`);
  const byTag = new Map(elements.map((element) => [element.tag, element]));
  const pixels = byTag.get(PIXEL_DATA);
  if (!pixels) return;
  if (pixels.encapsulated || pixels.length === 0xffffffff) throw new PixelRedactionError('the kept Icon Image Sequence holds compressed pixel data');
  const icon = pixelGeometry(byTag, source, bigEndian);
  // As for the image (deidentify-file.ts): explicit VR big endian words hold 8-bit pixels swapped in pairs.
  if (bigEndian && icon.bitsAllocated <= 8 && pixels.vr === 'OW') throw new PixelRedactionError(`the kept Icon Image Sequence has ${icon.bitsAllocated}-bit pixels in explicit VR big endian words`);
  checkNativeLength(pixels, icon);
  const scaled = scaledMask(mask, image, icon);
  const bytes = valueCopy(pixels, source);
  const frameLength = frameBits(icon) / 8;
  if (icon.bitsAllocated === 1 || !Number.isInteger(frameLength)) throw new PixelRedactionError('the kept Icon Image Sequence has 1-bit pixels');
  for (let frame = 0; frame < icon.frames; frame += 1) blankFrame(bytes.subarray(frame * frameLength, (frame + 1) * frameLength), icon, scaled);
  pixels.replacement = { value: bytes };
}

/** The image's mask on a smaller (or larger) copy: every icon pixel that overlaps a masked image
 * pixel is masked. */
function scaledMask(mask: RowMask, image: PixelGeometry, icon: PixelGeometry): RowMask {
  const rowScale = image.rows / icon.rows;
  const columnScale = image.columns / icon.columns;
  return (row) => {
    const first = Math.floor(row * rowScale);
    const last = Math.min(image.rows - 1, Math.ceil((row + 1) * rowScale) - 1);
    const ranges: Array<readonly [number, number]> = [];
    for (let y = first; y <= last; y += 1) {
      for (const [from, to] of mask(y)) ranges.push([Math.floor(from / columnScale), Math.min(icon.columns, Math.ceil(to / columnScale))]);
    }
    return mergeRanges(ranges);
  };
}

/** Clears the overlay bits the zone covers (an overlay bit set is drawn; cleared, nothing shows). */
function redactOverlay(data: EditableElement, elements: readonly EditableElement[], source: ByteSource, bigEndian: boolean, image: PixelGeometry, mask: RowMask): void {
  const group = data.tag & 0xffff0000;
  const byTag = new Map(elements.map((element) => [element.tag, element]));
  const number = (element: number) => elementNumber(byTag.get(group | element), source, bigEndian);
  const rows = number(0x0010);
  const columns = number(0x0011);
  const origin = elementText(byTag.get(group | 0x0050), source, bigEndian)?.split('\\').map(Number) ?? [1, 1];
  const frames = number(0x0015) ?? 1;
  if (rows === undefined || columns === undefined || number(0x0100) !== 1 || (number(0x0102) ?? 0) !== 0) throw new PixelRedactionError('a kept overlay is not a 1-bit plane of its own');
  if (bigEndian && data.vr === 'OW') throw new PixelRedactionError('a kept overlay in explicit VR big endian words');
  const [originRow, originColumn] = [(origin[0] ?? 1) - 1, (origin[1] ?? 1) - 1];
  const bits = valueCopy(data, source);
  if (bits.length * 8 < rows * columns * frames) throw new PixelRedactionError('a kept overlay is shorter than its rows and columns');
  for (let frame = 0; frame < frames; frame += 1) {
    for (let r = 0; r < rows; r += 1) {
      const y = r + originRow;
      if (y < 0 || y >= image.rows) continue;
      for (const [from, to] of mask(y)) {
        for (let c = Math.max(0, from - originColumn); c < Math.min(columns, to - originColumn); c += 1) {
          const bit = (frame * rows + r) * columns + c;
          bits[bit >> 3] = (bits[bit >> 3] as number) & ~(1 << (bit & 7));
        }
      }
    }
  }
  data.replacement = { value: bits };
}
