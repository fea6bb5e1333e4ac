/**
 * The one place that wires Gantry together: storage, index, the receive services and the DICOM
 * listener, from a validated config. Everything else receives what it needs from here.
 */
import { lookup } from 'node:dns/promises';
import { isIP, type AddressInfo } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { networkInterfaces } from 'node:os';
import { ConfigError, type LoadedConfig } from './config/load.js';
import { callerEntryParts, type GantryConfig } from './config/schema.js';
import { requireOperatorSecret, resolveDeidSecret, secretDigest, secretWarnings } from './config/secret.js';
import { Pseudonymizer } from './deid/pseudonyms.js';
import { RuleError } from './deid/rules.js';
import { checkedDeidSettings, recipientCertificateWarnings } from './deid/settings.js';
import { DeidWork } from './index/deid-work.js';
import { DeidScheduler, type DeidSchedulerSettings } from './pipeline/deidentify.js';
import { DEID_THREAD_HEAP_MB, largeInstancePool } from './deid/large-instances.js';
import { BackgroundCheckpoints, type WalCheckpoint } from './db/background-checkpoints.js';
import { DATABASE_FILE, indexSizeBytes, openDatabase, WalSync, type Db } from './db/database.js';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from './dicom/part10.js';
import {
  isStandardStorageSopClass,
  mayBeUnlistedStorageSopClass,
  STORAGE_SOP_CLASSES_EDITION,
  VERIFICATION_SOP_CLASS,
} from './dicom/sop-classes.js';
import type { ScuSettings } from './dimse/requestor.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, findTransferSyntax, IMPLICIT_VR_LITTLE_ENDIAN } from './dicom/transfer-syntaxes.js';
import { FindService } from './query/find-service.js';
import { queryRetrieveOperationOf, type View } from './query/keys.js';
import { MoveService } from './query/move-service.js';
import { Transcoder } from './store/transcoder.js';
import { canonicalAddress } from './dimse/peer-address.js';
import type { ServiceKind } from './dimse/negotiation.js';
import { DicomServer } from './dimse/server.js';
import { IndexWriter, InstanceIndex } from './index/instance-index.js';
import { HttpServer, type ReadinessCheck } from './observability/http-server.js';
import { IndexWatch } from './observability/index-watch.js';
import type { Logger } from './observability/logger.js';
import { DeidThreadHealth, readyProbe } from './observability/deid-threads.js';
import { GantryMetrics } from './observability/metrics.js';
import { ReceiveService } from './pipeline/receive.js';
import { ReceiveFirst } from './pipeline/receive-first.js';
import { checkNewestDeidentified, checkNewestRows, claimStorage, releaseStorage } from './pipeline/recovery.js';
import { Forwarder, type ForwardSettings } from './pipeline/forward.js';
import { Retention } from './pipeline/retention.js';
import { settleAbandonedCopyLists } from './toolkit/import-copies.js';
import { copiesMadeWith, recordSecretDigest } from './index/secret-record.js';
import { routeDestinations, Router, routingOf, type RouteDestination } from './pipeline/route.js';
import { RetentionWork } from './index/retention-work.js';
import { AccessAudit } from './index/access-audit.js';
import { Outbox } from './queue/outbox.js';
import { StorageProbe, storageWritable } from './store/storage-probe.js';
import { FreeSpaceMonitor } from './store/free-space.js';
import { ObjectStore } from './store/object-store.js';
import { workerPool } from './worker-loading.js';

export { DATABASE_FILE };

export interface RunningGantry {
  dicom: AddressInfo;
  http: AddressInfo;
  storagePath: string;
  /** Applies the settings that can change while running; returns the keys that need a restart. */
  reload(config: LoadedConfig): Promise<string[]>;
  stop(): Promise<void>;
}

interface AllowedCaller {
  aeTitle: string;
  /** Addresses the caller may come from; undefined: any. */
  addresses?: Set<string>;
}

/** Start-up was stopped (StartOptions.signal) before it finished; what it had opened is closed again. */
export class StartAborted extends Error {
  override name = 'StartAborted';
  constructor() {
    super('stopped before start-up finished');
  }
}

export interface StartOptions {
  /** Aborted (SIGTERM while starting): start-up opens no listener from then on, closes those it
   * opened, releases the storage and rejects with StartAborted. */
  signal?: AbortSignal;
}

