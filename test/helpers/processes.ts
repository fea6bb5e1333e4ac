/**
 * Starting, watching and stopping the processes that tests and benchmarks use: Gantry itself, DCMTK
 * tools and Orthanc. Every process started here is stopped by its PID.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiled CLI (tests run from dist/test/...). */
export const GANTRY_CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

/** DCMTK 3.6.7 leaves Nagle's algorithm on unless this is set (design.md). */
export const DCMTK_ENV = { ...process.env, TCP_NODELAY: '1' };

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves once something accepts TCP connections on the port; bounded by `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 15_000, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, host);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface Started {
  child: ChildProcess;
  pid: number;
  output(): string;
}

export function start(command: string, args: string[], options: SpawnOptions = {}): Started {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (output.length > 4_000_000) output = output.slice(-2_000_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  return { child, pid: child.pid, output: () => output };
}

/** Stops a process by its PID: the signal, then SIGKILL after `graceMs`. Resolves with its exit code. */
export async function stop(started: Started, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | null> {
  const { child } = started;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  process.kill(started.pid, signal);
  const timer = setTimeout(() => {
    try {
      process.kill(started.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }, graceMs);
  const [code] = await exited;
  clearTimeout(timer);
  return code;
}

/** Runs a command to completion, bounded by `timeoutMs`. */
export async function run(
  command: string,
  args: string[],
  options: SpawnOptions & { timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const began = performance.now();
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  // 'close', not 'exit': a process can exit before its output has been read from the pipes, and a
  // command's whole stdout was once seen empty that way.
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr, ms: performance.now() - began };
}

/** Peak resident set size of a live process, in bytes (VmHWM of /proc/PID/status). */
export function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Sets a process's peak RSS (VmHWM) back to its current RSS (proc(5), clear_refs "5"), so that a
 * later peakRss measures what happened since, not an earlier test's peak in the same process. */
export function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** Whether a program is on the PATH. */
export async function have(program: string): Promise<boolean> {
  const result = await run('sh', ['-c', `command -v ${program}`]).catch(() => undefined);
  return result?.code === 0;
}
