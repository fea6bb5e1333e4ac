/**
 * Reads and checks a zones file (deid.pixelZones, format in zones.ts). Apart from zones.ts so that
 * the threads that only test zones do not load the YAML parser and the schema library (importing the
 * de-identification worker's modules took about 150 ms and 11 MB less without them, measured).
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { HIDDEN_ATTRIBUTE_KEY, namesAttribute } from '../config/patient-values.js';
import { compileZone, ZonesError, type Rect, type ZoneRule } from './zones.js';

const rect = z
  .tuple([z.number().int().min(0), z.number().int().min(0), z.number().int().min(1), z.number().int().min(1)])
  .describe('[x, y, width, height] in pixels, origin top left');

const zoneSchema = z
  .object({
    name: z.string().min(1),
    match: z.record(z.string(), z.union([z.string(), z.number()])).refine((match) => Object.keys(match).length > 0, { message: 'a zone needs at least one attribute to match' }),
    rects: z.array(rect).default([]),
    outsideUltrasoundRegions: z.boolean().default(false),
    source: z.string().optional(),
  })
  .strict()
  .refine((zone) => zone.rects.length > 0 || zone.outsideUltrasoundRegions, { message: 'a zone needs rects, or outsideUltrasoundRegions: true' });

const fileSchema = z.object({ zones: z.array(zoneSchema) }).strict();

/** Reads and checks a zones file; every problem names the zone and the key. */
export function loadZonesFile(path: string): ZoneRule[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ZonesError(`deid.pixelZones: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return parseZones(text, path);
}

export function parseZones(text: string, source: string): ZoneRule[] {
  let document: unknown;
  try {
    document = parse(text);
  } catch (error) {
    throw new ZonesError(`${source}: not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  const parsed = fileSchema.safeParse(document);
  const problems = parsed.success ? [] : parsed.error.issues.map((issue) => `${source}: ${issue.path.length > 0 ? zoneKeyOf(issue.path) : '(top)'}: ${issue.message}`);
  // Each zone the schema takes is compiled, also when another is wrong: a typo in a keyword stops
  // start-up instead of matching nothing at run time, and one run names all there is to mend.
  const written = (document as { zones?: unknown } | null)?.zones;
  const entries: unknown[] = Array.isArray(written) ? written : [];
  const zones: ZoneRule[] = [];
  entries.forEach((entry, index) => {
    const zone = zoneSchema.safeParse(entry);
    if (!zone.success) return;
    const rule = { ...zone.data, rects: zone.data.rects as Rect[] };
    zones.push(rule);
    try {
      compileZone(rule, `${source}: zones.${index} (${rule.name})`);
    } catch (error) {
      problems.push(...(error instanceof ZonesError ? error.problems : [(error as Error).message]));
    }
  });
  if (problems.length > 0) throw new ZonesError(problems);
  return zones;
}

/** A key path of the zones file, a key under `match` that names no attribute hidden: `{ PatientID:
 * MRN1, MRN2 }` is YAML for MRN2 as a key (found in the logs review; the config does the same). */
function zoneKeyOf(path: ReadonlyArray<PropertyKey>): string {
  return path.map((part, at) => (at > 0 && path[at - 1] === 'match' && !namesAttribute(String(part)) ? HIDDEN_ATTRIBUTE_KEY : String(part))).join('.');
}
