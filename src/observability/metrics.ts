/**
 * Gantry's Prometheus metrics: one registry, every series named the Prometheus way (prefix gantry_,
 * counters end in _total, durations in _seconds, sizes in _bytes), plus Node's default process
 * metrics. Label values are bounded: no UIDs, no patient data, callers outside the configured AE titles
 * folded into "other", SOP classes folded into families, transfer syntaxes by name.
 *
 * The pipeline modules report through small observer interfaces of their own (DimseObserver,
 * DeidObserver, ForwardObserver) so that they do not depend on prom-client; this class implements
 * them. Gauges that describe the index or the disk are read when Prometheus scrapes.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { STORAGE_SOP_CLASS_ROWS } from '../dicom/storage-sop-classes.js';
import { findTransferSyntax } from '../dicom/transfer-syntaxes.js';
import { CommandField } from '../dimse/command.js';
import type { DimseObserver, OperationDone, RejectLabel } from '../dimse/observer.js';
import { statusHex, StoreFailure } from '../dimse/status.js';
import type { DeidObserver, DeidOutcome } from '../pipeline/deidentify.js';
import type { ForwardFailureKind, ForwardObserver } from '../pipeline/forward.js';
import { INSTANCE_STATES } from '../index/instance-index.js';

/** What the scrape-time gauges read; app.ts supplies it once everything is built. Each is read on the
 * main thread, which also serves the associations, at every scrape: it must cost the same with millions
 * of rows in the index (counts kept by the index, seeks in small partial indexes), never a scan. */
export interface MetricsSources {
  activeAssociations(): number;
  instancesByState(): Record<string, number>;
  /** Since when the instance waiting longest for de-identification has waited (ms since the epoch), if any. */
  oldestWaitingSince(): number | undefined;
  outbox(): ReadonlyArray<{ destination: string; queued: number; sent: number; dead: number; oldestQueuedAt: number | null }>;
  /** De-identification tasks running or handed to the pool now, and the pool's threads. */
  pool(): { running: number; threads: number };
  indexBytes(): number;
  freeBytes(): number;
  /** The free bytes kept for the de-identified copies of the instances waiting for de-identification. */
  reservedBytes(): number;
  minFreeBytes(): number;
  ready(): boolean;
  /** The names of forward.destinations as the node runs them now (a reload may add some). */
  destinations(): readonly string[];
}

/** Durations from a millisecond to ten minutes: a C-STORE of a small object to a slow C-MOVE. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600];
/** Routing to confirmation: a tenth of a second (a destination that keeps up confirms most instances
 * within one, and a first bucket of 1 s left its p95 a guess inside that bucket) to a day (a
 * destination down overnight). */
const FORWARD_DELAY_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];

/** Seconds from `since` (ms since the epoch) to `now`; 0 when nothing is that old (null) or the clock went back. */
function ageSeconds(since: number | null, now: number): number {
  return since === null ? 0 : Math.max(0, (now - since) / 1000);
}

/**
 * The label values known in advance, exported at 0 before their first event: a series that appears
 * at 1 shows no increase to increase() and rate() (found in the operations review: the first failed
 * de-identification or dead letter after a start, and a lone one for good, raised no alert).
 */
const REJECT_LABELS: Record<RejectLabel, true> = {
  protocol_version: true,
  application_context: true,
  called_ae_title: true,
  calling_ae_title: true,
  max_pdu_length: true,
  no_presentation_context: true,
  local_limit: true,
};
const DEID_OUTCOMES: Record<DeidOutcome, true> = { ok: true, quarantined: true, failed: true };
const STORE_OUTCOMES: Record<ReturnType<typeof outcomeOf>, true> = { success: true, warning: true, failure: true };

const QUERY_COMMANDS: ReadonlyMap<number, string> = new Map([
  [CommandField.CFindRq, 'find'],
  [CommandField.CMoveRq, 'move'],
  [CommandField.CGetRq, 'get'],
]);

export class GantryMetrics implements DimseObserver, DeidObserver, ForwardObserver {
  readonly registry = new Registry();
  private readonly registers = [this.registry];
  /** Scrapes so far: readings shared within one scrape are taken afresh in the next. */
  private scrapes = 0;
  /** The configured destinations, whose forwarding counters are exported at 0 from the start. */
  private destinations: () => readonly string[] = () => [];

