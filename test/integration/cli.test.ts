/** The gantry command as an operator runs it. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase } from '../../src/db/database.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { Outbox } from '../../src/queue/outbox.js';
import { claimStorage, releaseStorage } from '../../src/pipeline/recovery.js';
import { instanceRecord } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';
import { test, type TestContext } from 'node:test';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { freePort, GANTRY_CLI, run, sleep, start, stop, waitForPort, type Started } from '../helpers/processes.js';
import { once } from 'node:events';
import { waitUntil } from '../helpers/destinations.js';
import { stringify } from 'yaml';
import { listFiles } from '../helpers/stored.js';
import { newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';

test('gantry deid de-identifies files and folders into <Study>/<Series>/<SOP>.dcm, and says what failed', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('cli');
  const config = join(dir, 'gantry.yaml');
  writeFileSync(config, `storage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: \${TEST_SECRET}\n  options: [retainLongitudinalModifiedDates]\n`);
  const out = join(dir, 'out');
  // MR_small_implicit.dcm is MR_small.dcm in another transfer syntax: one instance, one output name.
  const inputs = ['CT_small.dcm', 'MR_small.dcm', 'README.txt', 'MR_small_implicit.dcm'].map((name) => join(PYDICOM_TEST_FILES, name));
  const result = await run(process.execPath, [GANTRY_CLI, 'deid', '--config', config, '--out', out, ...inputs], {
    env: { ...process.env, TEST_SECRET: 'a secret from the environment' },
  });
  assert.equal(result.code, 1, 'one input was not DICOM');
  assert.match(result.stdout, /de-identified 3 file\(s\) into .*; 1 failed; .*; 1 replaced an earlier output of the same SOP Instance UID/);
  assert.match(result.stderr, /README\.txt: not a DICOM Part 10 file/);
  assert.match(result.stderr, /same SOP Instance UID as .*MR_small\.dcm: its output was replaced by .*MR_small_implicit\.dcm's/);
  const written = listFiles(out);
  assert.equal(written.length, 2);
  for (const path of written) assert.match(path, /\/2\.25\.\d+\/2\.25\.\d+\/2\.25\.\d+\.dcm$/);
});

test('gantry deid holds back what the node would: a DICOMDIR, and kept text that quotes the patient (deid.quarantineOnFindings)', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('cli');
  const quoting = join(dir, 'quoting.dcm');
  // PositionReferenceIndicator is kept by Table E.1-1; here it quotes the patient's name and MRN.
  await writeSyntheticFile(quoting, {
    studyInstanceUid: newUid(),
    seriesInstanceUid: newUid(),
    patientId: 'MRN4455667',
    patientName: 'Smithers^John',
    modality: 'CT',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    rows: 8,
    columns: 8,
    extra: [[0x00201040, 'LO', 'Smithers MRN4455667']],
  });
  const inputs = [join(PYDICOM_TEST_FILES, 'dicomdirtests', 'DICOMDIR'), quoting, join(PYDICOM_TEST_FILES, 'CT_small.dcm')];
  const deid = async (extra: string, out: string) => {
    const config = join(dir, `gantry${extra ? '-lenient' : ''}.yaml`);
    writeFileSync(config, `storage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: a secret of the cli tests${extra}\n`);
    return run(process.execPath, [GANTRY_CLI, 'deid', '--config', config, '--out', out, ...inputs]);
  };
  const strict = await deid('', join(dir, 'out'));
  assert.equal(strict.code, 0, strict.stderr);
  assert.match(strict.stdout, /de-identified 1 file\(s\) into .*; 2 held back; 0 failed/);
  assert.match(strict.stderr, /DICOMDIR: a DICOMDIR \(the directory of a medium/);
  assert.match(strict.stderr, /quoting\.dcm: residual risk: PositionReferenceIndicator quotes the patient's name or an identifier/);
  assert.equal(listFiles(join(dir, 'out')).length, 1);

  const lenient = await deid('\n  quarantineOnFindings: false', join(dir, 'out-lenient'));
  assert.match(lenient.stdout, /de-identified 2 file\(s\) into .*; 1 held back; 0 failed/);
  assert.equal(listFiles(join(dir, 'out-lenient')).length, 2);
});

test('an operator config without deid.secret is refused with the key named', async (t) => {
  const dir = scratchDir('cli');
  const config = join(dir, 'gantry.yaml');
  writeFileSync(config, `storage:\n  path: ${join(dir, 'data')}\n`);
  const result = await run(process.execPath, [GANTRY_CLI, 'deid', '--config', config, '--out', join(dir, 'out'), config]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /deid\.secret: is required/);
});

test('gantry config check names every bad key', async (t) => {
  const dir = scratchDir('cli');
  const config = join(dir, 'bad.yaml');
  writeFileSync(config, 'dicom:\n  port: 70000\n  aetitle: X\n');
  const result = await run(process.execPath, [GANTRY_CLI, 'config', 'check', '--config', config]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /dicom\.port: 70000 is not allowed; at most 65535/);
  assert.match(result.stderr, /dicom: unknown key "aetitle"/);
});

test('gantry config check finds what start-up would refuse, every problem at once', async () => {
  // Found in a review: check said "valid" to a config without deid.secret, which then did not start,
  // and start reported one problem per run.
  const dir = scratchDir('cli');
  const config = join(dir, 'starts-not.yaml');
  writeFileSync(
    config,
    `storage: { path: ${join(dir, 'data')} }\nforward:\n  destinations:\n    - { name: r, aeTitle: R, host: 127.0.0.1, port: 4242, when: { attributes: { Modality: "/[/" } } }\n` +
      'deid:\n  rules:\n    - { action: pass, when: { attributes: { NoSuchKeyword: CT } } }\n',
  );
  const checked = await run(process.execPath, [GANTRY_CLI, 'config', 'check', '--config', config]);
  assert.equal(checked.code, 2, checked.stdout);
  assert.match(checked.stderr, /deid\.secret: is required/);
  assert.match(checked.stderr, /deid\.rules\.0 \(profile default, rule 1\): when\.attributes\.\(a key hidden: neither a DICOM keyword nor a tag, it may be a value written as a key\): name a DICOM keyword/);
  assert.match(checked.stderr, /forward\.destinations\[0\]\.when\.attributes\.Modality: \/\[\/ is not a regular expression/);
  const served = await run(process.execPath, [GANTRY_CLI, 'serve', '--config', config], { timeoutMs: 30_000 });
  assert.equal(served.code, 2);
  assert.equal(served.stderr, checked.stderr, 'serve refuses it with the same problems');
  assert.equal(existsSync(join(dir, 'data')), false, 'before storage is touched');
});

test('a reader that closes the pipe early does not crash the command', async () => {
  const child = spawn(process.execPath, [GANTRY_CLI, 'config', 'show'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Closed before the command writes: every write of its output meets a closed pipe (EPIPE).
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(stderr, '', 'no stack trace');
  assert.equal(code, 0);
});

/** A config with one destination, research, over a storage folder with a fresh index. */
function storageWithResearch(name: string): { dir: string; config: string } {
  const dir = scratchDir(name);
  const config = join(dir, 'gantry.yaml');
  writeFileSync(
    config,
    `storage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: a secret of the cli tests\nforward:\n  destinations:\n    - { name: research, aeTitle: RESEARCH, host: 127.0.0.1, port: 4242 }\n`,
  );
  mkdirSync(join(dir, 'data'));
  openDatabase(join(dir, 'data', 'index.sqlite')).close();
  return { dir, config };
}

