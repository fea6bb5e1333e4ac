/**
 * The durable forwarding outbox (table forward_outbox): one row per de-identified instance and
 * destination, queued → sent, or dead after its attempts ran out. Routing of stable studies into it,
 * and the instance's move to `forwarded` once every destination has it, happen in the same
 * transactions. Nothing here opens sockets.
 *
 * A confirmation is committed as it arrives, before the next request goes out, into a table of its
 * own (forward_confirmations, migration 021: one page, where marking the outbox row sent wrote about
 * seven), and folded into the outbox, many at a time, first thing in the transaction of the next
 * method here that routes, settles, withdraws, purges or reroutes (`writing`; the node settles within
 * SETTLE_MS of pipeline/forward.ts, and a start reconciles). The other changes touch only items that
 * failed or are dead, never confirmed ones, and need no fold. The reads that decide what is sent and
 * when (due, nextDueAt, routingPending, unsentOf) leave confirmed items out; the other reads (counts,
 * list, recentFailures: metrics and the commands) see them queued until the fold. Reads never write.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db/database.js';
import { RowsPerStatement, valuesList } from '../db/rows-per-statement.js';

/** An instance of a stable study, ready to be routed to destinations. */
export interface RoutableInstance {
  id: number;
  studyPk: number;
  deidFilePath: string;
  sopClassUid: string;
  deidSopInstanceUid: string;
  transferSyntaxUid: string;
  callingAeTitle: string;
  /** Indexed attributes that destination conditions may test, by keyword. */
  attributes: Record<string, string | null>;
}

/** An item not sent (queued or dead) of its instance's current routing, with what its destination's
 * condition tests. */
export interface UnsentItemFacts {
  id: number;
  callingAeTitle: string;
  attributes: Record<string, string | null>;
}

/** One item to send. */
/**
 * Whether the outbox row `alias` has a confirmation of its own: its id and routing, and (rows of
 * migration 24 on) its instance and destination, since a new row can take the id of one deleted
 * (migration 024-confirmation-items.ts).
 */
function confirmed(alias: string): string {
  return `EXISTS (SELECT 1 FROM forward_confirmations c WHERE c.outbox_id = ${alias}.id AND c.routed_at = ${alias}.routed_at
    AND (c.instance_pk IS NULL OR (c.instance_pk = ${alias}.instance_pk AND c.destination = ${alias}.destination)))`;
}

export interface OutboxItem {
  id: number;
  destination: string;
  instancePk: number;
  filePath: string;
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  attempts: number;
  /** The routing the item belongs to: a copy routed again makes older items stale. */
  routedAt: number;
  studyPk: number;
}

export interface OutboxRow extends OutboxItem {
  state: 'queued' | 'sent' | 'dead';
  nextAttemptAt: number;
  lastStatus: string | null;
  lastError: string | null;
  queuedAt: number;
  sentAt: number | null;
}

export interface DestinationCounts {
  destination: string;
  queued: number;
  sent: number;
  dead: number;
  /** When the oldest queued item was queued (ms), or null. */
  oldestQueuedAt: number | null;
}

/** Index columns that destination conditions may test, by DICOM keyword. */
export const ROUTING_ATTRIBUTES = {
  Modality: 'se.modality',
  BodyPartExamined: 'se.body_part_examined',
  SeriesDescription: 'se.series_description',
  StudyDescription: 'st.study_description',
  Manufacturer: 'i.manufacturer',
  ManufacturerModelName: 'i.manufacturer_model_name',
  StationName: 'i.station_name',
  InstitutionName: 'i.institution_name',
  SOPClassUID: 'i.sop_class_uid',
  ImageType: 'i.image_type',
} as const;

export type RoutingAttribute = keyof typeof ROUTING_ATTRIBUTES;

const ITEM_COLUMNS = `o.id, o.destination, o.instance_pk AS instancePk, o.file_path AS filePath,
  o.sop_class_uid AS sopClassUid, o.sop_instance_uid AS sopInstanceUid,
  o.transfer_syntax_uid AS transferSyntaxUid, o.attempts, o.routed_at AS routedAt, o.study_pk AS studyPk`;

/**
 * next_attempt_at of items an operator re-queued (gantry queue retry) at `askedAt`: its negative, so
 * due at once, and a sign a destination in backoff reads without writing (retryAskedSince): the items
 * re-queued since its backoff began. The sign is cleared by each item's next attempt. (Until
 * 2026-12-02 the sign was 0, and the node cleared it on every item in one UPDATE on its main thread:
 * a million re-queued items held it and the write lock for seconds.)
 */
function retryAskedAt(askedAt: number): number {
  return -askedAt;
}

/** Outbox items an operator's purge or retry changes in one transaction (a purge: with those of the
 * same instances beside them). */
const ITEMS_PER_TRANSACTION = 2000;

/** Instances by id: after `after`, up to `upTo`. */
interface InstanceRange {
  after: number;
  upTo: number;
}

/** An instance (`instances`) routed and de-identified whose every item of its current routing is sent:
 * it becomes `forwarded` (markForwarded, reconcileForwarded). */
