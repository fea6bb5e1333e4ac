#!/usr/bin/env -S node --max-semi-space-size=2 --heap-growing-percent=60
/**
 * The gantry command. Parses arguments (commander) and calls the rest; owns the process: signals,
 * exit codes, and the top-level error message.
 *
 * --max-semi-space-size=2 (MB): the receive path makes short-lived socket buffers at a high rate; a
 * small young generation collects them sooner. Measured on 2,000 x 0.5 MB stores: peak RSS 126 MB
 * instead of 153 MB, and no loss of throughput.
 *
 * --heap-growing-percent=60: V8 lets a heap grow to 1.6 times what it holds after a full collection,
 * instead of a factor of its own (up to 4 for a small heap); flags are per process, so the worker
 * threads' heaps too. A command that allocates steadily grew with its run's length: import and export
 * of 100,000 files peaked at 168-173 and 178 MB, and at 142-143 and 156 MB with it (10,000 files: 126
 * -> 118 and 149 -> 140 MB), with the same CPU time (import 12.2-13.3 s user either way).
 * (bench/results-2026-11-29-scale.txt, 19:05-19:35 UTC.) `serve` sets it back to V8's own factor
 * (see V8_OWN_HEAP_GROWTH below): for the node it cost throughput and saved little memory.
 *
 * `npm start`, the Dockerfile, the tests and bench/scale pass both flags too; run as `node
 * dist/src/cli/main.js`, pass them yourself.
 */
import { Command, InvalidArgumentError } from 'commander';
import { stringify } from 'yaml';
import { ConfigError, loadConfigFile, SHELL_REFERENCE } from '../config/load.js';
import { retentionText } from '../config/schema.js';
import { withPatientValuesHidden } from '../config/patient-values.js';
import { commandLogger, createLogger } from '../observability/logger.js';
import { escapedErrorFields, withoutUids } from '../observability/redact.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { DEFAULT_LAYOUT } from '../toolkit/layout.js';

/** The commands that only read the index: they never de-identify, so an unset ${NAME} secret is no error for them. */
const READ_ONLY = { secretNeeded: false } as const;

// Each command loads what it runs when it runs (the node, the toolkit, the engine, the codecs): a
// command pays for its own modules only, and `gantry status` or `gantry queue ls` start faster.

// A reader that stops early (`gantry queue ls | head`) closes the pipe: what is left to print has
// nowhere to go, which is no failure of the command. It finishes its work; the output is dropped.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
});

/**
 * V8's own heap growth factor, for `serve`: set at run time, since the flag on the command line is
 * the batch commands'. Receiving 0.5 MB instances makes garbage at the rate data arrives (socket
 * buffers, PDU views); held to 1.6x its live size, the heap ran a full collection every dozen
 * instances. Interleaved on bench/receive's corpus (scratch A/B, 2026-11-29 23:46-23:59 UTC, in
 * bench/results-2026-11-29.txt): with no syncs and no de-identification, so that the main thread
 * decides, 0.47x storescp with the flag and 0.64x without; the node as it runs, 163 and 193
 * instances/s (medians of 5, rounds overlapping). Peak RSS: 119-120 and 129-131 MB on 0.5 MB
 * instances, 140-143 MB either way on 250 MB ones, 139-140 and 134-135 MB receiving 1 GB. The
 * heuristic reads the flag each time it sets a new limit, so a change after start-up takes effect
 * from the next collection.
 */
const V8_OWN_HEAP_GROWTH = '--heap-growing-percent=0';

const program = new Command();
program.name('gantry').description('Gantry: a DICOM de-identification gateway').version('0.1.0');