export async function startGantry(loaded: LoadedConfig, log: Logger, options: StartOptions = {}): Promise<RunningGantry> {
  const aborted = () => options.signal?.aborted === true;
  let config = loaded.config;
  // Every problem of the config at once, before storage is touched.
  const checked = checkConfigForStart(loaded);
  let callers = await resolveCallers(config.dicom.allowedCallers, 'dicom.allowedCallers', log);
  let sources = await resolveCallers(config.query.sourceCallers, 'query.sourceCallers', log);
  let destinations = checked.destinations;
  let knownCallers = knownCallersOf(config);
  const storagePath = resolve(config.storage.path);
  if (aborted()) throw new StartAborted();
  const { unclean } = await claimStoragePath(loaded, storagePath);
  const { store, db: openedDb, index, secret } = await openClaimedStorage(loaded, storagePath, unclean, log);
  const databaseFile = join(storagePath, DATABASE_FILE);
  let db: Db | undefined = openedDb;
  const wal = new WalSync(databaseFile);
  const indexWatch = new IndexWatch(databaseFile, () => db, wal);
  const writer = new IndexWriter(openedDb, index, wal);
  let deidSettings = checked.deidSettings;
  const metrics = new GantryMetrics(
    (callingAeTitle) => (knownCallers.has(callingAeTitle) ? callingAeTitle : 'other'),
    (metric, error) => log.warn({ metric, err: error.message }, 'a metric could not be read; it keeps its last value'),
  );
  // A thread that dies (out of memory, a native fault) is replaced by piscina; say so.
  const pool = workerPool({
    filename: new URL('./deid/worker.js', import.meta.url).href,
    workerData: { secret },
    // Threads live as long as the node: a new thread pays for loading the engine and its dictionary.
    minThreads: config.deid.workers,
    maxThreads: config.deid.workers,
    idleTimeout: Number.MAX_SAFE_INTEGER,
    resourceLimits: { maxOldGenerationSizeMb: DEID_THREAD_HEAP_MB, maxYoungGenerationSizeMb: 4 },
  }, (error) => {
    log.error({ err: error.message }, 'a de-identification thread failed');
    deidThreads.threadFailed(error);
  });
  const deidThreads = new DeidThreadHealth(readyProbe(pool));
  const largePool = largeInstancePool(new URL('./deid/worker.js', import.meta.url).href, config.deid.largeInstanceHeapMb, secret, (error) =>
    log.error({ err: error.message }, 'the large-instance de-identification thread failed'),
  );
  const deidWork = new DeidWork(db);
  await checkNewestDeidentified(deidWork, storagePath, log);
  const scheduler = new DeidScheduler({
    work: deidWork,
    pool,
    storagePath,
    log,
    maxInFlight: config.deid.workers * 2,
    settings: () => deidSettings,
    observer: {
      deidDone: (outcome, seconds) => {
        deidThreads.taskFinished();
        metrics.deidDone(outcome, seconds);
      },
    },
    receiveFirst: new ReceiveFirst(() => ({ enabled: config.deid.receiveFirst, maxWaitMs: (config.forward.stableSeconds * 1000) / 2 })),
    ...(largePool ? { largeInstances: { pool: largePool, heapMb: config.deid.largeInstanceHeapMb } } : {}),
  });
  const outbox = new Outbox(db);
  const transcoder = new Transcoder({ onThreadError: (error) => log.error({ err: error.message }, 'the conversion thread failed') });
  // Read before every request sent (whether a reload changed the destination): made once per config,
  // not once per request.
  let forwardSettings = { of: config, settings: forwardSettingsOf(config) };
  const currentForwardSettings = () => {
    if (forwardSettings.of !== config) forwardSettings = { of: config, settings: forwardSettingsOf(config) };
    return forwardSettings.settings;
  };
  const forwarder = new Forwarder({ outbox, storagePath, transcoder, log, settings: currentForwardSettings, observer: metrics });
  const router = new Router({
    outbox,
    log,
    settings: () => ({ stableMs: config.forward.stableSeconds * 1000, destinations }),
    onQueued: () => forwarder.nudge(),
  });
  const retention = new Retention({
    work: new RetentionWork(db),
    storagePath,
    log,
    settings: () => ({ retainOriginalsMs: config.storage.retainOriginals, retainDeidentifiedMs: config.storage.retainDeidentified }),
    folderRemoved: (folder) => store.folderRemoved(folder),
  });
  const freeSpace = new FreeSpaceMonitor(() => store.freeBytes(), { reserved: () => index.waitingBytes() });
  await freeSpace.start();
  const storageProbe = new StorageProbe(store.incomingDir);
  await storageProbe.start();
  indexWatch.start();

  const receive = new ReceiveService({
    store,
    index,
    writer,
    freeSpace,
    settings: () => ({ minFreeBytes: config.storage.minFreeBytes, duplicates: config.storage.duplicates }),
    onStored: () => scheduler.stored(),
  });

  const audit = new AccessAudit(db);
  const finder = new FindService({
    db,
    aeTitle: () => config.dicom.aeTitle,
    maxResults: () => config.query.maxResults,
    viewFor: (callingAeTitle, remoteAddress) => queryViewFor(config, sources, callingAeTitle, remoteAddress),
    // A source caller's retrieve gets originals only to a sourceSide destination (move-service.ts).
    sourceRetrieves: () => (config.query.sourceRetrievesOriginals && config.query.moveDestinations.some((destination) => destination.sourceSide) ? 'original' : 'copy'),
    audit,
  });
  const mover = new MoveService({
    db,
    storagePath,
    transcoder,
    viewFor: (callingAeTitle, remoteAddress) => queryViewFor(config, sources, callingAeTitle, remoteAddress),
    settings: () => ({
      ...scuSettingsOf(config),
      aeTitle: config.dicom.aeTitle,
      destinations: config.query.moveDestinations,
      sourceRetrievesOriginals: config.query.sourceRetrievesOriginals,
    }),
    audit,
  });
  const server = new DicomServer({
    host: config.dicom.host,
    port: config.dicom.port,
    log,
    artimMs: config.dicom.artimTimeoutSeconds * 1000,
    idleMs: config.dicom.idleTimeoutSeconds * 1000,
    maxAssociations: config.dicom.maxAssociations,
    maxAssociationsPerCaller: config.dicom.maxAssociationsPerCaller,
    observer: metrics,
    handlers: {
      echo: (association) => receive.echo(association),
      store: (request) => receive.store(request),
      find: (request, signal) => finder.find(request, signal),
      move: (request, signal) => mover.move(request, signal),
      get: (request, channel, signal) => mover.get(request, channel, signal),
    },
    policy: {
      get aeTitle() {
        return config.dicom.aeTitle;
      },
      implementationClassUid: IMPLEMENTATION_CLASS_UID,
      implementationVersionName: IMPLEMENTATION_VERSION_NAME,
      get maxPduLength() {
        return config.dicom.maxPduLength;
      },
      get maxAsyncOperations() {
        return config.dicom.maxAsyncOperations;
      },
      callerAllowed: (callingAeTitle, remoteAddress) => callerAllowed(callers, callingAeTitle, remoteAddress),
      serviceFor: (abstractSyntax, callingAeTitle, remoteAddress) => serviceFor(config, abstractSyntax, queryViewFor(config, sources, callingAeTitle, remoteAddress)),
      // Identifiers are read and written in little-endian VR only; stored objects come in any syntax.
      transferSyntaxAccepted: (kind: ServiceKind, syntax: string) =>
        kind === 'find' || kind === 'move' || kind === 'get' ? syntax === IMPLICIT_VR_LITTLE_ENDIAN || syntax === EXPLICIT_VR_LITTLE_ENDIAN : findTransferSyntax(syntax) !== undefined,
      mayGet: (callingAeTitle, remoteAddress) => queryViewFor(config, sources, callingAeTitle, remoteAddress) !== undefined,
    },
  });
  const readiness = (): ReadinessCheck[] => [
    server.listening ? { name: 'dicomListener', ok: true } : { name: 'dicomListener', ok: false, detail: `the DICOM listener (dicom.host ${config.dicom.host}, dicom.port ${config.dicom.port}) is closed: Gantry is stopping (the listener closes first); if it is not, restart it` },
    indexWatch.check(),
    diskCheck(freeSpace, config.storage.minFreeBytes),
    { name: 'storage', ...storageWritable(storageProbe.status) },
    deidThreads.check(),
  ];
  metrics.watch({
    activeAssociations: () => server.activeAssociations,
    instancesByState: () => index.countsByState(),
    oldestWaitingSince: () => deidWork.oldestWaitingSince(),
    outbox: () => outbox.counts(),
    pool: () => ({ running: scheduler.running, threads: pool.threads.length }),
    indexBytes: () => indexSizeBytes(databaseFile),
    freeBytes: () => freeSpace.freeBytes,
    reservedBytes: () => freeSpace.reserved,
    minFreeBytes: () => config.storage.minFreeBytes,
    ready: () => readiness().every((check) => check.ok),
    destinations: () => config.forward.destinations.map((destination) => destination.name),
  });
  const http = new HttpServer({ metrics: () => metrics.exposition(), readiness }, log);
  // From here on, every failure of start-up releases what was opened (releaseResources).
  const checkpoints = new BackgroundCheckpoints(db, (signal) => pool.run({ databaseFile }, { name: 'checkpoint', signal }) as Promise<WalCheckpoint>, log);
  /** What start-up and stop() both close, after the listeners and the pipeline. */
  const releaseResources = async (clean = true) => {
    indexWatch.stop();
    await checkpoints.stop();
    await pool.destroy();
    await largePool?.destroy();
    await transcoder.close();
    freeSpace.stop();
    storageProbe.stop();
    await wal.close();
    db?.close();
    db = undefined;
    await store.close();
    await releaseStorage(storagePath, clean);
  };
  // A stop asked while the index was opened and checked: no port is bound, and what was opened closes.
  if (aborted()) {
    await releaseResources();
    throw new StartAborted();
  }
  // Writes to the index, which another process may hold locked: once they fail, what was opened closes
  // too (storage.path was left claimed, and the threads running, by a start that had failed).
  try {
    settleOutboxAtStart(outbox, router, config, destinations, log);
    // First recorded on an index of before migration 23: the copies made before tell whether it changed.
    for (const warning of [...secretWarnings(secret), ...recipientCertificateWarnings(config)]) log.warn(warning);
    const secretChanged = recordSecretDigest(openedDb, secretDigest(secret));
    if (secretChanged === true || (secretChanged === undefined && copiesMadeWith(openedDb, secret) === false)) {
      log.warn('deid.secret is not the one the node last started with: pseudonyms, UIDs and date shifts change from now on (what was de-identified before keeps the old ones); gantry export uses this one from now on');
    }
  } catch (error) {
    await releaseResources();
    throw error;
  }
  let dicom: AddressInfo;
  try {
    dicom = await server.listen();
  } catch (error) {
    await releaseResources();
    throw listenFailure(loaded, `cannot listen on ${config.dicom.host}:${config.dicom.port}`, 'dicom.host, dicom.port', error);
  }
  if (aborted()) {
    await server.close(0);
    await releaseResources();
    throw new StartAborted();
  }
  let httpAddress: AddressInfo;
  try {
    httpAddress = await http.listen(config.http.host, config.http.port);
  } catch (error) {
    await server.close(0);
    await releaseResources();
    throw listenFailure(loaded, `cannot serve HTTP on ${config.http.host}:${config.http.port}`, 'http.host, http.port', error);
  }
  if (aborted()) {
    await http.close();
    await server.close(0);
    await releaseResources();
    throw new StartAborted();
  }
  log.info(
    {
      aeTitle: config.dicom.aeTitle,
      host: dicom.address,
      port: dicom.port,
      storage: storagePath,
      http: `${httpAddress.address}:${httpAddress.port}`,
      sopClassTable: `PS3.4 ${STORAGE_SOP_CLASSES_EDITION}`,
      ...index.counts(),
    },
    'Gantry is listening',
  );
  scheduler.start();
  forwarder.start();
  warnOfUnsentQueues(outbox, config, log);
  // Routing looks again when the next study can become stable (its last arrival plus stableSeconds),
  // and at least every ROUTE_INTERVAL_MS (a study also waits for its de-identification to finish).
  let routeTimer: NodeJS.Timeout | undefined;
  const routeStableStudies = () => {
    let delay = ROUTE_INTERVAL_MS;
    try {
      // One page per turn of the event loop: the associations served meanwhile wait for one page,
      // not for a whole backlog (route.ts PAGE).
      router.routeStable(Date.now(), 1);
      delay = router.moreToRoute ? 0 : Math.min(ROUTE_INTERVAL_MS, Math.max(MIN_ROUTE_DELAY_MS, router.msUntilNextStable() ?? ROUTE_INTERVAL_MS));
    } catch (error) {
      log.error({ err: (error as Error).message }, 'routing stable studies failed');
    }
    routeTimer = setTimeout(routeStableStudies, delay).unref();
  };
  routeTimer = setTimeout(routeStableStudies, ROUTE_INTERVAL_MS).unref();
  const sweep = () => {
    try {
      const stale = outbox.dropStale();
      if (stale > 0) log.info({ items: stale }, 'outbox items that can no longer be sent removed (re-sent, then held back or routed again)');
    } catch (error) {
      log.error({ err: (error as Error).message }, 'cleaning the outbox failed');
    }
    void retention.sweep().catch((error: Error) => log.error({ err: error.message }, 'retention sweep failed'));
  };
  const retentionTimer = setInterval(sweep, RETENTION_INTERVAL_MS);
  retentionTimer.unref();
  sweep();

  let reloading: Promise<unknown> = Promise.resolve();
  // Once stop() began a reload changes nothing (found in a review: a SIGHUP while stopping started the
  // queues of destinations it added and routed instances again into an outbox being drained).
  let stopping = false;
  const refuseWhileStopping = () => {
    if (stopping) throw new Error('the node is stopping: the reload is not applied');
  };
  const applyReload = async (nextLoaded: LoadedConfig): Promise<string[]> => {
    refuseWhileStopping();
    const restartNeeded = restartKeysChanged(config, nextLoaded.config);
    // What needs a restart stays as the node runs it: a later reload names it again, and what reads
    // it (the readiness detail) tells what runs (found in a review: the second reload named nothing).
    const next = withRunningRestartKeys(config, nextLoaded.config);
    const { deidSettings: nextDeid, destinations: nextDestinations } = checkConfigForStart(nextLoaded);
    const nextCallers = await resolveCallers(next.dicom.allowedCallers, 'dicom.allowedCallers', log);
    const nextSources = await resolveCallers(next.query.sourceCallers, 'query.sourceCallers', log);
    const narrowable = conditionsChanged(config, next);
    // The host names took a while to resolve: a stop may have begun meanwhile.
    refuseWhileStopping();
    // The routing recorded goes before anything is queued under the new one: should recording that
    // fail (routeAgainIfChanged, below), the old record stayed, and a start back under the old file
    // trusted it and withdrew nothing of what this one queued (found in the final review).
    if (routingOf(config.forward.destinations) !== routingOf(next.forward.destinations)) forgetRecordedRouting(outbox);
    // What a narrowed condition excludes never goes: withdrawn before any sender reads the outbox
    // again (the swap below follows in the same turn of the event loop). When it cannot be, the reload
    // is refused as a whole: applied without it, the excluded items were sent (found in a review).
    const withdrawn = withdrawUnmet(router, nextDestinations.filter((destination) => narrowable.has(destination.name)));
    // Everything at once, with no wait between: no association sees half of the old config.
    callers = nextCallers;
    sources = nextSources;
    knownCallers = knownCallersOf(next);
    deidSettings = nextDeid;
    destinations = nextDestinations;
    config = next;
    logWithdrawn(withdrawn, log);
    forwarder.reconfigure();
    // A destination added, or a condition mended, reaches the instances that none took before. Only
    // when the destinations or their conditions changed: it looks at every such instance.
    routeAgainIfChanged(outbox, next, log);
    log.level = next.log.level;
    warnOfUnsentQueues(outbox, config, log);
    return restartNeeded;
  };

  return {
    dicom,
    http: httpAddress,
    storagePath,
    reload(nextLoaded: LoadedConfig): Promise<string[]> {
      // One at a time, in the order asked: a reload waiting on DNS must not land after a later one
      // (found in a review: the file reloaded first won when its host names took longer to resolve).
      const applied = reloading.then(() => applyReload(nextLoaded));
      reloading = applied.catch(() => undefined);
      return applied;
    },
    async stop(): Promise<void> {
      stopping = true;
      log.info({ associations: server.activeAssociations }, 'stopping: no new associations, finishing stores in flight');
      await server.close(10_000);
      // Stores of associations cut at the end of the grace period may still be placing their file.
      // One still at it when the index closes can leave its file (an original, PHI) with no row, or a
      // row whose file is short: the next start checks the newest instances, as after a crash.
      const drained = await receive.drain(10_000);
      if (!drained) log.warn('stores still placing their files at the end of the grace period: the next start checks the newest instances, as after a crash');
      await scheduler.stop(10_000);
      clearTimeout(routeTimer);
      clearInterval(retentionTimer);
      // Responses in flight are awaited and recorded; what is not confirmed is sent again next time.
      await forwarder.stop(10_000);
      // /readyz said unready from the moment the listener closed; the endpoints go before the index.
      await http.close();
      await releaseResources(drained);
      log.info('stopped');
    },
  };
}

