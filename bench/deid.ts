/**
 * bench/deid: the de-identification engine (read, de-identify, write without fsync) over a corpus
 * with 1 and 2 worker threads, and in the same run Orthanc's POST /studies/{id}/anonymize over the
 * same studies, interleaved, several rounds; medians of instances/s, MB/s and the ratio.
 *
 *   node dist/bench/deid.js [--rounds 5] [--count 2000] [--data .bench-data]
 *
 * The corpus is the one of bench/receive (0.5 MB CT-like instances), generated if missing.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Piscina } from 'piscina';
import { storescu } from '../test/helpers/dcmtk.js';
import { startOrthanc } from '../test/helpers/orthanc.js';
import { newUid, writeSyntheticFile } from '../test/helpers/synthetic-dicom.js';
import { DEFAULT_DEID_SETTINGS } from '../src/deid/engine.js';
import { shareSettings } from '../src/deid/shared-settings.js';
import type { DeidTask } from '../src/deid/worker.js';
import { median } from './stats.js';
import { fillFreeMemory } from './vm-memory.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    count: { type: 'string', default: '2000' },
    data: { type: 'string', default: '.bench-data' },
  },
});
const rounds = Number(values.rounds);
const count = Number(values.count);
const root = resolve(values.data);

async function ensureCorpus(): Promise<{ dir: string; files: string[]; bytes: number }> {
  const dir = join(root, `small-${count}x1`);
  if (!existsSync(`${dir}.complete`)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const study = newUid();
    let series = newUid();
    for (let i = 0; i < count; i += 1) {
      if (i % 200 === 0) series = newUid();
      await writeSyntheticFile(join(dir, `f${String(i).padStart(5, '0')}.dcm`), { studyInstanceUid: study, seriesInstanceUid: series, patientId: 'BENCH01', patientName: 'Bench^Receive', instanceNumber: i + 1 });
    }
    writeFileSync(`${dir}.complete`, '');
  }
  const files = readdirSync(dir).filter((name) => name.endsWith('.dcm')).sort().map((name) => join(dir, name));
  return { dir, files, bytes: files.reduce((sum, file) => sum + statSync(file).size, 0) };
}

/** The engine in `threads` worker threads, over every file; returns seconds. */
async function runGantry(files: string[], threads: number, out: string): Promise<number> {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, 'deidentified', '.incoming'), { recursive: true });
  const pool = new Piscina({
    filename: new URL('../src/deid/worker.js', import.meta.url).href,
    workerData: { secret: 'the benchmark secret, long enough' },
    minThreads: threads,
    maxThreads: threads,
  });
  // Warm the threads up (module loading is not de-identification).
  await Promise.all(Array.from({ length: threads }, () => pool.run(task(files[0] as string, out, -1))));
  const began = performance.now();
  await Promise.all(files.map((file, i) => pool.run(task(file, out, i))));
  const seconds = (performance.now() - began) / 1000;
  await pool.destroy();
  return seconds;
}

const settings = shareSettings([{ name: 'default', options: [], rules: [] }], {
  dateShift: DEFAULT_DEID_SETTINGS.dateShift,
  maxAgeYears: DEFAULT_DEID_SETTINGS.maxAgeYears,
});

function task(input: string, out: string, n: number): DeidTask {
  return {
    input,
    temporary: join(out, 'deidentified', '.incoming', `${n}.dcm`),
    settings,
    callingAeTitle: 'BENCH',
  };
}

async function runOrthanc(dir: string, work: string): Promise<number> {
  rmSync(work, { recursive: true, force: true });
  const orthanc = await startOrthanc(work, { ConcurrentJobs: 2 });
  try {
    const sent = await storescu(orthanc.dicomPort, orthanc.aeTitle, [dir], ['+sd'], 30 * 60_000);
    if (sent.code !== 0) throw new Error(`storescu to Orthanc failed: ${sent.output.slice(-500)}`);
    const studies = await orthanc.get<string[]>('/studies');
    const began = performance.now();
    for (const study of studies) {
      const response = await fetch(`http://127.0.0.1:${orthanc.httpPort}/studies/${study}/anonymize`, { method: 'POST', body: JSON.stringify({ Synchronous: true }) });
      if (!response.ok) throw new Error(`anonymize: HTTP ${response.status}`);
      await response.json();
    }
    return (performance.now() - began) / 1000;
  } finally {
    await orthanc.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const corpus = await ensureCorpus();
  const mb = corpus.bytes / 1e6;
  const samples: Record<string, number[]> = { 'gantry 1 thread': [], 'gantry 2 threads': [], orthanc: [] };
  const work = join(root, 'work-deid');
  for (let round = 1; round <= rounds; round += 1) {
    fillFreeMemory(resolve(values.data)); // before anything is timed, and what ended processes freed since (bench/vm-memory.ts)
    const runs: Array<[string, () => Promise<number>]> = [
      ['gantry 1 thread', () => runGantry(corpus.files, 1, join(work, 'g1'))],
      ['gantry 2 threads', () => runGantry(corpus.files, 2, join(work, 'g2'))],
      ['orthanc', () => runOrthanc(corpus.dir, join(work, 'orthanc'))],
    ];
    for (let i = 0; i < runs.length; i += 1) {
      const [name, runner] = runs[(i + round) % runs.length] as [string, () => Promise<number>];
      const seconds = await runner();
      (samples[name] as number[]).push(seconds);
      console.log(`round ${round} ${name.padEnd(17)} ${(corpus.files.length / seconds).toFixed(1).padStart(8)} inst/s ${(mb / seconds).toFixed(1).padStart(7)} MB/s`);
    }
  }
  rmSync(work, { recursive: true, force: true });
  console.log(`\n${corpus.files.length} instances, ${mb.toFixed(0)} MB, ${rounds} rounds (medians)`);
  for (const [name, list] of Object.entries(samples)) {
    console.log(`  ${name.padEnd(17)} ${(corpus.files.length / median(list)).toFixed(1).padStart(8)} inst/s ${(mb / median(list)).toFixed(1).padStart(7)} MB/s`);
  }
  for (const name of ['gantry 1 thread', 'gantry 2 threads']) {
    const ratios = (samples[name] as number[]).map((seconds, i) => (samples.orthanc?.[i] as number) / seconds);
    console.log(`  ratio ${name}/orthanc: median ${median(ratios).toFixed(2)} (per round: ${ratios.map((r) => r.toFixed(2)).join(' ')})`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
