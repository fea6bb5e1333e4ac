/**
 * bench/forward: Gantry's forwarder against storescu, sending the same de-identified files to the same
 * DCMTK storescp (+B), interleaved, several rounds; and the sustained end-to-end rate of one node that
 * receives, de-identifies and forwards.
 *
 *   node dist/bench/forward.js [--rounds 5] [--count 2000] [--only forward|e2e] [--parallel N] [--deid-workers N]
 *
 * forward: the corpus is received and de-identified once (untimed); each round a fresh Gantry process,
 *   its threads loaded, is given the destination (SIGHUP) and forwards all of it (timed from the first
 *   item queued to the last confirmed, from the outbox), then forwards it again to a fresh storescp
 *   ("gantry warm": V8 compiled the forwarding path during the first pass, as in a node that has been
 *   running), and storescu sends the same de-identified files (timed as a process, start-up included).
 *   Peak RSS is the forwarding process's, over both of its passes.
 * e2e: 2,000 instances in 100 studies are sent to a fresh Gantry (stableSeconds 2) forwarding to
 *   storescp; timed from the first store received to the last forward confirmed (the index's own
 *   timestamps). --parallel N sends with N storescu processes at once; --sink ignore has the destination
 *   storescp discard what it receives instead of writing it (+B) to the disk Gantry syncs on.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parse, stringify } from 'yaml';
import { defaultDeidWorkers } from '../src/config/schema.js';
import { startGantryProcess, type GantryProcess } from '../test/helpers/gantry.js';
import { DCMTK_ENV, freePort, peakRss, run, sleep, start, stop, waitForPort } from '../test/helpers/processes.js';
import { newUid, writeSyntheticFile } from '../test/helpers/synthetic-dicom.js';
import { checkFreeDisk, Deletions, writeBack } from './ext4.js';
import { median } from './stats.js';
import { fillFreeMemory } from './vm-memory.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    count: { type: 'string', default: '2000' },
    only: { type: 'string' },
    parallel: { type: 'string', default: '1' },
    sink: { type: 'string', default: '+B' },
    data: { type: 'string', default: '.bench-data' },
    'deid-workers': { type: 'string' },
  },
});

/** De-identification threads: the node's default unless --deid-workers (the test helper fixes 2 for the tests). */
const AS_DEPLOYED = { workers: values['deid-workers'] ? Number(values['deid-workers']) : defaultDeidWorkers() };

const root = resolve(values.data);
/** Every bench's deletions are noted in one place: any of them slows the next one's file creation. */
const deletions = new Deletions(root);
const rounds = Number(values.rounds);
const count = Number(values.count);
const parallel = Number(values.parallel);
/** How the e2e destination stores: +B writes every file (on this machine's one disk, beside Gantry's
 * syncs), --ignore receives and discards (a research PACS on a machine of its own). */
const sink = values.sink === '--ignore' || values.sink === 'ignore' ? '--ignore' : '+B';
const mb = (bytes: number) => bytes / 1e6;

/** `count` instances of 0.5 MB in studies of `perStudy`, generated once. */
async function ensureCorpus(name: string, perStudy: number): Promise<string> {
  const dir = join(root, `${name}-${count}`);
  if (!existsSync(`${dir}.complete`)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    process.stderr.write(`generating ${count} instances in ${dir}\n`);
    let studyInstanceUid = newUid();
    let seriesInstanceUid = newUid();
    for (let i = 0; i < count; i += 1) {
      if (i % perStudy === 0) studyInstanceUid = newUid();
      if (i % Math.min(perStudy, 200) === 0) seriesInstanceUid = newUid();
      await writeSyntheticFile(join(dir, `f${String(i).padStart(5, '0')}.dcm`), {
        studyInstanceUid,
        seriesInstanceUid,
        patientId: `BENCH${Math.floor(i / perStudy) % 10}`,
        patientName: 'Bench^Forward',
        instanceNumber: (i % perStudy) + 1,
      });
    }
    writeFileSync(`${dir}.complete`, '');
  }
  return dir;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else if (entry.name.endsWith('.dcm')) out.push(path);
  }
  return out.sort();
}

async function storescuSend(port: number, aeTitle: string, files: string[]): Promise<void> {
  const shares = Array.from({ length: parallel }, (_, share) => files.filter((_, i) => i % parallel === share));
  const results = await Promise.all(
    shares.map((share) => run('storescu', ['-aec', aeTitle, '127.0.0.1', String(port), ...share], { env: DCMTK_ENV, timeoutMs: 30 * 60_000 })),
  );
  for (const result of results) if (result.code !== 0) throw new Error(`storescu failed (${result.code}): ${result.stderr.slice(-2000)}`);
}

/** A destination storescp writing into `out`, a folder of its own kept until the bench ends (bench/ext4.ts). */
async function startStorescp(out: string, mode: '+B' | '--ignore' = '+B') {
  mkdirSync(out, { recursive: true });
  const port = await freePort();
  const scp = start('storescp', [mode, '-od', out, String(port)], { env: DCMTK_ENV });
  await waitForPort(port);
  return { scp, port };
}