test('gantry queue purge refuses the queued items of a destination still configured: retention would delete originals it never confirmed', async () => {
  // Found in a review: the help said "of a destination removed from the config", and nothing checked it.
  const { dir, config } = storageWithResearch('cli-purge');
  const db = openDatabase(join(dir, 'data', 'index.sqlite'));
  // An item of old-pacs, removed from the config (no instance behind it: nothing here reads one).
  db.pragma('foreign_keys = OFF');
  db.prepare(
    `INSERT INTO forward_outbox (destination, instance_pk, file_path, sop_class_uid, sop_instance_uid, transfer_syntax_uid, study_pk, routed_at, state, attempts, next_attempt_at, queued_at)
     VALUES ('old-pacs', 1, 'deidentified/1.dcm', '1.2.840.10008.5.1.4.1.1.2', '2.25.1', '1.2.840.10008.1.2.1', 1, 1, 'queued', 0, 1, 1)`,
  ).run();
  db.close();
  const configured = await run(process.execPath, [GANTRY_CLI, 'queue', 'purge', '--config', config, '--state', 'queued', '--destination', 'research']);
  assert.notEqual(configured.code, 0);
  assert.match(configured.stderr, /research is in forward\.destinations .*only the queue of a destination removed from the config is purged/);
  const removed = await run(process.execPath, [GANTRY_CLI, 'queue', 'purge', '--config', config, '--state', 'queued', '--destination', 'old-pacs']);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, /deleted 1 queued item\(s\)/);
});

test('gantry queue reroute sends the queue of a renamed destination to the destinations configured now, and refuses a configured one', async () => {
  // Found in the ninth session: after a rename, the only way out of the old queue (purge) counted its
  // instances as forwarded, and retention deleted originals that no destination had.
  const { dir, config } = storageWithResearch('cli-reroute');
  const db = openDatabase(join(dir, 'data', 'index.sqlite'));
  const index = new InstanceIndex(db);
  index.upsert(instanceRecord(1));
  db.prepare(`UPDATE instances SET state = 'deidentified', deid_file_path = 'deidentified/1.dcm', deid_sop_instance_uid = '2.25.1'`).run();
  const outbox = new Outbox(db);
  outbox.route(outbox.routable(Date.now(), 10).map((instance) => ({ instance, destinations: ['old-pacs'] })));
  db.close();
  const configured = await run(process.execPath, [GANTRY_CLI, 'queue', 'reroute', '--config', config, '--destination', 'research']);
  assert.notEqual(configured.code, 0);
  assert.match(configured.stderr, /research is in forward\.destinations .*only the queue of a destination removed from the config is routed again/);
  const renamed = await run(process.execPath, [GANTRY_CLI, 'queue', 'reroute', '--config', config, '--destination', 'old-pacs']);
  assert.equal(renamed.code, 0, renamed.stderr);
  assert.match(renamed.stdout, /deleted 1 queued or dead item\(s\) of old-pacs; 1 instance\(s\) are routed again/);
  const after = openDatabase(join(dir, 'data', 'index.sqlite'));
  try {
    assert.deepEqual(after.prepare(`SELECT state, routed_at FROM instances`).all(), [{ state: 'deidentified', routed_at: null }], 'routable again, not forwarded');
    assert.equal(after.prepare(`SELECT count(*) FROM forward_outbox`).pluck().get(), 0);
  } finally {
    after.close();
  }
});

