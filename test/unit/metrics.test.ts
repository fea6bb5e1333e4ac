/**
 * The metrics registry: names follow Prometheus conventions, observers move the right series with
 * bounded labels, and scrape-time gauges read their sources.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandField } from '../../src/dimse/command.js';
import { boundedStatus, GantryMetrics, sopClassFamily, transferSyntaxLabel, type MetricsSources } from '../../src/observability/metrics.js';
import { STORAGE_SOP_CLASS_ROWS } from '../../src/dicom/storage-sop-classes.js';
import { DeidWork } from '../../src/index/deid-work.js';
import { instanceRecord, openTestIndex } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

function watching(overrides: Partial<MetricsSources> = {}, callerLabel?: (callingAeTitle: string) => string, onCollectError?: (metric: string, error: Error) => void): GantryMetrics {
  const metrics = new GantryMetrics(callerLabel, onCollectError);
  metrics.watch(sources(overrides));
  return metrics;
}

function sources(overrides: Partial<MetricsSources> = {}): MetricsSources {
  return {
    activeAssociations: () => 3,
    instancesByState: () => ({ received: 4, quarantined: 2 }),
    oldestWaitingSince: () => Date.now() - 90_000,
    outbox: () => [{ destination: 'research', queued: 5, sent: 7, dead: 1, oldestQueuedAt: Date.now() - 60_000 }],
    pool: () => ({ running: 5, threads: 2 }),
    indexBytes: () => 4096,
    freeBytes: () => 10_000,
    reservedBytes: () => 3_000,
    minFreeBytes: () => 20_000,
    ready: () => false,
    destinations: () => ['research'],
    ...overrides,
  };
}

async function sample(metrics: GantryMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) return undefined;
  const values = (await metric.get()).values as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
  const wanted = values.filter((value) => (value.metricName ?? name) === name && Object.entries(labels).every(([key, label]) => String(value.labels[key]) === label));
  return wanted.length === 0 ? undefined : wanted.reduce((sum, value) => sum + value.value, 0);
}

test('every Gantry metric is named the Prometheus way and Node process metrics are there', async () => {
  const metrics = watching();
  const all = await metrics.registry.getMetricsAsJSON();
  const gantry = all.filter((metric) => metric.name.startsWith('gantry_'));
  assert.ok(gantry.length >= 25, `${gantry.length} gantry_ metrics`);
  for (const metric of gantry) {
    const type = String(metric.type);
    if (type === 'counter') assert.match(metric.name, /_total$/, metric.name);
    else assert.doesNotMatch(metric.name, /_total$/, metric.name);
    if (type === 'histogram') assert.match(metric.name, /_seconds$/, metric.name);
    assert.ok(metric.help.length > 10, `${metric.name} has help`);
  }
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds']) {
    assert.ok(all.some((metric) => metric.name === name), name);
  }
});

test('the DICOM observer counts stores, queries and associations with bounded labels', async () => {
  const metrics = watching({}, (callingAeTitle) => (callingAeTitle === 'CT1' ? 'CT1' : 'other'));
  metrics.associationAccepted('CT1');
  metrics.associationAccepted('SOMEONE');
  metrics.associationAccepted('ANOTHER');
  metrics.associationRejected('local_limit');
  metrics.bytesReceived(1000);
  metrics.bytesReceived(24);
  const store = { commandField: CommandField.CStoreRq, sopClassUid: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxUid: '1.2.840.10008.1.2.4.80', seconds: 0.004 };
  metrics.operationDone({ ...store, status: 0 });
  metrics.operationDone({ ...store, status: 0xa700 });
  metrics.operationDone({ ...store, status: 0xb007 });
  metrics.operationDone({ commandField: CommandField.CFindRq, sopClassUid: '1.2.840.10008.5.1.4.1.2.2.1', transferSyntaxUid: '1.2.840.10008.1.2', status: 0xfe00, seconds: 0.2 });
  metrics.operationDone({ commandField: CommandField.CGetRq, sopClassUid: '1.2.840.10008.5.1.4.1.2.2.3', transferSyntaxUid: '1.2.840.10008.1.2', status: 0, seconds: 3 });

  assert.equal(await sample(metrics, 'gantry_associations_accepted_total', { calling_ae: 'CT1' }), 1);
  assert.equal(await sample(metrics, 'gantry_associations_accepted_total', { calling_ae: 'other' }), 2);
  assert.equal(await sample(metrics, 'gantry_associations_rejected_total', { reason: 'local_limit' }), 1);
  assert.equal(await sample(metrics, 'gantry_received_bytes_total'), 1024);
  const jpegLs = { sop_class_family: 'CT', transfer_syntax: transferSyntaxLabel('1.2.840.10008.1.2.4.80') };
  assert.equal(await sample(metrics, 'gantry_cstore_requests_total', { ...jpegLs, status: '0x0000' }), 1);
  assert.equal(await sample(metrics, 'gantry_cstore_requests_total', { ...jpegLs, status: '0xA700' }), 1);
  assert.equal(await sample(metrics, 'gantry_cstore_requests_total', { ...jpegLs, status: '0xB007' }), 1);
  const durations = (await metrics.registry.getSingleMetric('gantry_cstore_duration_seconds')?.get())?.values ?? [];
  const counts = Object.fromEntries(
    durations.filter((value) => (value as { metricName?: string }).metricName === 'gantry_cstore_duration_seconds_count').map((value) => [value.labels.outcome, value.value]),
  );
  assert.deepEqual(counts, { success: 1, failure: 1, warning: 1 });
  assert.equal(await sample(metrics, 'gantry_query_requests_total', { operation: 'find', status: '0xFE00' }), 1);
  assert.equal(await sample(metrics, 'gantry_query_requests_total', { operation: 'get', status: '0x0000' }), 1);
  metrics.operationDone({ commandField: CommandField.CEchoRq, sopClassUid: '1.2.840.10008.1.1', transferSyntaxUid: '1.2.840.10008.1.2', status: 0, seconds: 0.001 });
  assert.equal(await sample(metrics, 'gantry_cecho_requests_total', { status: '0x0000' }), 1);
});

test('the pipeline observers count de-identification and forwarding outcomes', async () => {
  const metrics = watching();
  metrics.deidDone('ok', 0.02);
  metrics.deidDone('ok', 0.03);
  metrics.deidDone('quarantined', 0.01);
  metrics.deidDone('failed', 0.5);
  metrics.forwardAttempted('research');
  metrics.forwardAttempted('research');
  metrics.forwardStored('research', 0, Date.now() - 7000);
  // A destination that keeps up: confirmed within a fraction of a second of the routing.
  metrics.forwardStored('research', 0, Date.now() - 200);
  metrics.forwardStudyDone('research', Date.now() - 20_000);
  metrics.forwardFailed('research', 0xa700, false);
  metrics.forwardFailed('research', 0xa7fe, false);
  metrics.forwardFailed('research', 'refused', true);
  metrics.destinationUnreachable('archive');
  assert.equal(await sample(metrics, 'gantry_deid_instances_total', { outcome: 'ok' }), 2);
  assert.equal(await sample(metrics, 'gantry_deid_instances_total', { outcome: 'quarantined' }), 1);
  assert.equal(await sample(metrics, 'gantry_deid_instances_total', { outcome: 'failed' }), 1);
  assert.equal(await sample(metrics, 'gantry_forward_attempts_total', { destination: 'research' }), 2);
  assert.equal(await sample(metrics, 'gantry_forward_successes_total', { destination: 'research', status: '0x0000' }), 2);
  assert.equal(await sample(metrics, 'gantry_forward_failures_total', { destination: 'research' }), 3);
  assert.equal(await sample(metrics, 'gantry_forward_failures_total', { status: '0xA700' }), 1);
  assert.equal(await sample(metrics, 'gantry_forward_failures_total', { status: '0xA7xx' }), 1, 'a code outside the standard folds into its class');
  assert.equal(await sample(metrics, 'gantry_forward_dead_letters_total', { destination: 'research' }), 1);
  assert.equal(await sample(metrics, 'gantry_forward_unreachable_total', { destination: 'archive' }), 1);
  const text = (await metrics.exposition()).body;
  assert.match(text, /gantry_forward_delay_seconds_bucket\{le="0.1",destination="research"\} 0/);
  assert.match(text, /gantry_forward_delay_seconds_bucket\{le="0.25",destination="research"\} 1/, 'sub-second delays are told apart');
  assert.match(text, /gantry_forward_delay_seconds_bucket\{le="2",destination="research"\} 1/);
  assert.match(text, /gantry_forward_delay_seconds_bucket\{le="5",destination="research"\} 1/);
  assert.match(text, /gantry_forward_delay_seconds_bucket\{le="10",destination="research"\} 2/);
  assert.match(text, /gantry_forward_study_delay_seconds_bucket\{le="10",destination="research"\} 0/);
  assert.match(text, /gantry_forward_study_delay_seconds_bucket\{le="30",destination="research"\} 1/);
});

test('scrape-time gauges read their sources', async () => {
  const metrics = watching();
  const text = (await metrics.exposition()).body;
  assert.match(text, /^gantry_associations_active 3$/m);
  assert.match(text, /^gantry_instances\{state="received"\} 4$/m);
  assert.match(text, /^gantry_instances\{state="forwarded"\} 0$/m);
  assert.match(text, /^gantry_outbox_items\{destination="research",state="queued"\} 5$/m);
  assert.match(text, /^gantry_outbox_items\{destination="research",state="dead"\} 1$/m);
  const age = Number(/^gantry_outbox_oldest_age_seconds\{destination="research"\} (\S+)$/m.exec(text)?.[1]);
  assert.ok(age >= 59 && age < 70, `oldest age ${age}`);
  assert.match(text, /^gantry_deid_waiting_instances 4$/m);
  const waited = Number(/^gantry_deid_oldest_waiting_seconds (\S+)$/m.exec(text)?.[1]);
  assert.ok(waited >= 89 && waited < 100, `oldest waiting ${waited}`);
  assert.match((await watching({ oldestWaitingSince: () => undefined }).exposition()).body, /^gantry_deid_oldest_waiting_seconds 0$/m);
  assert.match(text, /^gantry_deid_pool_queue_depth 3$/m);
  assert.match(text, /^gantry_deid_pool_utilization_ratio 1$/m);
  assert.match(text, /^gantry_storage_free_bytes 10000$/m);
  assert.match(text, /^gantry_storage_min_free_bytes 20000$/m);
  assert.match(text, /^gantry_storage_reserved_bytes 3000$/m);
  assert.match(text, /^gantry_ready 0$/m);
  // A destination gone from the outbox and from the config disappears from the gauges at the next scrape.
  const emptied = watching({ outbox: () => [], destinations: () => [] });
  assert.doesNotMatch((await emptied.exposition()).body, /gantry_outbox_items\{/);
  // A configured one without items (a fresh start, a purge of sent items) shows 0, as gantry status
  // does (found in the metrics review: it was missing, "no data").
  const idle = (await watching({ outbox: () => [] }).exposition()).body;
  for (const state of ['queued', 'sent', 'dead']) assert.match(idle, new RegExp(`^gantry_outbox_items\\{destination="research",state="${state}"\\} 0$`, 'm'));
  assert.match(idle, /^gantry_outbox_oldest_age_seconds\{destination="research"\} 0$/m);
});

test('SOP classes fold into families; unknown ones into one value', () => {
  assert.equal(sopClassFamily('1.2.840.10008.5.1.4.1.1.2'), 'CT');
  assert.equal(sopClassFamily('1.2.840.10008.5.1.4.1.1.4'), 'MR');
  assert.equal(sopClassFamily('1.2.840.10008.5.1.4.1.1.3.1'), 'US');
  assert.equal(sopClassFamily('1.2.840.10008.5.1.4.1.1.7'), 'SC');
  assert.equal(sopClassFamily('1.2.840.10008.5.1.4.1.1.88.22'), 'SR');
  assert.equal(sopClassFamily('1.2.840.10008.5.1.4.1.1.104.1'), 'DOC');
  assert.equal(sopClassFamily('1.3.12.2.1107.5.9.1'), 'NON_STANDARD');
  assert.equal(sopClassFamily('1.2.840.10008.5.1.4.1.1.12.1.1'), 'XA', 'Enhanced XA');
  assert.equal(sopClassFamily('1.2.840.10008.5.1.4.1.1.200.2'), 'PROTOCOL', 'CT Performed Procedure Protocol');
  const families = new Set(STORAGE_SOP_CLASS_ROWS.map(([uid]) => sopClassFamily(uid)));
  assert.ok(families.size <= 25, `${families.size} families`);
  for (const family of families) assert.match(family, /^[A-Z_]+$/);
  assert.equal(transferSyntaxLabel('1.2.840.10008.1.2.1'), 'Explicit VR Little Endian');
  assert.equal(transferSyntaxLabel('1.2.3.4.5'), 'other');
});

test('a source that fails leaves its gauge as it was and the scrape goes on', async () => {
  let failing = false;
  const failures: string[] = [];
  const metrics = watching(
    {
      outbox: () => {
        if (failing) throw new Error('SQLITE_BUSY');
        return [{ destination: 'research', queued: 5, sent: 7, dead: 1, oldestQueuedAt: null }];
      },
    },
    undefined,
    (metric) => failures.push(metric),
  );
  assert.match((await metrics.exposition()).body, /^gantry_outbox_items\{destination="research",state="queued"\} 5$/m);
  failing = true;
  const text = (await metrics.exposition()).body;
  assert.match(text, /^gantry_outbox_items\{destination="research",state="queued"\} 5$/m);
  assert.match(text, /^gantry_ready 0$/m);
  assert.ok(failures.includes('gantry_outbox_items'), failures.join());
});

test('DIMSE statuses are labels from a bounded set', () => {
  assert.equal(boundedStatus(0), '0x0000');
  assert.equal(boundedStatus(0xa700), '0xA700');
  assert.equal(boundedStatus(0xa7fe), '0xA7xx');
  assert.equal(boundedStatus(0xc123), '0xCxxx');
  assert.equal(boundedStatus(0xc001), '0xC001', 'Gantry\'s own C-STORE failures are told apart');
  assert.equal(boundedStatus(0xc002), '0xC002');
  assert.equal(boundedStatus(0xb000), '0xB000');
  assert.equal(boundedStatus(0xb123), '0xBxxx');
  assert.equal(boundedStatus(0x0133), '0x01xx');
  const labels = new Set(Array.from({ length: 0x10000 }, (_, status) => boundedStatus(status)));
  assert.ok(labels.size < 120, `${labels.size} labels for every 16-bit status`);
});

// A labelled series exists only once something moved it, and it appears at 1: increase() and rate()
// see no increase in a series' first sample, so GantryDeidFailures and GantryForwardDeadLetters
// (increase(...[1h]) > 0) stayed quiet on the first failure after each start, and on a lone one for
// good. The series an alert watches are exported at 0 before their first event.
test('the counters the alerts watch are exported at 0 before their first event, for every configured destination', async () => {
  let destinations = ['research'];
  const metrics = watching({ destinations: () => destinations });
  let text = (await metrics.exposition()).body;
  for (const outcome of ['ok', 'quarantined', 'failed']) {
    assert.match(text, new RegExp(`^gantry_deid_instances_total\\{outcome="${outcome}"\\} 0$`, 'm'));
    assert.match(text, new RegExp(`^gantry_deid_duration_seconds_count\\{outcome="${outcome}"\\} 0$`, 'm'));
  }
  for (const outcome of ['success', 'warning', 'failure']) assert.match(text, new RegExp(`^gantry_cstore_duration_seconds_count\\{outcome="${outcome}"\\} 0$`, 'm'));
  assert.match(text, /^gantry_associations_rejected_total\{reason="local_limit"\} 0$/m);
  for (const name of ['gantry_forward_attempts_total', 'gantry_forward_dead_letters_total', 'gantry_forward_unreachable_total']) {
    assert.match(text, new RegExp(`^${name}\\{destination="research"\\} 0$`, 'm'));
  }
  assert.match(text, /^gantry_forward_successes_total\{destination="research",status="0x0000"\} 0$/m);
  // A destination added by a reload is there at the next scrape; the counts are kept.
  metrics.forwardFailed('research', 'missing', true);
  destinations = ['research', 'archive'];
  text = (await metrics.exposition()).body;
  assert.match(text, /^gantry_forward_dead_letters_total\{destination="research"\} 1$/m);
  assert.match(text, /^gantry_forward_dead_letters_total\{destination="archive"\} 0$/m);
});

// gantry_deid_oldest_waiting_seconds is read on the main thread at every scrape. Through the index
// on state alone it read the row of every instance waiting: 340 ms a scrape with 105,000 waiting in
// an index of a million, the event loop (every association) stopped meanwhile, and longer the larger
// the backlog it is there to show.
test('the oldest waiting instance is read from an index, not by reading every waiting row', async (t) => {
  const { db, writer } = openTestIndex(t, scratchDir('metrics-oldest-waiting'));
  const work = new DeidWork(db);
  const source = (work as unknown as { statements: { oldestWaiting: { source: string } } }).statements.oldestWaiting.source;
  const plan = (db.prepare(`EXPLAIN QUERY PLAN ${source}`).all() as Array<{ detail: string }>).map((row) => row.detail).join('; ');
  assert.match(plan, /USING COVERING INDEX/, plan);
  // And it still answers what the gauge says.
  assert.equal(work.oldestWaitingSince(), undefined);
  await writer.submit(instanceRecord(1, { receivedAt: 5000 }));
  await writer.submit(instanceRecord(2, { receivedAt: 3000 }));
  assert.equal(work.oldestWaitingSince(), 3000);
});
