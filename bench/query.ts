/**
 * bench/query: C-FIND latency.
 *
 *   node dist/bench/query.js [--only inside|orthanc] [--instances 100000] [--corpus 20000] [--rounds 10]
 *
 * inside: an index of --instances instances (patients of 2 studies of 2 series of 5 instances) is
 *   written directly (no files), and Gantry's find service answers a STUDY-level wild card query on
 *   PatientName and an IMAGE-level query for one series: medians of --rounds runs, in milliseconds,
 *   from the identifier to the last response encoded.
 * orthanc: the same two queries over the network with DCMTK findscu against Gantry and Orthanc holding
 *   the same --corpus instances (sent by storescu to both), interleaved, --rounds times each: medians and
 *   their ratio. findscu's own start-up is in both.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase } from '../src/db/database.js';
import { encodeTextDataset } from '../src/dicom/dataset-encoder.js';
import { InstanceIndex } from '../src/index/instance-index.js';
import { silentLogger } from '../src/observability/logger.js';
import { FindService, STUDY_ROOT_FIND } from '../src/query/find-service.js';
import { startGantryProcess } from '../test/helpers/gantry.js';
import { startOrthanc } from '../test/helpers/orthanc.js';
import { DCMTK_ENV, run } from '../test/helpers/processes.js';
import { writeSyntheticFile } from '../test/helpers/synthetic-dicom.js';
import { median } from './stats.js';
import { fillFreeMemory } from './vm-memory.js';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    instances: { type: 'string', default: '100000' },
    corpus: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '10' },
    data: { type: 'string', default: '.bench-data' },
  },
});
const root = resolve(values.data);
const rounds = Number(values.rounds);

/** Deterministic UIDs, so the corpus on disk and the queries agree across runs. */
const uid = (kind: number, n: number) => `1.2.826.0.1.3680043.9.7433.${kind}.${n}`;
const PER_PATIENT = 20;

/** Instance n's place: patient, study, series. */
function place(n: number) {
  const patient = Math.floor(n / PER_PATIENT);
  const study = Math.floor(n / 10);
  const series = Math.floor(n / 5);
  return { patient, study, series, studyUid: uid(1, study), seriesUid: uid(2, series), sopUid: uid(3, n) };
}

const STUDY_QUERY = [
  [0x00080052, 'STUDY'],
  [0x00100010, 'Doe^Patient12*'],
  [0x00100020, ''],
  [0x0020000d, ''],
  [0x00080020, ''],
  [0x00081030, ''],
] as const;

async function inside(): Promise<void> {
  const count = Number(values.instances);
  const dir = join(root, 'work', 'query-inside');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const db = openDatabase(join(dir, 'index.sqlite'));
  const index = new InstanceIndex(db);
  const began = performance.now();
  const insert = db.transaction((from: number, to: number) => {
    for (let n = from; n < to; n += 1) {
      const at = place(n);
      index.upsert({
        attributes: {
          PatientName: `Doe^Patient${at.patient}`,
          PatientID: `PAT${at.patient}`,
          StudyDate: '20240102',
          StudyDescription: 'SYNTHETIC STUDY',
          Modality: 'CT',
          InstanceNumber: (n % 5) + 1,
        },
        studyInstanceUid: at.studyUid,
        seriesInstanceUid: at.seriesUid,
        sopInstanceUid: at.sopUid,
        sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
        transferSyntaxUid: '1.2.840.10008.1.2.1',
        filePath: `originals/${n}.dcm`,
        fileSize: 1,
        callingAeTitle: 'BENCH',
        receivedAt: Date.now(),
      });
    }
  });
  for (let from = 0; from < count; from += 10_000) insert(from, Math.min(count, from + 10_000));
  console.log(`inside: ${count} instances indexed in ${((performance.now() - began) / 1000).toFixed(1)} s`);
  const service = new FindService({ db, aeTitle: () => 'GANTRY', maxResults: () => 10_000, viewFor: () => 'source' });
  const ask = async (elements: ReadonlyArray<readonly [number, string]>): Promise<{ ms: number; matches: number }> => {
    const identifier = encodeTextDataset(elements.map(([tag, value]) => ({ tag, value })), 'explicit-le');
    const request = {
      association: { id: 'bench', callingAeTitle: 'BENCH', calledAeTitle: 'GANTRY', remoteAddress: '127.0.0.1', remotePort: 0, log: silentLogger() },
      messageId: 1,
      sopClassUid: STUDY_ROOT_FIND,
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      identifier,
    };
    const start = performance.now();
    let matches = 0;
    for await (const _ of service.find(request, new AbortController().signal)) matches += 1;
    return { ms: performance.now() - start, matches };
  };
  const target = place(Math.floor(count / 2));
  const imageQuery = [
    [0x00080052, 'IMAGE'],
    [0x0020000d, target.studyUid],
    [0x0020000e, target.seriesUid],
    [0x00080018, ''],
    [0x00200013, ''],
  ] as const;
  for (const [name, query] of [['STUDY wild card on PatientName', STUDY_QUERY], ['IMAGE level, one series', imageQuery]] as const) {
    const runs: number[] = [];
    let matches = 0;
    for (let round = 0; round < rounds; round += 1) {
      const result = await ask(query);
      runs.push(result.ms);
      matches = result.matches;
    }
    console.log(`inside: ${name}: ${matches} matches, median ${median(runs).toFixed(2)} ms (min ${Math.min(...runs).toFixed(2)}, max ${Math.max(...runs).toFixed(2)}) over ${rounds} runs`);
  }
  db.close();
}