const EVERY_ITEM_SENT = `instances.state = 'deidentified' AND instances.routed_at IS NOT NULL
  AND EXISTS (SELECT 1 FROM forward_outbox o WHERE o.instance_pk = instances.id AND o.routed_at = instances.routed_at)
  AND NOT EXISTS (SELECT 1 FROM forward_outbox o WHERE o.instance_pk = instances.id AND o.routed_at = instances.routed_at AND o.state != 'sent')`;

/** The queueing of `rows` items (destination, instance, its copy's path, SOP class, SOP instance UID,
 * transfer syntax, study, time): an item routed again starts afresh. */
function enqueueSql(rows: number): string {
  return `INSERT INTO forward_outbox (destination, instance_pk, file_path, sop_class_uid, sop_instance_uid,
      transfer_syntax_uid, study_pk, routed_at, state, attempts, next_attempt_at, queued_at)
    SELECT column1, column2, column3, column4, column5, column6, column7, column8, 'queued', 0, column8, column8
    FROM (VALUES ${valuesList('(?, ?, ?, ?, ?, ?, ?, ?)', rows)}) WHERE true
    ON CONFLICT (destination, instance_pk) DO UPDATE SET file_path = excluded.file_path, routed_at = excluded.routed_at,
      sop_class_uid = excluded.sop_class_uid, sop_instance_uid = excluded.sop_instance_uid,
      transfer_syntax_uid = excluded.transfer_syntax_uid, state = 'queued', attempts = 0,
      next_attempt_at = excluded.next_attempt_at, last_status = NULL, last_error = NULL, failed_at = NULL,
      queued_at = excluded.queued_at, sent_at = NULL`;
}

export class Outbox {
  private readonly statements: Record<
    | 'routable'
    | 'earliestArrival'
    | 'markRouted'
    | 'due'
    | 'forwarded'
    | 'retry'
    | 'dead'
    | 'note'
    | 'nextDue'
    | 'routingPending'
    | 'unsent'
    | 'instanceOfUnsent'
    | 'withdraw'
    | 'confirm'
    | 'anyConfirmation'
    | 'foldConfirmations'
    | 'clearConfirmations',
    Statement
  >;

  /** Items queued many per statement: one a statement, 2,000 items took 43-49 ms, most of it the
   * counting trigger's statement journal and program run again for each (rows-per-statement.ts). */
  private readonly enqueue: RowsPerStatement<{ instance: RoutableInstance; destination: string }, number>;

