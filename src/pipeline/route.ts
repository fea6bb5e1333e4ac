/**
 * Study stability and routing: a study whose last instance arrived `stableSeconds` ago and none of
 * whose instances still waits for de-identification is routed: each of its de-identified instances
 * goes into the outbox of every destination whose condition holds. Instances that arrive later are
 * routed on their own once their study is stable again. Quarantined and failed instances stay behind.
 */
import type { DestinationConfig } from '../config/schema.js';
import { compileCondition, conditionHolds, RuleError, type CompiledCondition, type InstanceFacts } from '../deid/rules.js';
import { tagOfKeyword } from '../dicom/dictionary.js';
import type { Logger } from '../observability/logger.js';
import { ROUTING_ATTRIBUTES, type Outbox, type RoutableInstance } from '../queue/outbox.js';

export interface RouteDestination {
  name: string;
  when?: CompiledCondition;
}

/** Instances routed in one transaction: bounded memory and transaction length. One page with two
 * destinations took about 40 ms here (2,000 took 170 ms, and a backlog of 50,000 instances held the
 * event loop, and with it every association, for 4 s when routed in one go). */
const PAGE = 500;

const KEYWORD_OF_TAG = new Map(Object.keys(ROUTING_ATTRIBUTES).map((keyword) => [tagOfKeyword(keyword) as number, keyword]));

/** What decides where an instance goes: the destinations' names and conditions, as text to compare
 * with the routing the index recorded (Outbox.routeAgainUnder). */
export function routingOf(destinations: readonly DestinationConfig[]): string {
  return JSON.stringify(destinations.map((destination) => [destination.name, destination.when ?? null]));
}

/** Destination conditions from config, checked: an attribute Gantry does not index is refused with the
 * allowed ones named. */
export function routeDestinations(destinations: readonly DestinationConfig[]): RouteDestination[] {
  // Every destination is checked, and the list refused with all that is wrong in it.
  const names = new Set<string>();
  const problems: string[] = [];
  const routes = destinations.map((destination, index) => {
    if (names.has(destination.name)) problems.push(`forward.destinations[${index}].name: "${destination.name}" is used twice; names must differ`);
    names.add(destination.name);
    const untestable = Object.keys(destination.when?.attributes ?? {}).filter((keyword) => !(keyword in ROUTING_ATTRIBUTES));
    for (const keyword of untestable) {
      problems.push(`forward.destinations[${index}].when.attributes: "${keyword}" cannot be tested; allowed: ${Object.keys(ROUTING_ATTRIBUTES).join(', ')}`);
    }
    if (untestable.length > 0) return { name: destination.name };
    let when;
    try {
      when = compileCondition(destination.when);
    } catch (error) {
      problems.push(...(error instanceof RuleError ? error.problems : [(error as Error).message]).map((problem) => `forward.destinations[${index}].${problem}`));
    }
    return { name: destination.name, ...(when ? { when } : {}) };
  });
  if (problems.length > 0) throw new RuleError(problems);
  return routes;
}

export interface RouterOptions {
  outbox: Outbox;
  log: Logger;
  settings(): { stableMs: number; destinations: RouteDestination[] };
  /** Called after items were queued. */
  onQueued(): void;
  /** Instances per page (default PAGE). */
  pageSize?: number;
}

/** A routing pass: its time (the routed_at of every item it queues, so a study routed over several
 * pages is one routing) and what it routed so far, for the one line it logs at its end. */
interface Pass {
  now: number;
  afterId: number;
  queued: number;
  routed: number;
  studies: Set<number>;
}

function newPass(now: number): Pass {
  return { now, afterId: 0, queued: 0, routed: 0, studies: new Set() };
}

export class Router {
  /** The pass over stable studies that `maxPages` cut short: the next call goes on with it. */
  private stablePass: Pass | undefined;

  constructor(private readonly options: RouterOptions) {}

  /**
   * Routes the instances of stable studies, at most `maxPages` pages of them: the node routes one page
   * per turn of its event loop, so that a large backlog becoming stable does not stop the associations
   * it serves. A pass cut short goes on at the next call, with its own time (moreToRoute tells).
   * Returns how many outbox items this call queued.
   */
  routeStable(now = Date.now(), maxPages = Infinity): number {
    const pass = this.stablePass ?? newPass(now);
    const { stableMs } = this.options.settings();
    const before = pass.queued;
    // A page that fails (the index busy or full) ends the pass: the next one begins afresh, with the
    // time of its own, rather than going on with this one's cutoff.
    this.stablePass = undefined;
    const finished = this.routePages(pass, (afterId, limit) => this.options.outbox.routable(pass.now - stableMs, limit, afterId), maxPages);
    if (!finished) this.stablePass = pass;
    return pass.queued - before;
  }

  /** Whether the last routeStable stopped at its page limit with instances left to route. */
  get moreToRoute(): boolean {
    return this.stablePass !== undefined;
  }

