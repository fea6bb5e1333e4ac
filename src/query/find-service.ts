/**
 * The C-FIND SCP over the index (PS3.4 C.4.1, C.6): Patient Root and Study Root Query/Retrieve
 * Information Models, hierarchical search, the matching of C.2.2.2 (matching.ts) on the keys of keys.ts,
 * on the view of the index the caller may see (its originals, or the research view of de-identified
 * copies, where keys match de-identified values only and quarantined instances do not exist).
 * Answers come from SQLite without reading any file: each match becomes a response identifier with the
 * requested keys filled (unknown ones empty), QueryRetrieveLevel, RetrieveAETitle, and
 * SpecificCharacterSet ISO_IR 192 when a value needs it.
 */
import type { Db } from '../db/database.js';
import { decodeText, parseSpecificCharacterSet } from '../dicom/charset.js';
import { encodeTextDataset, type TextElement } from '../dicom/dataset-encoder.js';
import { BufferSource, parseDataset, type ElementNode } from '../dicom/dataset-tree.js';
import { tagText } from '../dicom/header-scanner.js';
import { vrOf } from '../dicom/dictionary.js';
import { IMPLICIT_VR_LITTLE_ENDIAN } from '../dicom/transfer-syntaxes.js';
import type { FindMatch, FindRequest } from '../dimse/services.js';
import { DimseStatusError, Status } from '../dimse/status.js';
import type { AccessAudit } from '../index/access-audit.js';
import { FROM_BY_LEVEL, inView, keysAt, LEVELS, MODEL_OF_SOP_CLASS, ORDER_BY_LEVEL, UNIQUE_KEY, type KeyColumn, type Level, type Model, type RetrievedFile, type View } from './keys.js';
import { matchCondition, MatchingError, type ColumnCondition } from './matching.js';

export const STUDY_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.2.1';

/** PS3.4 C.4.1.1.4: failure statuses of C-FIND, and Cancel. */
const IdentifierDoesNotMatchSopClass = 0xa900;
const UnableToProcess = 0xc000;
const MatchingTerminated = 0xfe00;

const TAG = {
  SpecificCharacterSet: 0x00080005,
  QueryRetrieveLevel: 0x00080052,
  RetrieveAETitle: 0x00080054,
  ModalitiesInStudy: 0x00080061,
  StudyStatusID: 0x0032000a,
} as const;

export interface FindServiceOptions {
  db: Db;
  /** Gantry's AE title, returned as RetrieveAETitle. */
  aeTitle(): string;
  /** At most this many matches are returned; the rest are left out, and the query ends with 0xFE00. */
  maxResults(): number;
  /** Which view of the index a caller sees (source: originals; research: de-identified copies only),
   * by its AE title and the address it connected from. */
  viewFor(callingAeTitle: string, remoteAddress: string): View | undefined;
  /** The file whose presence InstanceAvailability reports to a source caller: the original where a
   * source caller's retrieve can get originals, else the de-identified copy (default). Research
   * callers only ever retrieve copies. */
  sourceRetrieves?(): RetrievedFile;
  /** Where queries of the source view are recorded. */
  audit?: AccessAudit;
}

/** PS3.7 C.5: the caller may not use the service. */
const NotAuthorized = 0x0124;

export interface ParsedQuery {
  model: Model;
  level: Level;
  /** The keys asked for, in the identifier's order: known ones with their column. */
  returnKeys: Array<{ tag: number; key?: KeyColumn & { keyword: string } }>;
  conditions: ColumnCondition[];
  /** Keys that carry a value Gantry does not match on (an attribute it does not index, a sequence
   * item's keys): every response then says 0xFF01, so the caller knows its filter was not applied. */
  unmatchedKeys: number[];
  /** The identifier names the unique key of its level with a value (a retrieve must). */
  uniqueKeyGiven: boolean;
}

export class FindService {
  constructor(private readonly options: FindServiceOptions) {}

