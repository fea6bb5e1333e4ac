/**
 * bench/receive: storescu sends one corpus to DCMTK storescp (default mode and +B) and to Gantry, in
 * the same run, interleaved, several rounds; prints per-round figures and the medians of
 * instances/s, MB/s, peak RSS and the ratio Gantry/storescp. With one sender, each round also
 * measures the disk's durable floor (bench/durable-floor.ts) and prints the ratio to storescp that a
 * receiver costing nothing but that floor could reach in that round: the ceiling that syncing each
 * instance before answering puts on any design, on this machine, in this hour. For Gantry's rounds
 * (not --huge) it also waits, after the sender is done, until every instance is de-identified, and
 * prints how long that took and the rate of receiving and de-identifying together (peak RSS is read
 * after it): deid.receiveFirst holds de-identification while stores keep arriving, and the timed
 * figure alone would hide that work.
 *
 *   node dist/bench/receive.js [--rounds 5] [--small 2000] [--large 3] [--large-frames 480] [--huge]
 *                              [--parallel N: N storescu processes at once, each a share of the files]
 *                              [--orthanc: Orthanc as a fourth receiver]
 *                              [--backlog: also Gantry receiving while it de-identifies another corpus]
 *                              [--receive-first off: Gantry with deid.receiveFirst switched off]
 *
 * Corpora are generated once under .bench-data/ (about 1.8 GB; --huge adds a 1 GB instance whose
 * peak RSS is measured on its own).
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { defaultDeidWorkers } from '../src/config/schema.js';
import { startGantryProcess } from '../test/helpers/gantry.js';
import { startOrthanc } from '../test/helpers/orthanc.js';
import { DCMTK_ENV, freePort, peakRss, run, start, stop, waitForPort } from '../test/helpers/processes.js';
import { newUid, writeSyntheticFile } from '../test/helpers/synthetic-dicom.js';
import { boundOverStorescp, inPlaceSyncMs, LAST_PDU_BYTES } from './durable-floor.js';
import { checkFreeDisk, Deletions, writeBack } from './ext4.js';
import { median } from './stats.js';
import { fillFreeMemory } from './vm-memory.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    small: { type: 'string', default: '2000' },
    large: { type: 'string', default: '3' },
    'large-frames': { type: 'string', default: '480' },
    huge: { type: 'boolean', default: false },
    only: { type: 'string' },
    data: { type: 'string', default: '.bench-data' },
    parallel: { type: 'string', default: '1' },
    orthanc: { type: 'boolean', default: false },
    backlog: { type: 'boolean', default: false },
    'receive-first': { type: 'string', default: 'on' },
  },
});
if (!['on', 'off'].includes(values['receive-first'])) throw new Error('--receive-first: on or off');
/** Gantry's de-identification settings in every run: the deployed default, or receiveFirst switched off. */
const DEID = { workers: defaultDeidWorkers(), receiveFirst: values['receive-first'] === 'on' };

const root = resolve(values.data);
const deletions = new Deletions(root);
const rounds = Number(values.rounds);
/** How many storescu processes send at once, each a share of the corpus (one association each). */
const parallel = Number(values.parallel);

interface Corpus {
  name: string;
  dir: string;
  files: number;
  bytes: number;
}

async function ensureCorpus(name: string, count: number, frames: number): Promise<Corpus> {
  const dir = join(root, `${name}-${count}x${frames}`);
  if (!existsSync(`${dir}.complete`)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    process.stderr.write(`generating ${count} instance(s) of ${frames} frame(s) in ${dir}\n`);
    const studyInstanceUid = newUid();
    let seriesInstanceUid = newUid();
    for (let i = 0; i < count; i += 1) {
      if (i % 200 === 0) seriesInstanceUid = newUid();
      await writeSyntheticFile(join(dir, `f${String(i).padStart(5, '0')}.dcm`), {
        studyInstanceUid,
        seriesInstanceUid,
        patientId: 'BENCH01',
        patientName: 'Bench^Receive',
        instanceNumber: i + 1,
        frames,
      });
    }
    await import('node:fs/promises').then((fs) => fs.writeFile(`${dir}.complete`, ''));
  }
  const files = readdirSync(dir).filter((file) => file.endsWith('.dcm'));
  const bytes = files.reduce((sum, file) => sum + statSync(join(dir, file)).size, 0);
  return { name, dir, files: files.length, bytes };
}

