/**
 * bench/scale: the toolkit at scale (issue 8). Corpora of 10,000 and 100,000 small files and a mixed
 * corpus of about 8 GB (single-frame CT-like instances and multi-frame instances of 100 MB); for each,
 * in one run, interleaved, several rounds:
 *   - gantry import (index only, in place) into a fresh session, and as its reference DCMTK reading
 *     the same headers (dcmdump -M over the tree with xargs -P <cores>);
 *   - gantry export (de-identification, no pixel redaction) of that session into a fresh folder, and
 *     as its reference cp -r of the same files.
 * Every command runs as a process of its own under /usr/bin/time (peak RSS: the largest process; for
 * Gantry that is the whole node, threads included). The page cache is not dropped (on some of these
 * VMs /proc/sys is read-only): every command runs with the source tree read into it just before ("warm"
 * for all, the same state for each), with the free memory filled with page cache before each round
 * (bench/vm-memory.ts).
 * Prints medians of files/s, MB/s, peak RSS and the ratios to the targets:
 * import ≥ 5,000 files/s; export ≥ 50% of cp; peak RSS for 100,000 files within 10% of 10,000's and
 * under 500 MB. Nothing is deleted while commands are timed: each round writes into a folder of its own,
 * and the run waits 6 minutes after the bench's last deletion of many files (bench/ext4.ts).
 *
 *   node dist/bench/scale.js [--rounds 5] [--sets 10k,100k,mixed] [--data .bench-data]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeMultiframe } from '../test/helpers/pixel-images.js';
import { encodeDataset, elementHeader, instanceElements, newUid } from '../test/helpers/synthetic-dicom.js';
import { encodePart10Header } from '../src/dicom/part10.js';
import { run } from '../test/helpers/processes.js';
import { checkFreeDisk, Deletions } from './ext4.js';
import { median } from './stats.js';
import { fillFreeMemory } from './vm-memory.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    sets: { type: 'string', default: '10k,100k,mixed' },
    data: { type: 'string', default: '.bench-data' },
  },
});
const rounds = Number(values.rounds);
const root = join(resolve(values.data), 'scale');
/** Every bench's deletions are noted in one place: any of them slows the next one's file creation. */
const deletions = new Deletions(resolve(values.data));
const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');
const cores = availableParallelism();
/** As the gantry command runs itself (its #! line in src/cli/main.ts). */
const NODE_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=60'];

interface Corpus {
  label: string;
  dir: string;
  files: number;
  bytes: number;
}

/** Small single-frame files, 100 to a series folder, 4 series to a study, 2 studies to a patient. */
function writeSmallCorpus(dir: string, count: number): void {
  let written = 0;
  for (let patient = 0; written < count; patient += 1) {
    for (let study = 0; study < 2 && written < count; study += 1) {
      const studyInstanceUid = newUid();
      for (let series = 0; series < 4 && written < count; series += 1) {
        const seriesInstanceUid = newUid();
        const folder = join(dir, `P${patient}`, `S${study}`, `R${series}`);
        mkdirSync(folder, { recursive: true });
        for (let i = 0; i < 100 && written < count; i += 1) {
          const spec = { studyInstanceUid, seriesInstanceUid, patientId: `SCALE${patient}`, patientName: `Scale^Patient${patient}`, instanceNumber: i + 1, seriesNumber: series + 1, rows: 32, columns: 32 };
          const { elements, pixelBytes, sopInstanceUid, sopClassUid } = instanceElements(spec);
          const header = encodePart10Header({ mediaStorageSopClassUid: sopClassUid, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: '1.2.840.10008.1.2.1' });
          writeFileSync(join(folder, `${i}.dcm`), Buffer.concat([header, encodeDataset(elements), elementHeader(0x7fe00010, 'OW', pixelBytes), Buffer.alloc(pixelBytes, 7)]));
          written += 1;
        }
      }
    }
  }
}