program
  .command('serve')
  .description('run the DICOM node (the embedded config/gantry.yaml unless --config names a file)')
  .option('-c, --config <file>', 'YAML config file')
  .action(async (options: { config?: string }) => {
    // Installed first, before start-up, which may take a while (the index, a check after an unclean stop):
    // SIGHUP's default action would end the node (found in a review). Asked meanwhile, the reload
    // runs once the node has started.
    let reloadConfig: (() => void) | undefined;
    let reloadAskedWhileStarting = false;
    process.on('SIGHUP', () => {
      if (reloadConfig) reloadConfig();
      else reloadAskedWhileStarting = true;
    });
    // Installed first too, as SIGHUP's is: a stop asked while the node opens its index, checks it
    // after an unclean stop, or binds its ports ended the process by the signal's default action (found
    // in a review), with no word in the log and its run marker left behind, so the next start took it
    // for a crash. Asked while starting, start-up binds no port from then on (or closes what it bound)
    // and releases the storage; asked later, the node stops as usual. Either way: exit 0.
    // (The handlers run from the first turn of the event loop, after the config is read and the log
    // made: the signal is held until then.)
    let gantry: Awaited<ReturnType<typeof import('../app.js').startGantry>> | undefined;
    const starting = new AbortController();
    let stopping = false;
    const stopped = (error?: Error) => {
      if (error) {
        log.error({ err: error.message }, 'shutdown failed');
        process.exit(1);
      }
      process.exit(0);
    };
    const stop = (signal: string) => {
      if (stopping) {
        // A second signal: the operator will not wait out the grace periods (up to 40 s with
        // associations and tasks in flight). As safe as a crash: nothing is acknowledged before it is
        // durable, and the next start checks the newest rows.
        log.warn({ signal }, 'a second signal while stopping: exiting now, without waiting for what is in flight');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal, starting: gantry === undefined }, 'shutting down');
      if (gantry) gantry.stop().then(() => stopped(), stopped);
      else starting.abort();
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    setFlagsFromString(V8_OWN_HEAP_GROWTH);
    const loaded = loadConfigFile(options.config);
    const log = createLogger(loaded.config.log.level);
    log.info({ config: loaded.source, embedded: loaded.embedded }, 'configuration loaded');
    // A lost promise is a bug to log, not a reason to drop every association; an exception that
    // escaped everything leaves the process in an unknown state, so it exits (nothing acknowledged is
    // lost: acknowledgements wait for durable writes) and its supervisor restarts it.
    process.on('unhandledRejection', (reason) => log.error(escapedErrorFields(reason), 'unhandled promise rejection'));
    process.on('uncaughtException', (error) => {
      log.fatal(escapedErrorFields(error), 'uncaught exception; exiting');
      process.exitCode = 1;
      setTimeout(() => process.exit(1), 100).unref();
    });
    // Loaded here, not at the top: the other commands need none of the node, and start faster without it.
    const { startGantry, StartAborted } = await import('../app.js');
    try {
      gantry = await startGantry(loaded, log, { signal: starting.signal });
    } catch (error) {
      if (!(error instanceof StartAborted)) throw error;
      log.info('stopped before start-up finished');
      process.exit(0);
    }
    const node = gantry;
    // Asked in the last moment of start-up, after its last check: the node stops now.
    if (stopping) {
      node.stop().then(() => stopped(), stopped);
      return;
    }
    reloadConfig = () => {
      try {
        const next = loadConfigFile(options.config);
        void node.reload(next).then((restartKeys) => {
          if (restartKeys.length > 0) log.warn({ keys: restartKeys }, 'configuration reloaded; these keys take effect after a restart');
          else log.info('configuration reloaded');
        }, (error: Error) => log.error({ err: withoutUids(error.message) }, 'configuration reload refused; the running configuration stays'));
      } catch (error) {
        // A condition's UIDs (a study withdrawn from research) stay out of the log.
        log.error({ err: withoutUids((error as Error).message) }, 'configuration reload refused; the running configuration stays');
      }
    };
    if (reloadAskedWhileStarting) reloadConfig();
  });