/**
 * Queued items of a destination no longer in the config are never sent, and their instances never
 * count as forwarded: retention keeps their originals (PHI). Said at start and at each reload, with
 * the two ways out (found in a review: a reload that removed a destination said nothing of them).
 */
function warnOfUnsentQueues(outbox: Outbox, config: GantryConfig, log: Logger): void {
  try {
    const configured = new Set(config.forward.destinations.map((destination) => destination.name));
    for (const { destination, queued } of outbox.counts()) {
      if (queued === 0 || configured.has(destination)) continue;
      log.warn(
        { destination, queued },
        `queued items of a destination not in forward.destinations are never sent, and retention keeps their originals: add it back, send them to the destinations configured now with gantry queue reroute -d ${destination} (after a rename, say), or give them up with gantry queue purge -s queued -d ${destination}`,
      );
    }
  } catch (error) {
    log.error({ err: (error as Error).message }, 'could not read the outbox');
  }
}

/**
 * The outbox as the last stop and the config file leave it, before anything is sent: instances every
 * destination confirmed marked forwarded; and, as the file may have narrowed a condition while the
 * node was stopped (a restart, not a SIGHUP, is how many deployments apply a config), what it now
 * excludes withdrawn, as at a reload. Which conditions changed is not known here: when the routing
 * differs from the one recorded, every destination with a condition is looked at. When that fails the
 * start does: the node would send what a condition excludes.
 */