/** About 8 GB: 2,000 CT-like 512×512 instances (1 GB) and 70 multi-frame instances of 100 MB. */
async function writeMixedCorpus(dir: string): Promise<void> {
  let written = 0;
  const studyInstanceUid = newUid();
  for (let series = 0; series < 20; series += 1) {
    const seriesInstanceUid = newUid();
    const folder = join(dir, 'ct', `R${series}`);
    mkdirSync(folder, { recursive: true });
    for (let i = 0; i < 100; i += 1) {
      const spec = { studyInstanceUid, seriesInstanceUid, patientId: 'MIXED1', patientName: 'Mixed^Corpus', instanceNumber: i + 1, seriesNumber: series + 1 };
      const { elements, pixelBytes, sopInstanceUid, sopClassUid } = instanceElements(spec);
      const header = encodePart10Header({ mediaStorageSopClassUid: sopClassUid, mediaStorageSopInstanceUid: sopInstanceUid, transferSyntaxUid: '1.2.840.10008.1.2.1' });
      writeFileSync(join(folder, `${i}.dcm`), Buffer.concat([header, encodeDataset(elements), elementHeader(0x7fe00010, 'OW', pixelBytes), Buffer.alloc(pixelBytes, written % 251)]));
      written += 1;
    }
  }
  const frame = Buffer.alloc(512 * 512 * 2);
  for (let i = 0; i < frame.length; i += 2) frame.writeUInt16LE((i * 7) & 0x0fff, i);
  mkdirSync(join(dir, 'multiframe'), { recursive: true });
  for (let i = 0; i < 70; i += 1) {
    await writeMultiframe(join(dir, 'multiframe', `${i}.dcm`), { rows: 512, columns: 512, samples: 1, bits: 16, frames: 200, frame, patientName: 'Mixed^Multiframe' });
  }
}

function treeSize(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files += 1;
    bytes += statSync(join(entry.parentPath, entry.name)).size;
  }
  return { files, bytes };
}

