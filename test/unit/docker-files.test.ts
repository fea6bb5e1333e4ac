/**
 * The container files agree with each other and with Gantry: the Dockerfile, docker/compose.yaml,
 * docker/gantry.yaml (loaded by Gantry's own config loader), Orthanc's config, Prometheus's config
 * and alert rules (checked and run by promtool), and the Grafana dashboard. Every metric the alerts
 * and the dashboard name must be one Gantry exports, every label they name one its series carry
 * (test/helpers/promql.ts follows the labels through aggregations and matching), with a value Gantry
 * gives it where the set is known, and every {{ $labels.x }} or legend {{x}} one the result carries.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { ConfigError, loadConfigFile } from '../../src/config/load.js';
import type { GantryConfig } from '../../src/config/schema.js';
import { CommandField } from '../../src/dimse/command.js';
import type { RejectLabel } from '../../src/dimse/observer.js';
import { INSTANCE_STATES } from '../../src/index/instance-index.js';
import { GantryMetrics, type MetricsSources } from '../../src/observability/metrics.js';
import type { DeidOutcome } from '../../src/pipeline/deidentify.js';
import { needPeers } from '../helpers/peers.js';
import { analyse, labelProblems, type SeriesSchema } from '../helpers/promql.js';
import { run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const DOCKER = join(ROOT, 'docker');
const COMPOSE_PATH = join(DOCKER, 'compose.yaml');
const GANTRY_YAML = join(DOCKER, 'gantry.yaml');
const PROMETHEUS_YML = join(DOCKER, 'prometheus', 'prometheus.yml');
const ALERTS_YML = join(DOCKER, 'prometheus', 'alerts.yml');
const DASHBOARD_JSON = join(DOCKER, 'grafana', 'dashboards', 'gantry.json');
const TEST_SECRET = 'a-test-secret-of-at-least-16-characters';

// --- reading the files ------------------------------------------------------------------------------

type Json = Record<string, unknown>;

function readYaml(path: string): Json {
  return parse(readFileSync(path, 'utf8')) as Json;
}

function object(value: unknown, what: string): Json {
  assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${what} is not a mapping`);
  return value as Json;
}

function list(value: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(value), `${what} is not a list`);
  return value;
}

/** docker/gantry.yaml as Gantry reads it: environment references resolved, defaults filled in. */
function containerConfig(): GantryConfig {
  return loadConfigFile(GANTRY_YAML, { GANTRY_DEID_SECRET: TEST_SECRET }).config;
}

function composeServices(): Record<string, Json> {
  const compose = readYaml(COMPOSE_PATH);
  return object(compose.services, 'compose services') as Record<string, Json>;
}

interface PublishedPort {
  hostIp: string | undefined;
  published: string | undefined;
  target: number;
  protocol: string;
}

/** The ports of a compose service, short ("[ip:][host:]container[/proto]") or long syntax. */
function publishedPorts(service: Json): PublishedPort[] {
  return ((service.ports as unknown[] | undefined) ?? []).map((entry) => {
    if (typeof entry === 'object' && entry !== null) {
      const long = entry as Json;
      return {
        hostIp: long.host_ip as string | undefined,
        published: long.published === undefined ? undefined : String(long.published),
        target: Number(long.target),
        protocol: (long.protocol as string | undefined) ?? 'tcp',
      };
    }
    const [address, protocol = 'tcp'] = String(entry).split('/') as [string, string?];
    const parts = address.split(':');
    const target = Number(parts.pop());
    const published = parts.pop();
    return { hostIp: parts.length > 0 ? parts.join(':') : undefined, published, target, protocol };
  });
}

interface Mount {
  type: 'volume' | 'bind';
  /** A volume's name, or a bind mount's host path resolved against docker/. */
  source: string;
  target: string;
}

/** The volumes of a compose service, short ("source:target[:mode]") or long syntax. */
function mounts(service: Json): Mount[] {
  return ((service.volumes as unknown[] | undefined) ?? []).map((entry) => {
    let source: string;
    let target: string;
    if (typeof entry === 'object' && entry !== null) {
      source = String((entry as Json).source);
      target = String((entry as Json).target);
    } else {
      [source = '', target = ''] = String(entry).split(':');
    }
    const bind = source.startsWith('.') || source.startsWith('/') || source.startsWith('~');
    return bind ? { type: 'bind', source: resolve(DOCKER, source), target } : { type: 'volume', source, target };
  });
}

function environmentOf(service: Json): Record<string, string> {
  const environment = service.environment;
  if (Array.isArray(environment)) {
    return Object.fromEntries(environment.map((item) => {
      const [key = '', ...rest] = String(item).split('=');
      return [key, rest.join('=')];
    }));
  }
  return Object.fromEntries(Object.entries((environment as Json | undefined) ?? {}).map(([key, value]) => [key, String(value)]));
}

interface Instruction {
  keyword: string;
  args: string;
}

/** A Dockerfile's instructions by stage (line continuations joined, comments dropped). */
function dockerfileStages(): Instruction[][] {
  const stages: Instruction[][] = [];
  let pending = '';
  for (const line of readFileSync(join(ROOT, 'Dockerfile'), 'utf8').split('\n')) {
    if (/^\s*#/.test(line) || (pending === '' && line.trim() === '')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const whole = (pending + line).trim();
    pending = '';
    if (whole === '') continue;
    const match = /^(\S+)\s*(.*)$/.exec(whole) as RegExpExecArray;
    const instruction = { keyword: (match[1] as string).toUpperCase(), args: match[2] as string };
    if (instruction.keyword === 'FROM') stages.push([]);
    assert.ok(stages.length > 0, `${instruction.keyword} before the first FROM`);
    stages[stages.length - 1]?.push(instruction);
  }
  return stages;
}

/** An exec-form (JSON array) argument, or the shell form split on blanks. */
function words(args: string): string[] {
  const text = args.trim();
  if (text.startsWith('[')) return JSON.parse(text) as string[];
  return text.split(/\s+/).filter((word) => word !== '');
}

function last(stage: Instruction[], keyword: string): Instruction | undefined {
  return stage.filter((instruction) => instruction.keyword === keyword).at(-1);
}

// --- metric names -----------------------------------------------------------------------------------

/**
 * The metric names a PromQL expression (or a Grafana target) refers to: identifiers left once
 * strings, label matchers {…}, ranges […] and the label lists of by/without/on/ignoring/group_* are
 * taken out, of those that are Gantry's families (gantry_, and Node's process_ and nodejs_) or `up`.
 * Function names, keywords, numbers and Grafana variables ($__rate_interval) fall out by the prefix.
 */
export function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = stripped.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
  return [...new Set(names.filter((name) => /^(?:gantry_|process_|nodejs_)/.test(name) || name === 'up'))];
}

/** The target labels Prometheus gives every series it scrapes (prometheus.yml adds no others). */
const TARGET_LABELS = ['job', 'instance'] as const;

/**
 * Every series Gantry's registry exposes (histograms as _bucket, _sum and _count, summaries with
 * `quantile`), and `up`, each with its label names: the metric's labelNames (read from prom-client's
 * metric object), `le` for buckets, and the target labels.
 */