  constructor(private readonly db: Db) {
    this.enqueue = new RowsPerStatement<{ instance: RoutableInstance; destination: string }, number>(db, enqueueSql, 8, ({ instance, destination }, into, at, now) => {
      into[at] = destination;
      into[at + 1] = instance.id;
      into[at + 2] = instance.deidFilePath;
      into[at + 3] = instance.sopClassUid;
      into[at + 4] = instance.deidSopInstanceUid;
      into[at + 5] = instance.transferSyntaxUid;
      into[at + 6] = instance.studyPk;
      into[at + 7] = now;
    });
    const attributeColumns = Object.entries(ROUTING_ATTRIBUTES)
      .map(([keyword, column]) => `${column} AS "${keyword}"`)
      .join(', ');
    this.statements = {
      // Instances of studies where nothing arrived since `cutoff` and nothing waits for de-identification
      // (quarantined and failed instances do not hold the rest back).
      routable: db.prepare(`
        SELECT i.id, st.id AS studyPk, i.deid_file_path AS deidFilePath, i.sop_class_uid AS sopClassUid,
          i.deid_sop_instance_uid AS deidSopInstanceUid, i.transfer_syntax_uid AS transferSyntaxUid,
          i.calling_ae_title AS callingAeTitle, ${attributeColumns}
        FROM instances i INDEXED BY instances_to_route
        JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk
        WHERE i.state = 'deidentified' AND i.routed_at IS NULL AND i.forward_held = 0 AND i.id > @afterId
          AND (@studyPk IS NOT NULL AND st.id = @studyPk OR @studyPk IS NULL AND st.last_received_at <= @cutoff
            AND NOT EXISTS (SELECT 1 FROM series s2 JOIN instances j INDEXED BY instances_waiting_by_series ON j.series_pk = s2.id
                            WHERE s2.study_pk = st.id AND j.state = 'received'))
        ORDER BY i.id LIMIT @limit`),
      // The earliest last arrival after `cutoff` among the studies with instances to route: the next
      // study to become stable (the partial index holds only instances not routed yet).
      earliestArrival: db.prepare(`
        SELECT min(st.last_received_at) FROM instances i INDEXED BY instances_to_route
        JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk
        WHERE i.state = 'deidentified' AND i.routed_at IS NULL AND i.forward_held = 0 AND st.last_received_at > ?`).pluck(),
      markRouted: db.prepare(`UPDATE instances SET routed_at = ? WHERE id = ?`),
      // Only rows of the instance's current routing: a re-sent original (routed_at reset) or a copy
      // routed again makes older rows stale (dropStale removes them). Never one confirmed and not yet
      // folded (here and in the next three: the reads that decide what is sent, and when).
      due: db.prepare(`
        SELECT ${ITEM_COLUMNS} FROM forward_outbox o JOIN instances i ON i.id = o.instance_pk
        WHERE o.destination = @destination AND o.state = 'queued' AND o.next_attempt_at <= @now
          AND i.state = 'deidentified' AND i.routed_at = o.routed_at AND i.deid_deleted_at IS NULL
          AND NOT ${confirmed('o')}
        ORDER BY o.next_attempt_at, o.id LIMIT @limit`),
      nextDue: db.prepare(`
        SELECT min(o.next_attempt_at) AS at FROM forward_outbox o JOIN instances i ON i.id = o.instance_pk
        WHERE o.destination = ? AND o.state = 'queued' AND i.state = 'deidentified' AND i.routed_at = o.routed_at AND i.deid_deleted_at IS NULL
          AND NOT ${confirmed('o')}`),
      // One statement for all the instances (a JSON array of ids): one a statement cost the state
      // counts' trigger its statement journal and program each time (rows-per-statement.ts).
      forwarded: db.prepare(`
        UPDATE instances SET state = 'forwarded', state_changed_at = @now
        WHERE id IN (SELECT value FROM json_each(@instancePks)) AND ${EVERY_ITEM_SENT}`),
      retry: db.prepare(`UPDATE forward_outbox SET attempts = attempts + 1, next_attempt_at = @nextAttemptAt, last_status = @status, last_error = @error, failed_at = @now
        WHERE id = @id AND state = 'queued' AND routed_at = @routedAt`),
      dead: db.prepare(`UPDATE forward_outbox SET state = 'dead', attempts = attempts + @counted, last_status = @status, last_error = @error, failed_at = @now
        WHERE id = @id AND state = 'queued' AND routed_at = @routedAt`),
      routingPending: db.prepare(`SELECT EXISTS (SELECT 1 FROM forward_outbox o INDEXED BY forward_outbox_routing_queued
        WHERE o.study_pk = @studyPk AND o.destination = @destination AND o.routed_at = @routedAt AND o.state = 'queued'
          AND NOT ${confirmed('o')}) AS pending`),
      note: db.prepare(`UPDATE forward_outbox SET last_error = @error, failed_at = @now WHERE id = @id AND state = 'queued'`),
      // One state at a time: the index then gives the rows in id order. With both states, each page
      // sorted every row after it (a temporary B-tree), and a queue of 80,000 took 5 s, the event loop
      // held throughout.
      unsent: db.prepare(`
        SELECT o.id, i.calling_ae_title AS callingAeTitle, ${attributeColumns}
        FROM forward_outbox o INDEXED BY forward_outbox_state JOIN instances i ON i.id = o.instance_pk
        JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk
        WHERE o.state = @state AND o.destination = @destination AND o.id > @afterId AND i.routed_at = o.routed_at
          AND NOT ${confirmed('o')}
        ORDER BY o.id LIMIT @limit`),
      instanceOfUnsent: db.prepare(`SELECT instance_pk FROM forward_outbox WHERE id = ? AND state IN ('queued', 'dead')`).pluck(),
      withdraw: db.prepare(`DELETE FROM forward_outbox WHERE id = ? AND state IN ('queued', 'dead')`),
      confirm: db.prepare(`INSERT OR REPLACE INTO forward_confirmations (outbox_id, routed_at, sent_at, status, instance_pk, destination)
        VALUES (@id, @routedAt, @now, @status, @instancePk, @destination)`),
      anyConfirmation: db.prepare(`SELECT EXISTS (SELECT 1 FROM forward_confirmations)`).pluck(),
      // What markSent did before migration 021, for every confirmation at once: only a queued item of
      // the routing it was sent under (a purge or a new routing since makes the confirmation moot).
      // NOT INDEXED and `id IN`: the items are looked up by key, one per confirmation. Without them
      // SQLite walked the state index over every queued item (it cannot know the confirmations are few),
      // which with a backlog of millions would run at every fold.
      foldConfirmations: db.prepare(`
        UPDATE forward_outbox NOT INDEXED SET state = 'sent',
          sent_at = (SELECT c.sent_at FROM forward_confirmations c WHERE c.outbox_id = forward_outbox.id),
          last_status = (SELECT c.status FROM forward_confirmations c WHERE c.outbox_id = forward_outbox.id),
          last_error = NULL, failed_at = NULL, attempts = attempts + 1
        WHERE id IN (SELECT outbox_id FROM forward_confirmations) AND state = 'queued' AND ${confirmed('forward_outbox')}`),
      clearConfirmations: db.prepare(`DELETE FROM forward_confirmations`),
    };
  }

  /** Runs `work` in one IMMEDIATE transaction that first folds the confirmations recorded since the
   * last one into the outbox: every method that changes forward_outbox runs in one (a fold outside it
   * could miss a confirmation the node commits before the work begins). */
  private writing<T>(work: () => T): T {
    return this.db
      .transaction(() => {
        if (this.statements.anyConfirmation.get() === 1) {
          this.statements.foldConfirmations.run();
          this.statements.clearConfirmations.run();
        }
        return work();
      })
      .immediate();
  }