function settleOutboxAtStart(outbox: Outbox, router: Router, config: GantryConfig, destinations: readonly RouteDestination[], log: Logger): void {
  const settled = outbox.reconcileForwarded();
  if (settled > 0) log.info({ instances: settled }, 'instances confirmed by every destination before the last stop marked forwarded');
  // The conditions the queue was built under are those recorded, unless a start or reload could not
  // record its own: then they may differ, and every unsent item is looked at (0.8 s for 80,000).
  const unchanged = outbox.recordedRouting() === routingOf(config.forward.destinations);
  const withdrawn = unchanged ? new Map<string, number>() : withdrawUnmet(router, destinations);
  logWithdrawn(withdrawn, log);
  // A destination added to the file while the node was stopped reaches what no destination took,
  // as at a reload; and so do instances whose every item was just withdrawn.
  routeAgainIfChanged(outbox, config, log, withdrawn.size > 0);
}

/** Destinations whose condition a reload changed, or that it added with one: their unsent items may
 * no longer meet it (one added may be one removed earlier, whose queue stayed, or renamed back). */
function conditionsChanged(before: GantryConfig, after: GantryConfig): Set<string> {
  const conditionOf = new Map(before.forward.destinations.map((destination) => [destination.name, JSON.stringify(destination.when ?? null)]));
  const changed = after.forward.destinations.filter((destination) => {
    const previous = conditionOf.get(destination.name);
    return previous === undefined ? destination.when !== undefined : previous !== JSON.stringify(destination.when ?? null);
  });
  return new Set(changed.map((destination) => destination.name));
}

