/**
 * Study stability and routing: a study whose last instance arrived `stableSeconds` ago and none of
 * whose instances still waits for de-identification is routed: each of its de-identified instances
 * goes into the outbox of every destination whose condition holds. Instances that arrive later are
 * routed on their own once their study is stable again. Quarantined and failed instances stay behind.
 */
import type { DestinationConfig } from '../config/schema.js';
import { compileCondition, conditionHolds, type CompiledCondition } from '../deid/rules.js';
import { tagOfKeyword } from '../dicom/dictionary.js';
import type { Logger } from '../observability/logger.js';
import { ROUTING_ATTRIBUTES, type Outbox, type RoutableInstance } from '../queue/outbox.js';

export interface RouteDestination {
  name: string;
  when?: CompiledCondition;
}

/** Page size of one routing pass: bounded memory and transaction length. */
const PAGE = 2000;

const KEYWORD_OF_TAG = new Map(Object.keys(ROUTING_ATTRIBUTES).map((keyword) => [tagOfKeyword(keyword) as number, keyword]));

/** Destination conditions from config, checked: an attribute Gantry does not index is refused with the
 * allowed ones named. */
export function routeDestinations(destinations: readonly DestinationConfig[]): RouteDestination[] {
  const names = new Set<string>();
  return destinations.map((destination, index) => {
    if (names.has(destination.name)) throw new Error(`forward.destinations[${index}].name: "${destination.name}" is used twice; names must differ`);
    names.add(destination.name);
    for (const keyword of Object.keys(destination.when?.attributes ?? {})) {
      if (!(keyword in ROUTING_ATTRIBUTES)) {
        throw new Error(
          `forward.destinations[${index}].when.attributes: "${keyword}" cannot be tested; allowed: ${Object.keys(ROUTING_ATTRIBUTES).join(', ')}`,
        );
      }
    }
    let when;
    try {
      when = compileCondition(destination.when);
    } catch (error) {
      throw new Error(`forward.destinations[${index}].${(error as Error).message}`);
    }
    return { name: destination.name, ...(when ? { when } : {}) };
  });
}

export interface RouterOptions {
  outbox: Outbox;
  log: Logger;
  settings(): { stableMs: number; destinations: RouteDestination[] };
  /** Called after items were queued. */
  onQueued(): void;
}

export class Router {
  constructor(private readonly options: RouterOptions) {}

  /** Routes every instance of a stable study; returns how many outbox items were queued. */
  routeStable(now = Date.now()): number {
    const { stableMs } = this.options.settings();
    return this.routePages((afterId) => this.options.outbox.routable(now - stableMs, PAGE, afterId), now);
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
    return this.routePages((afterId) => this.options.outbox.routable(now, PAGE, afterId, studyPk), now);
  }

  private routePages(page: (afterId: number) => RoutableInstance[], now: number): number {
    const { destinations } = this.options.settings();
    if (destinations.length === 0) return 0;
    let queued = 0;
    let routed = 0;
    const studies = new Set<number>();
    let afterId = 0;
    for (;;) {
      const instances = page(afterId);
      if (instances.length === 0) break;
      afterId = (instances[instances.length - 1] as RoutableInstance).id;
      const routes = instances.map((instance) => ({ instance, destinations: this.destinationsFor(instance, destinations) }));
      queued += this.options.outbox.route(routes, now);
      routed += instances.length;
      for (const instance of instances) studies.add(instance.studyPk);
      if (instances.length < PAGE) break;
    }
    if (routed > 0) {
      const heldBack = this.options.outbox.heldBack([...studies]);
      this.options.log.info({ studies: studies.size, instances: routed, queued, heldBack }, 'stable studies routed to destinations');
      if (heldBack > 0) this.options.log.warn({ instances: heldBack }, 'quarantined or failed instances of forwarded studies held back (gantry queue ls)');
      if (queued > 0) this.options.onQueued();
    }
    return queued;
  }

  private destinationsFor(instance: RoutableInstance, destinations: readonly RouteDestination[]): string[] {
    const facts = {
      callingAeTitle: instance.callingAeTitle,
      attribute: (tag: number) => {
        const keyword = KEYWORD_OF_TAG.get(tag);
        return keyword === undefined ? undefined : (instance.attributes[keyword]?.trim() ?? undefined);
      },
    };
    return destinations.filter((destination) => conditionHolds(destination.when, facts)).map((destination) => destination.name);
  }
}