  /** The find handler of the DIMSE layer (services.ts). */
  async *find(request: FindRequest, signal: AbortSignal): AsyncIterable<FindMatch> {
    const view = this.options.viewFor(request.association.callingAeTitle, request.association.remoteAddress);
    if (!view) throw new DimseStatusError(NotAuthorized, 'this calling AE title may not query (query.sourceCallers, query.researchCallers)');
    let sent = 0;
    let status = 0x0000;
    let query: ParsedQuery | undefined;
    // The identifier is read, and the responses written, in the context's transfer syntax.
    const encoding = request.transferSyntaxUid === IMPLICIT_VR_LITTLE_ENDIAN ? 'implicit-le' : 'explicit-le';
    try {
      query = parseQuery(request, encoding, view);
      // PS3.4 C.4.1.1.4: 0xFF01 when optional keys were not supported for matching.
      const pending = query.unmatchedKeys.length > 0 ? Status.PendingOptionalKeysUnsupported : Status.Pending;
      if (pending !== Status.Pending) request.association.log.info({ keys: query.unmatchedKeys.map(tagText) }, 'C-FIND keys not used for matching: answered 0xFF01');
      const { rows, cut } = this.matchingRows(query, view);
      for (const row of rows) {
        if (signal.aborted) break;
        yield { identifier: this.response(query, row, encoding), status: pending };
        sent += 1;
      }
      if (signal.aborted) status = MatchingTerminated;
      // PS3.4 C.4.1.3.1: Success says a response went for every match. A query cut at query.maxResults
      // ends as a cancelled one does (Orthanc's LimitFindResults ends it so too).
      // Worded to fit the 64 characters of Error Comment (LO) at the largest query.maxResults.
      else if (cut) throw new DimseStatusError(MatchingTerminated, `more matches than query.maxResults (${rows.length}); rest left out`);
    } catch (error) {
      // What the DIMSE layer answers (status.ts: anything but DimseStatusError is a processing failure).
      status = error instanceof DimseStatusError ? error.status : 0x0110;
      throw error;
    } finally {
      // Original identities were asked for: say who, when and how much (never the keys).
      if (view === 'source') {
        this.options.audit?.recordOperation(request.association, {
          operation: 'C-FIND',
          model: query?.model ?? MODEL_OF_SOP_CLASS.get(request.sopClassUid) ?? '?',
          level: query?.level ?? '?',
          results: sent,
          status,
        });
      }
    }
  }

  /** The rows of the matches, at most query.maxResults of them; `cut` when there were more. */
  private matchingRows(query: ParsedQuery, view: View): { rows: unknown[][]; cut: boolean } {
    const limit = this.options.maxResults();
    const columns = query.returnKeys.map(({ key }, index) => (key ? `${key.column} AS k${index}` : `NULL AS k${index}`));
    const where = query.conditions.map((condition) => condition.sql);
    const sql = inView(
      `SELECT ${columns.length > 0 ? columns.join(', ') : '1'} FROM ${FROM_BY_LEVEL[query.level]}
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${ORDER_BY_LEVEL[query.level]} LIMIT ?`,
      view,
      this.options.sourceRetrieves?.() ?? 'copy',
    );
    // All rows at once (bounded by the limit): the connection is shared, and an open iterator would
    // keep it busy across the awaits of sending.
    const rows = this.options.db
      .prepare(sql)
      .raw()
      .all(...query.conditions.flatMap((condition) => condition.params), limit + 1) as unknown[][];
    const cut = rows.length > limit;
    // Logged once, by the association with the final status and its comment (one line per failure).
    if (cut) rows.length = limit;
    return { rows, cut };
  }

  private response(query: ParsedQuery, row: unknown[], encoding: 'implicit-le' | 'explicit-le'): Buffer {
    const elements: TextElement[] = [
      { tag: TAG.QueryRetrieveLevel, value: query.level },
      { tag: TAG.RetrieveAETitle, value: this.options.aeTitle() },
    ];
    let nonAscii = false;
    query.returnKeys.forEach(({ tag }, index) => {
      if (tag === TAG.QueryRetrieveLevel || tag === TAG.RetrieveAETitle || tag === TAG.SpecificCharacterSet) return;
      if (vrOf(tag) === 'SQ') {
        elements.push({ tag, value: [] });
        return;
      }
      const raw = row[index];
      const text = raw === null || raw === undefined ? '' : String(raw);
      if (/[^\x00-\x7f]/.test(text)) nonAscii = true;
      elements.push({ tag, value: text });
    });
    if (nonAscii) elements.push({ tag: TAG.SpecificCharacterSet, value: 'ISO_IR 192' });
    return encodeTextDataset(elements, encoding);
  }
}

