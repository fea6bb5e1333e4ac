/**
 * SIGHUP reloads, in process: what needs a restart is named until the node restarts, and reloads
 * asked one after the other apply in that order.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { startGantry, type RunningGantry } from '../../src/app.js';
import { parseConfigText, type LoadedConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { openDatabase } from '../../src/db/database.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { Outbox } from '../../src/queue/outbox.js';
import { forwardStudy } from '../../src/cli/queue.js';
import { instanceRecord, openTestIndex } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

function loadedConfig(storagePath: string, changes: { dicom?: ConfigInput['dicom']; storage?: ConfigInput['storage'] } = {}): LoadedConfig {
  const input: ConfigInput = {
    dicom: { host: '127.0.0.1', port: 0, ...changes.dicom },
    http: { host: '127.0.0.1', port: 0 },
    storage: { path: storagePath, minFreeBytes: 0, ...changes.storage },
    deid: { secret: 'the secret of the test suite', workers: 1 },
    log: { level: 'silent' },
  };
  return { config: parseConfigText(stringify(input), 'reload-test.yaml'), source: 'reload-test.yaml', embedded: false };
}

async function startNode(name: string, t: { after(fn: () => Promise<void>): void }): Promise<{ gantry: RunningGantry; storagePath: string }> {
  const storagePath = join(scratchDir(name), 'data');
  const gantry = await startGantry(loadedConfig(storagePath), silentLogger());
  t.after(() => gantry.stop());
  return { gantry, storagePath };
}

async function readyStatus(gantry: RunningGantry): Promise<number> {
  return (await fetch(`http://127.0.0.1:${gantry.http.port}/readyz`)).status;
}

test('a key that needs a restart is named at every reload until the node restarts, not only at the first', async (t) => {
  const { gantry, storagePath } = await startNode('reload-restart-keys', t);
  const changed = loadedConfig(storagePath, { dicom: { idleTimeoutSeconds: 60 } });
  assert.deepEqual(await gantry.reload(changed), ['dicom.idleTimeoutSeconds']);
  // The node still aborts idle associations after 300 s: a second reload must still say so.
  assert.deepEqual(await gantry.reload(changed), ['dicom.idleTimeoutSeconds']);
  // Back to what the node runs with: nothing waits for a restart any more.
  assert.deepEqual(await gantry.reload(loadedConfig(storagePath)), []);
  // storage.path spelled otherwise, the same folder: no restart (found in a review).
  assert.deepEqual(await gantry.reload(loadedConfig(`${storagePath}/`)), []);
  assert.deepEqual(await gantry.reload(loadedConfig(relative(process.cwd(), storagePath))), []);
});

test('reloads apply in the order they were asked, whatever their host names take to resolve', async (t) => {
  const { gantry, storagePath } = await startNode('reload-order', t);
  assert.equal(await readyStatus(gantry), 200);
  // The first names a host to resolve (a lookup off the event loop); the second resolves nothing.
  const first = loadedConfig(storagePath, { dicom: { allowedCallers: ['CT01@localhost'] }, storage: { minFreeBytes: Number.MAX_SAFE_INTEGER } });
  const second = loadedConfig(storagePath);
  await Promise.all([gantry.reload(first), gantry.reload(second)]);
  assert.equal(await readyStatus(gantry), 200, 'the configuration reloaded last is the one running');
});

// Found in a review: a SIGHUP while the node stops reloaded it all the same: the forwarder could start
// the queues of destinations the reload added, instances were routed again into an outbox being
// drained (or a closed index: an error logged), and the log said "configuration reloaded".
test('a reload asked once the node is stopping is refused, saying why', async () => {
  const storagePath = join(scratchDir('reload-while-stopping'), 'data');
  const gantry = await startGantry(loadedConfig(storagePath), silentLogger());
  const stopped = gantry.stop();
  await assert.rejects(gantry.reload(loadedConfig(storagePath, { dicom: { aeTitle: 'OTHER' } })), /stopping/);
  await stopped;
  await assert.rejects(gantry.reload(loadedConfig(storagePath)), /stopping/);
});

// Found in a review: a reload that removed a destination said nothing of its queued items. They are
// never sent, their instances never count as forwarded, and retention keeps the originals (PHI).
test('queued items of a destination not in the config are named at start and at each reload, with the ways out', async (t) => {
  const storagePath = join(scratchDir('reload-unsent'), 'data');
  mkdirSync(storagePath, { recursive: true });
  const db = openDatabase(join(storagePath, 'index.sqlite'));
  db.pragma('foreign_keys = OFF');
  const insert = db.prepare(
    `INSERT INTO forward_outbox (destination, instance_pk, file_path, sop_class_uid, sop_instance_uid, transfer_syntax_uid, study_pk, routed_at, state, attempts, next_attempt_at, queued_at)
     VALUES (?, ?, 'deidentified/x.dcm', '1.2.840.10008.5.1.4.1.1.2', '2.25.1', '1.2.840.10008.1.2.1', 1, 1, 'queued', 0, 1, 1)`,
  );
  insert.run('old-pacs', 1);
  insert.run('research', 2);
  db.close();
  const lines: string[] = [];
  const log = createLogger('warn', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  const withResearch = (present: boolean): LoadedConfig => {
    const input: ConfigInput = {
      dicom: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      storage: { path: storagePath, minFreeBytes: 0 },
      deid: { secret: 'the secret of the test suite', workers: 1 },
      // An address where nothing listens: its item stays queued.
      forward: { destinations: present ? [{ name: 'research', aeTitle: 'RESEARCH', host: '127.0.0.1', port: 9 }] : [] },
      log: { level: 'warn' },
    };
    return { config: parseConfigText(stringify(input), 'reload-test.yaml'), source: 'reload-test.yaml', embedded: false };
  };
  const gantry = await startGantry(withResearch(true), log);
  t.after(() => gantry.stop());
  const unsent = () => lines.map((line) => JSON.parse(line) as { msg: string; destination?: string; queued?: number }).filter((line) => /never sent/.test(line.msg));
  assert.deepEqual(unsent().map(({ destination, queued }) => ({ destination, queued })), [{ destination: 'old-pacs', queued: 1 }]);
  assert.match(unsent()[0]?.msg ?? '', /gantry queue purge -s queued -d old-pacs/);
  lines.length = 0;
  await gantry.reload(withResearch(false));
  assert.deepEqual(unsent().map(({ destination }) => destination).sort(), ['old-pacs', 'research'], 'the destination the reload removed is named too');
});

/** A destination at an address where nothing listens: what is queued for it stays queued. */
type Destination = NonNullable<NonNullable<ConfigInput['forward']>['destinations']>[number];
function unreachable(name: string, modality?: string): Destination {
  return { name, aeTitle: name.toUpperCase(), host: '127.0.0.1', port: 9, ...(modality ? { when: { attributes: { Modality: modality } } } : {}) };
}