/** Forgets the routing the index recorded (the next start then looks at every unsent item); throws,
 * saying so, when it cannot: the reload is then refused, before it withdraws anything. */
function forgetRecordedRouting(outbox: Outbox): void {
  try {
    outbox.forgetRouting();
  } catch (error) {
    throw new Error(`cannot forget the routing recorded in the index, so nothing is withdrawn or routed under the changed destinations: ${(error as Error).message}`);
  }
}

/** Withdraws the unsent items of `destinations` that their conditions no longer take (all or none);
 * throws, saying so, when it cannot: applied without it, they would be sent. */
function withdrawUnmet(router: Router, destinations: readonly RouteDestination[]): Map<string, number> {
  if (destinations.length === 0) return new Map();
  try {
    return router.withdrawUnmet(destinations);
  } catch (error) {
    throw new Error(`cannot withdraw the queued and dead items that the changed destination conditions no longer take: ${(error as Error).message}`);
  }
}

function logWithdrawn(withdrawn: ReadonlyMap<string, number>, log: Logger): void {
  for (const [destination, items] of withdrawn) {
    log.warn({ destination, items }, 'queued and dead items whose instances the condition of their destination no longer takes are withdrawn: they will not be sent there');
  }
}

/** Instances no destination took (or whose every item was withdrawn) are routed again with the
 * destinations configured now, when those or their conditions changed since the instances were last
 * routed (or `always`). One that fails is tried again at the next start or reload: the routing it
 * would have recorded is not. */
