/**
 * What an operator watches: /metrics scraped around an end-to-end run (storescu → Gantry →
 * de-identification → storescp, plus a rejected association and a C-FIND) moves each counter by the
 * right amount and names no UID; /healthz answers; /readyz turns unready when the disk floor is crossed
 * and when the DICOM listener closes; `gantry status` shows the same state.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { storescu } from '../helpers/dcmtk.js';
import { startCountingServer, startStorescp, waitUntil } from '../helpers/destinations.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { DCMTK_ENV, freePort, GANTRY_CLI, run, sleep } from '../helpers/processes.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { scratchDir } from '../helpers/scratch.js';
import { indexedRows } from '../helpers/stored.js';
import { CT_IMAGE_STORAGE, EXPLICIT_LE, newUid, writeCorpus } from '../helpers/synthetic-dicom.js';
import { DATABASE_FILE } from '../../src/db/database.js';
import { CommandField, DATASET_PRESENT } from '../../src/dimse/command.js';

const CT_STORAGE = [{ id: 1, abstractSyntax: CT_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] }];

/** One scrape: every sample by its name and labels, e.g. `gantry_instances{state="forwarded"}`. */
type Samples = Map<string, number>;

async function scrape(httpPort: number): Promise<{ text: string; samples: Samples }> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  return { text, samples: parseExposition(text) };
}

/** The Prometheus text format: `name{label="value",...} number`; comments skipped. */
function parseExposition(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
    assert.ok(match, `a malformed exposition line: ${line}`);
    const labels = match[2] ? sortLabels(match[2]) : '';
    samples.set(`${match[1]}${labels}`, Number(match[3]));
  }
  return samples;
}

/** Labels in name order, so a test can name a series without knowing prom-client's order. */
function sortLabels(block: string): string {
  const pairs = [...block.slice(1, -1).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((pair) => `${pair[1]}="${pair[2]}"`);
  return `{${pairs.sort().join(',')}}`;
}

/** The sum of every sample of `name` whose labels include all of `labels`. */
function total(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [key, value] of samples) {
    const brace = key.indexOf('{');
    const sampleName = brace < 0 ? key : key.slice(0, brace);
    if (sampleName !== name) continue;
    if (Object.entries(labels).every(([label, wanted]) => key.includes(`${label}="${wanted}"`))) sum += value;
  }
  return sum;
}

async function readyz(httpPort: number): Promise<{ status: number; body: { status: string; checks: Array<{ name: string; ok: boolean; detail?: string }> } }> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
  return { status: response.status, body: (await response.json()) as { status: string; checks: Array<{ name: string; ok: boolean; detail?: string }> } };
}