/**
 * Reads a C-FIND, C-MOVE or C-GET identifier. A C-FIND matches every key with a value; a retrieve
 * (`purpose` 'retrieve') only the unique keys of its level and of the levels above it in its model:
 * PS3.4 C.4.2.3.1 and C.4.3.3.1, the SCP identifies what to send by the Unique Keys. Other keys an
 * SCU sends along (a PatientID beside a StudyInstanceUID, a C-FIND response's counts) neither narrow
 * nor refuse the retrieve.
 */
export function parseQuery(request: FindRequest, encoding: 'implicit-le' | 'explicit-le', view: View, purpose: 'find' | 'retrieve' = 'find'): ParsedQuery {
  const model: Model | undefined = MODEL_OF_SOP_CLASS.get(request.sopClassUid);
  if (!model) throw new DimseStatusError(IdentifierDoesNotMatchSopClass, `${request.sopClassUid} is not a Query/Retrieve model Gantry serves`);
  let elements: ElementNode[];
  try {
    // Group lengths (gggg,0000), which some requesters still write, describe the encoding: no key.
    elements = parseDataset(new BufferSource(request.identifier), encoding).filter(
      (element) => element.tag >>> 16 !== 0x0000 && element.tag >>> 16 !== 0x0002 && (element.tag & 0xffff) !== 0x0000,
    );
  } catch (error) {
    throw new DimseStatusError(UnableToProcess, `the identifier cannot be read: ${(error as Error).message}`);
  }
  const charsets = parseSpecificCharacterSet(textOf(elements, TAG.SpecificCharacterSet, []));
  const level = (textOf(elements, TAG.QueryRetrieveLevel, charsets) ?? '').trim().toUpperCase() as Level;
  if (!LEVELS.includes(level)) throw new DimseStatusError(IdentifierDoesNotMatchSopClass, `QueryRetrieveLevel "${level}" is not PATIENT, STUDY, SERIES or IMAGE`);
  if (model === 'study' && level === 'PATIENT') throw new DimseStatusError(IdentifierDoesNotMatchSopClass, 'the Study Root model has no PATIENT level');
  const keys = new Map([...keysAt(level, model)].filter(([, key]) => view === 'source' || !key.sourceOnly));
  requireHierarchy(model, level, elements, charsets);
  const retrieveKeys = purpose === 'retrieve' ? new Set(LEVELS.slice(model === 'study' ? 1 : 0, LEVELS.indexOf(level) + 1).map((at) => UNIQUE_KEY[at])) : undefined;
  const returnKeys: ParsedQuery['returnKeys'] = [];
  const conditions: ColumnCondition[] = [];
  const unmatchedKeys: number[] = [];
  for (const element of elements) {
    if (element.tag === TAG.SpecificCharacterSet || element.tag === TAG.QueryRetrieveLevel) continue;
    if (retrieveKeys && !retrieveKeys.has(element.tag)) continue;
    const key = keys.get(element.tag);
    returnKeys.push(key ? { tag: element.tag, key } : { tag: element.tag });
    if (!key || element.items) {
      // Sequence matching (C.2.2.2.6) and attributes outside the index are not supported.
      if (carriesValue(element)) unmatchedKeys.push(element.tag);
      continue;
    }
    const value = key.vr === 'US' ? unsignedShortsText(element.value) : (textOf(elements, element.tag, charsets, key.vr === 'PN') ?? '');
    try {
      const condition =
        element.tag === TAG.ModalitiesInStudy
          ? anyOfCondition('{series} x WHERE x.study_pk = st.id', 'x.modality', value)
          : element.tag === TAG.StudyStatusID
            ? anyOfCondition('{instances} y JOIN {series} x ON x.id = y.series_pk WHERE x.study_pk = st.id', 'upper(y.state)', value)
            : matchCondition(key.column, key.vr, value, { multiValued: key.multiValued });
      if (condition) conditions.push(condition);
    } catch (error) {
      if (error instanceof MatchingError) throw new DimseStatusError(IdentifierDoesNotMatchSopClass, `${key.keyword}: ${error.message}`);
      throw error;
    }
  }
  const unique = textOf(elements, UNIQUE_KEY[level], charsets);
  return { model, level, returnKeys, conditions, unmatchedKeys, uniqueKeyGiven: unique !== undefined && unique.trim() !== '' && !/[*?]/.test(unique) };
}