interface Sample {
  receiver: string;
  seconds: number;
  rss: number;
  stored: number;
  /** Gantry: seconds from the sender's end to the last instance de-identified (deid.receiveFirst holds
   * de-identification while stores keep arriving; this is the work the timed figure leaves for after). */
  deidentifiedAfter?: number;
}

/** Longest wait for the de-identification of a round's corpus after the sender is done. */
const DEID_DEADLINE_MS = 10 * 60_000;

/** Seconds until no instance of the index waits for de-identification (or is being de-identified). */
async function secondsUntilDeidentified(storagePath: string, pid: number): Promise<number> {
  const began = performance.now();
  const db = new Database(join(storagePath, 'index.sqlite'), { readonly: true });
  try {
    const waiting = db.prepare(`SELECT count(*) FROM instances WHERE state = 'received'`).pluck();
    while ((waiting.get() as number) > 0) {
      if (performance.now() - began > DEID_DEADLINE_MS) throw new Error('de-identification did not finish within 10 minutes');
      if (!isAlive(pid)) throw new Error('Gantry exited before it had de-identified the corpus');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    db.close();
  }
  return (performance.now() - began) / 1000;
}

async function sendWithStorescu(port: number, aeTitle: string, corpus: Corpus): Promise<number> {
  const files = readdirSync(corpus.dir)
    .filter((file) => file.endsWith('.dcm'))
    .sort()
    .map((file) => join(corpus.dir, file));
  const shares = Array.from({ length: parallel }, (_, share) => files.filter((_, i) => i % parallel === share));
  const began = performance.now();
  const results = await Promise.all(
    shares.map((share) => run('storescu', ['-aec', aeTitle, '127.0.0.1', port.toString(), ...share], { env: DCMTK_ENV, timeoutMs: 30 * 60_000 })),
  );
  for (const result of results) {
    if (result.code !== 0) throw new Error(`storescu failed (${result.code}): ${result.stderr.slice(-2000)}`);
  }
  return (performance.now() - began) / 1000;
}

async function runStorescp(mode: 'default' | '+B', corpus: Corpus, work: string): Promise<Sample> {
  const out = join(work, 'storescp-out');
  mkdirSync(out, { recursive: true });
  const port = await freePort();
  const args = [...(mode === '+B' ? ['+B'] : []), '-od', out, port.toString()];
  const scp = start('storescp', args, { env: DCMTK_ENV });
  try {
    await waitForPort(port);
    const seconds = await sendWithStorescu(port, 'ANY-SCP', corpus);
    const rss = peakRss(scp.pid);
    const stored = readdirSync(out).length;
    return { receiver: `storescp ${mode}`, seconds, rss, stored };
  } finally {
    await stop(scp, 'SIGKILL');
    writeBack();
  }
}

async function runOrthanc(corpus: Corpus, work: string): Promise<Sample> {
  const dir = join(work, 'orthanc');
  const orthanc = await startOrthanc(dir);
  try {
    const seconds = await sendWithStorescu(orthanc.dicomPort, orthanc.aeTitle, corpus);
    const rss = peakRss(orthanc.pid);
    const stored = (await orthanc.get<{ CountInstances: number }>('/statistics')).CountInstances;
    return { receiver: 'orthanc', seconds, rss, stored };
  } finally {
    await orthanc.stop();
    writeBack();
  }
}

/**
 * Gantry receiving the corpus; with `backlog`, first another corpus of the same size is sent untimed,
 * so that the timed run happens while the de-identification pool works through it (an outage's
 * backlog: old, so deid.receiveFirst does not hold it; here forward.stableSeconds 1 bounds the hold to
 * half a second). With `waitForDeid`, the run then waits until every instance is de-identified
 * (deidentifiedAfter), and peak RSS is read after that.
 */
async function runGantry(corpus: Corpus, work: string, options: { backlog?: Corpus; waitForDeid: boolean }): Promise<Sample> {
  const { backlog, waitForDeid } = options;
  const dir = join(work, 'gantry');
  const gantry = await startGantryProcess(dir, { log: { level: 'warn' }, deid: DEID, ...(backlog ? { forward: { stableSeconds: 1 } } : {}) });
  try {
    if (backlog) await sendWithStorescu(gantry.port, gantry.aeTitle, backlog);
    const seconds = await sendWithStorescu(gantry.port, gantry.aeTitle, corpus);
    const deidentifiedAfter = waitForDeid ? await secondsUntilDeidentified(gantry.storagePath, gantry.pid) : undefined;
    const stored = countFiles(join(gantry.storagePath, 'originals')) - (backlog?.files ?? 0);
    const rss = peakRss(gantry.pid);
    return { receiver: backlog ? 'gantry backlog' : 'gantry', seconds, rss, stored, ...(deidentifiedAfter !== undefined ? { deidentifiedAfter } : {}) };
  } finally {
    await gantry.stop();
    writeBack();
  }
}

function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0;
  let count = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    count += entry.isDirectory() ? countFiles(join(dir, entry.name)) : 1;
  }
  return count;
}