  /** Of `instancePks`, those whose every item of their current routing is sent become `forwarded`. */
  private markForwarded(instancePks: Iterable<number>, now: number): void {
    this.statements.forwarded.run({ instancePks: JSON.stringify([...instancePks]), now });
  }

  /** Instances ready to be routed: of stable studies (or of `studyPk`, on demand), not routed yet. */
  routable(cutoff: number, limit: number, afterId = 0, studyPk: number | null = null): RoutableInstance[] {
    const rows = this.statements.routable.all({ cutoff, limit, afterId, studyPk }) as Array<Record<string, unknown>>;
    return rows.map((row) => {
      const attributes = routingAttributesOf(row);
      return {
        id: row['id'] as number,
        studyPk: row['studyPk'] as number,
        deidFilePath: row['deidFilePath'] as string,
        sopClassUid: row['sopClassUid'] as string,
        deidSopInstanceUid: row['deidSopInstanceUid'] as string,
        transferSyntaxUid: row['transferSyntaxUid'] as string,
        callingAeTitle: row['callingAeTitle'] as string,
        attributes,
      };
    });
  }

  /** Items of a destination not sent (queued or dead: `state`) of their instances' current routings,
   * after `afterId` in id order, with what the destination's condition tests. */
  unsentOf(destination: string, state: 'queued' | 'dead', limit: number, afterId = 0): UnsentItemFacts[] {
    const rows = this.statements.unsent.all({ destination, state, limit, afterId }) as Array<Record<string, unknown>>;
    return rows.map((row) => ({ id: row['id'] as number, callingAeTitle: row['callingAeTitle'] as string, attributes: routingAttributesOf(row) }));
  }

  /**
   * Withdraws items not sent (a reload narrowed their destination's condition: they must not go). An
   * instance left with sent items only counts as forwarded; one left with none is routed to nowhere,
   * and the reload routes it again under the new conditions (routeAgainRoutedToNowhere). Returns how
   * many items were withdrawn.
   */
  withdraw(ids: readonly number[]): number {
    // IMMEDIATE: it reads before it writes. Deferred, the write found another process's lock (gantry
    // queue, forward, import) and failed at once with SQLITE_BUSY: SQLite runs no busy handler for a
    // read transaction that would become a write one.
    return this.writing(() => {
      let withdrawn = 0;
      const instances = new Set<number>();
      for (const id of ids) {
        const instancePk = this.statements.instanceOfUnsent.get(id) as number | undefined;
        if (instancePk === undefined) continue;
        withdrawn += this.statements.withdraw.run(id).changes;
        instances.add(instancePk);
      }
      const now = Date.now();
      this.markForwarded(instances, now);
      return withdrawn;
    });
  }

  /** Runs `work` in one IMMEDIATE transaction: all of it is committed, or none. */
  atomically<T>(work: () => T): T {
    return this.writing(work);
  }

  /** The earliest last arrival (ms) after `cutoff` of a study with instances to route, or undefined. */
  earliestArrivalToRoute(cutoff: number): number | undefined {
    return (this.statements.earliestArrival.get(cutoff) as number | null) ?? undefined;
  }

  /** Queues each instance for its destinations and marks it routed, in one transaction. */
  route(routes: ReadonlyArray<{ instance: RoutableInstance; destinations: readonly string[] }>, now = Date.now()): number {
    return this.writing(() => {
      const items = routes.flatMap(({ instance, destinations }) => destinations.map((destination) => ({ instance, destination })));
      this.enqueue.run(items, now);
      for (const { instance } of routes) this.statements.markRouted.run(now, instance.id);
      return items.length;
    });
  }

  /** Queued items of a destination whose time has come, oldest first. */
  due(destination: string, limit: number, now = Date.now()): OutboxItem[] {
    return this.statements.due.all({ destination, now, limit }) as OutboxItem[];
  }

  /** When the next queued item of a destination is due (ms), or undefined when none is queued. */
  nextDueAt(destination: string): number | undefined {
    const row = this.statements.nextDue.get(destination) as { at: number | null };
    return row.at ?? undefined;
  }

  /** The destination confirmed the item: recorded at once (one small commit), folded into the outbox
   * by the next method that changes it (`writing`). (Its instance moves to `forwarded` in settleForwarded.) */
  markSent(item: OutboxItem, status: string, now = Date.now()): void {
    this.statements.confirm.run({ id: item.id, routedAt: item.routedAt, status, now, instancePk: item.instancePk, destination: item.destination });
  }

  /** Moves instances whose every outbox row is sent to `forwarded` (one transaction). Kept off the
   * per-item path, where each confirmation must be one small commit. */
  settleForwarded(instancePks: Iterable<number>, now = Date.now()): void {
    this.writing(() => {
      this.markForwarded(instancePks, now);
    });
  }

  /** Instances whose rows were all confirmed but not settled yet (an unclean stop, a purge). */
  reconcileForwarded(now = Date.now()): number {
    return this.writing(() =>
      this.db.prepare(
        `UPDATE instances SET state = 'forwarded', state_changed_at = @now
         WHERE ${EVERY_ITEM_SENT}`,
      ).run({ now }).changes,
    );
  }