/** A key with a value to match (padding aside), or a sequence with such a key in an item. */
function carriesValue(element: ElementNode): boolean {
  if (element.items) return element.items.some((item) => item.elements.some(carriesValue));
  return element.value !== undefined && /[^\0 ]/.test(element.value.toString('latin1'));
}

/** PS3.4 C.4.1.2.1: a hierarchical search names the unique key of every level above the one asked. */
function requireHierarchy(model: Model, level: Level, elements: readonly ElementNode[], charsets: readonly string[]): void {
  const first = model === 'patient' ? 0 : 1;
  for (const above of LEVELS.slice(first, LEVELS.indexOf(level))) {
    const value = textOf(elements, UNIQUE_KEY[above], charsets);
    if (value === undefined || value.trim() === '' || /[*?\\]/.test(value)) {
      throw new DimseStatusError(IdentifierDoesNotMatchSopClass, `a ${level} query needs a single value for the ${above} unique key (hierarchical search)`);
    }
  }
}

/** A study matches when one of the rows of `fromWhere` (its series: ModalitiesInStudy; its instances'
 * states: StudyStatusID) has one of the values asked. */
function anyOfCondition(fromWhere: string, column: string, value: string): ColumnCondition | undefined {
  const values = value
    .split('\\')
    .map((one) => one.trim())
    .filter((one) => one !== '');
  // Single values as one list, one parameter: a condition each, joined by OR, a list of about 1,000
  // passed SQLite's expression depth and the query failed 0x0110 (found in the injection review).
  const exact = values.filter((one) => one !== '""' && !/[*?]/.test(one));
  const conditions = values
    .filter((one) => !exact.includes(one))
    .map((one) => matchCondition(column, 'CS', one))
    .filter((condition) => condition !== undefined);
  if (exact.length > 0) conditions.unshift({ sql: `${column} IN (SELECT value FROM json_each(?))`, params: [JSON.stringify(exact)] });
  // A value of "*" alone asks for any: universal matching (PS3.4 C.2.2.2.3).
  if (conditions.length === 0 || values.some((one) => /^\*+$/.test(one))) return undefined;
  return {
    sql: `EXISTS (SELECT 1 FROM ${fromWhere} AND (${conditions.map((condition) => condition.sql).join(' OR ')}))`,
    params: conditions.flatMap((condition) => condition.params),
  };
}

/** A US key's value as text for matching: binary in the identifier (PS3.5 6.2), two bytes little
 * endian per value (the identifiers Gantry reads are little endian). Empty: universal matching. */
function unsignedShortsText(value: Buffer | undefined): string {
  const values: number[] = [];
  for (let at = 0; value && at + 2 <= value.length; at += 2) values.push(value.readUInt16LE(at));
  return values.join('\\');
}

function textOf(elements: readonly ElementNode[], tag: number, charsets: readonly string[], personName = false): string | undefined {
  const value = elements.find((element) => element.tag === tag)?.value;
  if (!value) return value === undefined ? undefined : '';
  // Query keys are never LT, ST or UT: a backslash separates values (a UID list, PS3.4 C.2.2.2.2).
  return decodeText(value, charsets, personName, true).replace(/[\0 ]+$/, '');
}