test('/metrics moves by the right amounts around an end-to-end run, with bounded labels', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp', 'findscu', 'echoscu'))) return;
  const dir = scratchDir('observability-metrics');
  const corpusDir = join(dir, 'corpus');
  mkdirSync(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: 5 });
  assert.equal(corpus.length, 10);
  // Three destinations: one that stores everything; one that refuses each instance once (0xA700) and
  // one instance always, with a code outside the standard (0xA7FE); one that is not there.
  const scp = await startStorescp(join(dir, 'archive'));
  t.after(() => scp.stop());
  let alwaysRefused: string | undefined;
  const picky = await startCountingServer((uid, attempt) => {
    alwaysRefused ??= uid;
    if (uid === alwaysRefused) return 0xa7fe;
    return attempt === 1 ? 0xa700 : 0x0000;
  });
  t.after(() => picky.close());
  const nowherePort = await freePort();
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    query: { sourceCallers: ['HOSPITAL@127.0.0.1'] },
    forward: {
      stableSeconds: 1,
      retry: { baseSeconds: 0.2, multiplier: 2, maxSeconds: 1, maxAttempts: 3 },
      destinations: [
        { name: 'archive', aeTitle: 'STORESCP', host: '127.0.0.1', port: scp.port },
        { name: 'picky', aeTitle: 'PICKY', host: '127.0.0.1', port: picky.port },
        { name: 'nowhere', aeTitle: 'NOWHERE', host: '127.0.0.1', port: nowherePort },
      ],
    },
  });
  t.after(() => gantry.stop());

  const health = await fetch(`http://127.0.0.1:${gantry.httpPort}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ok' });
  assert.equal((await fetch(`http://127.0.0.1:${gantry.httpPort}/nothing`)).status, 404);
  assert.equal((await fetch(`http://127.0.0.1:${gantry.httpPort}/metrics`, { method: 'POST' })).status, 405);

  const before = (await scrape(gantry.httpPort)).samples;
  assert.equal(total(before, 'gantry_ready'), 1);
  // Node's default process metrics are exported too.
  assert.ok(total(before, 'process_resident_memory_bytes') > 0);

  const sent = await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path), ['-aet', 'MODALITY7']);
  assert.equal(sent.acknowledged.length, 10, sent.output.slice(-2000));
  const echo = await run('echoscu', ['-aet', 'MODALITY7', '-aec', 'NOT_GANTRY', '127.0.0.1', String(gantry.port)], { env: DCMTK_ENV, timeoutMs: 20_000 });
  assert.notEqual(echo.code, 0, 'a wrong called AE title is rejected');
  const find = await run('findscu', ['-S', '-aet', 'HOSPITAL', '-aec', gantry.aeTitle, '-k', '0008,0052=STUDY', '-k', '0020,000D', '127.0.0.1', String(gantry.port)], {
    env: DCMTK_ENV,
    timeoutMs: 30_000,
  });
  assert.equal(find.code, 0, `${find.stdout}${find.stderr}`);

  let after: Samples = before;
  let text = '';
  await waitUntil('the archive has all, picky all but its dead letter, nowhere was tried', 60_000, async () => {
    ({ text, samples: after } = await scrape(gantry.httpPort));
    return (
      total(after, 'gantry_forward_successes_total', { destination: 'archive' }) === 10 &&
      total(after, 'gantry_forward_successes_total', { destination: 'picky' }) === 9 &&
      total(after, 'gantry_forward_dead_letters_total', { destination: 'picky' }) === 1 &&
      // Studies are reported done when confirmations are settled, up to 200 ms later.
      total(after, 'gantry_forward_study_delay_seconds_count') === 3 &&
      total(after, 'gantry_forward_unreachable_total', { destination: 'nowhere' }) >= 1
    );
  });
  const moved = (name: string, labels: Record<string, string> = {}) => total(after, name, labels) - total(before, name, labels);

  // Receive: 10 stores on one association of a caller outside the config ("other"), the C-FIND caller by name.
  assert.equal(moved('gantry_cstore_requests_total', { status: '0x0000', sop_class_family: 'CT', transfer_syntax: 'Explicit VR Little Endian' }), 10);
  assert.equal(moved('gantry_cstore_requests_total'), 10);
  assert.equal(moved('gantry_cstore_duration_seconds_count', { outcome: 'success' }), 10);
  assert.equal(moved('gantry_associations_accepted_total', { calling_ae: 'other' }), 1);
  assert.equal(moved('gantry_associations_accepted_total', { calling_ae: 'HOSPITAL' }), 1);
  assert.equal(moved('gantry_associations_accepted_total'), 2);
  assert.equal(moved('gantry_associations_rejected_total', { reason: 'called_ae_title' }), 1);
  // The socket carries each dataset (the file without its 128-byte preamble and meta header) plus
  // PDU and command overhead: at least the datasets' bytes, and not twice the files.
  const fileBytes = corpusBytes(corpus.map((instance) => instance.path));
  assert.ok(moved('gantry_received_bytes_total') >= fileBytes - 10 * 400, `${moved('gantry_received_bytes_total')} bytes received for ${fileBytes} bytes of files`);
  assert.ok(moved('gantry_received_bytes_total') < fileBytes * 2);
  assert.equal(moved('gantry_query_requests_total', { operation: 'find', status: '0x0000' }), 1);
  assert.equal(moved('gantry_query_duration_seconds_count', { operation: 'find' }), 1);
  // De-identification and forwarding.
  assert.equal(moved('gantry_deid_instances_total', { outcome: 'ok' }), 10);
  assert.equal(moved('gantry_deid_duration_seconds_count', { outcome: 'ok' }), 10);
  assert.equal(moved('gantry_forward_attempts_total', { destination: 'archive' }), 10);
  assert.equal(moved('gantry_forward_successes_total', { destination: 'archive', status: '0x0000' }), 10);
  assert.equal(moved('gantry_forward_failures_total', { destination: 'archive' }), 0);
  assert.equal(moved('gantry_forward_delay_seconds_count', { destination: 'archive' }), 10);
  assert.equal(moved('gantry_forward_study_delay_seconds_count', { destination: 'archive' }), 2, 'two studies');
  assert.equal(total(after, 'gantry_outbox_items', { destination: 'archive', state: 'sent' }), 10);
  assert.equal(total(after, 'gantry_outbox_items', { destination: 'archive', state: 'queued' }), 0);
  assert.equal(total(after, 'gantry_outbox_oldest_age_seconds', { destination: 'archive' }), 0);
  // picky: nine instances refused once then stored, one refused three times (its code folded).
  assert.equal(moved('gantry_forward_attempts_total', { destination: 'picky' }), 9 * 2 + 3);
  assert.equal(moved('gantry_forward_failures_total', { destination: 'picky', status: '0xA700' }), 9);
  assert.equal(moved('gantry_forward_failures_total', { destination: 'picky', status: '0xA7xx' }), 3);
  assert.equal(moved('gantry_forward_dead_letters_total', { destination: 'picky' }), 1);
  assert.equal(
    moved('gantry_forward_study_delay_seconds_count', { destination: 'picky' }),
    1,
    `the study with the dead letter is not done:\n${text.split('\n').filter((line) => line.includes('study_delay_seconds_count')).join('\n')}`,
  );
  assert.equal(total(after, 'gantry_outbox_items', { destination: 'picky', state: 'dead' }), 1);
  // nowhere: nothing on the wire, the queue waits and ages.
  assert.equal(moved('gantry_forward_attempts_total', { destination: 'nowhere' }), 0);
  assert.equal(total(after, 'gantry_outbox_items', { destination: 'nowhere', state: 'queued' }), 10);
  assert.ok(total(after, 'gantry_outbox_oldest_age_seconds', { destination: 'nowhere' }) > 0);
  assert.equal(total(after, 'gantry_instances', { state: 'deidentified' }), 10, 'not forwarded until every destination has them');
  assert.equal(total(after, 'gantry_instances', { state: 'received' }), 0);
  assert.equal(total(after, 'gantry_deid_pool_threads'), 2);
  assert.ok(total(after, 'gantry_index_size_bytes') > 0);
  assert.ok(total(after, 'gantry_storage_free_bytes') > 0);

  // No UID and no patient identifier in any label.
  for (const instance of corpus) {
    for (const value of [instance.sopInstanceUid, instance.studyInstanceUid, instance.seriesInstanceUid, instance.patientId]) {
      assert.ok(!text.includes(value), `/metrics names ${value}`);
    }
  }
  assert.doesNotMatch(text, /="\d+(\.\d+){4,}"/, 'a label value looks like a UID');

  // The log: pino JSON lines, each association's lines carrying its id, one line per association
  // (accepted, then released or rejected), no patient data.
  const lines = gantry
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const accepted = lines.filter((line) => line.msg === 'association accepted');
  assert.equal(accepted.length, 2);
  for (const line of accepted) {
    assert.match(String(line.assoc), /^[0-9a-z]+-\d+$/);
    assert.ok(lines.some((other) => other.assoc === line.assoc && other.msg === 'association released'), `association ${line.assoc} has its release line`);
  }
  assert.equal(lines.filter((line) => line.msg === 'association rejected').length, 1);
  assert.doesNotMatch(gantry.output(), /PAT00000|Doe\^Patient/, 'patient data in the log');

  // gantry status reads the same state from the index.
  const status = await run(process.execPath, [GANTRY_CLI, 'status', '--config', gantry.configPath, '-n', '20'], { timeoutMs: 30_000 });
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /node: running \(pid \d+\), ready/);
  assert.match(status.stdout, /deidentified 10/);
  assert.match(status.stdout, /^archive\s+0\s+10\s+0\s+-$/m);
  assert.match(status.stdout, /^picky\s+0\s+9\s+1\s+-$/m);
  assert.match(status.stdout, /^nowhere\s+10\s+0\s+0\s+\d+ s$/m);
  assert.match(status.stdout, /picky {2}dead {2}3 {2}0xA7FE {2}picky answered 0xA7FE/);
  assert.match(status.stdout, /nowhere {2}queued {2}0 {2}- {2}nowhere unreachable/);
});