  /** Deletes queued rows that can never be sent: their instance was quarantined or failed after a
   * re-send, or was routed again since (a newer row replaced them). */
  dropStale(): number {
    return this.writing(() =>
      this.db.prepare(
        `DELETE FROM forward_outbox WHERE id IN (
           SELECT o.id FROM forward_outbox o JOIN instances i ON i.id = o.instance_pk
           WHERE o.state = 'queued' AND (i.state IN ('quarantined', 'failed') OR (i.routed_at IS NOT NULL AND i.routed_at != o.routed_at)))`,
      ).run().changes,
    );
  }

  /**
   * Makes routable again the de-identified instances that no destination took (routed, and no item of
   * that routing): called when the destinations change (SIGHUP), so that one added for them, or a
   * condition mended, reaches them, as a first destination reaches the studies that waited while there
   * was none. Those still taken by none are routed to none again. Returns how many.
   */
  routeAgainRoutedToNowhere(): number {
    return this.writing(() =>
      this.db.prepare(
        `UPDATE instances SET routed_at = NULL
         WHERE state = 'deidentified' AND routed_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM forward_outbox o WHERE o.instance_pk = instances.id AND o.routed_at = instances.routed_at)`,
      ).run().changes,
    );
  }

  /** The routing recorded by the last routeAgainUnder (undefined before the first). */
  recordedRouting(): string | undefined {
    return this.db.prepare(`SELECT routing FROM forward_routing WHERE id = 1`).pluck().get() as string | undefined;
  }

  /** Forgets the recorded routing: items were queued under another (gantry forward with another
   * file), so the next start looks at every unsent item again. */
  forgetRouting(): void {
    this.db.prepare(`DELETE FROM forward_routing`).run();
  }

  /**
   * routeAgainRoutedToNowhere when `routing` (what decides where an instance goes: the destinations'
   * names and conditions) differs from the routing recorded by the last call, or when `always`; then
   * records it, in the same transaction. A start has no config of the last run to compare with: this
   * record is how it learns that a destination was added to the file meanwhile. Returns how many
   * instances were made routable again, or undefined when the routing had not changed.
   */
  routeAgainUnder(routing: string, always = false, now = Date.now()): number | undefined {
    // Read first: the routing is most often unchanged, and the write lock taken for nothing would wait
    // out another process's lock (the busy timeout) at every start and reload.
    if (!always && this.recordedRouting() === routing) return undefined;
    return this.db.transaction(() => {
      if (this.recordedRouting() === routing && !always) return undefined;
      const again = this.routeAgainRoutedToNowhere();
      this.db
        .prepare(`INSERT INTO forward_routing (id, routing, recorded_at) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET routing = excluded.routing, recorded_at = excluded.recorded_at`)
        .run(routing, now);
      return again;
    }).immediate();
  }

  /** Whether items of this routing of a study to this destination are still queued. */
  routingPending(destination: string, studyPk: number, routedAt: number): boolean {
    return (this.statements.routingPending.get({ destination, studyPk, routedAt }) as { pending: number }).pending === 1;
  }

  /** A failed attempt: try again at `nextAttemptAt`. */
  markRetry(item: OutboxItem, nextAttemptAt: number, status: string | null, error: string): void {
    this.statements.retry.run({ id: item.id, routedAt: item.routedAt, nextAttemptAt, status, error, now: Date.now() });
  }

  /** No more attempts: the item waits for an operator (`gantry queue retry`). `counted`: whether this
   * failure was an attempt at sending (a refused transfer syntax is not). */
  markDead(item: OutboxItem, status: string | null, error: string, counted = true): void {
    this.statements.dead.run({ id: item.id, routedAt: item.routedAt, status, error, counted: counted ? 1 : 0, now: Date.now() });
  }

  /** Records why the destination could not be reached, without counting an attempt. */
  noteUnreachable(items: readonly OutboxItem[], error: string): void {
    const now = Date.now();
    this.db.transaction(() => {
      for (const item of items) this.statements.note.run({ id: item.id, error, now });
    })();
  }

  /** Quarantined or failed instances of these studies: held back from forwarding. */
  heldBack(studyPks: readonly number[]): number {
    if (studyPks.length === 0) return 0;
    const row = this.db
      .prepare(
        `SELECT count(*) AS count FROM instances i JOIN series se ON se.id = i.series_pk
         WHERE se.study_pk IN (SELECT value FROM json_each(?)) AND i.state IN ('quarantined', 'failed')`,
      )
      .get(JSON.stringify(studyPks)) as { count: number };
    return row.count;
  }

  // --- operators (gantry queue) ---------------------------------------------------------------

  /**
   * Items per destination and state, for every scrape (gantry_outbox_items) and the commands: counts
   * kept by triggers (migration 020) and, per destination, a seek in the partial index of queued items
   * for the oldest. Counting the rows read the whole outbox, 1.9 s with 2,850,000 items, on the main
   * thread. Destinations whose items are all gone are left out.
   */
  counts(): DestinationCounts[] {
    return this.db
      .prepare(
        `SELECT c.destination,
           sum(CASE WHEN c.state = 'queued' THEN c.count ELSE 0 END) AS queued,
           sum(CASE WHEN c.state = 'sent' THEN c.count ELSE 0 END) AS sent,
           sum(CASE WHEN c.state = 'dead' THEN c.count ELSE 0 END) AS dead,
           (SELECT min(o.queued_at) FROM forward_outbox o INDEXED BY forward_outbox_queued_since
             WHERE o.destination = c.destination AND o.state = 'queued') AS oldestQueuedAt
         FROM forward_outbox_counts c GROUP BY c.destination HAVING sum(c.count) > 0 ORDER BY c.destination`,
      )
      .all() as DestinationCounts[];
  }