program
  .command('deid')
  .description('de-identify files with the engine the node uses (originals are never modified)')
  .option('-c, --config <file>', 'YAML config file (deid.secret, deid.options)')
  .requiredOption('-o, --out <dir>', 'folder for the de-identified files (<Study>/<Series>/<SOP>.dcm)')
  .argument('<input...>', 'files or folders')
  .action(async (inputs: string[], options: { config?: string; out: string }) => {
    const loaded = loadConfigFile(options.config);
    const log = commandLogger(loaded.config.log.level);
    const [{ loadCodecs }, { runDeid }] = await Promise.all([import('../pixels/codecs.js'), import('./deid.js')]);
    await loadCodecs();
    const summary = runDeid(loaded, inputs, options.out, log);
    const { terminalText } = await import('./terminal-text.js');
    for (const held of summary.held) process.stderr.write(`held back: ${terminalText(held.path)}: ${terminalText(held.reason)}\n`);
    for (const failure of summary.failed) process.stderr.write(`not de-identified: ${terminalText(failure.path)}: ${terminalText(failure.reason)}\n`);
    for (const { path, earlier } of summary.replaced) process.stderr.write(`same SOP Instance UID as ${terminalText(earlier)}: its output was replaced by ${terminalText(path)}'s\n`);
    process.stdout.write(
      `de-identified ${summary.done} file(s) into ${options.out}; ${summary.held.length} held back; ${summary.failed.length} failed; ${summary.findings} finding(s)` +
        `${summary.replaced.length > 0 ? `; ${summary.replaced.length} replaced an earlier output of the same SOP Instance UID` : ''}\n`,
    );
    process.exitCode = summary.failed.length > 0 ? 1 : 0;
  });

const collect = (value: string, previous: string[] = []) => [...previous, value];
const threads = (value: string) => {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new InvalidArgumentError('a whole number from 1 to 64');
  return count;
};
/** A count of at least `min` (a list's length, a frame number): "abc" is refused here, not by SQLite
 * as a "datatype mismatch" after half a screen of output (found in a review). */
const count = (min: number) => (value: string) => {
  const number = Number(value);
  if (!Number.isInteger(number) || number < min) throw new InvalidArgumentError(`a whole number of at least ${min}`);
  return number;
};

program
  .command('import')
  .description('index folders of DICOM files in place (or --copy them into storage); they are de-identified like received instances')
  .option('-c, --config <file>', 'YAML config file (storage.path: the session)')
  .option('--copy', 'copy the files into storage instead of indexing them where they are', false)
  .option('--forward', 'forward the instances once de-identified, like received ones', false)
  .option('-w, --workers <n>', 'threads reading headers (default: the number of CPUs; fewer leave CPUs to a node serving on this host)', (value) => threads(value))
  .option('-q, --quiet', 'no progress line', false)
  .argument('<folder...>', 'folders (or files) to import')
  .action(async (folders: string[], options: { config?: string; copy: boolean; forward: boolean; workers?: number; quiet: boolean }) => {
    const { runImport } = await import('./toolkit.js');
    const summary = await runImport(loadConfigFile(options.config), folders, options, (line) => process.stdout.write(`${line}\n`));
    process.exitCode = summary.unreadable > 0 ? 1 : 0;
  });

program
  .command('export')
  .description('write the de-identified form of the session (or a selection) into a folder; resumes where an interrupted run stopped')
  .option('-c, --config <file>', 'YAML config file (storage.path: the session; deid: how to de-identify)')
  .requiredOption('-o, --out <dir>', 'folder to write into (outside storage.path)')
  .option('--study <uid>', 'only this original Study Instance UID (repeatable)', collect)
  .option('--series <uid>', 'only this original Series Instance UID (repeatable)', collect)
  .option('--patient <id>', 'only this original PatientID (repeatable)', collect)
  .option('--modality <modality>', 'only series of this Modality (repeatable)', collect)
  .option('--layout <template>', `file names from the de-identified attributes (default ${DEFAULT_LAYOUT})`)
  .option('-w, --workers <n>', 'de-identification threads (default: the number of CPUs; fewer leave CPUs to a node serving on this host)', (value) => threads(value))
  .option('-q, --quiet', 'no progress line', false)
  .action(async (options: { config?: string; out: string; study?: string[]; series?: string[]; patient?: string[]; modality?: string[]; layout?: string; workers?: number; quiet: boolean }) => {
    const selection = { studyInstanceUids: options.study, seriesInstanceUids: options.series, patientIds: options.patient, modalities: options.modality };
    const { runExport } = await import('./toolkit.js');
    const summary = await runExport(loadConfigFile(options.config), { ...options, selection }, (line) => process.stdout.write(`${line}\n`));
    process.exitCode = summary.failed > 0 ? 1 : 0;
  });