async function exportedSeries(): Promise<Map<string, ReadonlySet<string>>> {
  const sources: MetricsSources = {
    activeAssociations: () => 0,
    instancesByState: () => ({}),
    oldestWaitingSince: () => undefined,
    outbox: () => [],
    pool: () => ({ running: 0, threads: 0 }),
    indexBytes: () => 0,
    freeBytes: () => 0,
    reservedBytes: () => 0,
    minFreeBytes: () => 0,
    ready: () => true,
    destinations: () => ['orthanc'],
  };
  const metrics = new GantryMetrics();
  metrics.watch(sources);
  const series = new Map<string, ReadonlySet<string>>([['up', new Set(TARGET_LABELS)]]);
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    // prom-client 15 keeps the declared label names on the metric object (not in its typings).
    const labelNames = (metrics.registry.getSingleMetric(metric.name) as unknown as { labelNames?: unknown } | undefined)?.labelNames;
    assert.ok(Array.isArray(labelNames), `prom-client has no labelNames for ${metric.name}`);
    const labels = [...TARGET_LABELS, ...(labelNames as string[])];
    const type = String(metric.type);
    if (type === 'histogram' || type === 'summary') {
      series.set(type === 'histogram' ? `${metric.name}_bucket` : metric.name, new Set([...labels, type === 'histogram' ? 'le' : 'quantile']));
      series.set(`${metric.name}_sum`, new Set(labels));
      series.set(`${metric.name}_count`, new Set(labels));
    } else series.set(metric.name, new Set(labels));
  }
  return series;
}

/** Every series name Gantry's registry exposes, and `up`. */
async function exportedMetricNames(): Promise<Set<string>> {
  return new Set((await exportedSeries()).keys());
}

function missingMetrics(exprs: string[], exported: Set<string>): string[] {
  return [...new Set(exprs.flatMap(metricNamesIn))].filter((name) => !exported.has(name)).sort();
}

// --- label names and values -------------------------------------------------------------------------

/**
 * A list of every member of a union type: tsc fails ("missing") when the type gains a member the list
 * lacks, and when the list names something the type does not have.
 */
function every<All extends string>() {
  return <const Listed extends readonly All[]>(list: Listed & ([Exclude<All, Listed[number]>] extends [never] ? unknown : { missing: Exclude<All, Listed[number]> })): Listed => list;
}

type OutboxState = Exclude<keyof ReturnType<MetricsSources['outbox']>[number], 'destination' | 'oldestQueuedAt'>;

/** The outcomes of a C-STORE's status (outcomeOf in src/observability/metrics.ts; a test below checks them). */
const CSTORE_OUTCOMES = ['success', 'warning', 'failure'] as const;
const DEID_OUTCOMES = every<DeidOutcome>()(['ok', 'quarantined', 'failed']);
const OUTBOX_STATES = every<OutboxState>()(['queued', 'sent', 'dead']);
const REJECT_REASONS = every<RejectLabel>()(['protocol_version', 'application_context', 'called_ae_title', 'calling_ae_title', 'max_pdu_length', 'no_presentation_context', 'local_limit']);

/** Labels whose values Gantry takes from a known set: the series (by name), the label, the values. */
const KNOWN_VALUES: ReadonlyArray<readonly [RegExp, string, readonly string[]]> = [
  [/^gantry_cstore_duration_seconds_(?:bucket|sum|count)$/, 'outcome', CSTORE_OUTCOMES],
  [/^gantry_deid_/, 'outcome', DEID_OUTCOMES],
  [/^gantry_instances$/, 'state', INSTANCE_STATES],
  [/^gantry_outbox_items$/, 'state', OUTBOX_STATES],
  [/^gantry_associations_rejected_total$/, 'reason', REJECT_REASONS],
];

/** What the label checks know of Gantry's series: their label names and the known value sets. */
function seriesSchema(series: ReadonlyMap<string, ReadonlySet<string>>): SeriesSchema {
  const values = new Map<string, Map<string, readonly string[]>>();
  for (const [pattern, label, known] of KNOWN_VALUES) {
    const matching = [...series].filter(([name, labels]) => pattern.test(name) && labels.has(label));
    assert.ok(matching.length > 0, `no exported series matches ${pattern} with a label "${label}": update KNOWN_VALUES`);
    for (const [name] of matching) values.set(name, new Map([...(values.get(name) ?? []), [label, known]]));
  }
  return {
    labelsOf: (name) => series.get(name),
    valuesOf: (name, label) => values.get(name)?.get(label),
  };
}

/** The `{{x}}` and `{{ $labels.x }}` a legend or an alert's annotation names. */
function templateLabels(text: string, alert: boolean): string[] {
  const pattern = alert ? /\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)/g : /\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g;
  return [...text.matchAll(pattern)].map((match) => match[1] as string);
}

/** Label names the templates use that the expression's result does not carry. */
function templateProblems(what: string, expr: string, templates: string[], schema: SeriesSchema, alert: boolean): string[] {
  const { labels } = analyse(expr, schema);
  if (labels === undefined) return [];
  return [...new Set(templates.flatMap((text) => templateLabels(text, alert)))]
    .filter((label) => !labels.has(label))
    .map((label) => `${what} names {{${alert ? ' $labels.' : ''}${label}${alert ? ' ' : ''}}}, a label the result of ${JSON.stringify(expr)} does not have (it has ${[...labels].sort().join(', ') || 'none'})`);
}

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function alertRules(document: Json = readYaml(ALERTS_YML)): AlertRule[] {
  return list(document.groups, 'groups').flatMap((group) => list(object(group, 'group').rules, 'rules') as AlertRule[]);
}

interface Panel {
  type: string;
  title?: string;
  id?: number;
  datasource?: { type?: string; uid?: string };
  targets?: Array<{ expr?: string; refId?: string; legendFormat?: string; datasource?: { uid?: string } }>;
  panels?: Panel[];
}

function dashboard(): { uid: string; schemaVersion: number; panels: Panel[]; templating?: { list?: Array<{ datasource?: { uid?: string }; query?: unknown; definition?: string }> } } {
  return JSON.parse(readFileSync(DASHBOARD_JSON, 'utf8'));
}

/** Every panel, those inside collapsed rows too, without the rows themselves. */
function panelsOf(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => (panel.type === 'row' ? panelsOf(panel.panels ?? []) : [panel]));
}

function dashboardExprs(): string[] {
  return panelsOf(dashboard().panels).flatMap((panel) => (panel.targets ?? []).map((target) => target.expr ?? ''));
}

async function promtool(t: TestContext, args: string[]): Promise<{ code: number | null; output: string } | undefined> {
  if (!(await needPeers(t, 'promtool'))) return undefined;
  // spawnSync returns once the output is complete (an exit event may come before the last of it).
  const result = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, output: `${result.stdout}\n${result.stderr}${result.error ? `\n${result.error.message}` : ''}` };
}

// --- the tests --------------------------------------------------------------------------------------

