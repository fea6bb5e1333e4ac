/**
 * The request of Session.export checked before anything is selected or written: JavaScript callers
 * have no type check, and a misspelt selection key (`modality`) exported the whole session, a string
 * where a list goes was read character by character, and a missing `out` or `workers: 0` failed with
 * the driver's TypeError naming no field (found in the library review).
 */
import type { ExportRequest } from '../toolkit/export.js';

const REQUEST_KEYS = ['out', 'selection', 'layout', 'workers', 'progress', 'log'] as const;
const SELECTION_KEYS = ['studyInstanceUids', 'seriesInstanceUids', 'patientIds', 'modalities'] as const;

export function checkExportRequest(request: ExportRequest): void {
  if (!isRecord(request)) throw new TypeError(`export(request): the request is an object, e.g. { out: 'export' } (got ${kindOf(request)})`);
  refuseUnknownKeys(request, REQUEST_KEYS, 'a field of the export request');
  if (typeof request.out !== 'string' || request.out.trim() === '') throw new TypeError(`export(request): out is the folder to write into, a non-empty string (got ${kindOf(request.out)})`);
  if (request.layout !== undefined && typeof request.layout !== 'string') throw new TypeError(`export(request): layout is a string such as '{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm' (got ${kindOf(request.layout)})`);
  if (request.workers !== undefined && !(Number.isInteger(request.workers) && request.workers >= 1)) {
    throw new RangeError(`export(request): workers is a whole number of threads, 1 or more (got ${kindOf(request.workers)})`);
  }
  const { selection } = request;
  if (selection === undefined) return;
  if (!isRecord(selection)) throw new TypeError(`export(request): selection is an object with the keys ${SELECTION_KEYS.join(', ')} (got ${kindOf(selection)})`);
  refuseUnknownKeys(selection, SELECTION_KEYS, 'a key of the export selection');
  for (const key of SELECTION_KEYS) {
    const values: unknown = selection[key];
    if (values !== undefined && !(Array.isArray(values) && values.every((value) => typeof value === 'string'))) {
      throw new TypeError(`export(request): selection.${key} is a list of strings, e.g. ['...'] (got ${kindOf(values)})`);
    }
    // An empty list would select nothing by this key, and the selection drops it: everything went
    // (found in the review of the session's diff). Left out, the key selects everything.
    if (Array.isArray(values) && values.length === 0) throw new RangeError(`export(request): selection.${key} is an empty list: name what to export, or leave ${key} out`);
  }
}

function refuseUnknownKeys(object: object, known: readonly string[], what: string): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) throw new RangeError(`export(request): "${key}" is not ${what}: use ${known.join(', ')}`);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What a value is, never the value (a selection may name patients). */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return String(value);
  return typeof value === 'undefined' ? 'nothing' : `a ${typeof value}`;
}
