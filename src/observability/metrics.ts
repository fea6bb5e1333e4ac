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
import { statusHex } from '../dimse/status.js';
import type { DeidObserver, DeidOutcome } from '../pipeline/deidentify.js';
import type { ForwardObserver } from '../pipeline/forward.js';

/** What the scrape-time gauges read; app.ts supplies it. */
export interface MetricsSources {
  activeAssociations(): number;
  instancesByState(): Record<string, number>;
  outbox(): ReadonlyArray<{ destination: string; queued: number; sent: number; dead: number; oldestQueuedAt: number | null }>;
  deidWaiting(): number;
  pool(): { utilization: number; queueSize: number; threads: number };
  indexBytes(): number;
  freeBytes(): number;
  minFreeBytes(): number;
  ready(): boolean;
}

/** Durations from a millisecond to ten minutes: a C-STORE of a small object to a slow C-MOVE. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600];
/** Stability to forwarding: seconds to a day (a destination down overnight). */
const FORWARD_DELAY_BUCKETS = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];

const QUERY_COMMANDS: ReadonlyMap<number, string> = new Map([
  [CommandField.CFindRq, 'find'],
  [CommandField.CMoveRq, 'move'],
  [CommandField.CGetRq, 'get'],
]);

export class GantryMetrics implements DimseObserver, DeidObserver, ForwardObserver {
  readonly registry = new Registry();

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
  private readonly stableToForwarded: Histogram<'destination'>;

  constructor(
    sources: MetricsSources,
    private readonly callerLabel: (callingAeTitle: string) => string = () => 'other',
  ) {
    const registers = [this.registry];
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
    new Gauge({
      name: 'gantry_associations_active',
      help: 'Associations open now.',
      registers,
      collect() {
        this.set(sources.activeAssociations());
      },
    });
    this.storeRequests = new Counter({
      name: 'gantry_cstore_requests_total',
      help: 'C-STORE requests answered, by response status, SOP class family and transfer syntax.',
      labelNames: ['status', 'sop_class_family', 'transfer_syntax'],
      registers,
    });
    this.storeDuration = new Histogram({
      name: 'gantry_cstore_duration_seconds',
      help: 'From a C-STORE request to its response (the dataset received, synced and indexed).',
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
      help: 'De-identification of one instance in a worker thread, by outcome.',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'gantry_deid_waiting_instances',
      help: 'Instances received and waiting for de-identification.',
      registers,
      collect() {
        this.set(sources.deidWaiting());
      },
    });
    new Gauge({
      name: 'gantry_deid_pool_utilization_ratio',
      help: 'Share of the worker threads\' time spent de-identifying (piscina utilization, 0 to 1).',
      registers,
      collect() {
        this.set(sources.pool().utilization);
      },
    });
    new Gauge({
      name: 'gantry_deid_pool_queue_depth',
      help: 'De-identification tasks queued in the worker pool, waiting for a thread.',
      registers,
      collect() {
        this.set(sources.pool().queueSize);
      },
    });
    new Gauge({
      name: 'gantry_deid_pool_threads',
      help: 'Worker threads in the de-identification pool.',
      registers,
      collect() {
        this.set(sources.pool().threads);
      },
    });
    this.forwardAttempts = new Counter({
      name: 'gantry_forward_attempts_total',
      help: 'C-STORE requests sent to a forward destination.',
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
      help: 'Items that failed an attempt, by destination and status (a DIMSE status, or refused, unreadable, association_ended).',
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
    this.stableToForwarded = new Histogram({
      name: 'gantry_forward_delay_seconds',
      help: 'From a study\'s routing (stable, or forwarded on demand) to the destination\'s confirmation of each instance.',
      labelNames: ['destination'],
      buckets: FORWARD_DELAY_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'gantry_outbox_items',
      help: 'Outbox items per destination and state (queued, sent, dead).',
      labelNames: ['destination', 'state'],
      registers,
      collect() {
        this.reset();
        for (const row of sources.outbox()) {
          this.set({ destination: row.destination, state: 'queued' }, row.queued);
          this.set({ destination: row.destination, state: 'sent' }, row.sent);
          this.set({ destination: row.destination, state: 'dead' }, row.dead);
        }
      },
    });
    new Gauge({
      name: 'gantry_outbox_oldest_age_seconds',
      help: 'Age of the oldest queued item per destination (0 when none is queued).',
      labelNames: ['destination'],
      registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const row of sources.outbox()) {
          this.set({ destination: row.destination }, row.oldestQueuedAt === null ? 0 : Math.max(0, (now - row.oldestQueuedAt) / 1000));
        }
      },
    });
    new Gauge({
      name: 'gantry_instances',
      help: 'Instances in the index by state (received, deidentified, quarantined, failed, forwarded).',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = sources.instancesByState();
        for (const state of INSTANCE_STATES) this.set({ state }, counts[state] ?? 0);
      },
    });
    new Gauge({
      name: 'gantry_index_size_bytes',
      help: 'Size of the SQLite index (database and write-ahead log).',
      registers,
      collect() {
        this.set(sources.indexBytes());
      },
    });
    new Gauge({
      name: 'gantry_storage_free_bytes',
      help: 'Free disk under storage.path.',
      registers,
      collect() {
        this.set(sources.freeBytes());
      },
    });
    new Gauge({
      name: 'gantry_storage_min_free_bytes',
      help: 'storage.minFreeBytes: below it C-STORE answers 0xA700 and /readyz is unready.',
      registers,
      collect() {
        this.set(sources.minFreeBytes());
      },
    });
    new Gauge({
      name: 'gantry_ready',
      help: '1 when /readyz answers ready (listener bound, index open, disk above the floor).',
      registers,
      collect() {
        this.set(sources.ready() ? 1 : 0);
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
    const status = statusLabel(operation.status);
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

  forwardStored(destination: string, status: string, routedAt: number): void {
    this.forwardSuccesses.inc({ destination, status });
    this.stableToForwarded.observe({ destination }, Math.max(0, (Date.now() - routedAt) / 1000));
  }

  forwardFailed(destination: string, status: string, deadLetter: boolean): void {
    this.forwardFailures.inc({ destination, status });
    if (deadLetter) this.forwardDeadLetters.inc({ destination });
  }

  destinationUnreachable(destination: string): void {
    this.forwardUnreachable.inc({ destination });
  }

  /** The exposition text and its content type, for GET /metrics. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

export const INSTANCE_STATES = ['received', 'deidentified', 'quarantined', 'failed', 'forwarded'] as const;

/** A DIMSE status as the logs and the outbox write it, e.g. "0x0000", "0xA700". */
const statusLabel = statusHex;

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
  [/Presentation State/, 'PR'],
  [/Structured Report|SR Storage|Key Object|CAD SR|Dose SR|Acquisition Context SR|Simplified Adult Echo|Patient Radiation Dose|Planned Imaging Agent|Performed Imaging Agent|Enhanced XRF Radiation/, 'SR'],
  [/^RT |^Enhanced RT|^C-Arm Photon|^Tomotherapeutic|^Robotic|^Radiation Therapy/, 'RT'],
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
