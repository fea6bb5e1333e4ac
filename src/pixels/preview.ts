/**
 * `gantry zones preview`: one frame of an instance rendered as a PNG with what its zone would blank
 * tinted red, so an operator can check a new device's zones before trusting them. Grey images are
 * windowed to their frame's range (MONOCHROME1 inverted), colour ones shown as RGB; PALETTE COLOR is
 * shown by index, in grey.
 */
import { parseFile } from '../dicom/dataset-tree.js';
import { embeddedOverlayGroup, embeddedOverlayText, repeatedTagReason } from '../deid/burned-in.js';
import { attributeReader } from '../dicom/element-value.js';
import { decodeFrame } from './frames.js';
import { pixelGeometry, PixelRedactionError, type PixelGeometry, type RowMask } from './native.js';
import { encodePng } from './png.js';
import { zoneMask } from './ultrasound-regions.js';
import { findZone, type CompiledZone } from './zones.js';

export interface Preview {
  png: Buffer;
  zone: CompiledZone | undefined;
  frames: number;
  /** Why de-identification holds the instance back whatever the zone blanks (what the PNG cannot show). */
  held?: string;
}

export function renderPreview(path: string, zones: readonly CompiledZone[], frameIndex = 0): Preview {
  const parsed = parseFile(path);
  try {
    const bigEndian = parsed.encoding === 'explicit-be';
    const byTag = new Map(parsed.elements.map((element) => [element.tag, element]));
    const attribute = attributeReader(parsed.elements, parsed.source, bigEndian, parsed.meta);
    const zone = findZone(zones, attribute);
    const held = heldWhateverTheZone(parsed.elements, attribute);
    const geometry = pixelGeometry(byTag, parsed.source, bigEndian);
    if (frameIndex < 0 || frameIndex >= geometry.frames) throw new PixelRedactionError(`frame ${frameIndex + 1} of ${geometry.frames}`);
    const { samples, layout } = decodeFrame(byTag, parsed.source, parsed.transferSyntaxUid, geometry, frameIndex);
    const rgb = toRgb(samples, layout);
    if (zone) {
      const mask = zoneMask(zone, byTag, parsed.source, bigEndian, geometry);
      // YBR_FULL_422 is blanked by whole pairs of pixels: show it so.
      const shown: RowMask = layout.photometric === 'YBR_FULL_422' ? (row) => mask(row).map(([from, to]) => [from - (from % 2), Math.min(layout.columns, to + (to % 2))] as const) : mask;
      tint(rgb, layout, shown);
    }
    return { png: encodePng(rgb, layout.columns, layout.rows), zone, frames: geometry.frames, ...(held !== undefined ? { held } : {}) };
  } finally {
    parsed.close();
  }
}

/**
 * What holds the instance back in de-identification (deidentify-file.ts) that the picture does not
 * show: a repeated top-level tag, and an overlay in the bits of Pixel Data above BitsStored (the
 * preview draws the stored bits only; the overlay, which viewers draw over the whole image, is not
 * in it). Without this the preview named the zone as if it would redact, and the instance was held.
 */
function heldWhateverTheZone(elements: ReadonlyArray<{ tag: number }>, attribute: (tag: number) => string | undefined): string | undefined {
  const repeated = repeatedTagReason(elements);
  if (repeated !== undefined) return repeated;
  const overlayGroup = embeddedOverlayGroup(attribute);
  return overlayGroup === undefined ? undefined : `${embeddedOverlayText(overlayGroup)}, which the preview does not draw and a zone does not clear (PS3.5 8.1.2)`;
}

/** The value of sample `s` of pixel `p`, sign-extended when signed. */
function sampleReader(samples: Buffer, g: PixelGeometry): (p: number, s: number) => number {
  const size = g.bitsAllocated / 8;
  const plane = g.rows * g.columns;
  const shift = g.highBit + 1 - g.bitsStored;
  return (p, s) => {
    const at = (g.planar ? s * plane + p : p * g.samplesPerPixel + s) * size;
    const raw = size === 1 ? (samples[at] as number) : size === 2 ? (g.bigEndian ? samples.readUInt16BE(at) : samples.readUInt16LE(at)) : g.bigEndian ? samples.readUInt32BE(at) : samples.readUInt32LE(at);
    const value = Math.floor(raw / 2 ** shift) % 2 ** g.bitsStored;
    return g.signed && value >= 2 ** (g.bitsStored - 1) ? value - 2 ** g.bitsStored : value;
  };
}

function toRgb(samples: Buffer, g: PixelGeometry): Buffer {
  const pixels = g.rows * g.columns;
  const rgb = Buffer.alloc(pixels * 3);
  if (g.photometric === 'YBR_FULL_422') {
    // Y1 Y2 Cb Cr per pair of pixels.
    for (let p = 0; p < pixels; p += 1) {
      const pair = Math.floor(p / 2) * 4;
      ybrToRgb(rgb, p, samples[pair + (p % 2)] as number, samples[pair + 2] as number, samples[pair + 3] as number);
    }
    return rgb;
  }
  const read = sampleReader(samples, g);
  if (g.samplesPerPixel === 3) {
    const scale = 255 / (2 ** g.bitsStored - 1);
    for (let p = 0; p < pixels; p += 1) {
      const [a, b, c] = [read(p, 0) * scale, read(p, 1) * scale, read(p, 2) * scale];
      if (g.photometric === 'YBR_FULL') ybrToRgb(rgb, p, a, b, c);
      else rgb.set([a, b, c].map(Math.round), p * 3);
    }
    return rgb;
  }
  let low = Number.POSITIVE_INFINITY;
  let high = Number.NEGATIVE_INFINITY;
  for (let p = 0; p < pixels; p += 1) {
    const value = read(p, 0);
    if (value < low) low = value;
    if (value > high) high = value;
  }
  const range = high > low ? high - low : 1;
  for (let p = 0; p < pixels; p += 1) {
    let grey = Math.round(((read(p, 0) - low) / range) * 255);
    if (g.photometric === 'MONOCHROME1') grey = 255 - grey;
    rgb.fill(grey, p * 3, p * 3 + 3);
  }
  return rgb;
}

function ybrToRgb(rgb: Buffer, p: number, y: number, cb: number, cr: number): void {
  const clamp = (value: number) => Math.max(0, Math.min(255, Math.round(value)));
  rgb[p * 3] = clamp(y + 1.402 * (cr - 128));
  rgb[p * 3 + 1] = clamp(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128));
  rgb[p * 3 + 2] = clamp(y + 1.772 * (cb - 128));
}

/** What the zone blanks, half red over the image. */
function tint(rgb: Buffer, g: PixelGeometry, mask: RowMask): void {
  for (let row = 0; row < g.rows; row += 1) {
    for (const [from, to] of mask(row)) {
      for (let x = from; x < to; x += 1) {
        const at = (row * g.columns + x) * 3;
        rgb[at] = Math.round(((rgb[at] as number) + 255) / 2);
        rgb[at + 1] = Math.round((rgb[at + 1] as number) / 2);
        rgb[at + 2] = Math.round((rgb[at + 2] as number) / 2);
      }
    }
  }
}
