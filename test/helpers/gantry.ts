/** Runs Gantry as a child process on loopback with a config of the test's own. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema.js';
import { freePort, GANTRY_CLI, start, stop, waitForPort, type Started } from './processes.js';

export interface GantryProcess extends Started {
  port: number;
  /** Where /metrics, /healthz and /readyz answer. */
  httpPort: number;
  aeTitle: string;
  storagePath: string;
  configPath: string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts Gantry with `config` merged over test defaults (loopback, a free port, storage under `dir`). */
export interface StartOptions {
  /** Limits the size of every file Gantry writes (RLIMIT_FSIZE, in KiB), so writes fail with EFBIG
   * as on a full disk; SIGXFSZ is ignored so the write fails instead of the process. */
  fileSizeLimitKiB?: number;
}

export async function startGantryProcess(dir: string, config: ConfigInput = {}, port?: number, options: StartOptions = {}): Promise<GantryProcess> {
  // A free port is free when asked for, not necessarily when Gantry binds it (another test, or a
  // client's ephemeral port, may take it between): with ports of its own choosing, Gantry is started
  // again on others, at most three times (seen once in CI: http.port EADDRINUSE).
  const portsChosenHere = port === undefined && config.http?.port === undefined;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startOnce(dir, config, port, options);
    } catch (error) {
      if (!portsChosenHere || attempt >= 3 || !(error as Error).message.includes('EADDRINUSE')) throw error;
    }
  }
}

async function startOnce(dir: string, config: ConfigInput, port: number | undefined, options: StartOptions): Promise<GantryProcess> {
  mkdirSync(dir, { recursive: true });
  const chosenPort = port ?? (await freePort());
  const httpPort = config.http?.port ?? (await freePort());
  const storagePath = config.storage?.path ?? join(dir, 'data');
  const full: ConfigInput = {
    ...config,
    dicom: { host: '127.0.0.1', ...config.dicom, port: chosenPort },
    http: { host: '127.0.0.1', ...config.http, port: httpPort },
    storage: { minFreeBytes: 0, ...config.storage, path: storagePath },
    // Two de-identification threads whatever the machine, so the tests run alike everywhere.
    deid: { secret: 'the secret of the test suite', workers: 2, ...config.deid },
    log: { level: 'info', ...config.log },
  };
  const configPath = join(dir, 'gantry.yaml');
  writeFileSync(configPath, stringify(full));
  const command = [process.execPath, '--max-semi-space-size=2', '--heap-growing-percent=60', GANTRY_CLI, 'serve', '--config', configPath];
  const started =
    options.fileSizeLimitKiB === undefined
      ? start(command[0] as string, command.slice(1))
      : start('sh', ['-c', `trap '' XFSZ; ulimit -f ${options.fileSizeLimitKiB * 2}; exec "$@"`, 'gantry', ...command]);
  try {
    // Both listeners: the DICOM one opens first, and a test that asked /readyz right after it was
    // refused now and then (fetch failed) before the HTTP one had opened.
    await Promise.race([
      Promise.all([waitForPort(chosenPort), waitForPort(httpPort)]),
      new Promise((_, reject) => started.child.once('exit', (code) => reject(new Error(`exited with code ${code}`)))),
    ]);
  } catch (error) {
    await stop(started, 'SIGKILL');
    throw new Error(`Gantry did not start: ${(error as Error).message}\n${started.output()}`);
  }
  return {
    ...started,
    port: chosenPort,
    httpPort,
    aeTitle: full.dicom?.aeTitle ?? 'GANTRY',
    storagePath,
    configPath,
    stop: (signal: NodeJS.Signals = 'SIGTERM') => stop(started, signal),
  };
}
