/** Driving DCMTK tools and reading their output. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { DCMTK_ENV, run } from './processes.js';
import { metaValue } from './stored.js';

/**
 * Values of top-level elements as dcmdump prints them, by "gggg,eeee" (lower-case hex). The whole
 * dump is read because dcmdump's +P also prints nested matches, without saying they are nested;
 * top-level lines are the unindented ones.
 */
export async function dcmdumpValues(path: string, tags: string[]): Promise<Record<string, string>> {
  const result = await run('dcmdump', ['-q', path], { env: DCMTK_ENV });
  const wanted = new Set(tags);
  const values: Record<string, string> = {};
  for (const line of result.stdout.split('\n')) {
    const match = /^\(([0-9a-f]{4},[0-9a-f]{4})\) \w\w \[(.*?)\]/.exec(line);
    if (match && match[1] && wanted.has(match[1])) values[match[1]] = match[2] ?? '';
  }
  return values;
}

export interface StorescuOutcome {
  code: number | null;
  /** Files whose C-STORE got a success (or warning) response, in order. */
  acknowledged: string[];
  /** Files whose C-STORE response was a failure, with the status text DCMTK printed. */
  refused: Array<{ file: string; status: string }>;
  output: string;
}

/**
 * Runs storescu -v and reads which files were acknowledged: each "Sending file" line is followed by
 * its "Received Store Response (...)" line.
 */
export async function storescu(port: number, calledAeTitle: string, paths: string[], extraArgs: string[] = [], timeoutMs = 300_000): Promise<StorescuOutcome> {
  const result = await run('storescu', ['-v', '-aec', calledAeTitle, ...extraArgs, '127.0.0.1', String(port), ...paths], {
    env: DCMTK_ENV,
    timeoutMs,
  });
  return parseStorescu(result.code, `${result.stdout}\n${result.stderr}`);
}

export function parseStorescu(code: number | null, output: string): StorescuOutcome {
  const acknowledged: string[] = [];
  const refused: Array<{ file: string; status: string }> = [];
  let current: string | undefined;
  for (const line of output.split('\n')) {
    const sending = /Sending file: (.*)$/.exec(line);
    if (sending) {
      current = sending[1]?.trim();
      continue;
    }
    const response = /Received Store Response \((.*)\)/.exec(line);
    if (response && current) {
      const status = response[1] ?? '';
      if (/^Success|^Warning/.test(status)) acknowledged.push(current);
      else refused.push({ file: current, status });
      current = undefined;
    }
  }
  return { code, acknowledged, refused, output };
}

const UNCOMPRESSED = ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2', '1.2.840.10008.1.2.2'];

/**
 * Writes a storescu configuration (-xf FILE Corpus) that proposes, for every file, a presentation
 * context of its own SOP class and its own transfer syntax, so that storescu sends each dataset as
 * it is instead of converting it to an uncompressed syntax (what its default proposal would do).
 */
export async function writeStorescuProfile(files: string[], path: string): Promise<void> {
  const pairs = new Set<string>();
  for (const file of files) {
    const isPart10 = readFileSync(file).subarray(128, 132).toString('latin1') === 'DICM';
    const sopClass = (isPart10 ? metaValue(file, 0x0002) : undefined) ?? (await dcmdumpValues(file, ['0008,0016']))['0008,0016'];
    const syntax = isPart10 ? metaValue(file, 0x0010) : undefined;
    if (!sopClass || !/^[0-9.]+$/.test(sopClass)) continue;
    for (const ts of syntax && /^[0-9.]+$/.test(syntax) ? [syntax] : UNCOMPRESSED) pairs.add(`${sopClass}\\${ts}`);
  }
  const syntaxes = [...new Set([...pairs].map((pair) => pair.split('\\')[1] as string))];
  const key = (ts: string) => `TS${syntaxes.indexOf(ts) + 1}`;
  const lines = ['[[TransferSyntaxes]]'];
  for (const ts of syntaxes) lines.push(`[${key(ts)}]`, `TransferSyntax1 = ${ts}`);
  lines.push('[[PresentationContexts]]', '[CorpusContexts]');
  [...pairs].slice(0, 128).forEach((pair, i) => {
    const [sopClass, ts] = pair.split('\\') as [string, string];
    lines.push(`PresentationContext${i + 1} = ${sopClass}\\${key(ts)}`);
  });
  lines.push('[[Profiles]]', '[Corpus]', 'PresentationContexts = CorpusContexts', '');
  writeFileSync(path, lines.join('\n'));
  if (!existsSync(path)) throw new Error(`could not write ${path}`);
}