  /** Items not sent (queued or dead; a confirmation clears failed_at) whose last attempt failed, the
   * latest failure first. */
  recentFailures(limit: number): Array<OutboxRow & { failedAt: number }> {
    return this.db
      .prepare(
        `SELECT ${ITEM_COLUMNS}, o.state, o.next_attempt_at AS nextAttemptAt, o.last_status AS lastStatus,
           o.last_error AS lastError, o.queued_at AS queuedAt, o.sent_at AS sentAt, o.failed_at AS failedAt
         FROM forward_outbox o INDEXED BY forward_outbox_failed
         WHERE o.failed_at IS NOT NULL
         ORDER BY o.failed_at DESC, o.id DESC LIMIT ?`,
      )
      .all(limit) as Array<OutboxRow & { failedAt: number }>;
  }

  list(filter: { state?: string; destination?: string; limit: number }): OutboxRow[] {
    return this.db
      .prepare(
        `SELECT ${ITEM_COLUMNS}, o.state, o.next_attempt_at AS nextAttemptAt, o.last_status AS lastStatus,
           o.last_error AS lastError, o.queued_at AS queuedAt, o.sent_at AS sentAt
         FROM forward_outbox o
         WHERE (@state IS NULL OR o.state = @state) AND (@destination IS NULL OR o.destination = @destination)
         ORDER BY o.id LIMIT @limit`,
      )
      .all({ state: filter.state ?? null, destination: filter.destination ?? null, limit: filter.limit }) as OutboxRow[];
  }

  /** The state and destination of each of the items `ids` that exists. */
  itemStates(ids: readonly number[]): Map<number, { state: string; destination: string }> {
    const read = this.db.prepare('SELECT state, destination FROM forward_outbox WHERE id = ?');
    const found = new Map<number, { state: string; destination: string }>();
    for (const id of ids) {
      const row = read.get(id) as { state: string; destination: string } | undefined;
      if (row) found.set(id, row);
    }
    return found;
  }

  /**
   * Puts dead items (all, of one destination, or by id) back in the queue, due now and marked as
   * asked for at `now` (retryAskedAt), which a sender in backoff looks for (retryAskedSince). All of
   * a destination's go page by page, in short transactions: in one, re-queuing 300,000 items held the
   * index's write lock for 2.2 s (2-core VM), and C-STOREs that wait for it longer than the busy
   * timeout are answered 0xA700, as the purge's were.
   */
  requeueDead(filter: { destination?: string; ids?: readonly number[] }, now = Date.now()): number {
    const requeue = (table: string, where: string) =>
      this.db.prepare(
        `UPDATE ${table} SET state = 'queued', attempts = 0, next_attempt_at = ${retryAskedAt(now)}, last_error = NULL, failed_at = NULL
         WHERE state = 'dead' AND ${where}`,
      );
    const { ids } = filter;
    if (ids) {
      const byId = requeue('forward_outbox', 'id = ? AND (@destination IS NULL OR destination = @destination)');
      return this.writing(() => ids.reduce((sum, id) => sum + byId.run(id, { destination: filter.destination ?? null }).changes, 0));
    }
    const destinations = filter.destination
      ? [filter.destination]
      : (this.db.prepare(`SELECT destination FROM forward_outbox_counts WHERE state = 'dead' AND count > 0`).pluck().all() as string[]);
    const pageEnd = this.db
      .prepare(`SELECT id FROM forward_outbox INDEXED BY forward_outbox_state WHERE state = 'dead' AND destination = ? AND id > ? ORDER BY id LIMIT 1 OFFSET ${ITEMS_PER_TRANSACTION - 1}`)
      .pluck();
    const page = requeue('forward_outbox INDEXED BY forward_outbox_state', 'destination = @destination AND id > @after AND id <= @upTo');
    let requeued = 0;
    for (const destination of destinations) {
      for (let after = 0; ; ) {
        const upTo = pageEnd.get(destination, after) as number | undefined;
        requeued += this.writing(() => page.run({ destination, after, upTo: upTo ?? Number.MAX_SAFE_INTEGER }).changes);
        if (upTo === undefined) break;
        after = upTo;
      }
    }
    return requeued;
  }

  /**
   * Whether an operator re-queued items of the destination (gantry queue retry) after `since` (when
   * its backoff began): a sender in backoff asks at each poll, and makes one attempt at once instead
   * of waiting out the backoff (up to forward.retry.maxSeconds). A read: the items' sign goes with
   * their next attempt, and a failed attempt starts a backoff later than the retry asked.
   */
  retryAskedSince(destination: string, since: number): boolean {
    return (
      this.db
        .prepare(`SELECT 1 FROM forward_outbox INDEXED BY forward_outbox_due WHERE destination = ? AND state = 'queued' AND next_attempt_at < ? LIMIT 1`)
        .get(destination, retryAskedAt(since)) !== undefined
    );
  }