program
  .command('reidentify')
  .description('restore the original attributes of reversibly de-identified files (needs the recipient private key)')
  .requiredOption('-k, --key <file>', 'PEM private key of the deid.encryption recipient certificate')
  .requiredOption('-o, --out <dir>', 'folder for the re-identified files (same names)')
  .option('--passphrase-env <name>', 'environment variable holding the passphrase of an encrypted --key')
  .argument('<file...>', 'de-identified files')
  .action(async (files: string[], options: { key: string; out: string; passphraseEnv?: string }) => {
    const { reidentifyFile } = await import('../deid/reidentify.js');
    const { readPrivateKey } = await import('./private-key.js');
    const key = readPrivateKey(options.key, options.passphraseEnv);
    const outputs = reidentifiedPaths(files, options.out);
    mkdirSync(options.out, { recursive: true });
    let failed = 0;
    for (const [file, output] of outputs) {
      try {
        const { restored, checked, keptSopInstanceUid } = reidentifyFile(file, output, key);
        const notes = [
          ...(checked ? [] : ['made by a Gantry that did not bind the encrypted attributes to their instance: not checked for changes']),
          ...(keptSopInstanceUid ? ['the pixels were redacted: it keeps its de-identified SOP Instance UID, another object than the original'] : []),
        ];
        process.stdout.write(`${file}: ${restored} attribute(s) restored${notes.length > 0 ? ` (${notes.join('; ')})` : ''}\n`);
      } catch (error) {
        failed += 1;
        process.stderr.write(`not re-identified: ${file}: ${(error as Error).message}\n`);
      }
    }
    process.exitCode = failed > 0 ? 1 : 0;
  });

program
  .command('forward')
  .description('forward a study to its destinations now, whether or not it is stable (original or de-identified Study Instance UID)')
  .option('-c, --config <file>', 'YAML config file')
  .argument('<studyInstanceUid>')
  .action(async (studyInstanceUid: string, options: { config?: string }) => {
    const loaded = loadConfigFile(options.config);
    const log = commandLogger(loaded.config.log.level);
    const { forwardStudy, forwardStudyReport } = await import('./queue.js');
    process.stdout.write(`${forwardStudyReport(await forwardStudy(loaded, studyInstanceUid.trim(), log))}\n`);
  });

program
  .command('status')
  .description('one screen: node running and ready, instances by state, the outbox per destination, the latest failures')
  .option('-c, --config <file>', 'YAML config file')
  .option('-n, --limit <n>', 'failures listed of each kind', count(0), 10)
  .action(async (options: { config?: string; limit: number }) => {
    const { printStatus } = await import('./status.js');
    await printStatus(loadConfigFile(options.config, process.env, READ_ONLY), options, (line) => process.stdout.write(`${line}\n`));
  });

const queueCommand = program.command('queue').description('the forwarding outbox');
queueCommand
  .command('ls')
  .description('counts per destination, and the items in a state (dead letter by default)')
  .option('-c, --config <file>', 'YAML config file')
  .option('-s, --state <state>', 'queued, sent or dead', 'dead')
  .option('-d, --destination <name>', 'one destination')
  .option('-n, --limit <n>', 'items to list', count(1), 50)
  .action(async (options: { config?: string; state: string; destination?: string; limit: number }) => {
    if (!['queued', 'sent', 'dead'].includes(options.state)) throw new Error(`--state ${options.state}: expected queued, sent or dead`);
    const { queueList } = await import('./queue.js');
    queueList(loadConfigFile(options.config, process.env, READ_ONLY), options, (line) => process.stdout.write(`${line}\n`));
  });