async function corpus(label: string): Promise<Corpus> {
  const dir = join(root, `corpus-${label}`);
  if (!existsSync(`${dir}.complete`)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const started = Date.now();
    if (label === 'mixed') await writeMixedCorpus(dir);
    else writeSmallCorpus(dir, label === '10k' ? 10_000 : 100_000);
    writeFileSync(`${dir}.complete`, '');
    process.stdout.write(`generated ${label} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  }
  return { label, dir, ...treeSize(dir) };
}

/** Reads every file of the tree into the page cache: the same state before every command. */
async function warm(dir: string): Promise<void> {
  await run('sh', ['-c', `find "${dir}" -type f -print0 | xargs -0 -P ${cores} -n 200 cat > /dev/null`], { timeoutMs: 3_600_000 });
}

async function timed(command: string[], cwd?: string): Promise<{ seconds: number; rssMb: number; output: string }> {
  const started = performance.now();
  const result = await run('/usr/bin/time', ['-f', 'PEAK %M', ...command], { timeoutMs: 3_600_000, ...(cwd ? { cwd } : {}) });
  const seconds = (performance.now() - started) / 1000;
  if (result.code !== 0 && !/exported|indexed/.test(result.stdout)) throw new Error(`${command.join(' ')}: ${result.stderr.slice(-2000)}`);
  const peak = /PEAK (\d+)/.exec(result.stderr);
  return { seconds, rssMb: Number(peak?.[1] ?? 0) / 1024, output: result.stdout };
}

interface Sample {
  seconds: number;
  rssMb: number;
}

async function measure(set: Corpus, work: string): Promise<Record<string, Sample[]>> {
  const samples: Record<string, Sample[]> = { import: [], dcmdump: [], export: [], cp: [] };
  for (let round = 1; round <= rounds; round += 1) {
    fillFreeMemory(resolve(values.data)); // before anything is timed, and what ended processes freed since (bench/vm-memory.ts)
    // A folder per round, kept until the run ends: deleting between commands would time ext4's walk
    // over the freed inodes (bench/ext4.ts) instead of the commands.
    const dir = join(work, `${set.label}-${round}`);
    mkdirSync(dir, { recursive: true });
    const config = join(dir, 'gantry.yaml');
    // Export without pixel redaction: the multi-frame secondary captures (OT, burned-in suspects) are
    // let through by a pass rule, as a site exporting its own non-annotated series would.
    writeFileSync(
      config,
      `storage:\n  path: ${join(dir, 'session')}\ndeid:\n  secret: "the secret of bench scale, 16+"\n  rules:\n    - { action: pass, when: { attributes: { Modality: OT } } }\nlog:\n  level: warn\n`,
    );
    // Interleaved: each tool and its reference one after the other, the tree warm before each.
    await warm(set.dir);
    const imported = await timed([process.execPath, ...NODE_FLAGS, CLI, 'import', '-q', '--config', config, set.dir]);
    if (!new RegExp(`indexed ${set.files} instance`).test(imported.output)) throw new Error(`import: ${imported.output}`);
    samples.import?.push(imported);
    await warm(set.dir);
    samples.dcmdump?.push(await timed(['sh', '-c', `find "${set.dir}" -type f -print0 | xargs -0 -P ${cores} -n 500 dcmdump -q -M > /dev/null`]));
    await warm(set.dir);
    const exported = await timed([process.execPath, ...NODE_FLAGS, CLI, 'export', '-q', '--config', config, '--out', join(dir, 'export')]);
    if (!new RegExp(`exported ${set.files} instance`).test(exported.output)) throw new Error(`export: ${exported.output}`);
    samples.export?.push(exported);
    await warm(set.dir);
    samples.cp?.push(await timed(['cp', '-r', set.dir, join(dir, 'copy')]));
    // The mixed corpus's 2,070 files are too few for the walk to matter, and too large to keep 5 copies.
    if (set.label === 'mixed') {
      rmSync(join(dir, 'export'), { recursive: true, force: true });
      rmSync(join(dir, 'copy'), { recursive: true, force: true });
    }
    const line = Object.entries(samples)
      .map(([name, list]) => `${name} ${(list.at(-1)?.seconds ?? 0).toFixed(2)} s / ${(list.at(-1)?.rssMb ?? 0).toFixed(0)} MB`)
      .join(', ');
    process.stdout.write(`${set.label} round ${round}: ${line}\n`);
  }
  return samples;
}

async function main(): Promise<void> {
  const sets = (values.sets ?? '').split(',').filter(Boolean);
  // Each round's export and copy of the small sets are kept until the end (bench/ext4.ts).
  const keptRounds = (bytes: number) => bytes * (1 + 2 * rounds);
  checkFreeDisk(root, (sets.includes('mixed') ? 8.2e9 * 3 : 0) + (sets.includes('100k') ? keptRounds(0.3e9) : 0) + (sets.includes('10k') ? keptRounds(0.03e9) : 0) + 0.5e9, 'bench/scale');
  const results: Array<{ set: Corpus; samples: Record<string, Sample[]> }> = [];
  const work = join(root, 'work');
  deletions.delete(work);
  await deletions.settle();
  try {
    for (const label of sets) {
      const set = await corpus(label);
      process.stdout.write(`${label}: ${set.files} files, ${(set.bytes / 1e6).toFixed(0)} MB\n`);
      results.push({ set, samples: await measure(set, work) });
    }
    printSummary(results);
  } finally {
    // After the summary: deleting a million files takes minutes here.
    deletions.delete(work);
  }
}

function printSummary(results: Array<{ set: Corpus; samples: Record<string, Sample[]> }>): void {
  const lines = [`${rounds} rounds, medians; the tree read into the page cache before every command, the free memory filled with page cache before each round; ${cores} cores`];
  const rss = new Map<string, number>();
  for (const { set, samples } of results) {
    const rate = (name: string) => {
      const seconds = median((samples[name] ?? []).map((sample) => sample.seconds));
      return { seconds, files: set.files / seconds, mb: set.bytes / 1e6 / seconds, rss: median((samples[name] ?? []).map((sample) => sample.rssMb)) };
    };
    const [imported, dcmdump, exported, cp] = ['import', 'dcmdump', 'export', 'cp'].map(rate) as [ReturnType<typeof rate>, ReturnType<typeof rate>, ReturnType<typeof rate>, ReturnType<typeof rate>];
    rss.set(set.label, Math.max(imported.rss, exported.rss));
    const describe = (name: string, r: ReturnType<typeof rate>) => `${name.padEnd(8)} ${r.seconds.toFixed(2).padStart(8)} s ${r.files.toFixed(0).padStart(7)} files/s ${r.mb.toFixed(1).padStart(7)} MB/s  peak RSS ${r.rss.toFixed(0)} MB`;
    lines.push(
      `${set.label}: ${set.files} files, ${(set.bytes / 1e6).toFixed(0)} MB`,
      `  ${describe('import', imported)}  (target ≥ 5000 files/s: ${imported.files >= 5000 ? 'met' : 'missed'})`,
      `  ${describe('dcmdump', dcmdump)}  (import / dcmdump ${(imported.files / dcmdump.files).toFixed(2)})`,
      `  ${describe('export', exported)}  (export / cp ${(exported.mb / cp.mb).toFixed(2)} by MB/s, ${(exported.files / cp.files).toFixed(2)} by files/s; target ≥ 0.50)`,
      `  ${describe('cp -r', cp)}`,
    );
  }
  const small = rss.get('10k');
  const large = rss.get('100k');
  if (small !== undefined && large !== undefined) {
    lines.push(`peak RSS 100k / 10k: ${(large / small).toFixed(2)} (target ≤ 1.10), 100k ${large.toFixed(0)} MB (target < 500 MB)`);
  }
  process.stdout.write(`\n${lines.join('\n')}\n`);
  try {
    process.stdout.write(`${execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim()}\n`);
  } catch {
    // not a checkout
  }
}

await main();