  /**
   * Deletes items in a state, of one destination or all: sent or dead ones to keep the outbox small
   * (sent ones of instances still waiting for another destination stay), queued ones of a destination
   * that was removed from the config. Purging dead or queued items gives
   * up on those deliveries: instances whose every remaining item is sent then count as forwarded, and
   * retention deletes their files storage.retainOriginals later (docs/operations.md section 8).
   * Returns the items deleted and the instances that became forwarded.
   */
  purge(state: 'sent' | 'dead' | 'queued', destination?: string): { deleted: number; forwarded: number } {
    // Page by page of items, each page's instances in a short transaction of their own: in one, a
    // purge of 1.2 million sent items held the index's write lock for 19 s, and a node serving the
    // storage answered the C-STOREs that waited for it 0xA700 (found in the concurrency review).
    const pageEnd = this.db.prepare(`SELECT instance_pk FROM forward_outbox WHERE instance_pk > ? ORDER BY instance_pk LIMIT 1 OFFSET ${ITEMS_PER_TRANSACTION - 1}`).pluck();
    const total = { deleted: 0, forwarded: 0 };
    for (let after = 0; ; ) {
      const upTo = pageEnd.get(after) as number | undefined;
      const page = this.writing(() => this.purgePage(state, destination, { after, upTo: upTo ?? Number.MAX_SAFE_INTEGER }));
      total.deleted += page.deleted;
      total.forwarded += page.forwarded;
      if (upTo === undefined) return total;
      after = upTo;
    }
  }

  /** purge() for the items of the instances in `range` (their ids after `after`, up to `upTo`). */
  private purgePage(state: 'sent' | 'dead' | 'queued', destination: string | undefined, range: InstanceRange): { deleted: number; forwarded: number } {
    // Sent items are what makes an instance `forwarded`: settle before they go. Those of an instance
    // still waiting for another destination stay: they say this one has it, and without them giving
    // up on the other later left no item, and the instance never counted as forwarded (its original
    // kept forever).
    if (state === 'sent') this.settleSent(range);
    const givenUp = state === 'sent' ? 0 : this.settleGivenUp(state, destination, range);
    const deleted = this.db
      .prepare(
        // By the instance index: by the state index each page read every item in the state (found in
        // the review of the session's diff: 54 s against 0.8 s for 300,000 instances).
        `DELETE FROM forward_outbox INDEXED BY forward_outbox_instance WHERE instance_pk > @after AND instance_pk <= @upTo
           AND state = @state AND (@destination IS NULL OR destination = @destination)
           AND (state != 'sent' OR NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = forward_outbox.instance_pk
             AND i.state = 'deidentified' AND i.routed_at = forward_outbox.routed_at))`,
      )
      .run({ state, destination: destination ?? null, ...range }).changes;
    const forwarded = state === 'sent' ? 0 : givenUp + this.settleSent(range);
    return { deleted, forwarded };
  }

  /** reconcileForwarded() for the instances in `range`, inside the caller's transaction. */
  private settleSent(range: InstanceRange, now = Date.now()): number {
    return this.db
      .prepare(`UPDATE instances SET state = 'forwarded', state_changed_at = @now WHERE id > @after AND id <= @upTo AND ${EVERY_ITEM_SENT}`)
      .run({ now, ...range }).changes;
  }

  /**
   * The queued and dead items of a destination removed from the config (renamed, or replaced by
   * another) are given up, and their instances routed again under the destinations configured now:
   * the running node routes them at its next pass, as a new study. An instance whose current routing
   * also took another destination is routed again as a whole, so one that confirmed it gets it once
   * more (a destination keeps one copy per SOP Instance UID). Instances whose de-identified copy is gone
   * are not routed again (`gantry forward STUDY_UID` makes the copy again); those whose routing has
   * other destinations, all of which confirmed them, count as forwarded. Page by page, each an IMMEDIATE
   * transaction.
   */
  reroute(destination: string): { deleted: number; rerouted: number } {
    // Page by page of the destination's items, each page's instances in a transaction of its own, as
    // purge(): in one, 300,000 items held the index's write lock for 2.4 s (2-core VM).
    const pageEnd = this.db
      .prepare(`SELECT instance_pk FROM forward_outbox WHERE destination = ? AND instance_pk > ? ORDER BY instance_pk LIMIT 1 OFFSET ${ITEMS_PER_TRANSACTION - 1}`)
      .pluck();
    const total = { deleted: 0, rerouted: 0 };
    for (let after = 0; ; ) {
      const upTo = pageEnd.get(destination, after) as number | undefined;
      const page = this.writing(() => this.reroutePage(destination, { after, upTo: upTo ?? Number.MAX_SAFE_INTEGER }));
      total.deleted += page.deleted;
      total.rerouted += page.rerouted;
      if (upTo === undefined) return total;
      after = upTo;
    }
  }

