/**
 * The VR of a tag, for implicit VR datasets (PS3.5 7.1.3) and for encoding new elements, from dcmjs's
 * PS3.6 dictionary, with the rules the dictionary leaves out: group lengths are UL, private creators
 * LO, other private elements UN, and the repeating groups 50xx and 60xx look up their first group.
 */
import dcmjs from 'dcmjs';

const cache = new Map<number, string>();

/** Dictionary VRs that allow several: the form used in implicit VR little endian. */
const AMBIGUOUS: Record<string, string> = { ox: 'OW', xs: 'US', ob_ow: 'OW', 'OB or OW': 'OW', 'US or SS': 'US', 'US or OW': 'US', na: 'UN' };

export function vrOf(tag: number): string {
  let vr = cache.get(tag);
  if (vr === undefined) {
    vr = lookUp(tag);
    if (cache.size > 100_000) cache.clear();
    cache.set(tag, vr);
  }
  return vr;
}

function lookUp(tag: number): string {
  const group = tag >>> 16;
  const element = tag & 0xffff;
  if (element === 0x0000) return 'UL';
  if (group % 2 === 1) return element >= 0x0010 && element <= 0x00ff ? 'LO' : 'UN';
  let lookupGroup = group;
  if (group >= 0x5000 && group <= 0x50ff) lookupGroup = 0x5000;
  if (group >= 0x6000 && group <= 0x60ff) lookupGroup = 0x6000;
  const key = `(${hex4(lookupGroup)},${hex4(element)})`;
  const entry = dcmjs.data.DicomMetaDictionary.dictionary[key];
  if (!entry) return 'UN';
  return AMBIGUOUS[entry.vr] ?? entry.vr;
}

/** The PS3.6 keyword of a tag, if the dictionary knows it. */
export function keywordOf(tag: number): string | undefined {
  const group = tag >>> 16;
  const element = tag & 0xffff;
  const entry = dcmjs.data.DicomMetaDictionary.dictionary[`(${hex4(group)},${hex4(element)})`];
  return entry?.name?.replace(/^RETIRED_/, '');
}

/** The tag of a PS3.6 keyword, if the dictionary knows it. */
export function tagOfKeyword(keyword: string): number | undefined {
  const entry = dcmjs.data.DicomMetaDictionary.nameMap[keyword] ?? dcmjs.data.DicomMetaDictionary.nameMap[`RETIRED_${keyword}`];
  if (!entry) return undefined;
  const match = /^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$/.exec(entry.tag);
  return match ? ((Number.parseInt(match[1] as string, 16) << 16) | Number.parseInt(match[2] as string, 16)) >>> 0 : undefined;
}

function hex4(value: number): string {
  return value.toString(16).toUpperCase().padStart(4, '0');
}