test('gantry queue purge and reroute refuse a destination the node running on the storage still sends to, whatever the command\'s file says', async () => {
  // Found in a review: only the command's config was checked, so a file edited (the destination
  // removed) and not yet reloaded let the purge drop deliveries the node was making, and their
  // originals then counted as forwarded.
  const { dir, config } = storageWithResearch('cli-purge-node');
  const storagePath = join(dir, 'data');
  const db = openDatabase(join(storagePath, 'index.sqlite'));
  const index = new InstanceIndex(db);
  index.upsert(instanceRecord(1));
  db.prepare(`UPDATE instances SET state = 'deidentified', deid_file_path = 'deidentified/1.dcm', deid_sop_instance_uid = '2.25.1'`).run();
  const outbox = new Outbox(db);
  outbox.route(outbox.routable(Date.now(), 10).map((instance) => ({ instance, destinations: ['old-pacs'] })));
  const nodeRouting = (names: string[]) => outbox.routeAgainUnder(JSON.stringify(names.map((name) => [name, null])), true);
  // This process stands for the node: it holds the storage's lock, as a running node does.
  await claimStorage(storagePath);
  try {
    nodeRouting(['research', 'old-pacs']);
    for (const args of [['purge', '--state', 'queued', '--destination', 'old-pacs'], ['reroute', '--destination', 'old-pacs']]) {
      const refused = await run(process.execPath, [GANTRY_CLI, 'queue', ...args, '--config', config]);
      assert.notEqual(refused.code, 0, `queue ${args.join(' ')}`);
      assert.match(refused.stderr, /a Gantry node running on storage\.path still sends to old-pacs: remove it from that node's forward\.destinations and reload it \(SIGHUP\)/);
    }
    assert.equal(db.prepare(`SELECT count(*) FROM forward_outbox`).pluck().get(), 1, 'nothing dropped');
    nodeRouting(['research']);
    const rerouted = await run(process.execPath, [GANTRY_CLI, 'queue', 'reroute', '--config', config, '--destination', 'old-pacs']);
    assert.equal(rerouted.code, 0, rerouted.stderr);
  } finally {
    db.close();
    await releaseStorage(storagePath);
  }
});

test('a storage.path or --out that is a file is named with its key or flag, not with a bare EEXIST', async () => {
  // Found in a review: `gantry import` with storage.path naming a file printed "EEXIST: file already
  // exists, mkdir '...'", and export and deid --out the same.
  const { dir, config } = storageWithResearch('cli-folder-errors');
  const aFile = join(dir, 'a-file');
  writeFileSync(aFile, 'not a folder');
  const fileStorage = join(dir, 'file-storage.yaml');
  writeFileSync(fileStorage, `storage:\n  path: ${aFile}\ndeid:\n  secret: a secret of the cli tests\n`);
  const imported = await run(process.execPath, [GANTRY_CLI, 'import', '--config', fileStorage, dir]);
  assert.equal(imported.code, 2, 'a configuration problem, as serve says it');
  assert.match(imported.stderr, /invalid configuration in .*file-storage\.yaml:\n {2}- storage\.path: .*a-file cannot be made as a folder \(EEXIST: it, or a folder on its way, is a file\); name a folder this user may create and write/);
  for (const command of [['export', '--out', join(aFile, 'out')], ['deid', '--out', join(aFile, 'out'), aFile]]) {
    const result = await run(process.execPath, [GANTRY_CLI, ...command, '--config', config]);
    assert.notEqual(result.code, 0, command.join(' '));
    assert.match(result.stderr, /--out.*cannot be made as a folder \((ENOTDIR|EEXIST): it, or a folder on its way, is a file\)/, `${command[0]}: ${result.stderr}`);
    assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
  }
});

test('a DICOM port in use stops serve with the keys to change, logged once', async () => {
  // Found in a review: the failure was logged twice, first as a bare "DICOM listener error".
  const dir = scratchDir('cli-port-in-use');
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as AddressInfo).port;
  try {
    const config = join(dir, 'gantry.yaml');
    writeFileSync(config, `dicom: { host: 127.0.0.1, port: ${port} }\nhttp: { port: ${await freePort()} }\nstorage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: a secret of the cli tests\n`);
    const served = await run(process.execPath, [GANTRY_CLI, 'serve', '--config', config], { timeoutMs: 60_000 });
    assert.notEqual(served.code, 0);
    const output = served.stdout + served.stderr;
    assert.match(output, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(dicom\\.host, dicom\\.port\\)`));
    assert.doesNotMatch(output, /DICOM listener error/);
  } finally {
    taken.close();
  }
});

test('the commands that only read the index run without the secret in the environment; those that de-identify still ask for it', async () => {
  // Found in a review: status, queue ls and quarantine ls refused to run unless the de-identification
  // key was copied into the operator's shell.
  const { dir } = storageWithResearch('cli-read-only-secret');
  const config = join(dir, 'env-secret.yaml');
  writeFileSync(config, `storage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: \${GANTRY_TEST_UNSET_SECRET}\n`);
  const env = { ...process.env };
  delete env.GANTRY_TEST_UNSET_SECRET;
  for (const args of [['status'], ['queue', 'ls'], ['quarantine', 'ls'], ['audit']]) {
    const result = await run(process.execPath, [GANTRY_CLI, ...args, '--config', config], { env });
    assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
  }
  const checked = await run(process.execPath, [GANTRY_CLI, 'config', 'check', '--config', config], { env });
  assert.equal(checked.code, 2);
  assert.match(checked.stderr, /deid\.secret: refers to the environment variable GANTRY_TEST_UNSET_SECRET, which is not set/);
});

test('gantry queue ls, retry and purge refuse a --destination that names nothing, and name the ones known', async () => {
  // Found in a review: a typo matched nothing, and retry said "re-queued 0 item(s)" with exit 0.
  const { config } = storageWithResearch('cli-destination');
  for (const args of [['ls', '-d', 'reserch'], ['retry', '-d', 'reserch'], ['purge', '-s', 'dead', '-d', 'reserch']]) {
    const result = await run(process.execPath, [GANTRY_CLI, 'queue', ...args, '--config', config]);
    assert.notEqual(result.code, 0, `queue ${args.join(' ')}`);
    assert.match(result.stderr, /--destination reserch: no destination of that name .*\(known: research\)/);
  }
  const known = await run(process.execPath, [GANTRY_CLI, 'queue', 'retry', '-d', 'research', '--config', config]);
  assert.equal(known.code, 0, known.stderr);
  assert.match(known.stdout, /re-queued 0 item\(s\)/);
});

// Found in the docs review: `queue retry ID` with an id of no item, or of an item that is not dead,
// said "re-queued 0 item(s)" with status 0, and the operator believed it done.
test('gantry queue retry refuses ids of no item, of items that are not dead and of another destination, and re-queues nothing then', async () => {
  const { dir, config } = storageWithResearch('cli-retry-ids');
  const db = openDatabase(join(dir, 'data', 'index.sqlite'));
  const index = new InstanceIndex(db);
  for (const n of [1, 2]) index.upsert(instanceRecord(n));
  db.prepare(`UPDATE instances SET state = 'deidentified', deid_file_path = 'deidentified/' || id || '.dcm', deid_sop_instance_uid = '2.25.' || id`).run();
  const outbox = new Outbox(db);
  outbox.route(outbox.routable(Date.now(), 10).map((instance) => ({ instance, destinations: ['research'] })));
  const [dead, queued] = outbox.due('research', 10);
  assert.ok(dead && queued);
  outbox.markDead(dead, '0xA700', 'research answered 0xA700');
  db.close();
  for (const [ids, expected] of [
    [['999'], /nothing re-queued: 999: no such item/],
    [[String(dead.id), String(queued.id)], new RegExp(`nothing re-queued: ${queued.id}: queued, not dead`)],
  ] as Array<[string[], RegExp]>) {
    const refused = await run(process.execPath, [GANTRY_CLI, 'queue', 'retry', '--config', config, ...ids]);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, expected);
  }
  const otherDestination = await run(process.execPath, [GANTRY_CLI, 'queue', 'retry', '--config', config, '-d', 'research', String(dead.id)]);
  assert.equal(otherDestination.code, 0, otherDestination.stderr);
  assert.match(otherDestination.stdout, /re-queued 1 item\(s\)/);
});

// Found in the docs review: with only failed instances held, `gantry quarantine ls` said "nothing held",
// while gantry status listed them and sent the operator there.
test('gantry quarantine ls counts the failed instances it does not list, and gantry status points to --failed', async () => {
  const { dir, config } = storageWithResearch('cli-quarantine-failed');
  const db = openDatabase(join(dir, 'data', 'index.sqlite'));
  new InstanceIndex(db).upsert(instanceRecord(1));
  db.prepare(`UPDATE instances SET state = 'failed', state_reason = 'the original changed since it was indexed'`).run();
  db.close();
  const listed = await run(process.execPath, [GANTRY_CLI, 'quarantine', 'ls', '--config', config]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.doesNotMatch(listed.stdout, /nothing held/);
  assert.match(listed.stdout, /^nothing quarantined\n1 failed instance\(s\) held too, not listed: gantry quarantine ls --failed$/m);
  const all = await run(process.execPath, [GANTRY_CLI, 'quarantine', 'ls', '--failed', '--config', config]);
  assert.match(all.stdout, /\tfailed\t.*the original changed since it was indexed/);
  const status = await run(process.execPath, [GANTRY_CLI, 'status', '--config', config]);
  assert.match(status.stdout, /\(gantry quarantine ls --failed \| show ID \| release ID\)/);
});

// Found in the injection review: gantry quarantine show, the screen an operator reads before releasing
// an instance, printed a sender's terminal escapes and line breaks as they were.
test('gantry quarantine show and ls print the control characters of received values as escapes', async () => {
  const { dir, config } = storageWithResearch('cli-quarantine-escapes');
  const db = openDatabase(join(dir, 'data', 'index.sqlite'));
  new InstanceIndex(db).upsert(instanceRecord(1, { attributes: { PatientName: 'Evil\x1b[2J^X', PatientID: 'P1', Modality: 'CT\x1b[5m', Manufacturer: 'ACME\nid: 999.999' } }));
  db.prepare(`UPDATE instances SET state = 'quarantined', state_reason = 'held'`).run();
  db.close();
  const listed = await run(process.execPath, [GANTRY_CLI, 'quarantine', 'ls', '--config', config]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.ok(!listed.stdout.includes('\x1b'), listed.stdout);
  assert.match(listed.stdout, /CT\\x1b\[5m/);
  const id = /^(\d+\.\w+)\t/m.exec(listed.stdout)?.[1];
  assert.ok(id, listed.stdout);
  const shown = await run(process.execPath, [GANTRY_CLI, 'quarantine', 'show', id, '--config', config]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.ok(!shown.stdout.includes('\x1b'), shown.stdout);
  assert.match(shown.stdout, /Evil\\x1b\[2J\^X/);
  assert.doesNotMatch(shown.stdout, /^id: 999\.999$/m, 'no forged line');
});

test('gantry export refuses a storage.path that holds no index, instead of exporting an empty session made there', async () => {
  // Found in a review: a wrong --config (or the embedded one run from another folder) made an empty
  // index there, and a secret with the embedded config, and said "exported 0 instance(s)", exit 0.
  const dir = scratchDir('cli-export-nowhere');
  const config = join(dir, 'gantry.yaml');
  writeFileSync(config, `storage: { path: ${join(dir, 'typo')} }\ndeid: { secret: a secret of the cli tests }\n`);
  const exported = await run(process.execPath, [GANTRY_CLI, 'export', '--config', config, '--out', join(dir, 'out'), '--quiet']);
  assert.equal(exported.code, 1, exported.stdout);
  assert.match(exported.stderr, /no Gantry index at .*typo\/index\.sqlite \(storage\.path of .*gantry\.yaml\)/);
  assert.equal(existsSync(join(dir, 'typo')), false, 'nothing is made under the wrong storage.path');
  // The embedded config, from a folder that is not the node's: no index, no secret made there.
  const embedded = await run(process.execPath, [GANTRY_CLI, 'export', '--out', join(dir, 'out'), '--quiet'], { cwd: dir });
  assert.equal(embedded.code, 1, embedded.stdout);
  assert.equal(existsSync(join(dir, 'data')), false);
  // Found in the secrets review: the embedded config over a node's index with no secret file made one
  // there, then refused it; a later command there used it. The node's secret, or none.
  mkdirSync(join(dir, 'data'));
  openDatabase(join(dir, 'data', 'index.sqlite')).close();
  const noSecret = await run(process.execPath, [GANTRY_CLI, 'export', '--out', join(dir, 'out'), '--quiet'], { cwd: dir });
  assert.equal(noSecret.code, 2, noSecret.stderr);
  assert.match(noSecret.stderr, /gantry export uses the node's secret and never makes one/);
  assert.equal(existsSync(join(dir, 'data', 'deid-secret')), false, 'no secret made in the storage');
});

// Found in the operations review: run by a user who could not enter storage.path, `gantry status`
// said "no Gantry index at …"; an index file it could not open gave SQLite's bare "unable to open
// database file"; `gantry import` on a folder it could not write exited 1 with "EACCES: permission
// denied". As root the commands run as nobody, who may read the scratch folder and nothing in it.
test('a storage.path this user may not use is named as a problem of storage.path (exit 2), whatever the command', async () => {
  const { dir, config } = storageWithResearch('cli-access');
  chmodSync(dir, 0o755);
  chmodSync(config, 0o644);
  const data = join(dir, 'data');
  const asAnotherUser = (args: string[]) => {
    const command = [process.execPath, GANTRY_CLI, ...args, '--config', config];
    return process.getuid?.() === 0 ? run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...command]) : run(command[0] as string, command.slice(1));
  };
  const cases: Array<{ setUp: () => void; args: string[] }> = [
    { setUp: () => chmodSync(data, 0o000), args: ['status'] },
    { setUp: () => (chmodSync(data, 0o755), chmodSync(join(data, 'index.sqlite'), 0o000)), args: ['queue', 'ls'] },
    { setUp: () => (rmSync(join(data, 'index.sqlite')), chmodSync(data, 0o555)), args: ['import', '--quiet', join(dir, 'nothing')] },
  ];
  for (const { setUp, args } of cases) {
    setUp();
    const result = await asAnotherUser(args);
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, /invalid configuration in .*gantry\.yaml:\n {2}- storage\.path: .*data (cannot be used by this user|cannot be made as a folder) \((EACCES|SQLITE_CANTOPEN)/, args.join(' '));
    assert.doesNotMatch(result.stderr, /no Gantry index/, args.join(' '));
  }
  chmodSync(data, 0o755);
});

// Found in the review of the session's diff: a folder import could not list (no read permission)
// was remembered as walked, and a file in it named as a root after it was passed over, uncounted.
test('a folder import cannot list does not hide a file in it that is named on its own', async () => {
  const dir = scratchDir('cli-unlisted');
  chmodSync(dir, 0o755);
  const locked = join(dir, 'locked');
  mkdirSync(locked);
  const file = join(locked, 'a.dcm');
  await writeSyntheticFile(file, { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'P-LOCKED', patientName: 'Locked^Lou', rows: 8, columns: 8 });
  chmodSync(file, 0o644);
  chmodSync(locked, 0o311);
  const storage = join(dir, 'data');
  mkdirSync(storage, { mode: 0o777 });
  chmodSync(storage, 0o777);
  const config = join(dir, 'gantry.yaml');
  writeFileSync(config, `storage: { path: ${storage} }\ndeid: { secret: a secret of the cli tests }\n`);
  chmodSync(config, 0o644);
  const command = [process.execPath, GANTRY_CLI, 'import', '-q', '--config', config, locked, file];
  const result = process.getuid?.() === 0 ? await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...command]) : await run(command[0] as string, command.slice(1));
  chmodSync(locked, 0o755);
  assert.match(result.stdout, /indexed 1 instance\(s\) .* of 1 file\(s\)/, result.stdout + result.stderr);
  assert.match(result.stdout, /locked: a folder that cannot be read \(EACCES\)/);
});

test('a storage.path the node cannot make is refused with its key named', async () => {
  // Found in a review: the bare "EACCES: permission denied, mkdir ..." did not say which key it was.
  const dir = scratchDir('cli');
  writeFileSync(join(dir, 'a-file'), '');
  const config = join(dir, 'under-a-file.yaml');
  writeFileSync(config, `storage: { path: ${join(dir, 'a-file', 'data')} }\ndeid: { secret: a secret of the cli tests }\n`);
  const served = await run(process.execPath, [GANTRY_CLI, 'serve', '--config', config], { timeoutMs: 30_000 });
  assert.equal(served.code, 2);
  assert.match(served.stderr, /storage\.path: .*a-file\/data cannot be used \(ENOTDIR/);
});

/** Resolves as soon as the process has printed `text` (not at the next poll), bounded by `timeoutMs`. */
async function outputShows(node: Started, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!node.output().includes(text)) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for "${text}":\n${node.output()}`);
    await Promise.race([once(node.child.stdout as NodeJS.ReadableStream, 'data'), sleep(50)]);
  }
}

/** `gantry serve` on loopback in a scratch folder, caught as it starts (its config loaded, its index
 * not yet open); killed after the test. */
async function nodeStarting(t: TestContext, name: string): Promise<{ dir: string; config: string; port: number; httpPort: number; node: ReturnType<typeof start> }> {
  const dir = scratchDir(name);
  const config = join(dir, 'gantry.yaml');
  const [port, httpPort] = [await freePort(), await freePort()];
  writeFileSync(config, stringify({ dicom: { host: '127.0.0.1', port }, http: { host: '127.0.0.1', port: httpPort }, storage: { path: join(dir, 'data'), minFreeBytes: 0 }, deid: { secret: 'a secret of the cli tests', workers: 1 } }));
  const node = start(process.execPath, [GANTRY_CLI, 'serve', '--config', config]);
  t.after(() => stop(node, 'SIGKILL'));
  await outputShows(node, 'configuration loaded', 15_000);
  return { dir, config, port, httpPort, node };
}

test('a SIGHUP while the node starts is a reload once it has started, not the end of the process', async (t) => {
  // Found in a review: the handler was installed after start-up, and SIGHUP's default action ended a
  // node still opening its index (a config-management "reload" right after a restart).
  const { port, node } = await nodeStarting(t, 'cli-early-hup');
  node.child.kill('SIGHUP');
  await waitForPort(port).catch((error: Error) => assert.fail(`${error.message}; exit ${node.child.exitCode ?? node.child.signalCode}:\n${node.output()}`));
  await waitUntil('the reload asked during start-up is done', 15_000, () => node.output().includes('"msg":"configuration reloaded"'));
  assert.equal(node.child.exitCode, null, node.output());
  assert.equal(node.child.signalCode, null, node.output());
  // The signal and the output are said: once in many runs (a CI run of 2026-12-01) the stop ended by a
  // signal (exit code null) and the bare assertion told nothing more.
  const code = await stop(node, 'SIGTERM');
  assert.equal(code, 0, `exit ${code ?? node.child.signalCode}:\n${node.output()}`);
});

// Found in the config review: config check said "valid" to listeners on a host that does not resolve,
// on an address of another machine, or on one port for both, and serve then refused them (exit 1).
test('config check names listener addresses start-up would refuse, and serve refuses an unresolvable host as a config problem', async () => {
  const dir = scratchDir('cli-addresses');
  const write = (name: string, listeners: string) => {
    const path = join(dir, `${name}.yaml`);
    writeFileSync(path, `storage: { path: ${join(dir, name)} }\ndeid: { secret: a secret of the cli tests }\n${listeners}`);
    return path;
  };
  const cases: Array<[string, string, RegExp]> = [
    ['unresolvable', 'dicom: { host: no-such-host.invalid, port: 0 }\n', /dicom\.host: no-such-host\.invalid does not resolve/],
    ['elsewhere', 'http: { host: 192.0.2.1, port: 0 }\ndicom: { port: 0 }\n', /http\.host: 192\.0\.2\.1 is no address of this machine/],
    ['one-port', 'dicom: { host: 127.0.0.1, port: 18123 }\nhttp: { host: 127.0.0.1, port: 18123 }\n', /dicom\.port and http\.port: both 18123/],
  ];
  for (const [name, listeners, expected] of cases) {
    const checked = await run(process.execPath, [GANTRY_CLI, 'config', 'check', '--config', write(name, listeners)]);
    assert.equal(checked.code, 2, `${name}: ${checked.stdout}${checked.stderr}`);
    assert.match(checked.stderr, expected, name);
  }
  const served = await run(process.execPath, [GANTRY_CLI, 'serve', '--config', join(dir, 'unresolvable.yaml')], { timeoutMs: 30_000 });
  assert.equal(served.code, 2, served.stderr);
  assert.match(served.stderr, /invalid configuration in .*unresolvable\.yaml:\n {2}- cannot listen on no-such-host\.invalid:0 \(dicom\.host, dicom\.port\): .*ENOTFOUND.*; name an address of this machine/);
});

test('a count that is not a number is refused as an argument', async () => {
  // Found in a review: "queue ls -n abc" ended in SQLite's "datatype mismatch".
  const listed = await run(process.execPath, [GANTRY_CLI, 'queue', 'ls', '-n', 'abc']);
  assert.equal(listed.code, 1);
  assert.match(listed.stderr, /argument 'abc' is invalid\. a whole number of at least 1/);
  assert.doesNotMatch(listed.stderr, /datatype mismatch/);
});

test('gantry deid names an input that is not there as failed and goes on with the others, leaving no staging folder', async () => {
  // Found in a review: a missing input ended the run before any file, with out/.staging left behind.
  const dir = scratchDir('cli');
  const config = join(dir, 'gantry.yaml');
  writeFileSync(config, `storage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: a secret of the cli tests\n`);
  const present = join(dir, 'present.dcm');
  await writeSyntheticFile(present, { studyInstanceUid: newUid(), seriesInstanceUid: newUid(), patientId: 'P1', patientName: 'Test^One', modality: 'CT', sopClassUid: '1.2.840.10008.5.1.4.1.1.2', rows: 8, columns: 8 });
  const out = join(dir, 'out');
  const result = await run(process.execPath, [GANTRY_CLI, 'deid', '--config', config, '--out', out, join(dir, 'missing.dcm'), present]);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /not de-identified: .*missing\.dcm: /);
  const counts = /de-identified (\d+) file\(s\) into .*; (\d+) held back; 1 failed/.exec(result.stdout);
  assert.ok(counts, result.stdout);
  assert.equal(Number(counts[1]) + Number(counts[2]), 1, 'the input that is there went through de-identification');
  assert.equal(existsSync(join(out, '.staging')), false);
});

