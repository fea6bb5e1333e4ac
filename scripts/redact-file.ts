/**
 * Redacts one file in a process of its own and prints the outcome with the process's peak RSS, so a
 * test or a benchmark can bound the memory of the whole process:
 *   node dist/scripts/redact-file.js INPUT OUTPUT ZONES.yaml
 */
import { readFileSync } from 'node:fs';
import { parseConfigText } from '../src/config/load.js';
import { compileProfiles } from '../src/deid/decide.js';
import { deidentifyFile } from '../src/deid/deidentify-file.js';
import { Pseudonymizer } from '../src/deid/pseudonyms.js';
import { baseSettingsFromConfig, profilesFromConfig } from '../src/deid/settings.js';
import { loadCodecs } from '../src/pixels/codecs.js';

const [input, output, zones] = process.argv.slice(2) as [string, string, string];
await loadCodecs();
const config = parseConfigText(JSON.stringify({ deid: { secret: 'the secret of the memory test', options: ['cleanPixelData'], pixelZones: zones } }), 'memory-test.yaml');
const started = Date.now();
const result = deidentifyFile(input, output, {
  settings: { profiles: compileProfiles(profilesFromConfig(config)), base: baseSettingsFromConfig(config) },
  pseudonyms: new Pseudonymizer('the secret of the memory test'),
});
// VmHWM: the peak resident set of this process.
const peakKb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
process.stdout.write(`${JSON.stringify({ kind: result.kind, reason: result.kind === 'quarantined' ? result.reason : undefined, peakRssMb: peakKb / 1024, ms: Date.now() - started })}\n`);