function query<T>(storagePath: string, sql: string): T {
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    return db.prepare(sql).get() as T;
  } finally {
    db.close();
  }
}

async function waitFor(what: string, timeoutMs: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface Sample {
  sender: string;
  seconds: number;
  rss: number;
}

async function benchForward(): Promise<void> {
  const corpus = await ensureCorpus('forward', count);
  const work = join(root, 'work', 'forward');
  const gantryDir = join(work, 'gantry');
  // Receive and de-identify once, untimed.
  let gantry: GantryProcess = await startGantryProcess(gantryDir, { log: { level: 'warn' }, deid: AS_DEPLOYED });
  await storescuSend(gantry.port, gantry.aeTitle, filesUnder(corpus));
  await waitFor('de-identification', 600_000, () => query<{ n: number }>(gantry.storagePath, `SELECT count(*) AS n FROM instances WHERE state = 'deidentified'`).n === count);
  await gantry.stop();
  const storagePath = gantry.storagePath;
  const deidentified = filesUnder(join(storagePath, 'deidentified'));
  const bytes = deidentified.reduce((sum, file) => sum + statSync(file).size, 0);

  const samples: Sample[] = [];
  let runs = 0;
  const destinationFolder = () => join(work, `received-${(runs += 1)}`);
  const resetOutbox = () => {
    const db = new Database(join(storagePath, 'index.sqlite'));
    try {
      db.pragma('busy_timeout = 5000');
      db.exec(`DELETE FROM forward_outbox; DELETE FROM forward_confirmations; UPDATE instances SET state = 'deidentified', routed_at = NULL`);
    } finally {
      db.close();
    }
  };
  /** The running node given a fresh storescp (SIGHUP), the corpus routed to it, timed from the first
   * item queued to the last confirmed (the outbox's own times). */
  const forwardOnce = async (running: GantryProcess, reset: 'before' | 'after'): Promise<number> => {
    const received = destinationFolder();
    const { scp, port } = await startStorescp(received);
    try {
      if (reset === 'before') resetOutbox();
      const config = parse(readFileSync(running.configPath, 'utf8')) as Record<string, unknown>;
      config['forward'] = { stableSeconds: 1, destinations: [{ name: 'scp', aeTitle: 'STORESCP', host: '127.0.0.1', port }] };
      writeFileSync(running.configPath, stringify(config));
      process.kill(running.pid, 'SIGHUP');
      if (reset === 'after') {
        // Routed again only once the new destination is in place (not to the last round's port).
        await sleep(1000);
        resetOutbox();
      }
      await waitFor('forwarding', 600_000, () => query<{ n: number }>(storagePath, `SELECT count(*) AS n FROM forward_outbox WHERE state = 'sent'`).n === count);
      const span = query<{ first: number; last: number }>(storagePath, `SELECT min(queued_at) AS first, max(sent_at) AS last FROM forward_outbox`);
      const files = readdirSync(received).length;
      if (files !== count) console.log(`  WARNING: storescp received ${files} of ${count}`);
      return (span.last - span.first) / 1000;
    } finally {
      await stop(scp, 'SIGKILL');
      writeBack();
    }
  };
  /**
   * A fresh node forwards the corpus (as after a start: V8 compiles the forwarding path meanwhile,
   * on the same two cores as storescp), then the same node forwards it again ("gantry warm": a node
   * that has forwarded before, as one running for days is).
   */
  const runGantry = async (): Promise<Sample[]> => {
    // Started with no destination and given one by SIGHUP once warm (its worker threads load for
    // about a second at start), so that forwarding is measured alone.
    resetOutbox();
    gantry = await startGantryProcess(gantryDir, { log: { level: 'warn' }, deid: AS_DEPLOYED, forward: { stableSeconds: 1 } });
    try {
      await sleep(2000);
      const first = await forwardOnce(gantry, 'before');
      fillFreeMemory(resolve(values.data));
      const warm = await forwardOnce(gantry, 'after');
      const rss = peakRss(gantry.pid);
      return [
        { sender: 'gantry', seconds: first, rss },
        { sender: 'gantry warm', seconds: warm, rss },
      ];
    } finally {
      await gantry.stop();
    }
  };
  const runStorescu = async (): Promise<Sample[]> => {
    const { scp, port } = await startStorescp(destinationFolder());
    try {
      const began = performance.now();
      const sender = start('storescu', ['-aec', 'STORESCP', '127.0.0.1', String(port), ...deidentified], { env: DCMTK_ENV });
      const code = await new Promise<number | null>((resolve) => sender.child.once('exit', resolve));
      const seconds = (performance.now() - began) / 1000;
      if (code !== 0) throw new Error(`storescu failed: ${sender.output().slice(-1000)}`);
      return [{ sender: 'storescu', seconds, rss: Number.NaN }];
    } finally {
      await stop(scp, 'SIGKILL');
      writeBack();
    }
  };
  for (let round = 1; round <= rounds; round += 1) {
    const order = round % 2 === 1 ? [runGantry, runStorescu] : [runStorescu, runGantry];
    for (const next of order) {
      fillFreeMemory(resolve(values.data)); // before anything is timed, and what ended processes freed since (bench/vm-memory.ts)
      for (const sample of await next()) {
        samples.push(sample);
        console.log(
          `forward round ${round} ${sample.sender.padEnd(11)} ${(count / sample.seconds).toFixed(1).padStart(7)} inst/s ${(mb(bytes) / sample.seconds).toFixed(1).padStart(6)} MB/s  peak RSS ${Number.isNaN(sample.rss) ? 'n/a' : `${mb(sample.rss).toFixed(1)} MB`}`,
        );
      }
    }
  }
  const by = (sender: string) => samples.filter((sample) => sample.sender === sender);
  console.log(`\nforward: ${count} de-identified files, ${mb(bytes).toFixed(0)} MB, to storescp +B, ${rounds} rounds (medians)`);
  for (const sender of ['gantry', 'gantry warm', 'storescu']) {
    const list = by(sender);
    const rss = sender === 'gantry' ? `  peak RSS ${median(list.map((s) => mb(s.rss))).toFixed(1)} MB (both passes)` : '';
    console.log(`  ${sender.padEnd(11)} ${median(list.map((s) => count / s.seconds)).toFixed(1).padStart(7)} inst/s${rss}`);
  }
  for (const sender of ['gantry', 'gantry warm']) {
    const ratios = by(sender).map((sample, i) => (by('storescu')[i] as Sample).seconds / sample.seconds);
    console.log(`  ratio ${sender}/storescu: median ${median(ratios).toFixed(2)} (per round: ${ratios.map((r) => r.toFixed(2)).join(' ')})`);
  }
  console.log('');
}

async function benchEndToEnd(): Promise<void> {
  const corpus = await ensureCorpus('e2e', 20);
  const files = filesUnder(corpus);
  const work = join(root, 'work', 'e2e');
  const rates: number[] = [];
  const rsses: number[] = [];
  for (let round = 1; round <= rounds; round += 1) {
    fillFreeMemory(resolve(values.data)); // before anything is timed, and what ended processes freed since (bench/vm-memory.ts)
    const { scp, port } = await startStorescp(join(work, `received-${round}`), sink);
    const gantry = await startGantryProcess(join(work, `gantry-${round}`), {
      log: { level: 'warn' },
      deid: AS_DEPLOYED,
      forward: { stableSeconds: 2, destinations: [{ name: 'scp', aeTitle: 'STORESCP', host: '127.0.0.1', port }] },
    });
    try {
      await storescuSend(gantry.port, gantry.aeTitle, files);
      await waitFor('end to end', 600_000, () => query<{ n: number }>(gantry.storagePath, `SELECT count(*) AS n FROM forward_outbox WHERE state = 'sent'`).n === count);
      const first = query<{ at: number }>(gantry.storagePath, 'SELECT min(received_at) AS at FROM instances').at;
      const last = query<{ at: number }>(gantry.storagePath, 'SELECT max(sent_at) AS at FROM forward_outbox').at;
      const received = query<{ at: number }>(gantry.storagePath, 'SELECT max(received_at) AS at FROM instances').at;
      const routed = query<{ at: number }>(gantry.storagePath, 'SELECT max(routed_at) AS at FROM instances').at;
      const rate = count / ((last - first) / 1000);
      rates.push(rate);
      rsses.push(peakRss(gantry.pid));
      console.log(
        `e2e round ${round}: ${rate.toFixed(1)} inst/s from first store received to last forward confirmed ` +
          `(all received after ${((received - first) / 1000).toFixed(1)} s, last routed ${((routed - first) / 1000).toFixed(1)} s, last confirmed ${((last - first) / 1000).toFixed(1)} s), ` +
          `peak RSS ${mb(rsses.at(-1) as number).toFixed(1)} MB`,
      );
    } finally {
      await gantry.stop();
      await stop(scp, 'SIGKILL');
      writeBack();
    }
  }
  console.log(`\ne2e: ${count} instances in ${count / 20} studies, ${parallel} sender(s), storescp ${sink}, stableSeconds 2, ${rounds} rounds: median ${median(rates).toFixed(1)} inst/s, peak RSS ${mb(median(rsses)).toFixed(1)} MB\n`);
}

async function main(): Promise<void> {
  // Kept until the end: a 0.5 MB instance's original, de-identified and received copies, per run.
  const runsKept = (values.only === 'e2e' ? 0 : 3 * rounds + 2) + (values.only === 'forward' ? 0 : 3 * rounds);
  checkFreeDisk(root, count * 0.53e6 * runsKept, 'bench/forward');
  const work = join(root, 'work');
  deletions.delete(work);
  await deletions.settle();
  try {
    if (!values.only || values.only === 'forward') await benchForward();
    if (!values.only || values.only === 'e2e') await benchEndToEnd();
  } finally {
    // After the summaries: deleting between runs would time ext4 instead of the senders.
    deletions.delete(work);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