function corpusBytes(paths: string[]): number {
  return paths.reduce((sum, path) => sum + statSync(path).size, 0);
}

test('/readyz is unready below the disk floor and while the listener closes; /healthz answers throughout', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('observability-ready');
  // A floor no disk reaches: C-STORE would answer 0xA700, so Gantry is not ready for instances.
  const gantry = await startGantryProcess(join(dir, 'gantry'), { storage: { minFreeBytes: Number.MAX_SAFE_INTEGER } });
  t.after(() => gantry.stop('SIGKILL'));

  const low = await readyz(gantry.httpPort);
  assert.equal(low.status, 503);
  assert.equal(low.body.status, 'unready');
  const disk = low.body.checks.find((check) => check.name === 'disk');
  assert.equal(disk?.ok, false);
  assert.match(disk?.detail ?? '', /storage\.minFreeBytes/);
  // What is wrong, and what to do about it.
  assert.match(disk?.detail ?? '', /free space under storage\.path/);
  assert.equal(low.body.checks.find((check) => check.name === 'dicomListener')?.ok, true);
  assert.equal(low.body.checks.find((check) => check.name === 'index')?.ok, true);
  assert.equal(low.body.checks.find((check) => check.name === 'storage')?.ok, true, 'storage.path takes writes');
  assert.equal(low.body.checks.find((check) => check.name === 'deidentification')?.ok, true, 'the de-identification threads work');
  assert.equal((await fetch(`http://127.0.0.1:${gantry.httpPort}/healthz`)).status, 200);
  const metrics = parseExposition(await (await fetch(`http://127.0.0.1:${gantry.httpPort}/metrics`)).text());
  assert.equal(total(metrics, 'gantry_ready'), 0);

  // A store meanwhile is refused 0xA700, and that failure is one log line (docs/operations.md section
  // 6), on its association, saying why with the free disk against the floor.
  const corpusDir = join(dir, 'corpus');
  mkdirSync(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 1 });
  const refused = await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path), ['-aet', 'MODALITY7'], 30_000);
  assert.match(refused.refused[0]?.status ?? '', /OutOfResources/, refused.output);
  await waitUntil('the association ended', 5000, () => gantry.output().includes('"msg":"association released"'));
  const logged = gantry
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const failures = logged.filter((line) => line.level === 'warn' || line.level === 'error');
  assert.equal(failures.length, 1, `one line for the one refused store:\n${failures.map((line) => JSON.stringify(line)).join('\n')}`);
  assert.equal(typeof failures[0]?.assoc, 'string');
  assert.match(String(failures[0]?.comment), /below storage\.minFreeBytes \(\d+ bytes; \d+ free under storage\.path\)/);

  // The floor lowered by a reload (SIGHUP): ready.
  const config = parse(readFileSync(gantry.configPath, 'utf8')) as { storage: { minFreeBytes: number } };
  config.storage.minFreeBytes = 0;
  writeFileSync(gantry.configPath, stringify(config));
  gantry.child.kill('SIGHUP');
  await waitUntil('/readyz ready after the floor was lowered', 10_000, async () => (await readyz(gantry.httpPort)).status === 200);
  // And unready again when the floor is crossed while running.
  config.storage.minFreeBytes = Number.MAX_SAFE_INTEGER;
  writeFileSync(gantry.configPath, stringify(config));
  gantry.child.kill('SIGHUP');
  await waitUntil('/readyz unready after the floor was raised', 10_000, async () => (await readyz(gantry.httpPort)).status === 503);
  config.storage.minFreeBytes = 0;
  writeFileSync(gantry.configPath, stringify(config));
  gantry.child.kill('SIGHUP');
  await waitUntil('/readyz ready again', 10_000, async () => (await readyz(gantry.httpPort)).status === 200);
  const head = await fetch(`http://127.0.0.1:${gantry.httpPort}/readyz`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '', 'HEAD answers without a body');

  // Shutting down with a C-STORE in flight (its command sent, its dataset not yet): the listener
  // closes first, and /readyz says so while the store may still finish (the HTTP endpoints go last).
  const held = await RawAssociation.open(gantry.port);
  t.after(() => held.destroy());
  assert.equal((await held.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: CT_STORAGE })).kind, 'accept');
  held.sendCommand(1, {
    commandField: CommandField.CStoreRq,
    messageId: 1,
    priority: 0,
    affectedSopClassUid: CT_IMAGE_STORAGE,
    affectedSopInstanceUid: newUid(),
    commandDataSetType: DATASET_PRESENT,
  });
  await sleep(200);
  gantry.child.kill('SIGTERM');
  let closing: Awaited<ReturnType<typeof readyz>> | undefined;
  await waitUntil('/readyz unready while the listener is closed', 8000, async () => {
    closing = await readyz(gantry.httpPort);
    return closing.status === 503;
  });
  const listener = closing?.body.checks.find((check) => check.name === 'dicomListener');
  assert.equal(listener?.ok, false);
  assert.match(listener?.detail ?? '', /dicom\.port/);
  assert.match(listener?.detail ?? '', /Gantry is stopping/);
  assert.equal((await fetch(`http://127.0.0.1:${gantry.httpPort}/healthz`)).status, 200);
  held.destroy();
});