function forwardingConfig(storagePath: string, destinations: Destination[], level: 'warn' | 'silent' = 'silent', stableSeconds?: number): LoadedConfig {
  const input: ConfigInput = {
    dicom: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    storage: { path: storagePath, minFreeBytes: 0 },
    deid: { secret: 'the secret of the test suite', workers: 1 },
    forward: { destinations, ...(stableSeconds === undefined ? {} : { stableSeconds }) },
    log: { level },
  };
  return { config: parseConfigText(stringify(input), 'reload-test.yaml'), source: 'reload-test.yaml', embedded: false };
}

/**
 * A storage folder whose index has two de-identified CT instances, routed to `destinations` (an empty
 * list: routed to nowhere), or not routed yet when none is given.
 */
async function twoDeidentified(t: TestContext, name: string, destinations?: string[]): Promise<string> {
  const storagePath = join(scratchDir(name), 'data');
  mkdirSync(storagePath, { recursive: true });
  await t.test(`two de-identified CT instances, ${destinations === undefined ? 'not routed yet' : `routed to [${destinations.join(', ')}]`}`, async (setup) => {
    const { db, writer } = openTestIndex(setup, storagePath);
    for (const n of [1, 2]) await writer.submit(instanceRecord(n));
    db.prepare(`UPDATE instances SET state = 'deidentified', deid_file_path = 'deidentified/' || id || '.dcm', deid_sop_instance_uid = '2.25.' || id`).run();
    // Copies on disk as the rows say (a preamble and DICM): the start checks the newest copies, and
    // sends those it cannot find back to de-identification.
    const copy = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM')]);
    mkdirSync(join(storagePath, 'deidentified'), { recursive: true });
    for (const path of db.prepare(`SELECT deid_file_path FROM instances`).pluck().all() as string[]) writeFileSync(join(storagePath, path), copy);
    db.prepare(`UPDATE instances SET deid_file_size = ?`).run(copy.length);
    if (destinations === undefined) return;
    const outbox = new Outbox(db);
    assert.equal(outbox.route(outbox.routable(Date.now(), 10).map((instance) => ({ instance, destinations }))), 2 * destinations.length);
    assert.equal(db.prepare(`SELECT count(*) FROM instances WHERE routed_at IS NOT NULL`).pluck().get(), 2);
  });
  return storagePath;
}