test('gantry deid refuses a config whose rules or zones are wrong as a config error (exit 2), before it writes anything', async () => {
  // Found in a review: a rule naming no attribute ended the run with exit 1, the code of a file that
  // failed; main.ts gives config and usage errors 2 (a script cannot tell the two apart otherwise).
  const dir = scratchDir('cli-deid-bad-rule');
  const config = join(dir, 'gantry.yaml');
  writeFileSync(config, `storage:\n  path: ${join(dir, 'data')}\ndeid:\n  secret: a secret of the cli tests\n  rules:\n    - { attribute: NoSuchKeyword, action: keep }\n`);
  const out = join(dir, 'out');
  const result = await run(process.execPath, [GANTRY_CLI, 'deid', '--config', config, '--out', out, config]);
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /invalid configuration in .*gantry\.yaml/);
  assert.match(result.stderr, /"NoSuchKeyword" is neither a DICOM keyword nor a tag/);
  assert.equal(existsSync(out), false, 'nothing written');
});

test('a SIGTERM while the node starts stops it cleanly: exit 0, storage released, nothing left listening', async (t) => {
  // Found in a review: SIGTERM and SIGINT were handled only once start-up was done; before, the
  // signal's default action ended the node mid-start, with no word in the log, and the marker it
  // left made the next start check its index as after a crash.
  const { dir, config, port, httpPort, node } = await nodeStarting(t, 'cli-early-term');
  node.child.kill('SIGTERM');
  const [code, signal] = (await Promise.race([once(node.child, 'exit'), sleep(30_000).then(() => ['timeout', null])])) as [number | string | null, string | null];
  assert.equal(signal, null, `ended by the signal's default action:\n${node.output()}`);
  assert.equal(code, 0, node.output());
  assert.match(node.output(), /"signal":"SIGTERM".*shutting down/);
  assert.equal(existsSync(join(dir, 'data', 'gantry.running')), false, 'the run marker is removed: the next start is not taken for one after a crash');
  await assert.rejects(waitForPort(port, 300), 'no DICOM listener left');
  await assert.rejects(waitForPort(httpPort, 300), 'no HTTP listener left');
  // The storage is free: the next node starts on it, and finds a clean stop.
  const next = start(process.execPath, [GANTRY_CLI, 'serve', '--config', config]);
  t.after(() => stop(next, 'SIGKILL'));
  await waitForPort(port).catch((error: Error) => assert.fail(`${error.message}:\n${next.output()}`));
  assert.doesNotMatch(next.output(), /did not stop cleanly/);
  assert.equal(await stop(next, 'SIGTERM'), 0);
});