queueCommand
  .command('studies')
  .description('studies with instances in a state, newest first (operators; shows original Study Instance UIDs)')
  .option('-c, --config <file>', 'YAML config file')
  .requiredOption('-s, --state <state>', 'received, deidentified, quarantined, forwarded or failed')
  .option('-n, --limit <n>', 'studies to list', count(1), 100)
  .action(async (options: { config?: string; state: string; limit: number }) => {
    const states = ['received', 'deidentified', 'quarantined', 'forwarded', 'failed'];
    if (!states.includes(options.state)) throw new Error(`--state ${options.state}: expected ${states.join(', ')}`);
    const { queueStudies } = await import('./queue.js');
    queueStudies(loadConfigFile(options.config, process.env, READ_ONLY), options.state, options.limit, (line) => process.stdout.write(`${line}\n`));
  });
queueCommand
  .command('retry')
  .description('put dead-letter items back in the queue (all, of one destination, or by id)')
  .option('-c, --config <file>', 'YAML config file')
  .option('-d, --destination <name>', 'one destination')
  .argument('[ids...]', 'item ids (from gantry queue ls)')
  .action(async (ids: string[], options: { config?: string; destination?: string }) => {
    const { queueRetry } = await import('./queue.js');
    const numbers = ids.map((id) => {
      const number = Number.parseInt(id, 10);
      if (!Number.isInteger(number) || String(number) !== id.trim()) throw new Error(`"${id}" is not an item id`);
      return number;
    });
    const count = queueRetry(loadConfigFile(options.config), { ids: numbers, ...(options.destination ? { destination: options.destination } : {}) });
    process.stdout.write(`re-queued ${count} item(s)\n`);
  });
queueCommand
  .command('purge')
  .description('delete sent (default) or dead items from the outbox, or the queued items of a destination removed from the config')
  .option('-c, --config <file>', 'YAML config file')
  .option('-s, --state <state>', 'sent, dead, or queued (with --destination)', 'sent')
  .option('-d, --destination <name>', 'one destination')
  .action(async (options: { config?: string; state: string; destination?: string }) => {
    if (options.state !== 'sent' && options.state !== 'dead' && options.state !== 'queued') throw new Error(`--state ${options.state}: expected sent, dead or queued`);
    const { queuePurge } = await import('./queue.js');
    if (options.state === 'queued' && !options.destination) throw new Error('--state queued needs --destination: only the queue of a removed destination is purged');
    const { deleted, forwarded } = queuePurge(loadConfigFile(options.config), options.state, options.destination);
    process.stdout.write(`deleted ${deleted} ${options.state} item(s)\n`);
    // Giving up on a delivery is what lets retention delete the original: say so, with the way back.
    if (forwarded > 0) {
      process.stdout.write(
        `${forwarded} instance(s) now count as forwarded (no destination waits for them): retention deletes their originals ` +
          `storage.retainOriginals from now, unless it is 0; gantry forward STUDY_UID sends a study again\n`,
      );
    }
  });
queueCommand
  .command('reroute')
  .description('give up the queued and dead items of a destination removed from the config (renamed, replaced) and route their instances again to the destinations configured now')
  .option('-c, --config <file>', 'YAML config file')
  .requiredOption('-d, --destination <name>', 'the destination removed from forward.destinations')
  .action(async (options: { config?: string; destination: string }) => {
    const { queueReroute } = await import('./queue.js');
    const { deleted, rerouted } = queueReroute(loadConfigFile(options.config), options.destination);
    process.stdout.write(
      `deleted ${deleted} queued or dead item(s) of ${options.destination}; ${rerouted} instance(s) are routed again to the destinations of forward.destinations that take them (by the running Gantry, or when it starts)\n`,
    );
  });

program
  .command('audit')
  .description('who queried original identities (source view), when, at what level, with how many results')
  .option('-c, --config <file>', 'YAML config file')
  .option('-n, --limit <n>', 'entries to list, newest first', count(1), 100)
  .action(async (options: { config?: string; limit: number }) => {
    const { auditList } = await import('./queue.js');
    auditList(loadConfigFile(options.config, process.env, READ_ONLY), options.limit, (line) => process.stdout.write(`${line}\n`));
  });