const mb = (bytes: number) => bytes / 1e6;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Where each run keeps what it received until the bench ends (bench/ext4.ts): a folder of its own. */
let runs = 0;
function runFolder(): string {
  runs += 1;
  return join(root, 'work', `run-${runs}`);
}

async function benchCorpus(corpus: Corpus, backlog?: Corpus): Promise<void> {
  const samples: Sample[] = [];
  /** Per round, with one sender: the durable floor and the ratio it leaves (bench/durable-floor.ts). */
  const bounds: number[] = [];
  const receivers = [
    () => runStorescp('default', corpus, runFolder()),
    () => runStorescp('+B', corpus, runFolder()),
    () => runGantry(corpus, runFolder(), { waitForDeid: true }),
    ...(values.orthanc ? [() => runOrthanc(corpus, runFolder())] : []),
    ...(backlog ? [() => runGantry(corpus, runFolder(), { backlog, waitForDeid: true })] : []),
  ];
  // Every run's output is kept: storescp's once, Gantry's twice (original and de-identified copy).
  const copiesPerRound = 2 + 2 + (values.orthanc ? 1 : 0) + (backlog ? 4 : 0);
  checkFreeDisk(root, corpus.bytes * copiesPerRound * rounds, 'bench/receive');
  for (let round = 1; round <= rounds; round += 1) {
    // Rotate the order each round so no receiver always runs on a warm or cold page cache.
    const order = receivers.map((_, i) => receivers[(i + round) % receivers.length] as () => Promise<Sample>);
    for (const receiver of order) {
      fillFreeMemory(resolve(values.data)); // before anything is timed, and what ended processes freed since (bench/vm-memory.ts)
      const sample = await receiver();
      samples.push(sample);
      console.log(
        `${corpus.name} round ${round} ${sample.receiver.padEnd(16)} ${(corpus.files / sample.seconds).toFixed(1).padStart(8)} inst/s ` +
          `${(mb(corpus.bytes) / sample.seconds).toFixed(1).padStart(7)} MB/s  peak RSS ${mb(sample.rss).toFixed(1)} MB  stored ${sample.stored}` +
          (sample.deidentifiedAfter !== undefined ? `  all de-identified ${sample.deidentifiedAfter.toFixed(1)} s after the sender's end` : ''),
      );
      if (sample.stored < corpus.files) console.log(`  WARNING: ${sample.receiver} stored ${sample.stored} of ${corpus.files}`);
    }
    if (parallel === 1) bounds.push(durableBound(corpus, runFolder(), samples.slice(-receivers.length)));
  }
  const by = (receiver: string) => samples.filter((sample) => sample.receiver === receiver);
  const gantry = by('gantry');
  console.log(`\n${corpus.name}: ${corpus.files} files, ${mb(corpus.bytes).toFixed(0)} MB, ${parallel} sender(s), ${rounds} rounds (medians)`);
  const extra = [...(values.orthanc ? ['orthanc'] : []), ...(backlog ? ['gantry backlog'] : [])];
  for (const receiver of ['storescp default', 'storescp +B', 'gantry', ...extra]) {
    const list = by(receiver);
    console.log(
      `  ${receiver.padEnd(17)} ${median(list.map((s) => corpus.files / s.seconds)).toFixed(1).padStart(8)} inst/s ` +
        `${median(list.map((s) => mb(corpus.bytes) / s.seconds)).toFixed(1).padStart(7)} MB/s  peak RSS ${median(list.map((s) => mb(s.rss))).toFixed(1)} MB`,
    );
  }
  for (const reference of ['storescp default', 'storescp +B', ...(values.orthanc ? ['orthanc'] : [])]) {
    const list = by(reference);
    const ratios = gantry.map((sample, i) => (list[i] as Sample).seconds / sample.seconds);
    console.log(`  ratio gantry/${reference}: median ${median(ratios).toFixed(2)} (per round: ${ratios.map((r) => r.toFixed(2)).join(' ')})`);
  }
  const lags = gantry.flatMap((sample) => (sample.deidentifiedAfter === undefined ? [] : [sample.deidentifiedAfter]));
  if (lags.length > 0) {
    const total = gantry.map((sample) => corpus.files / (sample.seconds + (sample.deidentifiedAfter ?? 0)));
    console.log(
      `  gantry: all de-identified a median ${median(lags).toFixed(1)} s after the sender's end (deid.receiveFirst ${values['receive-first']}); ` +
        `received and de-identified: median ${median(total).toFixed(1)} inst/s`,
    );
  }
  if (bounds.length > 0) {
    console.log(`  the most any receiver that syncs each instance before answering could reach: median ${median(bounds).toFixed(2)}x storescp default (per round: ${bounds.map((b) => b.toFixed(2)).join(' ')})`);
  }
  if (backlog) {
    const loaded = by('gantry backlog');
    const ratios = loaded.map((sample, i) => (gantry[i] as Sample).seconds / sample.seconds);
    console.log(`  ratio gantry during a de-identification backlog / gantry idle: median ${median(ratios).toFixed(2)} (per round: ${ratios.map((r) => r.toFixed(2)).join(' ')})`);
  }
  console.log('');
}