function routeAgainIfChanged(outbox: Outbox, config: GantryConfig, log: Logger, always = false): void {
  try {
    const again = outbox.routeAgainUnder(routingOf(config.forward.destinations), always);
    if (again !== undefined && again > 0) log.info({ instances: again }, 'instances no destination took are routed again with the configured destinations');
  } catch (error) {
    log.error({ err: (error as Error).message }, 'could not route again the instances no destination took');
  }
}

/** Calling AE titles named in the config: metrics label them by name, every other caller as "other". */
function knownCallersOf(config: GantryConfig): Set<string> {
  const named = [...config.dicom.allowedCallers, ...config.query.sourceCallers].map((entry) => callerEntryParts(entry)[0]);
  return new Set([...named, ...config.query.researchCallers]);
}

/** Free disk is read every second; a reading older than this means statfs fails: not ready. */
const FREE_SPACE_STALE_MS = 10_000;

function diskCheck(freeSpace: FreeSpaceMonitor, minFreeBytes: number): ReadinessCheck {
  const age = Date.now() - freeSpace.readAt;
  if (age > FREE_SPACE_STALE_MS) return { name: 'disk', ok: false, detail: `free disk under storage.path could not be read for ${Math.round(age / 1000)} s (statfs fails): check the file system it is on (mounted, device answering)` };
  if (freeSpace.availableBytes >= minFreeBytes) return { name: 'disk', ok: true };
  const waiting = freeSpace.reserved > 0 ? `, less ${freeSpace.reserved} bytes kept for the de-identified copies of the instances waiting,` : '';
  return {
    name: 'disk',
    ok: false,
    detail: `free disk under storage.path is ${freeSpace.freeBytes} bytes${waiting} below storage.minFreeBytes (${minFreeBytes}): C-STORE answers 0xA700. Make free space under storage.path: gantry status shows what waits (forwarding and retention delete what the destinations confirmed)`,
  };
}

/** Keys read once at start: a reload names those it would change instead of applying them. */
const RESTART_KEYS = [
  ['dicom', 'host'],
  ['dicom', 'port'],
  ['dicom', 'maxAssociations'],
  ['dicom', 'maxAssociationsPerCaller'],
  ['dicom', 'artimTimeoutSeconds'],
  ['dicom', 'idleTimeoutSeconds'],
  ['storage', 'path'],
  ['deid', 'secret'],
  ['deid', 'workers'],
  ['deid', 'largeInstanceHeapMb'],
  ['http', 'host'],
  ['http', 'port'],
] as const satisfies ReadonlyArray<readonly [keyof GantryConfig, string]>;

type ConfigSections = Record<string, Record<string, unknown>>;

function restartKeyValue(config: GantryConfig, [section, key]: (typeof RESTART_KEYS)[number]): unknown {
  return (config as unknown as ConfigSections)[section]?.[key];
}

/** The restart keys whose value differs between the running config and the next, as "section.key". */
function restartKeysChanged(running: GantryConfig, next: GantryConfig): string[] {
  return RESTART_KEYS.filter((entry) => !sameRestartValue(entry, restartKeyValue(next, entry), restartKeyValue(running, entry))).map(([section, key]) => `${section}.${key}`);
}

/** storage.path by the folder it names ("./data", "data/" and its absolute path are one folder: found in
 * a review, a reload that only respelled it was told to restart); the other keys as written. */
function sameRestartValue([section, key]: (typeof RESTART_KEYS)[number], a: unknown, b: unknown): boolean {
  if (section === 'storage' && key === 'path') return resolve(String(a)) === resolve(String(b));
  return a === b;
}

/** The next config with the running values of the restart keys. */
function withRunningRestartKeys(running: GantryConfig, next: GantryConfig): GantryConfig {
  const kept = { ...next } as unknown as ConfigSections;
  for (const entry of RESTART_KEYS) {
    const [section, key] = entry;
    kept[section] = { ...kept[section], [key]: restartKeyValue(running, entry) };
  }
  return kept as unknown as GantryConfig;
}

/** Makes storage.path and claims it; a folder the node cannot make or write is a config problem,
 * named by its key (found in a review: the bare "EACCES: permission denied, mkdir ..." left the
 * operator to guess which key it was). */
/**
 * Opens the store and the index of a claimed storage.path (migrations run here), settles what an
 * unclean stop left, and reads the secret. A failure (a newer schema, a failed migration, a secret
 * that cannot be read) closes what it opened and gives the claim back as it was: left claimed, the
 * next start took the refused one for a crash and ran recovery (found in the upgrade review).
 */