test('the metric name extractor finds metric names and nothing else', () => {
  assert.deepEqual(metricNamesIn('rate(gantry_bogus_total[5m])'), ['gantry_bogus_total']);
  assert.deepEqual(metricNamesIn('up{job="gantry"} == 0'), ['up']);
  assert.deepEqual(
    metricNamesIn('histogram_quantile(0.95, sum by (le, destination) (rate(gantry_forward_delay_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'),
    ['gantry_forward_delay_seconds_bucket'],
  );
  assert.deepEqual(
    metricNamesIn('delta(gantry_outbox_items{state="gantry_not_a_metric"}[30m]) > 0 and on (job, instance, destination) gantry_outbox_oldest_age_seconds > 3600'),
    ['gantry_outbox_items', 'gantry_outbox_oldest_age_seconds'],
  );
  assert.deepEqual(metricNamesIn('process_resident_memory_bytes > 1e9 or nodejs_eventloop_lag_p99_seconds > 0.5'), [
    'process_resident_memory_bytes',
    'nodejs_eventloop_lag_p99_seconds',
  ]);
  // The check below can fail: a name Gantry does not export is reported.
  const exported = new Set(['gantry_ready', 'up']);
  assert.deepEqual(missingMetrics(['gantry_ready == 0', 'rate(gantry_bogus_total[5m])', 'up == 0'], exported), ['gantry_bogus_total']);
});

test('every metric the alert rules and the dashboard name is exported by Gantry', async () => {
  const exported = await exportedMetricNames();
  assert.ok(exported.has('gantry_cstore_duration_seconds_bucket') && exported.has('process_resident_memory_bytes'), 'the registry looks empty');
  const alertExprs = alertRules().map((rule) => rule.expr);
  assert.deepEqual(missingMetrics(alertExprs, exported), [], 'docker/prometheus/alerts.yml names metrics Gantry does not export');
  const exprs = dashboardExprs();
  assert.deepEqual(missingMetrics(exprs, exported), [], 'docker/grafana/dashboards/gantry.json names metrics Gantry does not export');
  assert.ok(alertExprs.every((expr) => metricNamesIn(expr).length > 0), 'an alert expression names no metric the extractor knows');
  assert.ok(exprs.every((expr) => metricNamesIn(expr).length > 0), 'a dashboard target names no metric the extractor knows');
});

test('the label checks catch a wrong label name or value, in selectors and in by, without, on, ignoring and group clauses', () => {
  const schema = seriesSchema(
    new Map<string, ReadonlySet<string>>([
      ['up', new Set(['job', 'instance'])],
      ['gantry_instances', new Set(['job', 'instance', 'state'])],
      ['gantry_outbox_items', new Set(['job', 'instance', 'destination', 'state'])],
      ['gantry_outbox_oldest_age_seconds', new Set(['job', 'instance', 'destination'])],
      ['gantry_forward_delay_seconds_bucket', new Set(['job', 'instance', 'destination', 'le'])],
      ['gantry_forward_delay_seconds_count', new Set(['job', 'instance', 'destination'])],
      ['gantry_cstore_duration_seconds_bucket', new Set(['job', 'instance', 'outcome', 'le'])],
      ['gantry_cstore_duration_seconds_count', new Set(['job', 'instance', 'outcome'])],
      ['gantry_deid_instances_total', new Set(['job', 'instance', 'outcome'])],
      ['gantry_associations_rejected_total', new Set(['job', 'instance', 'reason'])],
    ]),
  );
  const clean = [
    'up{job="gantry", instance=~"$instance"} == 0',
    'sum by (le, destination) (rate(gantry_forward_delay_seconds_bucket{instance=~"$instance"}[$__rate_interval]))',
    'histogram_quantile(0.95, sum by (le, destination) (rate(gantry_forward_delay_seconds_bucket[5m])))',
    'delta(gantry_outbox_items{state="queued"}[30m]) > 0 and on (job, instance, destination) gantry_outbox_oldest_age_seconds > 3600',
    'gantry_outbox_items{state=~"queued|dead"} / ignoring (state) group_left gantry_outbox_oldest_age_seconds',
    'sum(rate(gantry_cstore_duration_seconds_count{outcome!="success"}[5m])) by (job)',
    'rate(gantry_deid_instances_total{outcome=~"fail.*"}[1h]) # a comment',
    'sum by (reason) (increase(gantry_associations_rejected_total{reason="local_limit"}[1h]))',
    'gantry_instances{state="quarantined"} - gantry_instances{state="quarantined"} offset 1h',
  ];
  for (const expr of clean) assert.deepEqual(labelProblems(expr, schema), [], expr);

  const wrong: Array<[string, RegExp]> = [
    // Label names: in a selector, by, without, on, ignoring, group_left, histogram_quantile's le.
    ['gantry_outbox_items{destinaton="research-pacs"}', /has no label "destinaton"/],
    ['sum by (destination) (gantry_instances)', /"destination" is not a label of gantry_instances/],
    ['sum(gantry_instances) by (stat)', /"stat" is not a label/],
    ['sum without (destination) (gantry_instances)', /"destination" is not a label/],
    ['gantry_outbox_items > on (job, instance, state) gantry_outbox_oldest_age_seconds', /"state" is not a label of gantry_outbox_oldest_age_seconds/],
    ['gantry_outbox_items > ignoring (status) gantry_outbox_oldest_age_seconds', /"status" is not a label/],
    ['gantry_outbox_items * on (job, instance, destination) group_left (outcome) gantry_outbox_oldest_age_seconds', /"outcome" is not a label of gantry_outbox_oldest_age_seconds/],
    ['histogram_quantile(0.95, sum by (destination) (rate(gantry_forward_delay_seconds_bucket[5m])))', /"le" is not a label/],
    // A label lost by an inner aggregation.
    ['sum by (destination) (sum by (job) (gantry_outbox_items))', /"destination" is not a label of gantry_outbox_items there/],
    // Values: =, !=, a plain alternation, a regular expression that matches nothing.
    ['gantry_instances{state="quarantine"}', /no such value/],
    ['gantry_outbox_items{state!="deadletter"}', /no such value/],
    ['gantry_deid_instances_total{outcome=~"ok|failure"}', /no such value failure/],
    ['rate(gantry_cstore_duration_seconds_count{outcome=~"fail(ed)?"}[5m])', /matches no value/],
    ['gantry_associations_rejected_total{reason="called_ae"}', /no such value/],
    ['this is not promql', /cannot parse/],
  ];
  for (const [expr, expected] of wrong) {
    const problems = labelProblems(expr, schema);
    assert.ok(problems.some((problem) => expected.test(problem)), `${expr}: expected ${expected}, got ${JSON.stringify(problems)}`);
  }

  // Templates: a legend or an annotation may name only the labels the result carries.
  assert.deepEqual(templateProblems('legend', 'sum by (destination) (gantry_outbox_items)', ['{{destination}} queued'], schema, false), []);
  assert.match(templateProblems('legend', 'sum(gantry_outbox_items)', ['{{instance}}'], schema, false).join('\n'), /does not have/);
  assert.match(templateProblems('summary', 'sum by (job, instance) (gantry_outbox_items) > 0', ['{{ $labels.destination }} is late'], schema, true).join('\n'), /does not have/);
});

