/**
 * Orthanc (Debian's package) as a real PACS peer, started on loopback with a config and a folder of
 * its own, stopped by its PID.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DCMTK_ENV, freePort, sleep, start, stop, type Started } from './processes.js';

export interface OrthancProcess extends Started {
  aeTitle: string;
  dicomPort: number;
  httpPort: number;
  /** GET on Orthanc's REST API, parsed as JSON. */
  get<T>(path: string): Promise<T>;
  stop(): Promise<number | null>;
}

export async function startOrthanc(dir: string, settings: Record<string, unknown> = {}): Promise<OrthancProcess> {
  mkdirSync(join(dir, 'storage'), { recursive: true });
  const dicomPort = await freePort();
  const httpPort = await freePort();
  const aeTitle = 'ORTHANC';
  const config = {
    Name: 'gantry-test-orthanc',
    StorageDirectory: join(dir, 'storage'),
    IndexDirectory: join(dir, 'storage'),
    DicomAet: aeTitle,
    DicomPort: dicomPort,
    HttpPort: httpPort,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomCheckCalledAet: false,
    DicomAlwaysAllowStore: true,
    DicomAlwaysAllowFind: true,
    UnknownSopClassAccepted: true,
    Plugins: [],
    ...settings,
  };
  const configPath = join(dir, 'orthanc.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  // Orthanc uses DCMTK's network layer: TCP_NODELAY=1 keeps Nagle's algorithm off (peers.md).
  const started = start('Orthanc', [configPath], { env: DCMTK_ENV });
  const get = async <T>(path: string): Promise<T> => {
    const response = await fetch(`http://127.0.0.1:${httpPort}${path}`);
    if (!response.ok) throw new Error(`Orthanc ${path}: HTTP ${response.status}`);
    return (await response.json()) as T;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await get('/system');
      break;
    } catch (error) {
      if (started.child.exitCode !== null || Date.now() > deadline) {
        await stop(started, 'SIGKILL');
        throw new Error(`Orthanc did not start: ${(error as Error).message}\n${started.output().slice(-2000)}`);
      }
      await sleep(100);
    }
  }
  return { ...started, aeTitle, dicomPort, httpPort, get, stop: () => stop(started, 'SIGTERM', 15_000) };
}
