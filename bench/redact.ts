/**
 * bench/redact: Clean Pixel Data per transfer syntax. For 512×512 (MONOCHROME2, 16-bit) and 3000×2500
 * (RGB, 8-bit) multi-frame images in native, RLE, JPEG lossy (baseline or extended), JPEG Lossless, JPEG-LS
 * and JPEG 2000, Gantry redacts a zone in
 * every frame (a process of its own: node dist/scripts/redact-file.js), and in the same run, the
 * reference transcodes the same file through DCMTK or GDCM (decode, then encode again in the same
 * syntax: what a redaction needs at least), interleaved, several rounds. Prints medians of frames/s
 * (whole process, start-up included), the ratio Gantry/reference and the peak RSS of each.
 *
 *   node dist/bench/redact.js [--rounds 5] [--frames-small 30] [--frames-large 2] [--data .bench-data] [--syntax NAME]
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run } from '../test/helpers/processes.js';
import { writeMultiframe } from '../test/helpers/pixel-images.js';
import { median } from './stats.js';
import { fillFreeMemory } from './vm-memory.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    'frames-small': { type: 'string', default: '30' },
    'frames-large': { type: 'string', default: '2' },
    data: { type: 'string', default: '.bench-data' },
    syntax: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
const root = join(resolve(values.data), 'redact');
const REDACT_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'redact-file.js');

interface Image {
  label: string;
  rows: number;
  columns: number;
  samples: 1 | 3;
  bits: 8 | 16;
  frames: number;
}

const IMAGES: Image[] = [
  { label: '512x512 MONO2 16-bit', rows: 512, columns: 512, samples: 1, bits: 16, frames: Number(values['frames-small']) },
  { label: '3000x2500 RGB 8-bit', rows: 2500, columns: 3000, samples: 3, bits: 8, frames: Number(values['frames-large']) },
];

/** How each syntax is made from the native file, and how the reference transcodes it. */
const SYNTAXES: Array<{ name: string; make?: (from: string, to: string, bits: number) => string[][]; reference: (from: string, scratch: string, to: string, bits: number) => string[][] }> = [
  { name: 'native', reference: (from, _scratch, to) => [['dcmconv', '+te', from, to]] },
  { name: 'RLE', make: (from, to) => [['dcmcrle', from, to]], reference: (from, scratch, to) => [['dcmdrle', from, scratch], ['dcmcrle', scratch, to]] },
  // Lossy JPEG: baseline (.50) for 8-bit images, extended (.51) for 12-bit. Gantry blanks MCUs in the DCT
  // domain; the reference decodes and encodes again (adding a generation of loss Gantry does not).
  {
    name: 'JPEG lossy',
    make: (from, to, bits) => [['dcmcjpeg', bits === 8 ? '+eb' : '+ee', from, to]],
    reference: (from, scratch, to, bits) => [['dcmdjpeg', from, scratch], ['dcmcjpeg', bits === 8 ? '+eb' : '+ee', scratch, to]],
  },
  { name: 'JPEG Lossless', make: (from, to) => [['dcmcjpeg', '+e1', from, to]], reference: (from, scratch, to) => [['dcmdjpeg', from, scratch], ['dcmcjpeg', '+e1', scratch, to]] },
  { name: 'JPEG-LS', make: (from, to) => [['dcmcjpls', '+el', from, to]], reference: (from, scratch, to) => [['dcmdjpls', from, scratch], ['dcmcjpls', '+el', scratch, to]] },
  { name: 'JPEG 2000', make: (from, to) => [['gdcmconv', '--j2k', from, to]], reference: (from, scratch, to) => [['gdcmconv', '--raw', from, scratch], ['gdcmconv', '--j2k', scratch, to]] },
];

async function writeNative(path: string, image: Image): Promise<void> {
  // A picture with structure (gradients and edges), so the codecs work as on real images.
  const frame = Buffer.alloc(image.rows * image.columns * image.samples * (image.bits / 8));
  for (let y = 0; y < image.rows; y += 1) {
    for (let x = 0; x < image.columns; x += 1) {
      for (let s = 0; s < image.samples; s += 1) {
        const value = ((x * 3 + y * 5 + s * 40) ^ (((x >> 5) + (y >> 5)) % 2 ? 0x3f : 0)) & (image.bits === 16 ? 0x0fff : 0xff);
        const at = ((y * image.columns + x) * image.samples + s) * (image.bits / 8);
        if (image.bits === 16) frame.writeUInt16LE(value, at);
        else frame[at] = value;
      }
    }
  }
  await writeMultiframe(path, { ...image, frame, patientName: 'Bench^Redact' });
}