/** A storage folder whose index has two de-identified CT instances queued for "research". */
function twoQueuedForResearch(t: TestContext, name: string): Promise<string> {
  return twoDeidentified(t, name, ['research']);
}

/** The items of "research" still queued, read by a connection of the test's own. */
function queuedForResearch(storagePath: string): unknown {
  const db = openDatabase(join(storagePath, 'index.sqlite'));
  try {
    return db.prepare(`SELECT count(*) FROM forward_outbox WHERE destination = 'research' AND state = 'queued'`).pluck().get();
  } finally {
    db.close();
  }
}

/** A warn-level logger whose lines are kept, and the withdrawals those lines announce. */
function withdrawalLog(): { log: ReturnType<typeof createLogger>; withdrawn(): Array<{ destination?: string; items?: number }> } {
  const lines: string[] = [];
  const log = createLogger('warn', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  const withdrawn = () =>
    lines
      .map((line) => JSON.parse(line) as { msg: string; destination?: string; items?: number })
      .filter((line) => /withdrawn/.test(line.msg))
      .map(({ destination, items }) => ({ destination, items }));
  return { log, withdrawn };
}

// Found at the end of the eighth session: a reload that added a destination routed again the
// instances no destination had taken, but a start did so only when it withdrew something. A
// destination added to the file while the node was stopped never got them.
test('a destination added while the node was stopped gets the instances no destination took', async (t) => {
  const storagePath = await twoDeidentified(t, 'start-added', []);
  const gantry = await startGantry(forwardingConfig(storagePath, [unreachable('research')], 'silent', 0.1), silentLogger());
  t.after(() => gantry.stop());
  const deadline = Date.now() + 10_000;
  while (queuedForResearch(storagePath) !== 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(queuedForResearch(storagePath), 2, 'routed again to the destination the file now has');
});

// A start trusts the routing the index recorded and does not read the whole queue again when the file
// gives the same one; gantry forward run with another file queues under other conditions, so it
// makes the next start look again.
test('a start after gantry forward under another file withdraws what its own conditions exclude', async (t) => {
  const storagePath = await twoDeidentified(t, 'start-after-cli-forward');
  const mrOnly = forwardingConfig(storagePath, [unreachable('research', 'MR')]);
  await (await startGantry(mrOnly, silentLogger())).stop();
  const outcome = await forwardStudy(forwardingConfig(storagePath, [unreachable('research')]), '1.2.1', silentLogger());
  assert.equal(outcome.queued, 2, 'the other file takes them');
  const gantry = await startGantry(mrOnly, silentLogger());
  t.after(() => gantry.stop());
  assert.equal(queuedForResearch(storagePath), 0, "withdrawn: the node's file takes MR only");
});

// Found in the final review: gantry forward under another file forgot the recorded routing only when
// it queued something. One whose conditions took none of the study routed it to nowhere, and the
// next start, trusting the record, never routed it again to the destination of its own file.
test('a start after gantry forward under another file that queued nothing routes the study to its own destinations', async (t) => {
  const storagePath = await twoDeidentified(t, 'start-after-cli-forward-nowhere');
  // Not stable for an hour: this start records its routing and routes nothing.
  await (await startGantry(forwardingConfig(storagePath, [unreachable('research')], 'silent', 3600), silentLogger())).stop();
  const outcome = await forwardStudy(forwardingConfig(storagePath, [unreachable('research', 'MR')]), '1.2.1', silentLogger());
  assert.equal(outcome.queued, 0, "the other file's condition takes none");
  const gantry = await startGantry(forwardingConfig(storagePath, [unreachable('research')], 'silent', 0.1), silentLogger());
  t.after(() => gantry.stop());
  const deadline = Date.now() + 10_000;
  while (queuedForResearch(storagePath) !== 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(queuedForResearch(storagePath), 2, "routed again under the node's own file");
});

// Found in the final review: a reload whose record of the new routing failed (the index locked or
// full) left the old record, and a start back under the old file trusted it: the items the reloaded
// file had queued, which the old file's condition excludes, were not withdrawn, and were sent.
test('a start after a reload that could not record its routing withdraws what its own conditions exclude', async (t) => {
  const storagePath = await twoDeidentified(t, 'reload-unrecorded');
  const mrOnly = (stableSeconds: number) => forwardingConfig(storagePath, [unreachable('research', 'MR')], 'silent', stableSeconds);
  const gantry = await startGantry(mrOnly(3600), silentLogger());
  let stopped = false;
  t.after(() => (stopped ? undefined : gantry.stop()));
  const other = openDatabase(join(storagePath, 'index.sqlite'));
  t.after(() => other.close());
  // The index refuses the record of the reload's routing (as a lock held past the busy timeout would).
  other.exec(`CREATE TRIGGER refuse_record_insert BEFORE INSERT ON forward_routing BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;
    CREATE TRIGGER refuse_record_update BEFORE UPDATE ON forward_routing BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;`);
  await gantry.reload(forwardingConfig(storagePath, [unreachable('research')], 'silent', 0.1));
  const deadline = Date.now() + 10_000;
  while (queuedForResearch(storagePath) !== 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(queuedForResearch(storagePath), 2, 'queued under the reloaded file');
  stopped = true;
  await gantry.stop();
  other.exec('DROP TRIGGER refuse_record_insert; DROP TRIGGER refuse_record_update;');
  const again = await startGantry(mrOnly(3600), silentLogger());
  t.after(() => again.stop());
  assert.equal(queuedForResearch(storagePath), 0, "withdrawn: the node's file takes MR only");
});

// Found in a review: a reload that narrowed a destination's condition left the items queued under the
// old one in its queue, and they were sent when the destination came back.
test('a reload that narrows a destination condition withdraws the queued items it no longer takes, and says so', async (t) => {
  const storagePath = await twoQueuedForResearch(t, 'reload-narrowed');
  const { log, withdrawn } = withdrawalLog();
  const gantry = await startGantry(forwardingConfig(storagePath, [unreachable('research')], 'warn'), log);
  t.after(() => gantry.stop());
  assert.equal(queuedForResearch(storagePath), 2);
  await gantry.reload(forwardingConfig(storagePath, [unreachable('research', 'CT')], 'warn'));
  assert.equal(queuedForResearch(storagePath), 2, 'a condition that still takes them leaves them');
  await gantry.reload(forwardingConfig(storagePath, [unreachable('research', 'MR')], 'warn'));
  assert.equal(queuedForResearch(storagePath), 0);
  assert.deepEqual(withdrawn(), [{ destination: 'research', items: 2 }]);
});

// Found in the forward review: only a SIGHUP withdrew what a narrowed condition excludes. A restart
// with the edited file (how a container is given a new config) sent the queue built under the old one.
test('a start with a narrowed destination condition withdraws the queued items it no longer takes, and says so', async (t) => {
  const storagePath = await twoQueuedForResearch(t, 'start-narrowed');
  const { log, withdrawn } = withdrawalLog();
  const gantry = await startGantry(forwardingConfig(storagePath, [unreachable('research', 'MR')], 'warn'), log);
  t.after(() => gantry.stop());
  assert.equal(queuedForResearch(storagePath), 0);
  assert.deepEqual(withdrawn(), [{ destination: 'research', items: 2 }]);
});

// Found in the forward review: a reload whose withdrawal failed (the index locked by another process
// beyond the busy timeout, full, or failing) was applied all the same, with an error in the log: the
// senders then sent the items the narrowed condition excludes. It is refused, and nothing is withdrawn.
test('a reload that cannot withdraw what its narrowed condition excludes is refused, and a later one withdraws it', async (t) => {
  const storagePath = await twoQueuedForResearch(t, 'reload-narrowed-locked');
  const gantry = await startGantry(forwardingConfig(storagePath, [unreachable('research')]), silentLogger());
  t.after(() => gantry.stop());
  const other = openDatabase(join(storagePath, 'index.sqlite'));
  t.after(() => other.close());
  // Another writer holds the index beyond the busy timeout (5 s).
  other.prepare('BEGIN IMMEDIATE').run();
  await assert.rejects(gantry.reload(forwardingConfig(storagePath, [unreachable('research', 'MR')])), /withdraw/);
  other.prepare('COMMIT').run();
  assert.equal(queuedForResearch(storagePath), 2);
  await gantry.reload(forwardingConfig(storagePath, [unreachable('research', 'MR')]));
  assert.equal(queuedForResearch(storagePath), 0, 'the reload asked again applies');
});

// Found in the forward review: only destinations kept by a reload had their unsent items checked
// against a changed condition. One removed, then added back with a narrower condition (as the log
// advises for the queue it left), sent the items queued under its former condition.
test('a destination a reload adds back with a narrower condition withdraws the items it left queued', async (t) => {
  const storagePath = await twoQueuedForResearch(t, 'reload-added-back');
  const gantry = await startGantry(forwardingConfig(storagePath, [unreachable('archive'), unreachable('research')]), silentLogger());
  t.after(() => gantry.stop());
  await gantry.reload(forwardingConfig(storagePath, [unreachable('archive')]));
  await gantry.reload(forwardingConfig(storagePath, [unreachable('archive'), unreachable('research', 'MR')]));
  assert.equal(queuedForResearch(storagePath), 0);
});

// Found in the review of the day: a start that could not write the index at its start (the outbox
// settled, the items a narrowed condition excludes withdrawn: another process held the write lock
// beyond the busy timeout) threw before anything it had opened was closed: storage.path stayed claimed
// (gantry.running, gantry.lock), the index open and the de-identification threads running.
test('a start that cannot write the index fails, and releases storage.path; the next start withdraws what a narrowed condition excludes', async (t) => {
  const storagePath = await twoQueuedForResearch(t, 'start-narrowed-locked');
  const other = openDatabase(join(storagePath, 'index.sqlite'));
  t.after(() => other.close());
  // Another writer holds the index beyond the busy timeout (5 s).
  other.prepare('BEGIN IMMEDIATE').run();
  await assert.rejects(startGantry(forwardingConfig(storagePath, [unreachable('research', 'MR')]), silentLogger()), /locked/);
  other.prepare('ROLLBACK').run();
  assert.equal(existsSync(join(storagePath, 'gantry.running')), false, 'storage.path is still marked as a running node');
  assert.equal(queuedForResearch(storagePath), 2, 'nothing withdrawn');
  const gantry = await startGantry(forwardingConfig(storagePath, [unreachable('research', 'MR')]), silentLogger());
  t.after(() => gantry.stop());
  assert.equal(queuedForResearch(storagePath), 0, 'the next start withdraws them');
});

// Found in the upgrade review: a start refused after storage.path was claimed (an index of a newer
// schema, a failed migration) left gantry.running behind, and the next start took it for a crash and
// ran recovery.
test('a start refused by the index gives storage.path back as it found it', async () => {
  const storagePath = join(scratchDir('start-refused-newer'), 'data');
  mkdirSync(storagePath, { recursive: true });
  const db = openDatabase(join(storagePath, 'index.sqlite'));
  db.prepare(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from the future', '2030-01-01')`).run();
  db.close();
  await assert.rejects(startGantry(loadedConfig(storagePath), silentLogger()), /schema version 999, newer than this Gantry knows/);
  assert.equal(existsSync(join(storagePath, 'gantry.running')), false, 'no marker of a run left');
  const again = new Database(join(storagePath, 'index.sqlite'));
  again.prepare('DELETE FROM schema_migrations WHERE version = 999').run();
  again.close();
  const lines: string[] = [];
  const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  const gantry = await startGantry(loadedConfig(storagePath), log);
  await gantry.stop();
  assert.ok(!lines.some((line) => line.includes('did not stop cleanly')), 'the next start is no recovery');
});