  /** reroute() for the items of the instances in `range`. */
  private reroutePage(destination: string, range: InstanceRange): { deleted: number; rerouted: number } {
    const rerouted = this.db
      .prepare(
        `UPDATE instances SET routed_at = NULL
         WHERE id > @after AND id <= @upTo AND state = 'deidentified' AND routed_at IS NOT NULL AND deid_deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM forward_outbox o WHERE o.instance_pk = instances.id AND o.routed_at = instances.routed_at
             AND o.destination = @destination AND o.state IN ('queued', 'dead'))`,
      )
      .run({ destination, ...range }).changes;
    // An instance whose de-identified copy is gone is not routed again: nothing to send. With its
    // given-up item deleted, it counts as forwarded when its other items were all confirmed, now
    // rather than at the next start (reconcileForwarded, which would), so that retention does not
    // keep its original (PHI) past storage.retainOriginals.
    const notRouted = this.db
      .prepare(
        `SELECT o.instance_pk FROM forward_outbox o JOIN instances i ON i.id = o.instance_pk
         WHERE o.destination = @destination AND o.instance_pk > @after AND o.instance_pk <= @upTo
           AND o.state IN ('queued', 'dead') AND i.state = 'deidentified' AND i.routed_at = o.routed_at`,
      )
      .pluck()
      .all({ destination, ...range }) as number[];
    const deleted = this.db
      .prepare(`DELETE FROM forward_outbox WHERE destination = @destination AND instance_pk > @after AND instance_pk <= @upTo AND state IN ('queued', 'dead')`)
      .run({ destination, ...range }).changes;
    this.markForwarded(notRouted, Date.now());
    return { deleted, rerouted };
  }

  /**
   * Before a purge of dead or queued items: the instances whose routing is left with nothing but sent
   * items count as forwarded, those left with no item at all too. Settled after the delete instead, an
   * instance whose only items went looked routed to nowhere: the next reload routed it again to the
   * destination given up on, and retention kept its original forever.
   */
  private settleGivenUp(state: 'dead' | 'queued', destination: string | undefined, range: InstanceRange): number {
    return this.db
      .prepare(
        `UPDATE instances SET state = 'forwarded', state_changed_at = @now
         WHERE id > @after AND id <= @upTo AND state = 'deidentified' AND routed_at IS NOT NULL
           AND EXISTS (SELECT 1 FROM forward_outbox o WHERE o.instance_pk = instances.id AND o.routed_at = instances.routed_at
             AND o.state = @state AND (@destination IS NULL OR o.destination = @destination))
           AND NOT EXISTS (SELECT 1 FROM forward_outbox o WHERE o.instance_pk = instances.id AND o.routed_at = instances.routed_at
             AND o.state != 'sent' AND NOT (o.state = @state AND (@destination IS NULL OR o.destination = @destination)))`,
      )
      .run({ state, destination: destination ?? null, now: Date.now(), ...range }).changes;
  }

  /** Instances of a study with a de-identified copy that routing leaves alone: imported without
   * --forward (gantry import --forward releases them). */
  heldFromForwarding(studyPk: number): number {
    return this.db
      .prepare(
        `SELECT count(*) FROM instances i JOIN series se ON se.id = i.series_pk
         WHERE se.study_pk = ? AND i.forward_held = 1 AND i.state = 'deidentified' AND i.routed_at IS NULL AND i.deid_deleted_at IS NULL`,
      )
      .pluck()
      .get(studyPk) as number;
  }

  /**
   * Makes a study's de-identified instances routable again now, whatever its stability (gantry forward):
   * found by its original or its de-identified Study Instance UID. Returns the study's key, or undefined.
   */
  forwardStudyNow(studyInstanceUid: string): { studyPk: number; instances: number } | undefined {
    // IMMEDIATE: it reads, then writes. Deferred, a commit of the running node between the two failed
    // the write at once with SQLITE_BUSY_SNAPSHOT (no busy wait for a stale snapshot).
    return this.db.transaction(() => {
      const study = this.db
        .prepare(
          `SELECT st.id FROM studies st WHERE st.study_instance_uid = @uid
           UNION SELECT se.study_pk FROM instances i JOIN series se ON se.id = i.series_pk WHERE i.deid_study_instance_uid = @uid
           LIMIT 1`,
        )
        .get({ uid: studyInstanceUid }) as { id: number } | undefined;
      if (!study) return undefined;
      const changed = this.db
        .prepare(
          `UPDATE instances SET routed_at = NULL, state = 'deidentified'
           WHERE series_pk IN (SELECT id FROM series WHERE study_pk = ?) AND state IN ('deidentified', 'forwarded')
             AND deid_deleted_at IS NULL`,
        )
        .run(study.id).changes;
      return { studyPk: study.id, instances: changed };
    }).immediate();
  }
}

/** The indexed attributes a destination's condition tests, from a row that selected them by keyword. */
function routingAttributesOf(row: Record<string, unknown>): Record<string, string | null> {
  const attributes: Record<string, string | null> = {};
  for (const keyword of Object.keys(ROUTING_ATTRIBUTES)) attributes[keyword] = (row[keyword] as string | null) ?? null;
  return attributes;
}