  private readonly associationsAccepted: Counter<'calling_ae'>;
  private readonly associationsRejected: Counter<'reason'>;
  private readonly storeRequests: Counter<'status' | 'sop_class_family' | 'transfer_syntax'>;
  private readonly storeDuration: Histogram<'outcome'>;
  private readonly receivedBytes: Counter;
  private readonly echoRequests: Counter<'status'>;
  private readonly queryRequests: Counter<'operation' | 'status'>;
  private readonly queryDuration: Histogram<'operation'>;
  private readonly deidOutcomes: Counter<'outcome'>;
  private readonly deidDuration: Histogram<'outcome'>;
  private readonly forwardAttempts: Counter<'destination'>;
  private readonly forwardSuccesses: Counter<'destination' | 'status'>;
  private readonly forwardFailures: Counter<'destination' | 'status'>;
  private readonly forwardDeadLetters: Counter<'destination'>;
  private readonly forwardUnreachable: Counter<'destination'>;
  private readonly instanceDelay: Histogram<'destination'>;
  private readonly studyDelay: Histogram<'destination'>;

  /**
   * @param callerLabel names a calling AE title in labels: configured titles as themselves, others folded.
   * @param onCollectError told when a scrape-time source fails; that gauge keeps its last value and the
   *   scrape goes on (a busy index must not look like a node that is down).
   */
  constructor(
    private readonly callerLabel: (callingAeTitle: string) => string = () => 'other',
    private readonly onCollectError: (metric: string, error: Error) => void = () => undefined,
  ) {
    const registers = this.registers;
    collectDefaultMetrics({ register: this.registry });

    this.associationsAccepted = new Counter({
      name: 'gantry_associations_accepted_total',
      help: 'Associations accepted, by calling AE title (titles outside the config folded into "other").',
      labelNames: ['calling_ae'],
      registers,
    });
    this.associationsRejected = new Counter({
      name: 'gantry_associations_rejected_total',
      help: 'Associations rejected, by reason (PS3.8 Table 9-21).',
      labelNames: ['reason'],
      registers,
    });
    this.storeRequests = new Counter({
      name: 'gantry_cstore_requests_total',
      help: 'C-STORE requests answered, by response status, SOP class family and transfer syntax.',
      labelNames: ['status', 'sop_class_family', 'transfer_syntax'],
      registers,
    });
    this.storeDuration = new Histogram({
      name: 'gantry_cstore_duration_seconds',
      help: 'From a C-STORE request to its response (the dataset received, synced and indexed), by outcome.',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.receivedBytes = new Counter({
      name: 'gantry_received_bytes_total',
      help: 'Bytes received on DICOM associations.',
      registers,
    });
    this.echoRequests = new Counter({
      name: 'gantry_cecho_requests_total',
      help: 'C-ECHO requests answered, by status.',
      labelNames: ['status'],
      registers,
    });
    this.queryRequests = new Counter({
      name: 'gantry_query_requests_total',
      help: 'C-FIND, C-MOVE and C-GET requests answered, by operation and final status.',
      labelNames: ['operation', 'status'],
      registers,
    });
    this.queryDuration = new Histogram({
      name: 'gantry_query_duration_seconds',
      help: 'From a C-FIND, C-MOVE or C-GET request to its final response.',
      labelNames: ['operation'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.deidOutcomes = new Counter({
      name: 'gantry_deid_instances_total',
      help: 'Instances through de-identification, by outcome (ok, quarantined, failed).',
      labelNames: ['outcome'],
      registers,
    });
    this.deidDuration = new Histogram({
      name: 'gantry_deid_duration_seconds',
      help: 'From handing an instance to the worker pool to the worker\'s outcome (recorded in the index with its batch after it), by outcome.',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.forwardAttempts = new Counter({
      name: 'gantry_forward_attempts_total',
      help: 'C-STORE requests that went on the wire to a destination (answered, or cut with the association).',
      labelNames: ['destination'],
      registers,
    });
    this.forwardSuccesses = new Counter({
      name: 'gantry_forward_successes_total',
      help: 'Instances a destination confirmed, by destination and response status.',
      labelNames: ['destination', 'status'],
      registers,
    });
    this.forwardFailures = new Counter({
      name: 'gantry_forward_failures_total',
      help: 'Items that failed, by destination and status: a DIMSE status the destination answered, association_ended, or (never sent) refused, missing, unreadable, send_error.',
      labelNames: ['destination', 'status'],
      registers,
    });
    this.forwardDeadLetters = new Counter({
      name: 'gantry_forward_dead_letters_total',
      help: 'Items moved to dead letter (gantry queue retry re-queues them).',
      labelNames: ['destination'],
      registers,
    });
    this.forwardUnreachable = new Counter({
      name: 'gantry_forward_unreachable_total',
      help: 'Associations to a destination that could not be opened or ended early (the destination backs off).',
      labelNames: ['destination'],
      registers,
    });
    this.instanceDelay = new Histogram({
      name: 'gantry_forward_delay_seconds',
      help: 'Per instance: from its study\'s routing (stable, or gantry forward) to the destination\'s confirmation.',
      labelNames: ['destination'],
      buckets: FORWARD_DELAY_BUCKETS,
      registers,
    });
    this.studyDelay = new Histogram({
      name: 'gantry_forward_study_delay_seconds',
      help: 'Per study: from its routing (stable, or gantry forward) to the confirmation of its last instance by the destination.',
      labelNames: ['destination'],
      buckets: FORWARD_DELAY_BUCKETS,
      registers,
    });
    for (const reason of Object.keys(REJECT_LABELS) as RejectLabel[]) this.associationsRejected.inc({ reason }, 0);
    for (const outcome of Object.keys(DEID_OUTCOMES) as DeidOutcome[]) {
      this.deidOutcomes.inc({ outcome }, 0);
      this.deidDuration.zero({ outcome });
    }
    for (const outcome of Object.keys(STORE_OUTCOMES)) this.storeDuration.zero({ outcome });
  }

  /** The forwarding series of each configured destination, at 0 until something moves them (a
   * destination a reload adds gets them at the next scrape); those that moved keep their counts. */
  private zeroDestinations(): void {
    for (const destination of this.destinations()) {
      this.forwardAttempts.inc({ destination }, 0);
      this.forwardSuccesses.inc({ destination, status: boundedStatus(0) }, 0);
      this.forwardDeadLetters.inc({ destination }, 0);
      this.forwardUnreachable.inc({ destination }, 0);
    }
  }

  /** Registers the gauges read when Prometheus scrapes. */
  watch(sources: MetricsSources): void {
    this.destinations = () => sources.destinations();
    // Every configured destination, at 0 when it has no item (a fresh start, a purge of sent items):
    // missing, its gauges read as "no data" where gantry status shows 0 (found in the metrics review).
    // A destination no longer configured shows while it has items.
    const outbox = this.oncePerScrape(() => {
      const rows = sources.outbox();
      const listed = new Set(rows.map((row) => row.destination));
      const idle = sources.destinations().filter((destination) => !listed.has(destination));
      return [...rows, ...idle.map((destination) => ({ destination, queued: 0, sent: 0, dead: 0, oldestQueuedAt: null }))];
    });
    const states = this.oncePerScrape(() => sources.instancesByState());
    this.gauge('gantry_associations_active', 'Associations open now.', [], (set) => set({}, sources.activeAssociations()));
    this.gauge('gantry_deid_waiting_instances', 'Instances received and waiting for de-identification (the backlog).', [], (set) => set({}, states().received ?? 0));
    this.gauge('gantry_deid_oldest_waiting_seconds', 'How long the instance waiting longest for de-identification has waited since it arrived, was released or sent back to be done again (0 when none waits).', [], (set) => {
      set({}, ageSeconds(sources.oldestWaitingSince() ?? null, Date.now()));
    });
    this.gauge('gantry_deid_pool_threads', 'Worker threads in the de-identification pool (deid.workers).', [], (set) => set({}, sources.pool().threads));
    this.gauge('gantry_deid_pool_utilization_ratio', 'Share of the worker threads busy at the scrape (0 to 1).', [], (set) => {
      const { running, threads } = sources.pool();
      set({}, threads === 0 ? 0 : Math.min(running, threads) / threads);
    });
    this.gauge('gantry_deid_pool_queue_depth', 'Tasks handed to the worker pool and waiting for a thread (the rest of the backlog waits in the index).', [], (set) => {
      const { running, threads } = sources.pool();
      set({}, Math.max(0, running - threads));
    });
    this.gauge('gantry_outbox_items', 'Outbox items per destination and state (queued, sent, dead).', ['destination', 'state'], (set) => {
      for (const row of outbox()) {
        set({ destination: row.destination, state: 'queued' }, row.queued);
        set({ destination: row.destination, state: 'sent' }, row.sent);
        set({ destination: row.destination, state: 'dead' }, row.dead);
      }
    });
    this.gauge('gantry_outbox_oldest_age_seconds', 'Age of the oldest queued item per destination (0 when none is queued).', ['destination'], (set) => {
      const now = Date.now();
      for (const row of outbox()) set({ destination: row.destination }, ageSeconds(row.oldestQueuedAt, now));
    });
    this.gauge('gantry_instances', 'Instances in the index by state (received, deidentified, quarantined, failed, forwarded).', ['state'], (set) => {
      const counts = states();
      for (const state of INSTANCE_STATES) set({ state }, counts[state] ?? 0);
    });
    this.gauge('gantry_index_size_bytes', 'Size of the SQLite index (database and write-ahead log).', [], (set) => set({}, sources.indexBytes()));
    this.gauge('gantry_storage_free_bytes', 'Free disk under storage.path.', [], (set) => set({}, sources.freeBytes()));
    // C-STORE is refused when free less reserved is below the floor: the alerts need both (found in
    // the operations review: the disk alerts stayed silent while every store was refused).
    this.gauge('gantry_storage_reserved_bytes', 'Free disk kept for the de-identified copies of the instances waiting for de-identification: C-STORE answers 0xA700 when free less this is below storage.minFreeBytes.', [], (set) => set({}, sources.reservedBytes()));
    this.gauge('gantry_storage_min_free_bytes', 'storage.minFreeBytes: with free less reserved below it, C-STORE answers 0xA700 and /readyz is unready.', [], (set) => set({}, sources.minFreeBytes()));
    this.gauge('gantry_ready', '1 when /readyz answers ready (listener bound, index open, disk above the floor, storage.path taking writes).', [], (set) => set({}, sources.ready() ? 1 : 0));
  }

  /** A reading shared by the gauges of one scrape (they are collected one after the other). */
  private oncePerScrape<T>(read: () => T): () => T {
    let value: T | undefined;
    let readIn = -1;
    return () => {
      if (readIn !== this.scrapes) {
        value = read();
        readIn = this.scrapes;
      }
      return value as T;
    };
  }

  /** A gauge whose series are all set afresh at each scrape; a source that fails leaves them as they were. */
  private gauge<L extends string>(name: string, help: string, labelNames: L[], read: (set: (labels: Partial<Record<L, string>>, value: number) => void) => void): void {
    const onCollectError = this.onCollectError;
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: this.registers,
      collect() {
        const values: Array<[Partial<Record<L, string>>, number]> = [];
        try {
          read((labels, value) => values.push([labels, value]));
        } catch (error) {
          onCollectError(name, error as Error);
          return;
        }
        this.reset();
        for (const [labels, value] of values) this.set(labels, value);
      },
    });
  }

// --- DimseObserver ------------------------------------------------------------------------------

  associationAccepted(callingAeTitle: string): void {
    this.associationsAccepted.inc({ calling_ae: this.callerLabel(callingAeTitle) });
  }

  associationRejected(reason: RejectLabel): void {
    this.associationsRejected.inc({ reason });
  }

  bytesReceived(count: number): void {
    this.receivedBytes.inc(count);
  }

  operationDone(operation: OperationDone): void {
    const status = boundedStatus(operation.status);
    if (operation.commandField === CommandField.CStoreRq) {
      this.storeRequests.inc({ status, sop_class_family: sopClassFamily(operation.sopClassUid), transfer_syntax: transferSyntaxLabel(operation.transferSyntaxUid) });
      this.storeDuration.observe({ outcome: outcomeOf(operation.status) }, operation.seconds);
      return;
    }
    if (operation.commandField === CommandField.CEchoRq) {
      this.echoRequests.inc({ status });
      return;
    }
    const query = QUERY_COMMANDS.get(operation.commandField);
    if (!query) return;
    this.queryRequests.inc({ operation: query, status });
    this.queryDuration.observe({ operation: query }, operation.seconds);
  }

  // --- DeidObserver -------------------------------------------------------------------------------

  deidDone(outcome: DeidOutcome, seconds: number): void {
    this.deidOutcomes.inc({ outcome });
    this.deidDuration.observe({ outcome }, seconds);
  }

  // --- ForwardObserver ----------------------------------------------------------------------------

  forwardAttempted(destination: string): void {
    this.forwardAttempts.inc({ destination });
  }

  forwardStored(destination: string, status: number, routedAt: number): void {
    this.forwardSuccesses.inc({ destination, status: boundedStatus(status) });
    this.instanceDelay.observe({ destination }, Math.max(0, (Date.now() - routedAt) / 1000));
  }

  forwardStudyDone(destination: string, routedAt: number): void {
    this.studyDelay.observe({ destination }, Math.max(0, (Date.now() - routedAt) / 1000));
  }

  forwardFailed(destination: string, failure: number | ForwardFailureKind, deadLetter: boolean): void {
    this.forwardFailures.inc({ destination, status: typeof failure === 'number' ? boundedStatus(failure) : failure });
    if (deadLetter) this.forwardDeadLetters.inc({ destination });
  }

  destinationUnreachable(destination: string): void {
    this.forwardUnreachable.inc({ destination });
  }

  /** The exposition text and its content type, for GET /metrics. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    this.scrapes += 1;
    try {
      this.zeroDestinations();
    } catch (error) {
      this.onCollectError('destinations', error as Error);
    }
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * A DIMSE status as a label: the statuses PS3.7 Annex C and the service classes of PS3.4 define, as
 * "0xA700"; any other code (a peer may answer anything) folded into its class, "0xA7xx", "0xCxxx",
 * so that a destination cannot grow the label set.
 */
export function boundedStatus(status: number): string {
  if (KNOWN_STATUSES.has(status)) return statusHex(status);
  const high = status >> 12;
  if (high === 0xa || high === 0x0) return `${statusHex(status).slice(0, 4)}xx`;
  return `${statusHex(status).slice(0, 3)}xxx`;
}

const KNOWN_STATUSES: ReadonlySet<number> = new Set([
  0x0000, 0x0001, 0x0105, 0x0106, 0x0107, 0x0110, 0x0111, 0x0112, 0x0116, 0x0117, 0x0118, 0x0119, 0x0120, 0x0121, 0x0122, 0x0123, 0x0124, 0x0210, 0x0211,
  0x0212, 0x0213, 0xa700, 0xa701, 0xa702, 0xa801, 0xa900, 0xaa00, 0xb000, 0xb006, 0xb007, 0xc000, 0xfe00, 0xff00, 0xff01,
  // Gantry's own C-STORE failures, which ask different things of the sender (docs/operations.md):
  // folded into 0xCxxx, the metrics could not tell them apart (found in the operations review).
  ...Object.values(StoreFailure),
]);

function outcomeOf(status: number): 'success' | 'warning' | 'failure' {
  if (status === 0) return 'success';
  if (status === 0x0001 || (status & 0xf000) === 0xb000) return 'warning';
  return 'failure';
}

/**
 * SOP class families: the modality or kind of object a Storage SOP Class carries, from its name in
 * PS3.4 Table B.5-1; standard classes of no listed family are OTHER, classes outside the table (private,
 * retired, dicom.extraSopClasses) NON_STANDARD.
 */
const FAMILY_PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  [/Procedure Protocol|Protocol Approval/, 'PROTOCOL'],
  [/Presentation State/, 'PR'],
  [/Structured Report|SR Storage|Key Object|CAD SR|Dose SR|Acquisition Context SR|Simplified Adult Echo|Patient Radiation Dose|Planned Imaging Agent|Performed Imaging Agent|Enhanced XRF Radiation/, 'SR'],
  [/^RT |^Enhanced RT|^Enhanced Continuous RT|^C-Arm Photon|^Tomotherapeutic|^Robotic|^Radiation Therapy/, 'RT'],
  [/Encapsulated/, 'DOC'],
  [/Waveform|ECG|Electrocardiogram|Hemodynamic|Audio|Arterial Pulse|Respiratory|Electromyogram|Electrooculogram|Sleep|Body Position|Electroencephalogram/, 'WAVEFORM'],
  [/Segmentation/, 'SEG'],
  [/Mammography|Breast Tomosynthesis|Breast Projection/, 'MG'],
  [/^Computed Radiography/, 'CR'],
  [/X-Ray Angiographic|X-Ray 3D Angiographic|Enhanced XA Image/, 'XA'],
  [/X-Ray Radiofluoroscopic|XRF/, 'RF'],
  [/Digital X-Ray|Intra-Oral/, 'DX'],
  [/\bCT\b|Computed Tomography/, 'CT'],
  [/\bMR\b/, 'MR'],
  [/Ultrasound|\bUS\b|Photoacoustic/, 'US'],
  [/Positron Emission|\bPET\b/, 'PT'],
  [/Nuclear Medicine/, 'NM'],
  [/Secondary Capture/, 'SC'],
  [/^VL |Ophthalmic|Dermoscopic|Microscop|Video|Wide Field|Corneal/, 'VL'],
  [/Spatial|Deformable|Registration|Fiducial/, 'REG'],
];

const FAMILY_BY_SOP_CLASS: ReadonlyMap<string, string> = new Map(
  STORAGE_SOP_CLASS_ROWS.map(([uid, name]) => [uid, FAMILY_PATTERNS.find(([pattern]) => pattern.test(name))?.[1] ?? 'OTHER']),
);

export function sopClassFamily(sopClassUid: string): string {
  return FAMILY_BY_SOP_CLASS.get(sopClassUid) ?? 'NON_STANDARD';
}

/** A transfer syntax by its name (a bounded set); those Gantry does not know are "other". */
export function transferSyntaxLabel(transferSyntaxUid: string): string {
  return findTransferSyntax(transferSyntaxUid)?.name ?? 'other';
}
