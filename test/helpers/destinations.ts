/**
 * Destinations for forwarding tests: DCMTK storescp (counting the requests it received from its log)
 * and dcmjs-dimse's Server (in process, counting requests and answering with a status of the test's
 * choosing), plus reading Gantry's outbox.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import dimse from 'dcmjs-dimse';
import { DCMTK_ENV, freePort, sleep, start, stop, waitForPort, type Started } from './processes.js';

export interface StorescpProcess extends Started {
  port: number;
  /** The number of C-STORE requests storescp has received so far. */
  requests(): number;
  stop(): Promise<number | null>;
}

/** storescp -v on `port` (a free one by default), writing into `dir`; `args` adds options (+xa, +B…). */
export async function startStorescp(dir: string, args: string[] = [], port?: number): Promise<StorescpProcess> {
  mkdirSync(dir, { recursive: true });
  const chosen = port ?? (await freePort());
  const started = start('storescp', ['-v', '-od', dir, ...args, String(chosen)], { env: DCMTK_ENV });
  await waitForPort(chosen);
  return {
    ...started,
    port: chosen,
    requests: () => (started.output().match(/Received Store Request/g) ?? []).length,
    stop: () => stop(started, 'SIGTERM'),
  };
}

export interface OutboxRecord {
  destination: string;
  state: string;
  attempts: number;
  lastStatus: string | null;
  lastError: string | null;
}

export function outboxRows(storagePath: string): OutboxRecord[] {
  const file = join(storagePath, 'index.sqlite');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true });
  try {
    return db
      .prepare('SELECT destination, state, attempts, last_status AS lastStatus, last_error AS lastError FROM forward_outbox ORDER BY id')
      .all() as OutboxRecord[];
  } finally {
    db.close();
  }
}

/** Polls `check` every 100 ms until it returns true, for at most `timeoutMs`. */
export async function waitUntil(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

export interface CountingServer {
  port: number;
  /** Affected SOP Instance UIDs of every C-STORE request received, in order. */
  received: string[];
  close(): void;
}

/**
 * A dcmjs-dimse Server that accepts every storage context in explicit or implicit VR little endian,
 * records each C-STORE request and answers with `statusFor(sopInstanceUid, attempt)`.
 */
export async function startCountingServer(statusFor: (sopInstanceUid: string, attempt: number) => number = () => 0, errorComment?: string): Promise<CountingServer> {
  const received: string[] = [];
  const { Scp, Server, responses, constants } = dimse;
  class CountingScp extends Scp {
    override associationRequested(association: InstanceType<typeof dimse.association.Association>): void {
      for (const context of association.getPresentationContexts()) {
        const proposed = association.getPresentationContext(context.id);
        const syntax = proposed
          .getTransferSyntaxUids()
          .find((uid: string) => uid === constants.TransferSyntax.ExplicitVRLittleEndian || uid === constants.TransferSyntax.ImplicitVRLittleEndian);
        if (syntax) proposed.setResult(constants.PresentationContextResult.Accept, syntax);
        else proposed.setResult(constants.PresentationContextResult.RejectTransferSyntaxesNotSupported);
      }
      this.sendAssociationAccept();
    }
    override cStoreRequest(request: InstanceType<typeof dimse.requests.CStoreRequest>, callback: (response: InstanceType<typeof dimse.responses.CStoreResponse>) => void): void {
      const uid = request.getAffectedSopInstanceUid();
      received.push(uid);
      const attempt = received.filter((seen) => seen === uid).length;
      const response = responses.CStoreResponse.fromRequest(request);
      response.setStatus(statusFor(uid, attempt));
      if (errorComment !== undefined) response.setErrorComment(errorComment);
      callback(response);
    }
    override associationReleaseRequested(): void {
      this.sendAssociationReleaseResponse();
    }
  }
  const server = new Server(CountingScp as unknown as typeof Scp);
  const port = await freePort();
  server.listen(port);
  await waitForPort(port);
  return { port, received, close: () => server.close() };
}