  /**
   * How long until the next study that is not stable yet becomes stable (its last instance's arrival
   * plus stableSeconds), or undefined when no such study has instances to route. The node looks again
   * then rather than at its next tick. (A stable study that still waits for de-identification is
   * looked at on the tick.)
   */
  msUntilNextStable(now = Date.now()): number | undefined {
    const { stableMs } = this.options.settings();
    const earliest = this.options.outbox.earliestArrivalToRoute(now - stableMs);
    return earliest === undefined ? undefined : earliest + stableMs - now;
  }

  /** Routes one study now, stable or not (gantry forward). */
  routeStudy(studyPk: number, now = Date.now()): number {
    const pass = newPass(now);
    this.routePages(pass, (afterId, limit) => this.options.outbox.routable(now, limit, afterId, studyPk), Infinity);
    return pass.queued;
  }

  /** Routes up to `maxPages` pages of `pass`; true when it is finished (then it logs what it routed). */
  private routePages(pass: Pass, page: (afterId: number, limit: number) => RoutableInstance[], maxPages: number): boolean {
    const { destinations } = this.options.settings();
    if (destinations.length === 0) return true;
    const pageSize = this.options.pageSize ?? PAGE;
    const queuedBefore = pass.queued;
    let finished = false;
    for (let pages = 0; pages < maxPages; pages += 1) {
      const instances = page(pass.afterId, pageSize);
      if (instances.length > 0) {
        const routes = instances.map((instance) => ({ instance, destinations: this.destinationsFor(instance, destinations) }));
        pass.queued += this.options.outbox.route(routes, pass.now);
        pass.afterId = (instances[instances.length - 1] as RoutableInstance).id;
        pass.routed += instances.length;
        for (const instance of instances) pass.studies.add(instance.studyPk);
      }
      if (instances.length < pageSize) {
        finished = true;
        break;
      }
    }
    if (finished && pass.routed > 0) {
      const heldBack = this.options.outbox.heldBack([...pass.studies]);
      this.options.log.info({ studies: pass.studies.size, instances: pass.routed, queued: pass.queued, heldBack }, 'stable studies routed to destinations');
      if (heldBack > 0) this.options.log.warn({ instances: heldBack }, 'quarantined or failed instances of forwarded studies held back (gantry queue ls)');
    }
    // The senders start with the first page, not after the last.
    if (pass.queued > queuedBefore) this.options.onQueued();
    return finished;
  }

  /**
   * Withdraws the items not sent (queued or dead) of `destinations` whose instances their condition
   * no longer takes: a reload narrowed it, and what it now excludes must not go there, nor wait in its
   * dead letter for an operator to send it. Page by page, in one transaction: all or nothing, so that
   * a reload it fails for is refused as a whole (the reload calls it before it applies the new
   * destinations, in the same turn of the event loop). Returns the items withdrawn per destination.
   */
  withdrawUnmet(destinations: readonly RouteDestination[]): Map<string, number> {
    return this.options.outbox.atomically(() => this.withdrawUnmetPages(destinations));
  }

  private withdrawUnmetPages(destinations: readonly RouteDestination[]): Map<string, number> {
    const withdrawn = new Map<string, number>();
    const pageSize = this.options.pageSize ?? PAGE;
    for (const destination of destinations) {
      if (destination.when === undefined) continue;
      let count = 0;
      // Every page is read in withdrawUnmet's one IMMEDIATE transaction: an operator's gantry queue
      // retry (another process, which moves items from dead to queued) cannot commit between two of
      // them. Dead ones first all the same: so it was when each page had a transaction of its own
      // (23a23b9), and should they again, the order keeps a re-queued item from being missed.
      for (const state of ['dead', 'queued'] as const) {
        for (let afterId = 0; ; ) {
          const items = this.options.outbox.unsentOf(destination.name, state, pageSize, afterId);
          const unmet = items.filter((item) => !conditionHolds(destination.when, factsOf(item)));
          if (unmet.length > 0) count += this.options.outbox.withdraw(unmet.map((item) => item.id));
          const last = items[items.length - 1];
          if (last === undefined || items.length < pageSize) break;
          afterId = last.id;
        }
      }
      if (count > 0) withdrawn.set(destination.name, count);
    }
    return withdrawn;
  }

  private destinationsFor(instance: RoutableInstance, destinations: readonly RouteDestination[]): string[] {
    const facts = factsOf(instance);
    return destinations.filter((destination) => conditionHolds(destination.when, facts)).map((destination) => destination.name);
  }
}

/** What a destination's condition tests of an instance: its calling AE title and indexed attributes. */
function factsOf(instance: { callingAeTitle: string; attributes: Record<string, string | null> }): InstanceFacts {
  return {
    callingAeTitle: instance.callingAeTitle,
    attribute: (tag: number) => {
      const keyword = KEYWORD_OF_TAG.get(tag);
      return keyword === undefined ? undefined : (instance.attributes[keyword]?.trim() ?? undefined);
    },
  };
}