const quarantineCommand = program.command('quarantine').description('instances held back from de-identification or forwarding');
quarantineCommand
  .command('ls')
  .description('held instances with their reasons (no patient data)')
  .option('-c, --config <file>', 'YAML config file')
  .option('--failed', 'failed instances too')
  .option('-n, --limit <n>', 'instances to list', count(1), 100)
  .action(async (options: { config?: string; failed?: boolean; limit: number }) => {
    const { quarantineList } = await import('./queue.js');
    quarantineList(loadConfigFile(options.config, process.env, READ_ONLY), { failed: options.failed ?? false, limit: options.limit }, (line) => process.stdout.write(`${line}\n`));
  });
quarantineCommand
  .command('show')
  .description('one held instance: its attributes (patient data, on this terminal only) and findings')
  .option('-c, --config <file>', 'YAML config file')
  .argument('<id>')
  .action(async (id: string, options: { config?: string }) => {
    const { quarantineShow } = await import('./queue.js');
    if (!quarantineShow(loadConfigFile(options.config, process.env, READ_ONLY), id, (line) => process.stdout.write(`${line}\n`))) throw new Error(`no instance ${id}`);
  });
quarantineCommand
  .command('release')
  .description('send a held instance back to de-identification, with an explicit override (the id as ls or show print it: it names the copy reviewed)')
  .option('-c, --config <file>', 'YAML config file')
  .option('--pass', 'let pixel data that may show identity through (as a pass rule; a matching zone still redacts)')
  .option('--ignore-findings', 'do not hold it back again for the findings scan')
  .option('--again', 'no override: decide afresh under the current configuration (new zones, rules or profiles)')
  .argument('<id>')
  .action(async (id: string, options: { config?: string; pass?: boolean; ignoreFindings?: boolean; again?: boolean }) => {
    if (!options.pass && !options.ignoreFindings && !options.again) {
      throw new Error('say what overrides the reason it was held (--pass, --ignore-findings), or --again to decide afresh under the current configuration');
    }
    const { quarantineRelease } = await import('./queue.js');
    const released = quarantineRelease(loadConfigFile(options.config), id, { pass: options.pass ?? false, ignoreFindings: options.ignoreFindings ?? false });
    if (!released) throw new Error(`instance ${id} is not quarantined or failed`);
    process.stdout.write(`instance ${id} released to de-identification\n`);
  });
quarantineCommand
  .command('delete')
  .description('delete the held copy <id> names (as ls and show print it): its files and its index rows')
  .option('-c, --config <file>', 'YAML config file')
  .argument('<id>')
  .action(async (id: string, options: { config?: string }) => {
    const { quarantineDelete } = await import('./queue.js');
    if (!quarantineDelete(loadConfigFile(options.config), id)) throw new Error(`instance ${id} is not quarantined or failed`);
    process.stdout.write(`instance ${id} deleted\n`);
  });

const zonesCommand = program.command('zones').description('pixel redaction zones (deid.pixelZones)');
zonesCommand
  .command('preview')
  .description('render a frame as PNG with what its zone would blank tinted red, and name the zone')
  .option('-c, --config <file>', 'YAML config file (deid.pixelZones)')
  .option('-z, --zones <file>', 'a zones file to try instead of deid.pixelZones')
  .option('-f, --frame <n>', 'the frame to render, from 1', count(1), 1)
  .requiredOption('-o, --out <png>', 'the PNG to write')
  .argument('<file>', 'a DICOM file')
  .action(async (file: string, options: { config?: string; zones?: string; frame: number; out: string }) => {
    const zonesFile = options.zones ?? loadConfigFile(options.config).config.deid.pixelZones;
    if (!zonesFile) throw new Error('no zones: give --zones FILE, or a config whose deid.pixelZones names one');
    const [{ loadCodecs }, { renderPreview }, { compileZones }, { loadZonesFile }] = await Promise.all([
      import('../pixels/codecs.js'),
      import('../pixels/preview.js'),
      import('../pixels/zones.js'),
      import('../pixels/zones-file.js'),
    ]);
    await loadCodecs();
    const preview = renderPreview(file, compileZones(loadZonesFile(zonesFile)), options.frame - 1);
    writeFileSync(options.out, preview.png);
    const zone = preview.zone;
    process.stdout.write(
      zone
        ? `zone "${zone.rule.name}"${zone.rule.source ? ` (${zone.rule.source})` : ''} matches: what it blanks is tinted red in ${options.out} (frame ${options.frame} of ${preview.frames})\n`
        : `no zone of ${zonesFile} matches this instance: nothing would be blanked (${options.out}, frame ${options.frame} of ${preview.frames})\n`,
    );
    if (preview.held) process.stdout.write(`de-identification holds this instance back whatever the zone: ${preview.held}\n`);
  });