async function ensureCorpus(count: number): Promise<string> {
  const dir = join(root, `query-${count}`);
  if (!existsSync(`${dir}.complete`)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    process.stderr.write(`generating ${count} small instances in ${dir}\n`);
    for (let n = 0; n < count; n += 1) {
      const at = place(n);
      await writeSyntheticFile(join(dir, `q${String(n).padStart(6, '0')}.dcm`), {
        studyInstanceUid: at.studyUid,
        seriesInstanceUid: at.seriesUid,
        sopInstanceUid: at.sopUid,
        patientId: `PAT${at.patient}`,
        patientName: `Doe^Patient${at.patient}`,
        instanceNumber: (n % 5) + 1,
        rows: 8,
        columns: 8,
      });
    }
    writeFileSync(`${dir}.complete`, '');
  }
  return dir;
}

async function sendAll(port: number, aeTitle: string, dir: string): Promise<void> {
  const files = readdirSync(dir).sort().map((file) => join(dir, file));
  // storescu takes its file names on the command line: a few thousand at a time.
  for (let from = 0; from < files.length; from += 2000) {
    const result = await run('storescu', ['-aec', aeTitle, '127.0.0.1', String(port), ...files.slice(from, from + 2000)], { env: DCMTK_ENV, timeoutMs: 30 * 60_000 });
    if (result.code !== 0) throw new Error(`storescu failed: ${result.stderr.slice(-1000)}`);
  }
}

async function findscuMs(port: number, calledAeTitle: string, keys: string[]): Promise<{ ms: number; output: string }> {
  const start = performance.now();
  const result = await run('findscu', ['-S', '-aet', 'BENCH', '-aec', calledAeTitle, ...keys.flatMap((key) => ['-k', key]), '127.0.0.1', String(port)], {
    env: DCMTK_ENV,
    timeoutMs: 120_000,
  });
  return { ms: performance.now() - start, output: `${result.stdout}${result.stderr}` };
}

async function againstOrthanc(): Promise<void> {
  const count = Number(values.corpus);
  const corpus = await ensureCorpus(count);
  const work = join(root, 'work', 'query-orthanc');
  rmSync(work, { recursive: true, force: true });
  const gantry = await startGantryProcess(join(work, 'gantry'), { log: { level: 'warn' }, query: { sourceCallers: ['BENCH'], maxResults: 100_000 } });
  const orthanc = await startOrthanc(join(work, 'orthanc'), { LimitFindResults: 0, LimitFindInstances: 0 });
  try {
    let began = performance.now();
    await sendAll(gantry.port, gantry.aeTitle, corpus);
    console.log(`orthanc: ${count} instances into Gantry in ${((performance.now() - began) / 1000).toFixed(0)} s`);
    began = performance.now();
    await sendAll(orthanc.dicomPort, orthanc.aeTitle, corpus);
    console.log(`orthanc: ${count} instances into Orthanc in ${((performance.now() - began) / 1000).toFixed(0)} s`);
    const target = place(Math.floor(count / 2));
    const queries: Array<[string, string[]]> = [
      ['STUDY wild card on PatientName', ['QueryRetrieveLevel=STUDY', 'PatientName=Doe^Patient12*', 'PatientID', 'StudyInstanceUID', 'StudyDate', 'StudyDescription']],
      ['IMAGE level, one series', ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${target.studyUid}`, `SeriesInstanceUID=${target.seriesUid}`, 'SOPInstanceUID', 'InstanceNumber']],
    ];
    for (const [name, keys] of queries) {
      const gantryRuns: number[] = [];
      const orthancRuns: number[] = [];
      for (let round = 0; round < rounds; round += 1) {
        const order: Array<[number, string, number[]]> = [
          [gantry.port, gantry.aeTitle, gantryRuns],
          [orthanc.dicomPort, orthanc.aeTitle, orthancRuns],
        ];
        if (round % 2 === 1) order.reverse();
        for (const [port, ae, list] of order) {
          const { ms, output } = await findscuMs(port, ae, keys);
          if (!/Success|^$/.test(output) && /Error|Failed/i.test(output)) throw new Error(`findscu failed against ${ae}: ${output.slice(-500)}`);
          list.push(ms);
        }
      }
      const ratio = median(orthancRuns) / median(gantryRuns);
      console.log(
        `orthanc: ${name}: Gantry median ${median(gantryRuns).toFixed(1)} ms, Orthanc median ${median(orthancRuns).toFixed(1)} ms over ${rounds} interleaved runs (findscu start-up included): Gantry ${ratio.toFixed(2)}x faster`,
      );
    }
  } finally {
    await gantry.stop();
    await orthanc.stop();
  }
}

async function main(): Promise<void> {
  // Before anything is timed (bench/vm-memory.ts).
  fillFreeMemory(resolve(values.data));
  if (!values.only || values.only === 'inside') await inside();
  if (!values.only || values.only === 'orthanc') await againstOrthanc();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