// Found in a review: config show printed a literal "${" (written "$${" in the file) as "${", which a
// config reads as an environment reference: pasted back, the value changed or was refused.
test('gantry config show writes a literal ${ as the config takes it, and hides the secret and conditions on the patient', async () => {
  const dir = scratchDir('cli-config-show');
  const config = join(dir, 'gantry.yaml');
  writeFileSync(
    config,
    'dicom:\n  aeTitle: $$PACS\ndeid:\n  secret: ${SHOW_SECRET}\n  rules:\n    - { action: replace, attribute: StudyDescription, value: "cost $${PRICE}" }\n' +
      '    - { action: remove, attribute: StudyDescription, when: { attributes: { PatientID: "/^(PAT-0042|PAT-0043)$/", Modality: US } } }\n',
  );
  const shown = await run(process.execPath, [GANTRY_CLI, 'config', 'show', '--config', config], {
    env: { ...process.env, SHOW_SECRET: 'the secret config show must hide' },
  });
  assert.equal(shown.code, 0, shown.stderr);
  assert.ok(!shown.stdout.includes('the secret config show must hide'));
  assert.match(shown.stdout, /value: cost \$\$\{PRICE\}/);
  // Found in a review: conditions on patient attributes were printed whole (a quarantine rule may list
  // every patient who refused consent); others stay as written.
  assert.doesNotMatch(shown.stdout, /PAT-004/);
  assert.match(shown.stdout, /PatientID: "?\(hidden: it may identify a patient\)"?/);
  assert.match(shown.stdout, /Modality: US/);
  const { parseConfigText } = await import('../../src/config/load.js');
  const again = parseConfigText(shown.stdout.replace('secret: (hidden)', 'secret: another secret of 16+ chars'), 'shown.yaml', {});
  assert.deepEqual(again.deid.rules[0], { action: 'replace', attribute: 'StudyDescription', value: 'cost ${PRICE}' });
  assert.equal(again.dicom.aeTitle, '$PACS', 'a whole $NAME is written $$NAME');
});