const configCommand = program.command('config').description('inspect a configuration');
configCommand
  .command('check')
  .description('validate a config file and exit 0 if it is valid')
  .option('-c, --config <file>', 'YAML config file')
  .action(async (options: { config?: string }) => {
    const loaded = loadConfigFile(options.config);
    // What start-up checks beyond the schema (secret, rules, zones, certificate, routes), all at once.
    const { checkConfigForStart, listenAddressProblems } = await import('../app.js');
    const addressProblems = await listenAddressProblems(loaded.config);
    try {
      checkConfigForStart(loaded);
    } catch (error) {
      if (error instanceof ConfigError) throw new ConfigError(loaded.source, [...addressProblems, ...error.problems]);
      throw error;
    }
    if (addressProblems.length > 0) throw new ConfigError(loaded.source, addressProblems);
    const { secretWarnings } = await import('../config/secret.js');
    const { recipientCertificateWarnings } = await import('../deid/settings.js');
    const secret = loaded.config.deid.secret;
    for (const warning of [...(secret === undefined ? [] : secretWarnings(secret)), ...recipientCertificateWarnings(loaded.config)]) process.stderr.write(`${loaded.source}: warning: ${warning}\n`);
    process.stdout.write(`${loaded.source}: valid\n`);
  });
configCommand
  .command('show')
  .description('print the effective configuration, defaults filled in (secrets and conditions on patient attributes hidden)')
  .option('-c, --config <file>', 'YAML config file')
  .action((options: { config?: string }) => {
    const { config } = loadConfigFile(options.config);
    if (config.deid.secret !== undefined) config.deid.secret = '(hidden)';
    // Retentions are held in milliseconds; printed as days they were read as 86 million days.
    const storage = { ...config.storage, retainOriginals: retentionText(config.storage.retainOriginals), retainDeidentified: retentionText(config.storage.retainDeidentified) };
    // A literal "${" (written "$${") is printed as the config takes it: as "${" it reads as a reference.
    process.stdout.write(stringify(escapeReferences(withPatientValuesHidden({ ...config, storage }))));
  });

function escapeReferences(value: unknown): unknown {
  // A function: in a replacement string "$$" stands for one "$".
  // A whole "$NAME" is refused as a reference written without braces: the config writes it "$$NAME".
  if (typeof value === 'string') return SHELL_REFERENCE.test(value) ? `$${value}` : value.replaceAll('${', () => '$${');
  if (Array.isArray(value)) return value.map(escapeReferences);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, escapeReferences(item)]));
  return value;
}

/** Each file's output in `out`, under its own name. Refused before anything is written when two
 * files share a name (S1/IM00001, S2/IM00001: the second overwrote the first, both reported restored;
 * found in a review), or when an output would be its own input. */
function reidentifiedPaths(files: readonly string[], out: string): Map<string, string> {
  const byOutput = new Map<string, string>();
  for (const file of files) {
    const output = resolve(out, basename(file));
    const earlier = byOutput.get(output);
    if (earlier !== undefined) throw new Error(`${earlier} and ${file} have the same name: their re-identified files would overwrite each other in ${out}; re-identify them into separate folders`);
    if (output === resolve(file)) throw new Error(`${file} would be overwritten by its own re-identified file: give --out another folder`);
    byOutput.set(output, file);
  }
  return new Map([...byOutput].map(([output, file]) => [file, output]));
}

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`gantry: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`gantry: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
