/**
 * The DICOM listener: one TCP server on dicom.host serving every service, with the association limits
 * (PS3.8 Table 9-21: a caller over a limit gets a transient "local limit exceeded" rejection).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Logger } from '../observability/logger.js';
import { AcceptorAssociation } from './association.js';
import { negotiate, type NegotiationPolicy } from './negotiation.js';
import type { DimseObserver } from './observer.js';
import type { AssociateRequest } from './pdu.js';
import type { ServiceHandlers } from './services.js';

export interface DicomServerOptions {
  host: string;
  port: number;
  log: Logger;
  artimMs: number;
  idleMs: number;
  maxAssociations: number;
  maxAssociationsPerCaller: number;
  /** The negotiation policy without the limits, which the server keeps. */
  policy: Omit<NegotiationPolicy, 'admit'>;
  handlers: ServiceHandlers;
  observer?: DimseObserver;
}

/** Connections without an association allowed per association of dicom.maxAssociations. */
const CONNECTIONS_PER_ASSOCIATION = 4;

export class DicomServer {
  private readonly server: Server;
  private readonly associations = new Set<AcceptorAssociation>();
  private readonly activeByCaller = new Map<string, number>();
  private activeCount = 0;
  private sequence = 0;
  /** Connections closed for room since the last warning (logged at most every 10 s). */
  private evicted = 0;
  private lastEvictionLog = 0;
  private readonly idPrefix = Date.now().toString(36);

  constructor(private readonly options: DicomServerOptions) {
    this.server = createServer({ noDelay: true }, (socket) => this.onConnection(socket));
  }

  /** Binds the listener. A failure to bind rejects (the caller says which keys to change); the error
   * listener of a bound listener is added only then, or that failure was logged twice, once as a bare
   * "DICOM listener error" (found in a review). */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', onError);
        this.server.on('error', (error) => this.options.log.error({ err: error.message }, 'DICOM listener error'));
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  get listening(): boolean {
    return this.server.listening;
  }

  get activeAssociations(): number {
    return this.activeCount;
  }

  /** Stops accepting connections, lets in-flight operations finish, then ends every association.
   * After `graceMs` whatever is left is cut. */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const association of this.associations) association.shutdown();
    const deadline = Date.now() + graceMs;
    while (this.associations.size > 0 && Date.now() < deadline) await delay(20);
    for (const association of this.associations) association.destroy();
    await closed;
  }

  private onConnection(socket: Socket): void {
    this.makeRoomForConnection();
    this.sequence += 1;
    const id = `${this.idPrefix}-${this.sequence}`;
    const log = this.options.log.child({ assoc: id });
    const association = new AcceptorAssociation({
      id,
      socket,
      log,
      artimMs: this.options.artimMs,
      idleMs: this.options.idleMs,
      handlers: this.options.handlers,
      observer: this.options.observer,
      negotiate: (request: AssociateRequest, remoteAddress: string) =>
        negotiate(request, remoteAddress, { ...this.options.policy, admit: (calling) => this.admit(calling) }),
      onClosed: (closed, wasAccepted) => this.onClosed(closed, wasAccepted),
    });
    this.associations.add(association);
  }

  /**
   * Connections that carry no association (none requested yet, or ending) are capped, the oldest
   * closed first: ending ones, then those that sent no A-ASSOCIATE-RQ, the longest-waiting first. A
   * real caller sends its request within milliseconds of connecting, so a flood of silent connections
   * cannot lock it out (a cap that refused new connections instead let 128 silent ones refuse every
   * caller until ARTIM). Associations are never closed for room; their number is admit()'s.
   */
  private makeRoomForConnection(): void {
    const limit = this.options.maxAssociations * CONNECTIONS_PER_ASSOCIATION;
    const unassociated = [...this.associations].filter((association) => association.isAwaitingRequest || association.isEnding);
    if (unassociated.length < limit) return;
    const oldest = unassociated.find((association) => association.isEnding) ?? unassociated[0];
    oldest?.destroy();
    this.evicted += 1;
    const now = Date.now();
    if (now - this.lastEvictionLog >= 10_000) {
      this.options.log.warn({ evicted: this.evicted, limit }, 'too many connections without an association: the oldest are closed');
      this.lastEvictionLog = now;
      this.evicted = 0;
    }
  }

  private admit(callingAeTitle: string): boolean {
    const forCaller = this.activeByCaller.get(callingAeTitle) ?? 0;
    if (this.activeCount >= this.options.maxAssociations) return false;
    if (forCaller >= this.options.maxAssociationsPerCaller) return false;
    this.activeCount += 1;
    this.activeByCaller.set(callingAeTitle, forCaller + 1);
    return true;
  }

  private onClosed(association: AcceptorAssociation, wasAccepted: boolean): void {
    this.associations.delete(association);
    if (!wasAccepted) return;
    this.activeCount -= 1;
    const left = (this.activeByCaller.get(association.calling) ?? 1) - 1;
    if (left <= 0) this.activeByCaller.delete(association.calling);
    else this.activeByCaller.set(association.calling, left);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
