/**
 * `gantry queue`, `gantry forward`, `gantry audit` and `gantry quarantine`: the outbox, the access audit
 * and the quarantine seen and managed by an operator, on the index of storage.path (the running node
 * shares it: SQLite WAL lets both in).
 */
import { readdirSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import type { Db } from '../db/database.js';
import { openCommandIndex } from './command-index.js';
import { terminalText } from './terminal-text.js';
import type { Logger } from '../observability/logger.js';
import { routeDestinations, routingOf, Router } from '../pipeline/route.js';
import { nodeRunningOn, runningGantry } from '../pipeline/recovery.js';
import { Outbox, type OutboxRow } from '../queue/outbox.js';
import { AccessAudit } from '../index/access-audit.js';
import { fileStampAt } from '../index/file-stamp.js';
import { heldId, parseHeldId, QuarantineWork, type SetAsideFile } from '../index/quarantine-work.js';
import { InstanceIndex } from '../index/instance-index.js';
import { DeidWork } from '../index/deid-work.js';
import { randomBytes } from 'node:crypto';

export function openIndex(loaded: LoadedConfig): { db: Db; storagePath: string } {
  return openCommandIndex(loaded, 'existing');
}

function withOutbox<T>(loaded: LoadedConfig, run: (outbox: Outbox, db: Db) => T): T {
  const { db } = openIndex(loaded);
  try {
    return run(new Outbox(db), db);
  } finally {
    db.close();
  }
}

/**
 * A --destination an operator typed names a destination of the config or of the outbox: a typo matched
 * nothing and the command said "re-queued 0 item(s)", as if there were nothing to do.
 */
function checkDestination(loaded: LoadedConfig, outbox: Outbox, destination: string | undefined): void {
  if (destination === undefined) return;
  const configured = loaded.config.forward.destinations.map((entry) => entry.name);
  const inOutbox = outbox.counts().map((row) => row.destination);
  if (configured.includes(destination) || inOutbox.includes(destination)) return;
  const known = [...new Set([...configured, ...inOutbox])].sort();
  throw new Error(
    `--destination ${destination}: no destination of that name in forward.destinations of ${loaded.source} nor in the outbox` +
      `${known.length > 0 ? ` (known: ${known.join(', ')})` : ' (none is known)'}`,
  );
}

/**
 * Ids an operator typed name dead items (of the destination, when one is given): an unknown id, or
 * one of an item queued or sent, re-queued nothing and the command said "re-queued 0 item(s)" with
 * status 0 (found in the docs review). Nothing is re-queued when one does not.
 */
function checkDeadItems(outbox: Outbox, ids: readonly number[], destination: string | undefined): void {
  if (ids.length === 0) return;
  const items = outbox.itemStates(ids);
  const wrong = ids.flatMap((id) => {
    const item = items.get(id);
    if (!item) return [`${id}: no such item`];
    if (item.state !== 'dead') return [`${id}: ${item.state}, not dead`];
    return destination !== undefined && item.destination !== destination ? [`${id}: an item of ${item.destination}, not ${destination}`] : [];
  });
  if (wrong.length > 0) throw new Error(`nothing re-queued: ${wrong.join('; ')} (gantry queue ls lists the dead items)`);
}

export function queueList(loaded: LoadedConfig, options: { state?: string; destination?: string; limit: number }, write: (line: string) => void): void {
  withOutbox(loaded, (outbox, db) => {
    checkDestination(loaded, outbox, options.destination);
    const counts = outbox.counts();
    const states = Object.entries(new InstanceIndex(db).countsByState()).sort(([a], [b]) => a.localeCompare(b));
    write(`instances: ${states.map(([state, count]) => `${state} ${count}`).join(', ') || 'none'}`);
    if (counts.length === 0) write('outbox: empty');
    for (const row of counts) {
      const age = row.oldestQueuedAt === null ? '' : `, oldest queued ${Math.round((Date.now() - row.oldestQueuedAt) / 1000)} s ago`;
      write(`${row.destination}: queued ${row.queued}, sent ${row.sent}, dead ${row.dead}${age}`);
    }
    const state = options.state ?? 'dead';
    const rows = outbox.list({ state, ...(options.destination ? { destination: options.destination } : {}), limit: options.limit });
    if (rows.length > 0) {
      write(`${state} items (id destination attempts status reason):`);
      for (const row of rows) write(formatRow(row));
    }
  });
}

function formatRow(row: OutboxRow): string {
  return [row.id, row.destination, row.attempts, row.lastStatus ?? '-', terminalText(row.lastError)].join('\t');
}

export function queueRetry(loaded: LoadedConfig, options: { destination?: string; ids: number[] }): number {
  return withOutbox(loaded, (outbox) => {
    checkDestination(loaded, outbox, options.destination);
    checkDeadItems(outbox, options.ids, options.destination);
    return outbox.requeueDead({ ...(options.destination ? { destination: options.destination } : {}), ...(options.ids.length > 0 ? { ids: options.ids } : {}) });
  });
}

export function queuePurge(loaded: LoadedConfig, state: 'sent' | 'dead' | 'queued', destination: string | undefined): { deleted: number; forwarded: number } {
  // Queued items of a destination still configured are deliveries under way: dropping them would let
  // retention delete originals that destination never confirmed (found in a review).
  if (state === 'queued' && loaded.config.forward.destinations.some((configured) => configured.name === destination)) {
    throw new Error(
      `--state queued: ${destination} is in forward.destinations of ${loaded.source}; only the queue of a destination removed from the config is purged (remove it, or let it be sent)`,
    );
  }
  return withOutbox(loaded, (outbox) => {
    checkDestination(loaded, outbox, destination);
    if (state === 'queued' && destination !== undefined) refuseWhileNodeSendsTo(loaded, outbox, destination, '--state queued');
    return outbox.purge(state, destination);
  });
}

/**
 * Refuses while a node runs on the storage with `destination` among the destinations it routes to (as
 * it recorded them at its start or last reload): the command's own file may already lack it (edited,
 * not yet reloaded, or another file), while the node still delivers its queued items (found in a
 * review: their originals then counted as forwarded, and retention deleted them).
 */
function refuseWhileNodeSendsTo(loaded: LoadedConfig, outbox: Outbox, destination: string, what: string): void {
  const node = nodeRunningOn(resolve(loaded.config.storage.path));
  if (node === undefined) return;
  const running = node === 'lock' ? 'a Gantry node' : `the Gantry node (PID ${node})`;
  const recorded = outbox.recordedRouting();
  if (recorded === undefined) {
    throw new Error(`${what}: ${running} runs on storage.path and has not recorded where it routes: reload it (SIGHUP) so that it does, then run this again`);
  }
  const names = (JSON.parse(recorded) as Array<[string, unknown]>).map(([name]) => name);
  if (names.includes(destination)) {
    throw new Error(`${what}: ${running} running on storage.path still sends to ${destination}: remove it from that node's forward.destinations and reload it (SIGHUP), then run this again`);
  }
}

/**
 * Gives up the queued and dead items of a destination removed from the config (renamed, or replaced)
 * and routes their instances again under forward.destinations as configured now (Outbox.reroute).
 * Refused for a destination still configured: its items are deliveries under way.
 */
export function queueReroute(loaded: LoadedConfig, destination: string): { deleted: number; rerouted: number } {
  if (loaded.config.forward.destinations.some((configured) => configured.name === destination)) {
    throw new Error(
      `--destination ${destination} is in forward.destinations of ${loaded.source}; only the queue of a destination removed from the config is routed again (gantry queue retry re-queues its dead items)`,
    );
  }
  return withOutbox(loaded, (outbox) => {
    checkDestination(loaded, outbox, destination);
    refuseWhileNodeSendsTo(loaded, outbox, destination, `--destination ${destination}`);
    return outbox.reroute(destination);
  });
}

/** Queues a study for its destinations now, stable or not. The running node sends it. */
export interface ForwardStudyOutcome {
  queued: number;
  redone: number;
  nodeRunning: boolean;
  /** Instances of the study with a de-identified copy to send (made routable again). */
  sendable: number;
  /** Of those, instances imported without --forward: never routed (gantry import --forward releases them). */
  held: number;
}

export async function forwardStudy(loaded: LoadedConfig, studyInstanceUid: string, log: Logger): Promise<ForwardStudyOutcome> {
  const destinations = routeDestinations(loaded.config.forward.destinations);
  if (destinations.length === 0) throw new Error(`forward.destinations is empty in ${loaded.source}: nowhere to forward to`);
  const { db, storagePath } = openIndex(loaded);
  try {
    const outbox = new Outbox(db);
    const router = new Router({ outbox, log, settings: () => ({ stableMs: 0, destinations }), onQueued: () => undefined });
    // One transaction: made routable, then routed by another transaction, the study could be routed by
    // the running node in between, and this said no destination takes it (found in a review).
    const { study, queued } = outbox.atomically(() => {
      const found = outbox.forwardStudyNow(studyInstanceUid);
      const routed = found ? router.routeStudy(found.studyPk) : 0;
      // Routed under this file's conditions, which may not be the node's: queued where the node's
      // would not send it, or to nowhere where the node's would (nothing queued, yet routed). Its next
      // start must look at the queue again, not trust the routing recorded (src/app.ts settleOutboxAtStart).
      if (found && outbox.recordedRouting() !== routingOf(loaded.config.forward.destinations)) outbox.forgetRouting();
      return { study: found, queued: routed };
    });
    if (!study) throw new Error(`no study with Study Instance UID ${studyInstanceUid} (original or de-identified) in the index`);
    // Instances whose copy retention deleted are made again from their original, and follow.
    const redone = new DeidWork(db).redoDeletedCopies(study.studyPk);
    const held = outbox.heldFromForwarding(study.studyPk);
    return { queued, redone, nodeRunning: (await runningGantry(storagePath)) !== undefined, sendable: study.instances, held };
  } finally {
    db.close();
  }
}

/** What gantry forward prints: what was queued, or why nothing was. */
export function forwardStudyReport(outcome: ForwardStudyOutcome): string {
  const again = outcome.redone > 0 ? `; ${outcome.redone} instance(s) whose de-identified copy retention deleted are de-identified again from their original and follow` : '';
  const sender = outcome.nodeRunning ? 'the running Gantry sends them' : 'no Gantry runs on this storage: they are sent when it starts';
  const held = outcome.held > 0 ? `; ${outcome.held} instance(s) imported without --forward stay (gantry import --forward on their files releases them)` : '';
  if (outcome.queued > 0 || outcome.redone > 0) return `queued ${outcome.queued} item(s)${again}${held}; ${sender}`;
  const why =
    outcome.sendable - outcome.held > 0
      ? 'no destination of forward.destinations takes this study (their when rules)'
      : outcome.held > 0
        ? `its ${outcome.held} instance(s) with a de-identified copy were imported without --forward (gantry import --forward on their files releases them)`
        : 'no instance of the study has a de-identified copy to send (gantry queue studies -s received, quarantined or failed shows where they are)';
  return `queued nothing: ${why}`;
}

/** The newest entries of the access audit (queries and retrieves of original identities). */
export function auditList(loaded: LoadedConfig, limit: number, write: (line: string) => void): void {
  const { db } = openIndex(loaded);
  try {
    const rows = new AccessAudit(db).list(limit);
    if (rows.length === 0) write('no access to original identities recorded');
    else write('time\tcalling AE\tfrom\toperation\tmodel\tlevel\tresults\tstatus');
    for (const row of rows) {
      write([new Date(row.at).toISOString(), row.callingAeTitle, row.remoteAddress, row.operation, row.model, row.level, row.results, row.status].join('\t'));
    }
  } finally {
    db.close();
  }
}

export function quarantineList(loaded: LoadedConfig, options: { failed: boolean; limit: number }, write: (line: string) => void): void {
  const { db } = openIndex(loaded);
  try {
    const rows = new QuarantineWork(db).list(options.failed ? ['quarantined', 'failed'] : ['quarantined'], options.limit);
    // Failed instances are held too (gantry status lists them): without --failed they are counted, so
    // that "nothing held" is never said of a failed one an operator was sent here to find (found in
    // the docs review).
    const failed = options.failed ? 0 : (new InstanceIndex(db).countsByState().failed ?? 0);
    if (rows.length === 0) write(failed === 0 ? 'nothing held' : 'nothing quarantined');
    else write('id\tstate\theld since\tcalling AE\tmodality\treason');
    for (const row of rows) write([heldId(row), row.state, new Date(row.heldAt).toISOString(), terminalText(row.callingAeTitle), terminalText(row.modality), terminalText(row.reason)].join('\t'));
    if (failed > 0) write(`${failed} failed instance(s) held too, not listed: gantry quarantine ls --failed`);
  } finally {
    db.close();
  }
}

/** One held instance, for the operator's eyes (its attributes are PHI: printed, never logged). */
export function quarantineShow(loaded: LoadedConfig, idText: string, write: (line: string) => void): boolean {
  const ref = heldReference(idText);
  const { db } = openIndex(loaded);
  try {
    const held = new QuarantineWork(db).show(ref.id);
    if (!held) return false;
    if (ref.receivedAt !== undefined && ref.receivedAt !== held.receivedAt) write(`received again since ${idText}: this is the copy held now`);
    for (const [key, value] of Object.entries({ ...held, id: heldId(held) })) {
      if (key === 'findings') continue;
      write(`${key}: ${terminalText(value)}`);
    }
    write(`findings: ${held.findings.length === 0 ? 'none' : ''}`);
    for (const finding of held.findings) write(`  ${terminalText(JSON.stringify(finding))}`);
    return true;
  } finally {
    db.close();
  }
}

/** An id as an operator typed it: the row, and the copy reviewed when it says. */
function heldReference(idText: string): { id: number; receivedAt?: number } {
  const ref = parseHeldId(idText);
  if (!ref) throw new Error(`"${idText}" is not an instance id (see gantry quarantine ls)`);
  return ref;
}

/** The row and copy an operator acts on: a bare row id names no copy, and a copy received since the
 * operator looked must not be released or deleted with it. */
function reviewedCopyReference(idText: string, verb: 'released' | 'deleted'): { id: number; receivedAt: number } {
  const ref = heldReference(idText);
  if (ref.receivedAt === undefined) {
    throw new Error(`give the id as gantry quarantine ls or show print it (${ref.id}.<copy>): it names the copy you reviewed, and a copy received since is not ${verb} with it`);
  }
  return { id: ref.id, receivedAt: ref.receivedAt };
}

/** Refuses an id whose copy is not the one the row holds now: the instance was received again. */
function requireReviewedCopy(work: QuarantineWork, idText: string, ref: { id: number; receivedAt?: number }): void {
  if (ref.receivedAt !== undefined && work.receivedAgain(ref.id, ref.receivedAt)) {
    throw new Error(`instance ${ref.id} was received again since the copy ${idText}: review the new copy (gantry quarantine show ${ref.id})`);
  }
}

export function quarantineRelease(loaded: LoadedConfig, idText: string, override: { pass: boolean; ignoreFindings: boolean }): boolean {
  const ref = reviewedCopyReference(idText, 'released');
  const { db } = openIndex(loaded);
  try {
    const work = new QuarantineWork(db);
    requireReviewedCopy(work, idText, ref);
    return work.release(ref.id, ref.receivedAt, override);
  } finally {
    db.close();
  }
}

/**
 * The copies of `file` that an earlier `quarantine delete` set aside and left (killed, or the machine
 * lost power, between setting them aside and its commit): its row stayed, naming a file that was gone,
 * and the copy set aside (patient data) was named by nothing. Deleted with the row this time.
 */
function setAsideEarlier(storagePath: string, file: string): string[] {
  const prefix = `${basename(file)}.deleting-`;
  const names = (() => {
    try {
      return readdirSync(join(storagePath, dirname(file)));
    } catch {
      return [];
    }
  })();
  return names.filter((name) => name.startsWith(prefix) && /^[0-9a-f]{12}$/.test(name.slice(prefix.length))).map((name) => join(dirname(file), name));
}

export function quarantineDelete(loaded: LoadedConfig, idText: string): boolean {
  const ref = reviewedCopyReference(idText, 'deleted');
  const { id, receivedAt } = ref;
  const { db, storagePath } = openIndex(loaded);
  const moved: Array<[from: string, to: string]> = [];
  /** Files an earlier delete set aside and did not get to delete (a crash before its commit). */
  const leftovers: string[] = [];
  const setAside = (file: string): SetAsideFile | undefined => {
    leftovers.push(...setAsideEarlier(storagePath, file));
    const aside = `${file}.deleting-${randomBytes(6).toString('hex')}`;
    try {
      renameSync(join(storagePath, file), join(storagePath, aside));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    moved.push([file, aside]);
    return { path: aside, stamp: fileStampAt(join(storagePath, aside)) };
  };
  try {
    let files: string[] | undefined;
    const work = new QuarantineWork(db);
    requireReviewedCopy(work, idText, ref);
    try {
      files = work.delete(id, receivedAt, setAside);
    } catch (error) {
      // The rows stay: so do their files, under their names.
      for (const [file, aside] of moved) renameSync(join(storagePath, aside), join(storagePath, file));
      throw error;
    }
    if (!files) return false;
    for (const file of [...files, ...leftovers]) {
      try {
        unlinkSync(join(storagePath, file));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    return true;
  } finally {
    db.close();
  }
}

/** Studies with instances in a state (received, deidentified, quarantined, forwarded, failed), newest
 * first: what an operator looks for. */
export function queueStudies(loaded: LoadedConfig, state: string, limit: number, write: (line: string) => void): void {
  const { db } = openIndex(loaded);
  try {
    const rows = db
      .prepare(
        `SELECT st.study_instance_uid AS study, st.study_date AS date, count(*) AS instances, max(i.state_changed_at) AS changed
         FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk
         WHERE i.state = ? GROUP BY st.id ORDER BY changed DESC LIMIT ?`,
      )
      .all(state, limit) as Array<{ study: string; date: string | null; instances: number; changed: number }>;
    if (rows.length === 0) write(`no study has instances in state ${state}`);
    else write(`Study Instance UID\tstudy date\tinstances ${state}\tlast change`);
    for (const row of rows) write([row.study, row.date ?? '', row.instances, new Date(row.changed).toISOString()].join('\t'));
  } finally {
    db.close();
  }
}
