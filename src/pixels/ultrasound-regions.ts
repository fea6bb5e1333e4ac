/**
 * The mask of a zone on one image: its rectangles and, with outsideUltrasoundRegions, everything
 * outside the regions of the Sequence of Ultrasound Regions (PS3.3 C.8.5.5), where ultrasound
 * machines draw their patient banner and annotations.
 */
import type { ByteSource, ElementNode } from '../dicom/dataset-tree.js';
import { elementNumber } from '../dicom/element-value.js';
import { mergeRanges, outsideMask, PixelRedactionError, rectMask, type PixelGeometry, type RowMask } from './native.js';
import type { CompiledZone, Rect } from './zones.js';

const TAG = {
  SequenceOfUltrasoundRegions: 0x00186011,
  RegionLocationMinX0: 0x00186018,
  RegionLocationMinY0: 0x0018601a,
  RegionLocationMaxX1: 0x0018601c,
  RegionLocationMaxY1: 0x0018601e,
} as const;

export function zoneMask(zone: CompiledZone, byTag: ReadonlyMap<number, ElementNode>, source: ByteSource, bigEndian: boolean, g: PixelGeometry): RowMask {
  const rects = rectMask(zone.rule.rects, g.rows, g.columns);
  if (!zone.rule.outsideUltrasoundRegions) return rowsOnce(rects, g.rows);
  const regions = ultrasoundRegions(byTag.get(TAG.SequenceOfUltrasoundRegions), source, bigEndian);
  if (regions.length === 0) throw new PixelRedactionError('the zone blanks outside the ultrasound regions and the instance has no SequenceOfUltrasoundRegions');
  const outside = outsideMask(regions, g.rows, g.columns);
  return rowsOnce((row) => mergeRanges([...rects(row), ...outside(row)]), g.rows);
}

/**
 * The mask with each row's ranges worked out once, not for every frame: the rectangles come from the
 * file (thousands of ultrasound regions in a 1 MB instance), and a row's ranges were worked out again
 * for every row of every frame, past the task's five-minute limit (found in the pixel robustness review).
 */
function rowsOnce(mask: RowMask, rows: number): RowMask {
  const known: Array<ReadonlyArray<readonly [number, number]> | undefined> = new Array(rows);
  return (row) => {
    if (row < 0 || row >= rows) return mask(row);
    let ranges = known[row];
    if (ranges === undefined) {
      ranges = mask(row);
      known[row] = ranges;
    }
    return ranges;
  };
}

/** The regions as [x, y, width, height]; the Max coordinates are inclusive. */
export function ultrasoundRegions(sequence: ElementNode | undefined, source: ByteSource, bigEndian: boolean): Rect[] {
  return (sequence?.items ?? []).flatMap((item) => {
    const byTag = new Map(item.elements.map((element) => [element.tag, element]));
    const [x0, y0, x1, y1] = [TAG.RegionLocationMinX0, TAG.RegionLocationMinY0, TAG.RegionLocationMaxX1, TAG.RegionLocationMaxY1].map((tag) =>
      elementNumber(byTag.get(tag), source, bigEndian),
    );
    if (x0 === undefined || y0 === undefined || x1 === undefined || y1 === undefined || x1 < x0 || y1 < y0) {
      throw new PixelRedactionError('an ultrasound region without a valid RegionLocation');
    }
    return [[x0, y0, x1 - x0 + 1, y1 - y0 + 1] as const];
  });
}