async function openClaimedStorage(loaded: LoadedConfig, storagePath: string, unclean: boolean, log: Logger): Promise<{ store: ObjectStore; db: Db; index: InstanceIndex; secret: string }> {
  const store = new ObjectStore(storagePath);
  let db: Db | undefined;
  try {
    const { staleIncoming } = await store.init();
    if (staleIncoming > 0) log.warn({ files: staleIncoming }, 'deleted incomplete incoming files from a previous run (none was acknowledged)');
    db = openDatabase(join(storagePath, DATABASE_FILE));
    const index = new InstanceIndex(db);
    if (unclean) await checkNewestRows(index, store, log);
    const abandonedCopies = settleAbandonedCopyLists(db, storagePath);
    if (abandonedCopies > 0) log.warn({ files: abandonedCopies }, 'deleted the copies a gantry import --copy that did not end had placed and never indexed');
    const secret = resolveDeidSecret(loaded, storagePath, log);
    // Checked here, where a bad secret is a start-up error, not in every worker thread.
    new Pseudonymizer(secret);
    return { store, db, index, secret };
  } catch (error) {
    db?.close();
    await store.close().catch(() => undefined);
    // An unclean stop before stays told: its recovery has not run to its end.
    await releaseStorage(storagePath, !unclean);
    throw error;
  }
}

async function claimStoragePath(loaded: LoadedConfig, storagePath: string): Promise<{ unclean: boolean }> {
  try {
    await mkdir(storagePath, { recursive: true });
    return await claimStorage(storagePath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === undefined || !['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST', 'ENOSPC', 'SQLITE_CANTOPEN', 'SQLITE_READONLY'].includes(code)) throw error;
    throw new ConfigError(loaded.source, [
      `storage.path: ${storagePath} cannot be used (${code}: ${(error as Error).message.replace(/^[A-Z]+: /, '')}); name a folder this user may create and write, on a file system with room`,
    ]);
  }
}

/**
 * What start-up checks in a config beyond its schema, every problem at once: the secret an operator
 * config must name, the de-identification settings (rules, profiles, zones, certificate) and the
 * routes. `gantry config check` and a reload run it too, so that a config they accept starts (found in
 * a review: check said "valid" to a config without deid.secret, which then did not start, and start
 * reported one problem per run).
 */
export function checkConfigForStart(loaded: LoadedConfig): { deidSettings: DeidSchedulerSettings; destinations: RouteDestination[] } {
  const problems: string[] = [];
  const attempt = <T>(make: () => T): T | undefined => {
    try {
      return make();
    } catch (error) {
      problems.push(...(error instanceof ConfigError ? error.problems : [(error as Error).message]));
      return undefined;
    }
  };
  attempt(() => requireOperatorSecret(loaded));
  problems.push(...queryCallersNotAllowed(loaded.config));
  const deidSettings = attempt(() => deidSettingsOf(loaded));
  const destinations = attempt(() => routeDestinationsOf(loaded));
  if (problems.length > 0 || deidSettings === undefined || destinations === undefined) throw new ConfigError(loaded.source, problems);
  return { deidSettings, destinations };
}

/** Errors of an address that is not this machine's, or no address at all: the config is wrong. */
const ADDRESS_CODES: ReadonlySet<string> = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EADDRNOTAVAIL']);

/** A listener that could not start: a configuration problem (exit 2) when the address is none of this
 * machine's; otherwise (a port in use) an error of the moment (exit 1). */
function listenFailure(loaded: LoadedConfig, what: string, keys: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const message = `${what} (${keys}): ${(error as Error).message}`;
  if (code === undefined || !ADDRESS_CODES.has(code)) return new Error(message);
  return new ConfigError(loaded.source, [`${message}; name an address of this machine (0.0.0.0 for all)`]);
}

/**
 * What `gantry config check` asks beyond checkConfigForStart, which start-up learns only when it binds:
 * the listeners' hosts resolve to an address of this machine, and they are not one port (found in the
 * config review: check said "valid" to each, and serve then refused it).
 */
export async function listenAddressProblems(config: GantryConfig): Promise<string[]> {
  const problems: string[] = [];
  const local = new Set(Object.values(networkInterfaces()).flatMap((addresses) => (addresses ?? []).map((address) => address.address)));
  for (const [key, host] of [['dicom.host', config.dicom.host], ['http.host', config.http.host]] as const) {
    if (host === '0.0.0.0' || host === '::') continue;
    const addresses = await lookup(host, { all: true }).catch((error: NodeJS.ErrnoException) => error);
    if (addresses instanceof Error) problems.push(`${key}: ${host} does not resolve (${addresses.code ?? addresses.message}); name an address of this machine (0.0.0.0 for all)`);
    else if (!addresses.some((address) => local.has(address.address))) problems.push(`${key}: ${host} is no address of this machine (${addresses.map((address) => address.address).join(', ')}); name one of its addresses (0.0.0.0 for all)`);
  }
  if (config.dicom.port !== 0 && config.dicom.port === config.http.port) problems.push(`dicom.port and http.port: both ${config.dicom.port}; the DICOM and HTTP listeners need a port each`);
  return problems;
}

/**
 * With dicom.allowedCallers not empty, a query caller must be on it too (operations.md says so), or
 * every association of it is rejected: check said "valid", and the researchers' C-FIND was refused
 * "Calling AE Title Not Recognized" (found in the config review).
 */