async function must(command: string[]): Promise<number> {
  const result = await run(command[0] as string, command.slice(1), { timeoutMs: 600_000 });
  if (result.code !== 0) throw new Error(`${command.join(' ')}: ${result.stderr}`);
  return result.ms;
}

/** Runs commands one after the other under /usr/bin/time: seconds in all and the largest peak RSS. */
async function timed(commands: string[][]): Promise<{ seconds: number; rssMb: number }> {
  let seconds = 0;
  let rssMb = 0;
  for (const command of commands) {
    const result = await run('/usr/bin/time', ['-f', 'TIME %e %M', ...command], { timeoutMs: 600_000 });
    if (result.code !== 0) throw new Error(`${command.join(' ')}: ${result.stderr}`);
    const match = /TIME ([\d.]+) (\d+)/.exec(result.stderr);
    seconds += result.ms / 1000;
    rssMb = Math.max(rssMb, Number(match?.[2] ?? 0) / 1024);
  }
  return { seconds, rssMb };
}

async function main(): Promise<void> {
  // Before anything is timed (bench/vm-memory.ts).
  fillFreeMemory(resolve(values.data));
  mkdirSync(root, { recursive: true });
  const zones = join(root, 'zones.yaml');
  writeFileSync(zones, 'zones:\n  - { name: header band, match: { Manufacturer: ACME }, rects: [[0, 0, 4000, 48], [0, 100, 300, 60]] }\n');
  const lines: string[] = [];
  for (const image of IMAGES) {
    const native = join(root, `${image.label.replace(/\W+/g, '-')}-${image.frames}f-native.dcm`);
    if (!existsSync(native)) await writeNative(native, image);
    for (const syntax of SYNTAXES.filter((candidate) => values.syntax === undefined || candidate.name === values.syntax)) {
      const file = syntax.make ? native.replace('-native.dcm', `-${syntax.name.replace(/\W+/g, '')}.dcm`) : native;
      if (syntax.make && !existsSync(file)) for (const command of syntax.make(native, file, image.bits)) await must(command);
      const gantry: Array<{ fps: number; rss: number }> = [];
      const reference: Array<{ fps: number; rss: number }> = [];
      for (let round = 0; round < rounds; round += 1) {
        const out = join(root, 'out.dcm');
        rmSync(out, { force: true });
        const result = await run('/usr/bin/time', ['-f', 'TIME %e %M', process.execPath, REDACT_FILE, file, out, zones], { timeoutMs: 600_000 });
        const outcome = JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}') as { kind: string; reason?: string };
        if (result.code !== 0 || outcome.kind !== 'deidentified') throw new Error(`Gantry on ${file}: ${outcome.reason ?? result.stderr}`);
        const rss = Number(/TIME [\d.]+ (\d+)/.exec(result.stderr)?.[1] ?? 0) / 1024;
        gantry.push({ fps: image.frames / (result.ms / 1000), rss });
        const ref = await timed(syntax.reference(file, join(root, 'scratch.dcm'), join(root, 'ref.dcm'), image.bits));
        reference.push({ fps: image.frames / ref.seconds, rss: ref.rssMb });
        const line = `${image.label} ${syntax.name} round ${round + 1}: gantry ${gantry.at(-1)?.fps.toFixed(1)} frames/s, reference ${reference.at(-1)?.fps.toFixed(1)} frames/s`;
        process.stdout.write(`${line}\n`);
      }
      const ratios = gantry.map((g, i) => g.fps / (reference[i]?.fps ?? 1));
      lines.push(
        `${image.label.padEnd(22)} ${syntax.name.padEnd(10)} gantry ${median(gantry.map((g) => g.fps)).toFixed(1).padStart(7)} frames/s (peak RSS ${median(gantry.map((g) => g.rss)).toFixed(0)} MB)  ` +
          `reference ${median(reference.map((r) => r.fps)).toFixed(1).padStart(7)} frames/s (peak RSS ${median(reference.map((r) => r.rss)).toFixed(0)} MB)  ratio median ${median(ratios).toFixed(2)}`,
      );
    }
  }
  process.stdout.write(`\n${rounds} rounds, medians (whole process, start-up included; reference: DCMTK/GDCM decode + encode of the file)\n${lines.join('\n')}\n`);
}

await main();