test('/readyz is unready while another process holds the index\'s write lock and while index.sqlite is not the file the node opened; ready again when that clears', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('observability-index');
  const gantry = await startGantryProcess(join(dir, 'gantry'));
  t.after(() => gantry.stop('SIGKILL'));
  const indexCheck = async () => (await readyz(gantry.httpPort)).body.checks.find((check) => check.name === 'index');
  assert.equal((await readyz(gantry.httpPort)).status, 200);

  // An operator's sqlite3 shell left in a write transaction: every C-STORE waits out the busy timeout
  // (5 s) and is answered 0xA700, so the node cannot take instances. SELECT 1 reads no page and takes
  // no lock: it said ready throughout.
  const other = new Database(join(gantry.storagePath, DATABASE_FILE), { timeout: 0 });
  t.after(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  await waitUntil('/readyz unready while another process holds the write lock', 15_000, async () => (await readyz(gantry.httpPort)).status === 503);
  const locked = await indexCheck();
  assert.equal(locked?.ok, false);
  assert.match(locked?.detail ?? '', /lock/);
  assert.match(locked?.detail ?? '', /0xA700/);
  // What the detail says: a store meanwhile is refused.
  const corpusDir = join(dir, 'corpus');
  mkdirSync(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 1 });
  const refused = await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path), ['-aet', 'MODALITY7'], 30_000);
  assert.equal(refused.acknowledged.length, 0, refused.output);
  assert.match(refused.refused[0]?.status ?? '', /OutOfResources/, refused.output);
  other.exec('ROLLBACK');
  await waitUntil('/readyz ready once the lock is released', 10_000, async () => (await readyz(gantry.httpPort)).status === 200);

  // A lock taken for a moment (a gantry command's write) is no failure: the stores wait for it. Nor
  // are two such moments 6 s apart, with no probe of /readyz between them.
  other.exec('BEGIN IMMEDIATE');
  assert.equal((await readyz(gantry.httpPort)).status, 200, 'a write lock just taken is not yet a failure');
  other.exec('ROLLBACK');
  await sleep(6000);
  other.exec('BEGIN IMMEDIATE');
  const again = await readyz(gantry.httpPort);
  other.exec('ROLLBACK');
  assert.equal(again.status, 200, `two brief locks 6 s apart are not one lock held 6 s: ${JSON.stringify(again.body)}`);

  // index.sqlite moved away (a clean-up script, a restore over a running node): the node keeps writing
  // into the file it opened, which the next start would not find; every page it reads is in its cache,
  // so no query notices.
  const file = join(gantry.storagePath, DATABASE_FILE);
  renameSync(file, `${file}.moved`);
  await waitUntil('/readyz unready while index.sqlite is gone', 10_000, async () => (await readyz(gantry.httpPort)).status === 503);
  assert.match((await indexCheck())?.detail ?? '', /index\.sqlite/);
  renameSync(`${file}.moved`, file);
  await waitUntil('/readyz ready once index.sqlite is back', 10_000, async () => (await readyz(gantry.httpPort)).status === 200);
});