function queryCallersNotAllowed(config: GantryConfig): string[] {
  const allowed = new Set(config.dicom.allowedCallers.map((entry) => callerEntryParts(entry)[0]));
  if (allowed.size === 0) return [];
  const callers: Array<[string, string]> = [
    ...config.query.sourceCallers.map((entry): [string, string] => ['query.sourceCallers', callerEntryParts(entry)[0]]),
    ...config.query.researchCallers.map((aeTitle): [string, string] => ['query.researchCallers', aeTitle]),
  ];
  return callers
    .filter(([, aeTitle]) => !allowed.has(aeTitle))
    .map(([key, aeTitle]) => `${key}: ${aeTitle} is not on dicom.allowedCallers, which is not empty, so its associations are rejected; add it there too`);
}

/**
 * The de-identification settings of a config, made once (the certificate is read once): a rule that
 * names an attribute the dictionary does not know, or a certificate that cannot be read, stops start-up
 * (or a reload) with the key named.
 */
function deidSettingsOf(loaded: LoadedConfig): DeidSchedulerSettings {
  return { ...checkedDeidSettings(loaded), quarantineOnFindings: loaded.config.deid.quarantineOnFindings };
}

/** Stable studies are looked for this often. */
const ROUTE_INTERVAL_MS = 1000;
/** The shortest wait between two routing passes. */
const MIN_ROUTE_DELAY_MS = 50;
const RETENTION_INTERVAL_MS = 60_000;

function routeDestinationsOf(loaded: LoadedConfig): RouteDestination[] {
  try {
    return routeDestinations(loaded.config.forward.destinations);
  } catch (error) {
    throw new ConfigError(loaded.source, error instanceof RuleError ? error.problems : [(error as Error).message]);
  }
}

export function forwardSettingsOf(config: GantryConfig): ForwardSettings {
  return {
    destinations: config.forward.destinations.map((destination) => ({
      name: destination.name,
      aeTitle: destination.aeTitle,
      host: destination.host,
      port: destination.port,
      callingAeTitle: destination.callingAeTitle ?? config.dicom.aeTitle,
      maxAssociations: destination.maxAssociations,
      maxOperations: destination.maxOperations,
      conditions: JSON.stringify(destination.when ?? null),
    })),
    retry: config.forward.retry,
    warningIsSuccess: config.forward.warningIsSuccess,
    ...scuSettingsOf(config),
  };
}

/** Gantry as an SCU (forwarding, C-MOVE sub-operations): one set of timers and identity. */
function scuSettingsOf(config: GantryConfig): ScuSettings {
  return {
    connectTimeoutMs: config.forward.connectTimeoutSeconds * 1000,
    responseTimeoutMs: config.forward.responseTimeoutSeconds * 1000,
    maxPduLength: config.dicom.maxPduLength,
    implementationClassUid: IMPLEMENTATION_CLASS_UID,
    implementationVersionName: IMPLEMENTATION_VERSION_NAME,
  };
}

function serviceFor(config: GantryConfig, abstractSyntax: string, view: View | undefined): ServiceKind | undefined {
  if (abstractSyntax === VERIFICATION_SOP_CLASS) return 'verification';
  const queryRetrieve = queryRetrieveOperationOf(abstractSyntax);
  if (queryRetrieve) return view ? queryRetrieve : undefined;
  if (isStandardStorageSopClass(abstractSyntax)) return 'storage';
  if (config.dicom.extraSopClasses.includes(abstractSyntax)) return 'storage';
  if (config.dicom.acceptUnknownSopClasses && mayBeUnlistedStorageSopClass(abstractSyntax)) return 'storage';
  return undefined;
}

/**
 * Source callers see the originals, and only from their host (query.sourceCallers: an AE title alone
 * proves nothing); research callers the de-identified copies; others nothing. A source caller's AE
 * title from another address gets no query service.
 */
export function queryViewFor(config: GantryConfig, sources: readonly AllowedCaller[], callingAeTitle: string, remoteAddress: string): View | undefined {
  if (sources.some((source) => source.aeTitle === callingAeTitle)) return callerAllowed(sources, callingAeTitle, remoteAddress) ? 'source' : undefined;
  if (config.query.researchCallers.includes(callingAeTitle)) return 'research';
  return undefined;
}

function callerAllowed(callers: readonly AllowedCaller[], callingAeTitle: string, remoteAddress: string): boolean {
  if (callers.length === 0) return true;
  const address = canonicalAddress(remoteAddress);
  return callers.some((caller) => caller.aeTitle === callingAeTitle && (!caller.addresses || caller.addresses.has(address)));
}

/** "AE@host" entries name a host; a host name is resolved to its addresses once, at start or reload. */
export async function resolveCallers(entries: ReadonlyArray<Parameters<typeof callerEntryParts>[0]>, key: string, log: Logger): Promise<AllowedCaller[]> {
  const callers: AllowedCaller[] = [];
  for (const entry of entries) {
    const [aeTitle, host] = callerEntryParts(entry);
    if (host === undefined) {
      callers.push({ aeTitle });
      continue;
    }
    if (isIP(host)) {
      callers.push({ aeTitle, addresses: new Set([canonicalAddress(host)]) });
      continue;
    }
    try {
      const found = await lookup(host, { all: true });
      callers.push({ aeTitle, addresses: new Set(found.map((address) => canonicalAddress(address.address))) });
    } catch (error) {
      log.error({ host, aeTitle, err: (error as Error).message }, `${key}: host name does not resolve; that caller is refused`);
      callers.push({ aeTitle, addresses: new Set() });
    }
  }
  return callers;
}

