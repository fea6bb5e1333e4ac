/**
 * How every worker pool (piscina) starts its threads: they load their ES module entry through
 * import(), never require().
 *
 * piscina tries require(filename) first, and Node 20.19 and later let require() load an ES module.
 * That path sometimes aborted the whole process with a native assertion in
 * node::loader::ModuleWrap::CreateRequiredModuleFacade ("facade->InstantiateModule(...).IsJust()"),
 * seen in a clean-clone CI run of a `gantry export` test on 2026-12-01; a node that once ended by a
 * signal in a CI test (2026-11-30) may have been the same. With require(esm) off in the threads,
 * require() refuses at once (ERR_REQUIRE_ESM) and piscina falls back to import(). A Node without the
 * option has no require(esm) to turn off. V8's flags stay the process's own: a thread has no others.
 */
import { Piscina } from 'piscina';

export const WORKER_EXEC_ARGV: readonly string[] = process.allowedNodeEnvironmentFlags.has('--experimental-require-module') ? ['--no-experimental-require-module'] : [];

/**
 * A worker pool: threads that import their entry (above), and a listener for the failures of a thread
 * that no task waits for. piscina emits those as 'error' on the pool (a task that was running gets
 * its own rejection), and an 'error' event without a listener is thrown: it would end the node, or an
 * import or export half done. piscina replaces the thread; `onThreadError` says so.
 */
export function workerPool(options: Omit<NonNullable<ConstructorParameters<typeof Piscina>[0]>, 'execArgv'>, onThreadError: (error: Error) => void): Piscina {
  const pool = new Piscina({ ...options, execArgv: [...WORKER_EXEC_ARGV] });
  pool.on('error', onThreadError);
  return pool;
}