test('the log lines of a C-FIND or a C-MOVE carry the id of their association', async (t) => {
  if (!(await needPeers(t, 'storescu', 'findscu', 'movescu'))) return;
  const dir = scratchDir('observability-query-log');
  const corpusDir = join(dir, 'corpus');
  mkdirSync(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: 1 });
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    query: {
      sourceCallers: ['HOSPITAL@127.0.0.1'],
      maxResults: 1,
      // Listed, and nothing listens there.
      moveDestinations: [{ aeTitle: 'CLOSED', host: '127.0.0.1', port: await freePort(), sourceSide: true }],
    },
  });
  t.after(() => gantry.stop('SIGKILL'));
  assert.equal((await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path))).acknowledged.length, 2);
  // The move sends de-identified copies: with none yet, nothing would be sent and no line logged.
  await waitUntil('de-identified', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'deidentified'));

  const queryDir = join(dir, 'find');
  mkdirSync(queryDir, { recursive: true });
  await run('findscu', ['-S', '-aet', 'HOSPITAL', '-aec', gantry.aeTitle, '-k', 'QueryRetrieveLevel=STUDY', '-k', 'StudyInstanceUID', '127.0.0.1', String(gantry.port)], { env: DCMTK_ENV, timeoutMs: 30_000, cwd: queryDir });
  const study = corpus[0]?.studyInstanceUid ?? '';
  await run('movescu', ['-S', '-aet', 'HOSPITAL', '-aec', gantry.aeTitle, '-aem', 'CLOSED', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', String(gantry.port)], {
    env: DCMTK_ENV,
    timeoutMs: 30_000,
  });
  const lines = () =>
    gantry
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const moveLine = 'Move Destination cannot be reached';
  await waitUntil(`the move's line logged:\n${gantry.output()}`, 10_000, () => lines().some((line) => String(line.msg).includes(moveLine)));
  const move = lines().find((line) => String(line.msg).includes(moveLine));
  assert.match(String(move?.assoc), /^[0-9a-z]+-\d+$/, JSON.stringify(move));
  assert.equal(move?.calling, 'HOSPITAL', JSON.stringify(move));
  // The C-FIND cut at query.maxResults: one line, on its association, saying so. It was two, the
  // first without the association and with a field of its own named "level" after pino's, which
  // replaced it: jq 'select(.level == "warn")' (operations.md section 6) missed the line.
  const cut = lines().filter((line) => JSON.stringify(line).includes('maxResults'));
  assert.equal(cut.length, 1, cut.map((line) => JSON.stringify(line)).join('\n'));
  assert.match(String(cut[0]?.assoc), /^[0-9a-z]+-\d+$/);
  assert.equal(cut[0]?.level, 'warn');
  for (const line of lines()) assert.ok(['trace', 'debug', 'info', 'warn', 'error', 'fatal'].includes(String(line.level)), JSON.stringify(line));
});
