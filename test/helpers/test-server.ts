/** An in-process DicomServer on loopback (port 0) for DIMSE tests: the test chooses the services of the
 * abstract syntaxes and writes the handlers; the rest is a fixed test policy (AE GANTRY, 16 KiB PDUs,
 * implicit and explicit VR little endian). */
import { DicomServer } from '../../src/dimse/server.js';
import type { NegotiationPolicy } from '../../src/dimse/negotiation.js';
import type { DimseObserver } from '../../src/dimse/observer.js';
import type { ServiceHandlers } from '../../src/dimse/services.js';
import { silentLogger } from '../../src/observability/logger.js';

const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

export interface TestServerOptions {
  handlers: ServiceHandlers;
  serviceFor: NegotiationPolicy['serviceFor'];
  /** Who may take the SCP role of storage classes for C-GET (none unless given). */
  mayGet?: NegotiationPolicy['mayGet'];
  maxAsyncOperations?: number;
  artimMs?: number;
  idleMs?: number;
  observer?: DimseObserver;
}

export async function startTestServer(options: TestServerOptions): Promise<{ server: DicomServer; port: number }> {
  const server = new DicomServer({
    ...(options.observer ? { observer: options.observer } : {}),
    host: '127.0.0.1',
    port: 0,
    log: silentLogger(),
    artimMs: options.artimMs ?? 5000,
    idleMs: options.idleMs ?? 30_000,
    maxAssociations: 4,
    maxAssociationsPerCaller: 4,
    policy: {
      aeTitle: 'GANTRY',
      implementationClassUid: '1.2.3.4',
      implementationVersionName: 'TEST',
      maxPduLength: 16384,
      maxAsyncOperations: options.maxAsyncOperations ?? 1,
      callerAllowed: () => true,
      serviceFor: options.serviceFor,
      ...(options.mayGet ? { mayGet: options.mayGet } : {}),
      transferSyntaxAccepted: (_kind, syntax) => syntax === IMPLICIT_LE || syntax === EXPLICIT_LE,
    },
    handlers: options.handlers,
  });
  const address = await server.listen();
  return { server, port: address.port };
}