// Found in the upgrade review: on an index of before migration 23 the node recorded its secret at its
// first start without a word, whatever secret had made the copies before: their pseudonyms and this
// node's then differ for one patient. The copies' keyed Study Instance UIDs tell.
test('a node whose index recorded no secret warns when the copies there were made with another', async (t) => {
  /** A node started on an index without a recorded secret, holding a copy made under `madeWith`. */
  const nodeOnCopiesMadeWith = async (name: string, madeWith: string) => {
    const dir = scratchDir(name);
    const storagePath = join(dir, 'data');
    mkdirSync(storagePath, { recursive: true });
    const db = openDatabase(join(storagePath, 'index.sqlite'));
    new InstanceIndex(db).upsert(instanceRecord(1));
    db.prepare(`UPDATE instances SET state = 'failed', deid_study_instance_uid = ?`).run(new Pseudonymizer(madeWith).uid('1.2.1'));
    db.close();
    const gantry = await startGantryProcess(join(dir, 'node'), { storage: { path: storagePath } });
    t.after(() => gantry.stop());
    return gantry;
  };
  const warning = /deid\.secret is not the one the node last started with/;
  const other = await nodeOnCopiesMadeWith('node-unrecorded-secret', 'another secret, of a node of before');
  await waitUntil('the warning', 10_000, () => warning.test(other.output())).catch(() => undefined);
  assert.match(other.output(), warning);
  await other.stop();
  const same = await nodeOnCopiesMadeWith('node-unrecorded-secret-same', 'the secret of the test suite');
  await sleep(500);
  assert.doesNotMatch(same.output(), warning);
});