/**
 * The round's bound: storescp's time per instance against the disk's in-place floor measured right
 * after it (one sender waits for each response, so nothing overlaps an instance's final sync).
 */
function durableBound(corpus: Corpus, work: string, round: Sample[]): number {
  const storescp = round.find((sample) => sample.receiver === 'storescp default') as Sample;
  const storescpMs = (storescp.seconds * 1000) / corpus.files;
  const instanceBytes = Math.round(corpus.bytes / corpus.files);
  const floorMs = inPlaceSyncMs(join(work, 'floor'), instanceBytes, Math.min(LAST_PDU_BYTES, instanceBytes), 200);
  const bound = boundOverStorescp(storescpMs, floorMs);
  console.log(
    `  durable floor this round: ${floorMs.toFixed(3)} ms per instance after its last byte (last PDU + fdatasync in place); ` +
      `storescp ${storescpMs.toFixed(3)} ms per instance; a receiver costing only the floor: ${bound.toFixed(2)}x`,
  );
  return bound;
}

async function hugeInstance(): Promise<void> {
  const corpus = await ensureCorpus('huge', 1, 2000);
  for (let round = 1; round <= Math.min(rounds, 3); round += 1) {
    fillFreeMemory(resolve(values.data)); // before anything is timed, and what ended processes freed since (bench/vm-memory.ts)
    // Receiving's peak RSS: read as the sender ends, before the 1 GB instance is de-identified.
    const sample = await runGantry(corpus, runFolder(), { waitForDeid: false });
    console.log(`huge (${mb(corpus.bytes).toFixed(0)} MB) round ${round}: gantry ${(mb(corpus.bytes) / sample.seconds).toFixed(1)} MB/s, peak RSS ${mb(sample.rss).toFixed(1)} MB, stored ${sample.stored}`);
  }
}

async function main(): Promise<void> {
  const work = join(root, 'work');
  deletions.delete(work);
  await deletions.settle();
  try {
    await benchCorpora();
  } finally {
    // After the summaries: deleting between runs would time ext4 instead of the receivers.
    deletions.delete(work);
  }
}

async function benchCorpora(): Promise<void> {
  const only = values.only;
  if (!only || only === 'small') {
    const backlog = values.backlog ? await ensureCorpus('backlog', Number(values.small), 1) : undefined;
    await benchCorpus(await ensureCorpus('small', Number(values.small), 1), backlog);
  }
  // --large 0: the small instances only.
  if ((!only || only === 'large') && Number(values.large) > 0) await benchCorpus(await ensureCorpus('large', Number(values.large), Number(values['large-frames'])));
  if (values.huge || only === 'huge') await hugeInstance();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