test('every label the alert rules and the dashboard use is one its series have, with a value Gantry gives it', async () => {
  const series = await exportedSeries();
  const schema = seriesSchema(series);
  // The label names come from prom-client's metric objects: make sure they are there.
  assert.deepEqual([...(series.get('gantry_outbox_items') ?? [])].sort(), ['destination', 'instance', 'job', 'state']);
  assert.deepEqual([...(series.get('gantry_forward_study_delay_seconds_bucket') ?? [])].sort(), ['destination', 'instance', 'job', 'le']);

  // The C-STORE outcomes have no type to check the list against: the registry's own values must be it.
  const metrics = new GantryMetrics();
  for (const status of [0x0000, 0x0001, 0xb000, 0xb007, 0xa700, 0xa7ff, 0xc000, 0x0110, 0x0122, 0xfe00]) {
    metrics.operationDone({ commandField: CommandField.CStoreRq, sopClassUid: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxUid: '1.2.840.10008.1.2.1', status, seconds: 0.01 });
  }
  const durations = (await metrics.registry.getMetricsAsJSON()).find((metric) => metric.name === 'gantry_cstore_duration_seconds');
  const outcomes = new Set((durations?.values ?? []).map((value) => String(value.labels.outcome)));
  assert.deepEqual([...outcomes].sort(), [...CSTORE_OUTCOMES].sort(), 'the outcome label of gantry_cstore_duration_seconds takes other values than CSTORE_OUTCOMES');

  const rules = alertRules();
  const alertProblems = rules.flatMap((rule) => [
    ...labelProblems(rule.expr, schema).map((problem) => `${rule.alert}: ${problem}`),
    ...templateProblems(`${rule.alert}'s annotations`, rule.expr, Object.values(rule.annotations ?? {}), schema, true),
  ]);
  assert.deepEqual(alertProblems, [], 'docker/prometheus/alerts.yml');

  const board = dashboard();
  const dashboardProblems = panelsOf(board.panels).flatMap((panel) =>
    (panel.targets ?? []).flatMap((target) => [
      ...labelProblems(target.expr ?? '', schema).map((problem) => `panel "${panel.title}": ${problem}`),
      ...templateProblems(`panel "${panel.title}"'s legend`, target.expr ?? '', [target.legendFormat ?? ''], schema, false),
    ]),
  );
  // Template variables: label_values(metric, label).
  for (const variable of board.templating?.list ?? []) {
    const query = typeof variable.query === 'object' && variable.query !== null ? String((variable.query as Json).query ?? '') : String(variable.query ?? variable.definition ?? '');
    const match = /^label_values\(\s*([^,]+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(query.trim());
    if (!match) continue;
    const [, selector = '', label = ''] = match;
    dashboardProblems.push(...labelProblems(selector, schema).map((problem) => `variable ${query}: ${problem}`));
    const labels = analyse(selector, schema).labels;
    if (labels && !labels.has(label)) dashboardProblems.push(`variable ${query}: no label "${label}"`);
  }
  assert.deepEqual(dashboardProblems, [], 'docker/grafana/dashboards/gantry.json');
});

test('docker/gantry.yaml is a valid config: /data, the Orthanc destination, the secret from the environment only', () => {
  const config = containerConfig();
  assert.equal(config.storage.path, '/data');
  assert.equal(config.deid.secret, TEST_SECRET);
  const destination = config.forward.destinations.find((item) => item.name === 'research-pacs');
  assert.ok(destination, 'forward.destinations has no "research-pacs"');
  assert.deepEqual({ aeTitle: destination.aeTitle, host: destination.host, port: destination.port }, { aeTitle: 'ORTHANC', host: 'orthanc', port: 4242 });

  // The secret must come from GANTRY_DEID_SECRET: no fallback in the file, and the schema's minimum holds.
  assert.throws(() => loadConfigFile(GANTRY_YAML, {}), (error: unknown) => error instanceof ConfigError && error.problems.some((p) => p.startsWith('deid.secret') && p.includes('GANTRY_DEID_SECRET')));
  assert.throws(() => loadConfigFile(GANTRY_YAML, { GANTRY_DEID_SECRET: 'too-short' }), (error: unknown) => error instanceof ConfigError && error.problems.some((p) => p.startsWith('deid.secret') && p.includes('at least 16')));
});

test('compose: the four services; Gantry publishes its DICOM and HTTP ports, keeps /data on a named volume, gets its config and a required secret', () => {
  const config = containerConfig();
  const compose = readYaml(COMPOSE_PATH);
  const services = composeServices();
  for (const name of ['gantry', 'orthanc', 'prometheus', 'grafana']) assert.ok(services[name], `compose has no service "${name}"`);
  const gantry = services.gantry as Json;

  const build = object(gantry.build, 'gantry.build');
  const context = resolve(DOCKER, String(build.context));
  assert.equal(context, resolve(ROOT), 'gantry is built from the repository root');
  assert.ok(existsSync(join(context, String(build.dockerfile ?? 'Dockerfile'))), 'the dockerfile of gantry.build does not exist');

  const ports = publishedPorts(gantry);
  for (const port of [config.dicom.port, config.http.port]) {
    const found = ports.find((entry) => entry.target === port && entry.protocol === 'tcp');
    assert.ok(found, `gantry does not publish container port ${port} (${JSON.stringify(gantry.ports)})`);
    assert.ok(found.published !== undefined, `gantry's port ${port} has no host port`);
  }

  const declaredVolumes = Object.keys(object(compose.volumes, 'top-level volumes'));
  const data = mounts(gantry).find((mount) => mount.target === config.storage.path);
  assert.ok(data, `nothing is mounted on ${config.storage.path} (storage.path) in gantry`);
  assert.equal(data.type, 'volume', `${config.storage.path} must be a named volume, not a bind mount`);
  assert.ok(declaredVolumes.includes(data.source), `the volume "${data.source}" is not declared under volumes:`);

  // The mounted config is docker/gantry.yaml, at the path the image's CMD passes to --config.
  const command = words(last(dockerfileStages().at(-1) as Instruction[], 'CMD')?.args ?? '[]');
  const configPath = command[command.indexOf('--config') + 1];
  assert.ok(configPath, 'the Dockerfile CMD has no --config');
  const configMount = mounts(gantry).find((mount) => mount.target === configPath);
  assert.ok(configMount, `gantry mounts nothing on ${configPath}`);
  assert.equal(configMount.source, GANTRY_YAML);

  // The variable deid.secret refers to is required by compose (${NAME:?message}): no silent empty secret.
  const rawSecret = String(object(readYaml(GANTRY_YAML).deid, 'deid').secret);
  const variable = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(rawSecret)?.[1];
  assert.equal(variable, 'GANTRY_DEID_SECRET', 'deid.secret of docker/gantry.yaml is not ${GANTRY_DEID_SECRET}');
  assert.match(environmentOf(gantry)[variable] ?? '', new RegExp(`^\\$\\{${variable}:\\?.+\\}$`), `compose must pass ${variable} as \${${variable}:?message}`);

  // Every variable docker/gantry.yaml refers to is one compose passes: one it does not pass would only
  // ever take its fallback, a setting that looks configurable but is not.
  const referenced = [...readFileSync(GANTRY_YAML, 'utf8').replace(/#.*$/gm, '').matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((match) => match[1] as string);
  const passed = Object.keys(environmentOf(gantry));
  assert.deepEqual([...new Set(referenced)].filter((name) => !passed.includes(name)), [], 'docker/gantry.yaml refers to variables the gantry service of compose does not pass');
});

test('compose: Orthanc is the destination of docker/gantry.yaml and accepts Gantry\'s AE title', () => {
  const config = containerConfig();
  const services = composeServices();
  const destination = config.forward.destinations.find((item) => item.name === 'research-pacs');
  assert.ok(destination);
  assert.ok(services[destination.host], `the destination host "${destination.host}" is not a compose service`);
  const orthancMount = mounts(services[destination.host] as Json).find((mount) => mount.source === join(DOCKER, 'orthanc', 'orthanc.json'));
  assert.ok(orthancMount, 'docker/orthanc/orthanc.json is not mounted into the orthanc service');
  assert.ok(mounts(services[destination.host] as Json).some((mount) => mount.type === 'volume'), 'Orthanc keeps its storage on no volume');
  const orthanc = JSON.parse(readFileSync(join(DOCKER, 'orthanc', 'orthanc.json'), 'utf8')) as Json;
  assert.equal(orthanc.DicomAet, destination.aeTitle);
  assert.equal(orthanc.DicomPort, destination.port);
  const callingAeTitle = destination.callingAeTitle ?? config.dicom.aeTitle;
  const modalities = Object.values(object(orthanc.DicomModalities, 'DicomModalities')) as Json[];
  const gantry = modalities.find((modality) => (Array.isArray(modality) ? modality[0] : modality.AET) === callingAeTitle);
  assert.ok(gantry, `Orthanc's DicomModalities has no ${callingAeTitle}`);
  assert.ok(orthanc.DicomAlwaysAllowStore === true || Array.isArray(gantry) || gantry.AllowStore !== false, `Orthanc does not let ${callingAeTitle} store`);
  assert.ok(publishedPorts(services[destination.host] as Json).some((port) => port.target === orthanc.HttpPort), 'Orthanc\'s REST port is not published');
});

test('Prometheus scrapes Gantry on http.port at /metrics and loads the mounted alert rules', () => {
  const config = containerConfig();
  const services = composeServices();
  const prometheus = services.prometheus as Json;
  const promConfig = readYaml(PROMETHEUS_YML);

  const configFlag = ((prometheus.command as string[] | undefined) ?? []).find((arg) => arg.startsWith('--config.file='));
  const configTarget = configFlag?.slice('--config.file='.length) ?? '/etc/prometheus/prometheus.yml';
  assert.ok(mounts(prometheus).some((mount) => mount.target === configTarget && mount.source === PROMETHEUS_YML), `docker/prometheus/prometheus.yml is not mounted at ${configTarget}`);

  const jobs = list(promConfig.scrape_configs, 'scrape_configs').map((job) => object(job, 'scrape config'));
  const targets = jobs.flatMap((job) =>
    ((job.static_configs as Json[] | undefined) ?? []).flatMap((group) => ((group.targets as string[] | undefined) ?? []).map((target) => ({ job, target }))),
  );
  const gantry = targets.filter(({ target }) => target.split(':')[0] === 'gantry');
  assert.ok(gantry.length > 0, 'no scrape target on the gantry service');
  for (const { job, target } of gantry) {
    assert.equal(Number(target.split(':')[1]), config.http.port, `the scrape target ${target} is not on http.port ${config.http.port}`);
    assert.equal(job.metrics_path ?? '/metrics', '/metrics');
    assert.equal(job.job_name, 'gantry', 'the alerts and the dashboard select job="gantry"');
  }

  const ruleFiles = list(promConfig.rule_files, 'rule_files') as string[];
  assert.ok(ruleFiles.length > 0, 'prometheus.yml loads no rule files');
  for (const ruleFile of ruleFiles) {
    const inContainer = posix.resolve(posix.dirname(configTarget), ruleFile);
    assert.ok(mounts(prometheus).some((mount) => mount.target === inContainer), `the rule file ${inContainer} is not mounted`);
  }
  assert.ok(
    mounts(prometheus).some((mount) => mount.source === ALERTS_YML && ruleFiles.map((file) => posix.resolve(posix.dirname(configTarget), file)).includes(mount.target)),
    'docker/prometheus/alerts.yml is not mounted where rule_files reads it',
  );
});

// Noted by the operations review: the HEALTHCHECK asked 127.0.0.1:8080 whatever http.port the
// container's config set. GANTRY_HEALTHZ_URL points it elsewhere.
test('the HEALTHCHECK probe asks GANTRY_HEALTHZ_URL when set, and fails when nothing answers', async () => {
  const healthcheck = last(dockerfileStages().at(-1) as Instruction[], 'HEALTHCHECK')?.args ?? '';
  const probe = words(/\bCMD\s+(.*)$/.exec(healthcheck)?.[1] ?? '[]');
  assert.deepEqual(probe.slice(0, 2), ['node', '-e']);
  const server = createServer((request, response) => response.writeHead(request.url === '/healthz' ? 200 : 404).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    const runProbe = (url: string) => run(process.execPath, ['-e', probe[2] as string], { env: { ...process.env, GANTRY_HEALTHZ_URL: url }, timeoutMs: 20_000 });
    assert.equal((await runProbe(`http://127.0.0.1:${port}/healthz`)).code, 0, 'healthy where the URL says');
    assert.equal((await runProbe(`http://127.0.0.1:${port}/elsewhere`)).code, 1, 'an answer that is not OK');
    server.close();
    assert.equal((await runProbe(`http://127.0.0.1:${port}/healthz`)).code, 1, 'nothing listening');
  } finally {
    server.close();
  }
});

test('the Dockerfile: final stage as a non-root user, /data volume, HEALTHCHECK on /healthz at http.port, COPY sources present', () => {
  const config = containerConfig();
  const stages = dockerfileStages();
  assert.ok(stages.length >= 2, 'expected a multi-stage build');
  const final = stages.at(-1) as Instruction[];

  const user = last(final, 'USER')?.args.trim();
  assert.ok(user, 'the final stage sets no USER');
  assert.ok(!/^(root|0)(:|$)/.test(user), `the final stage runs as ${user}`);

  const volumes = final.filter((instruction) => instruction.keyword === 'VOLUME').flatMap((instruction) => words(instruction.args));
  assert.ok(volumes.includes(config.storage.path), `VOLUME does not include storage.path ${config.storage.path}`);

  const exposed = final.filter((instruction) => instruction.keyword === 'EXPOSE').flatMap((instruction) => words(instruction.args)).map((port) => Number(port.split('/')[0]));
  assert.ok(exposed.includes(config.dicom.port) && exposed.includes(config.http.port), `EXPOSE ${exposed.join(' ')} lacks the DICOM or HTTP port`);

  const healthcheck = last(final, 'HEALTHCHECK')?.args ?? '';
  const cmd = /\bCMD\s+(.*)$/.exec(healthcheck)?.[1];
  assert.ok(cmd, 'the final stage has no HEALTHCHECK CMD');
  const probe = words(cmd).join(' ');
  assert.match(probe, new RegExp(`:${config.http.port}/healthz\\b`), `the HEALTHCHECK does not call /healthz on port ${config.http.port}: ${probe}`);

  // What the build copies from the context exists and is not excluded by .dockerignore.
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim().replace(/\/$/, '')).filter((line) => line !== '' && !line.startsWith('#'));
  for (const instruction of stages.flat().filter((item) => item.keyword === 'COPY' || item.keyword === 'ADD')) {
    const parts = words(instruction.args);
    if (parts.some((part) => part.startsWith('--from='))) continue;
    for (const source of parts.filter((part) => !part.startsWith('--')).slice(0, -1)) {
      assert.ok(existsSync(join(ROOT, source)), `COPY ${source}: no such file in the build context`);
      assert.ok(!ignored.includes(source.split('/')[0] as string), `COPY ${source}: excluded by .dockerignore`);
    }
  }

  // The entry point is the compiled CLI of src/cli/main.ts.
  const entrypoint = words(last(final, 'ENTRYPOINT')?.args ?? '[]');
  const script = entrypoint.find((word) => word.startsWith('dist/src/') && word.endsWith('.js'));
  assert.ok(script, 'the ENTRYPOINT runs no dist/src script');
  assert.ok(existsSync(join(ROOT, script.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), `${script} has no source`);
});

test('Grafana: the provisioned data source and dashboard provider, the dashboard parses and every panel has queries', () => {
  const services = composeServices();
  const grafana = services.grafana as Json;
  const provisioning = mounts(grafana).find((mount) => mount.source === join(DOCKER, 'grafana', 'provisioning'));
  assert.equal(provisioning?.target, '/etc/grafana/provisioning', 'docker/grafana/provisioning is not mounted at /etc/grafana/provisioning');

  const datasources = list(readYaml(join(DOCKER, 'grafana', 'provisioning', 'datasources', 'prometheus.yml')).datasources, 'datasources') as Json[];
  const source = datasources.find((item) => item.type === 'prometheus');
  assert.ok(source, 'no Prometheus data source is provisioned');
  const url = new URL(String(source.url));
  assert.ok(services[url.hostname], `the data source URL ${url.href} is not a compose service`);
  assert.ok(publishedPorts(services[url.hostname] as Json).some((port) => port.target === Number(url.port)) || url.port === '9090');

  const providers = list(readYaml(join(DOCKER, 'grafana', 'provisioning', 'dashboards', 'gantry.yml')).providers, 'providers') as Json[];
  const providerPath = String(object(providers[0]?.options, 'provider options').path);
  const dashboards = mounts(grafana).find((mount) => mount.target === providerPath);
  assert.equal(dashboards?.source, join(DOCKER, 'grafana', 'dashboards'), `the provider reads ${providerPath}, where docker/grafana/dashboards is not mounted`);

  const board = dashboard();
  assert.equal(board.uid, 'gantry');
  assert.ok(board.schemaVersion >= 36, `schemaVersion ${board.schemaVersion}`);
  const panels = panelsOf(board.panels);
  assert.ok(panels.length >= 15, `only ${panels.length} panels`);
  const ids = board.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]).map((panel) => panel.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids repeat');
  for (const panel of panels) {
    assert.ok(panel.targets && panel.targets.length > 0, `panel "${panel.title}" has no targets`);
    assert.equal(panel.datasource?.uid, source.uid, `panel "${panel.title}" uses another data source`);
    for (const target of panel.targets) {
      assert.ok(typeof target.expr === 'string' && target.expr.trim() !== '', `a target of panel "${panel.title}" has no expr`);
      assert.ok(target.datasource === undefined || target.datasource.uid === source.uid, `a target of panel "${panel.title}" uses another data source`);
    }
  }
  for (const variable of board.templating?.list ?? []) {
    if (variable.datasource) assert.equal(variable.datasource.uid, source.uid);
  }
  const exprs = dashboardExprs().join('\n');
  for (const needed of [
    'gantry_cstore_requests_total',
    'gantry_received_bytes_total',
    'gantry_cstore_duration_seconds_bucket',
    'gantry_associations_active',
    'gantry_associations_rejected_total',
    'gantry_deid_instances_total',
    'gantry_deid_duration_seconds_bucket',
    'gantry_deid_waiting_instances',
    'gantry_deid_pool_utilization_ratio',
    'gantry_forward_successes_total',
    'gantry_forward_failures_total',
    'gantry_outbox_items',
    'gantry_outbox_oldest_age_seconds',
    'gantry_forward_delay_seconds_bucket',
    'gantry_forward_study_delay_seconds_bucket',
    'gantry_query_requests_total',
    'gantry_query_duration_seconds_bucket',
    'gantry_instances',
    'gantry_storage_free_bytes',
    'gantry_storage_min_free_bytes',
    'gantry_storage_reserved_bytes',
    'gantry_index_size_bytes',
    'process_resident_memory_bytes',
  ]) {
    assert.ok(metricNamesIn(exprs).includes(needed), `the dashboard shows no ${needed}`);
  }
});

test('every alert rule has a duration, a severity and a summary and description', () => {
  const rules = alertRules();
  assert.ok(rules.length > 0);
  for (const rule of rules) {
    assert.ok(rule.alert && rule.expr, `a rule without alert or expr: ${JSON.stringify(rule)}`);
    assert.match(String(rule.for ?? ''), /^\d+[smhd]$/, `${rule.alert}: no for`);
    assert.ok(['critical', 'warning', 'info'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity ${rule.labels?.severity}`);
    assert.ok(rule.annotations?.summary && rule.annotations.description, `${rule.alert}: summary or description missing`);
  }
});

// The description an operator is paged with named three of the four checks of /readyz (five now): a node whose
// storage.path took no writes (remounted read-only) was not ready for a reason it did not list.
test('GantryNotReady names every check of /readyz', () => {
  const description = alertRules().find((rule) => rule.alert === 'GantryNotReady')?.annotations?.description ?? '';
  const checks: Array<[string, RegExp]> = [
    ['dicomListener', /DICOM listener/],
    ['index', /index/],
    ['disk', /storage\.minFreeBytes/],
    ['storage', /storage\.path (does not take|takes no) writes/],
    ['deidentification', /de-identification threads keep failing/],
  ];
  for (const [check, phrase] of checks) assert.match(description.replace(/\s+/g, ' '), phrase, `the ${check} check`);
});

test('promtool check rules accepts docker/prometheus/alerts.yml', async (t) => {
  const result = await promtool(t, ['check', 'rules', ALERTS_YML]);
  if (!result) return;
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /SUCCESS: \d+ rules found/);
});

test('promtool check config accepts docker/prometheus/prometheus.yml (rule file path rewritten to a local copy)', async (t) => {
  // rule_files names the container path (/etc/prometheus/alerts.yml), which promtool resolves on
  // this machine: check a copy whose rule_files point at a copy of alerts.yml beside it.
  const dir = scratchDir('prometheus-config');
  const promConfig = readYaml(PROMETHEUS_YML);
  promConfig.rule_files = (promConfig.rule_files as string[]).map((file) => {
    const local = join(dir, posix.basename(file));
    writeFileSync(local, readFileSync(join(DOCKER, 'prometheus', posix.basename(file)), 'utf8'));
    return local;
  });
  writeFileSync(join(dir, 'prometheus.yml'), stringify(promConfig));
  const result = await promtool(t, ['check', 'config', join(dir, 'prometheus.yml')]);
  if (!result) return;
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /SUCCESS/);
});

/**
 * Series in promtool's notation ('0+10x60': from 0, +10 a minute, 60 minutes) and the alerts that
 * must be firing at `at` (labels beyond alertname and severity). An empty `fires` must stay quiet.
 */
interface Scenario {
  alert: string;
  series: Array<[string, string]>;
  at: string;
  fires: Array<Record<string, string>>;
}

const L = 'job="gantry",instance="gantry:8080"';
const BASE = { job: 'gantry', instance: 'gantry:8080' };
const RESEARCH = { ...BASE, destination: 'research-pacs' };

const SCENARIOS: Scenario[] = [
  { alert: 'GantryDown', series: [[`up{${L}}`, '1 1 0x10']], at: '8m', fires: [BASE] },
  { alert: 'GantryDown', series: [[`up{${L}}`, '1x10']], at: '8m', fires: [] },
  { alert: 'GantryNotReady', series: [[`gantry_ready{${L}}`, '0x10']], at: '6m', fires: [BASE] },
  { alert: 'GantryNotReady', series: [[`gantry_ready{${L}}`, '1x10']], at: '6m', fires: [] },
  { alert: 'GantryMemoryHigh', series: [[`process_resident_memory_bytes{${L}}`, '2000000000x30']], at: '20m', fires: [BASE] },
  { alert: 'GantryMemoryHigh', series: [[`process_resident_memory_bytes{${L}}`, '150000000x30']], at: '20m', fires: [] },
  {
    alert: 'GantryDiskLow',
    series: [[`gantry_storage_free_bytes{${L}}`, '1500x30'], [`gantry_storage_reserved_bytes{${L}}`, '0x30'], [`gantry_storage_min_free_bytes{${L}}`, '1000x30']],
    at: '15m',
    fires: [BASE],
  },
  {
    alert: 'GantryDiskLow',
    series: [[`gantry_storage_free_bytes{${L}}`, '5000x30'], [`gantry_storage_reserved_bytes{${L}}`, '0x30'], [`gantry_storage_min_free_bytes{${L}}`, '1000x30']],
    at: '15m',
    fires: [],
  },
  {
    alert: 'GantryDiskFull',
    series: [[`gantry_storage_free_bytes{${L}}`, '500x10'], [`gantry_storage_reserved_bytes{${L}}`, '0x10'], [`gantry_storage_min_free_bytes{${L}}`, '1000x10']],
    at: '5m',
    fires: [BASE],
  },
  {
    alert: 'GantryDiskFull',
    series: [[`gantry_storage_free_bytes{${L}}`, '1500x10'], [`gantry_storage_reserved_bytes{${L}}`, '0x10'], [`gantry_storage_min_free_bytes{${L}}`, '1000x10']],
    at: '5m',
    fires: [],
  },
  // Free above the floor, but not once the room kept for waiting copies is taken off: stores are refused.
  {
    alert: 'GantryDiskFull',
    series: [[`gantry_storage_free_bytes{${L}}`, '1500x10'], [`gantry_storage_reserved_bytes{${L}}`, '800x10'], [`gantry_storage_min_free_bytes{${L}}`, '1000x10']],
    at: '5m',
    fires: [BASE],
  },
  {
    alert: 'GantryDiskLow',
    series: [[`gantry_storage_free_bytes{${L}}`, '5000x30'], [`gantry_storage_reserved_bytes{${L}}`, '3500x30'], [`gantry_storage_min_free_bytes{${L}}`, '1000x30']],
    at: '15m',
    fires: [BASE],
  },
  {
    alert: 'GantryStoreFailures',
    series: [[`gantry_cstore_duration_seconds_count{${L},outcome="failure"}`, '0+1x30'], [`gantry_cstore_duration_seconds_count{${L},outcome="success"}`, '0+100x30']],
    at: '25m',
    fires: [BASE],
  },
  {
    alert: 'GantryStoreFailures',
    series: [[`gantry_cstore_duration_seconds_count{${L},outcome="failure"}`, '3x30'], [`gantry_cstore_duration_seconds_count{${L},outcome="success"}`, '0+100x30']],
    at: '25m',
    fires: [],
  },
  // Falling behind: the backlog grows and the oldest has waited ever longer.
  { alert: 'GantryDeidBacklog', series: [[`gantry_deid_waiting_instances{${L}}`, '100+10x90'], [`gantry_deid_oldest_waiting_seconds{${L}}`, '700+60x90']], at: '60m', fires: [BASE] },
  // Stuck: nothing leaves the backlog.
  { alert: 'GantryDeidBacklog', series: [[`gantry_deid_waiting_instances{${L}}`, '5x90'], [`gantry_deid_oldest_waiting_seconds{${L}}`, '700+60x90']], at: '60m', fires: [BASE] },
  // A steady feed de-identified 15 s behind it (deid.receiveFirst): a flat backlog that is never old.
  { alert: 'GantryDeidBacklog', series: [[`gantry_deid_waiting_instances{${L}}`, '60x90'], [`gantry_deid_oldest_waiting_seconds{${L}}`, '15x90']], at: '60m', fires: [] },
  // A large backlog being worked through.
  { alert: 'GantryDeidBacklog', series: [[`gantry_deid_waiting_instances{${L}}`, '1000-10x90'], [`gantry_deid_oldest_waiting_seconds{${L}}`, '700+60x90']], at: '60m', fires: [] },
  { alert: 'GantryDeidBacklog', series: [[`gantry_deid_waiting_instances{${L}}`, '0 5 0 3 0 0 7 0x80'], [`gantry_deid_oldest_waiting_seconds{${L}}`, '0 1 0 2 0 0 1 0x80']], at: '60m', fires: [] },
  {
    alert: 'GantryQuarantineGrowing',
    series: [[`gantry_deid_instances_total{${L},outcome="quarantined"}`, '0+1x60'], [`gantry_deid_instances_total{${L},outcome="ok"}`, '0+100x60']],
    at: '30m',
    fires: [BASE],
  },
  {
    // Found in the metrics review: new quarantines while an operator deletes as many held ones left
    // the gauge of held instances flat, and the alert, on its delta, silent.
    alert: 'GantryQuarantineGrowing',
    series: [
      [`gantry_deid_instances_total{${L},outcome="quarantined"}`, '5x10 6x10 7x40'],
      [`gantry_instances{${L},state="quarantined"}`, '3x60'],
    ],
    at: '30m',
    fires: [BASE],
  },
  {
    alert: 'GantryQuarantineGrowing',
    series: [[`gantry_deid_instances_total{${L},outcome="quarantined"}`, '5x60'], [`gantry_deid_instances_total{${L},outcome="ok"}`, '0+100x60']],
    at: '30m',
    fires: [],
  },
  {
    alert: 'GantryDeidFailures',
    series: [[`gantry_deid_instances_total{${L},outcome="failed"}`, '0 0 1x20'], [`gantry_deid_instances_total{${L},outcome="ok"}`, '0+50x20']],
    at: '5m',
    fires: [BASE],
  },
  {
    alert: 'GantryDeidFailures',
    series: [[`gantry_deid_instances_total{${L},outcome="failed"}`, '2x20'], [`gantry_deid_instances_total{${L},outcome="ok"}`, '0+50x20']],
    at: '5m',
    fires: [],
  },
  {
    alert: 'GantryOutboxGrowing',
    series: [
      [`gantry_outbox_items{${L},destination="research-pacs",state="queued"}`, '0+10x120'],
      [`gantry_outbox_oldest_age_seconds{${L},destination="research-pacs"}`, '0+60x120'],
      // Old but not growing, and growing but young: neither fires.
      [`gantry_outbox_items{${L},destination="archive",state="queued"}`, '5x120'],
      [`gantry_outbox_oldest_age_seconds{${L},destination="archive"}`, '0+60x120'],
      [`gantry_outbox_items{${L},destination="fast",state="queued"}`, '0+10x120'],
      [`gantry_outbox_oldest_age_seconds{${L},destination="fast"}`, '30x120'],
      [`gantry_outbox_items{${L},destination="research-pacs",state="sent"}`, '0+10x120'],
    ],
    at: '100m',
    fires: [{ ...RESEARCH, state: 'queued' }],
  },
  {
    alert: 'GantryOutboxStalled',
    series: [[`gantry_outbox_oldest_age_seconds{${L},destination="research-pacs"}`, '0+60x400'], [`gantry_outbox_oldest_age_seconds{${L},destination="archive"}`, '0x400']],
    at: '390m',
    fires: [RESEARCH],
  },
  {
    // Failures on the wire over attempts: a standard status, a folded one and association_ended count;
    // items never sent (no attempt) do not, however many.
    alert: 'GantryForwardFailures',
    series: [
      [`gantry_forward_failures_total{${L},destination="research-pacs",status="0xA700"}`, '0+2x60'],
      [`gantry_forward_failures_total{${L},destination="research-pacs",status="0xA7xx"}`, '0+2x60'],
      [`gantry_forward_failures_total{${L},destination="research-pacs",status="association_ended"}`, '0+2x60'],
      [`gantry_forward_attempts_total{${L},destination="research-pacs"}`, '0+100x60'],
      [`gantry_forward_failures_total{${L},destination="archive",status="0xA700"}`, '0+1x60'],
      [`gantry_forward_failures_total{${L},destination="archive",status="refused"}`, '0+20x60'],
      [`gantry_forward_failures_total{${L},destination="archive",status="send_error"}`, '0+10x60'],
      [`gantry_forward_attempts_total{${L},destination="archive"}`, '0+100x60'],
    ],
    at: '45m',
    fires: [RESEARCH],
  },
  {
    // Nothing went on the wire: unreadable or missing copies are no attempts, and no reason for this alert.
    alert: 'GantryForwardFailures',
    series: [
      [`gantry_forward_failures_total{${L},destination="research-pacs",status="unreadable"}`, '0+5x60'],
      [`gantry_forward_failures_total{${L},destination="research-pacs",status="missing"}`, '0+5x60'],
      [`gantry_forward_attempts_total{${L},destination="research-pacs"}`, '0x60'],
    ],
    at: '45m',
    fires: [],
  },
  {
    alert: 'GantryForwardDeadLetters',
    series: [[`gantry_forward_dead_letters_total{${L},destination="research-pacs"}`, '0 0 0 2x20'], [`gantry_forward_dead_letters_total{${L},destination="archive"}`, '3x20']],
    at: '5m',
    fires: [RESEARCH],
  },
  {
    alert: 'GantryDestinationUnreachable',
    series: [
      [`gantry_forward_unreachable_total{${L},destination="research-pacs"}`, '0+1x120'],
      [`gantry_forward_successes_total{${L},destination="research-pacs",status="0x0000"}`, '0x120'],
      [`gantry_forward_unreachable_total{${L},destination="archive"}`, '0+1x120'],
      [`gantry_forward_successes_total{${L},destination="archive",status="0x0000"}`, '0+5x120'],
    ],
    at: '100m',
    fires: [RESEARCH],
  },
  // At forward.retry.maxSeconds (3600 by default) an unreachable destination is tried about once an
  // hour: over an hour's window the attempts came and went, and the alert never stayed for 30 minutes
  // (found in the operations review).
  {
    alert: 'GantryDestinationUnreachable',
    series: [
      [`gantry_forward_unreachable_total{${L},destination="research-pacs"}`, '0x60 1x60 2x60 3x60 4x60 5x60'],
      [`gantry_forward_successes_total{${L},destination="research-pacs",status="0x0000"}`, '0x365'],
    ],
    at: '330m',
    fires: [RESEARCH],
  },
];

test('the alerts fire on the series they are meant for and stay quiet otherwise (promtool test rules)', async (t) => {
  const document = readYaml(ALERTS_YML);
  const rules = alertRules(document);
  const untested = rules.map((rule) => rule.alert).filter((alert) => !SCENARIOS.some((scenario) => scenario.alert === alert && scenario.fires.length > 0));
  assert.deepEqual(untested, [], 'alerts without a scenario that makes them fire');
  const severity = new Map(rules.map((rule) => [rule.alert, rule.labels?.severity ?? '']));

  // promtool compares annotations too; their text is checked above, their templates by check rules.
  for (const rule of rules) delete rule.annotations;
  const dir = scratchDir('alert-scenarios');
  writeFileSync(join(dir, 'alerts.yml'), stringify(document));
  const tests = SCENARIOS.map((scenario) => ({
    name: `${scenario.alert} ${scenario.fires.length > 0 ? 'fires' : 'stays quiet'}`,
    interval: '1m',
    input_series: scenario.series.map(([series, values]) => ({ series, values })),
    alert_rule_test: [
      {
        eval_time: scenario.at,
        alertname: scenario.alert,
        exp_alerts: scenario.fires.map((labels) => ({ exp_labels: { ...labels, severity: severity.get(scenario.alert) } })),
      },
    ],
  }));
  writeFileSync(join(dir, 'alerts.test.yml'), stringify({ rule_files: ['alerts.yml'], evaluation_interval: '1m', tests }));
  const result = await promtool(t, ['test', 'rules', join(dir, 'alerts.test.yml')]);
  if (!result) return;
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /SUCCESS/);
});
