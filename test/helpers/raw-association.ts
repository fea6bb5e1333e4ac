/**
 * A bare association requester for tests that need what DCMTK will not do: hold associations open,
 * send a malformed PDU, stay idle, or send a dataset of the test's choosing. Built on Gantry's own
 * PDU and command codecs; every read is bounded in time.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { CommandField, decodeCommand, encodeCommand, DATASET_PRESENT, NO_DATASET, type DimseCommand } from '../../src/dimse/command.js';
import {
  decodeAbort,
  decodeAssociateAccept,
  decodeAssociateReject,
  DICOM_APPLICATION_CONTEXT,
  encodeAssociateRequest,
  encodePData,
  encodeReleaseRequest,
  PduType,
  type AbortPdu,
  type AssociateAccept,
  type AssociateReject,
  type RequestedContext,
} from '../../src/dimse/pdu.js';
import { PduStream } from '../../src/dimse/pdu-stream.js';

export type Received =
  | { kind: 'accept'; accept: AssociateAccept }
  | { kind: 'reject'; reject: AssociateReject }
  | { kind: 'abort'; abort: AbortPdu }
  | { kind: 'releaseRp' }
  | { kind: 'command'; contextId: number; command: DimseCommand }
  | { kind: 'closed' };

export class RawAssociation {
  private readonly events: Received[] = [];
  private waiters: Array<() => void> = [];
  private commandChunks: Buffer[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    const stream = new PduStream({
      controlPdu: (type, body) => {
        if (type === PduType.AssociateAc) this.push({ kind: 'accept', accept: decodeAssociateAccept(body) });
        else if (type === PduType.AssociateRj) this.push({ kind: 'reject', reject: decodeAssociateReject(body) });
        else if (type === PduType.Abort) this.push({ kind: 'abort', abort: decodeAbort(body) });
        else if (type === PduType.ReleaseRp) this.push({ kind: 'releaseRp' });
      },
      pdvData: (_id, isCommand, data) => {
        if (isCommand) this.commandChunks.push(Buffer.from(data));
      },
      pdvEnd: (contextId, isCommand, isLast) => {
        if (isCommand && isLast) {
          const command = decodeCommand(Buffer.concat(this.commandChunks));
          this.commandChunks = [];
          this.push({ kind: 'command', contextId, command });
        }
      },
    });
    socket.on('data', (chunk: Buffer) => stream.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.push({ kind: 'closed' });
    });
  }

  static async open(port: number, host = '127.0.0.1'): Promise<RawAssociation> {
    const socket = connect(port, host);
    await once(socket, 'connect');
    socket.setNoDelay(true);
    return new RawAssociation(socket);
  }

  /** Sends an A-ASSOCIATE-RQ and waits for the answer. */
  async associate(options: {
    called: string;
    calling: string;
    contexts: RequestedContext[];
    maxPduLength?: number;
    asyncOperations?: { maxOperationsInvoked: number; maxOperationsPerformed: number };
    roleSelections?: Array<{ sopClassUid: string; scuRole: boolean; scpRole: boolean }>;
  }): Promise<Received> {
    this.socket.write(
      encodeAssociateRequest({
        protocolVersion: 1,
        calledAeTitle: options.called,
        callingAeTitle: options.calling,
        applicationContext: DICOM_APPLICATION_CONTEXT,
        presentationContexts: options.contexts,
        userInformation: {
          maxPduLength: options.maxPduLength ?? 16384,
          implementationClassUid: '1.2.3.4.5.6.7',
          implementationVersionName: 'RAWTEST',
          roleSelections: options.roleSelections ?? [],
          extendedNegotiations: [],
          ...(options.asyncOperations ? { asyncOperations: options.asyncOperations } : {}),
        },
      }),
    );
    return this.next();
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  sendCommand(contextId: number, command: DimseCommand, maxPduLength = 16384): void {
    for (const pdu of encodePData(contextId, true, encodeCommand(command), maxPduLength)) this.socket.write(pdu);
  }

  sendDataset(contextId: number, dataset: Buffer, maxPduLength = 16384): void {
    for (const pdu of encodePData(contextId, false, dataset, maxPduLength)) this.socket.write(pdu);
  }

  /** C-ECHO-RQ; resolves with the response's status. */
  async echo(contextId: number, messageId = 1): Promise<number | undefined> {
    this.sendCommand(contextId, {
      commandField: CommandField.CEchoRq,
      messageId,
      affectedSopClassUid: '1.2.840.10008.1.1',
      commandDataSetType: NO_DATASET,
    });
    const answer = await this.next();
    if (answer.kind !== 'command') throw new Error(`expected a C-ECHO-RSP, received ${JSON.stringify(answer)}`);
    return answer.command.status;
  }

  /** C-STORE-RQ with the given dataset bytes; resolves with the response command. */
  async store(contextId: number, sopClassUid: string, sopInstanceUid: string, dataset: Buffer, messageId = 1): Promise<DimseCommand | undefined> {
    this.sendCommand(contextId, {
      commandField: CommandField.CStoreRq,
      messageId,
      priority: 0,
      affectedSopClassUid: sopClassUid,
      affectedSopInstanceUid: sopInstanceUid,
      commandDataSetType: DATASET_PRESENT,
    });
    this.sendDataset(contextId, dataset);
    const answer = await this.next();
    if (answer.kind !== 'command') throw new Error(`expected a C-STORE-RSP, received ${JSON.stringify(answer)}`);
    return answer.command;
  }

  async release(): Promise<Received> {
    this.socket.write(encodeReleaseRequest());
    const answer = await this.next();
    this.socket.end();
    return answer;
  }

  /** The next thing received, or { kind: 'closed' }; fails after `timeoutMs`. */
  async next(timeoutMs = 10_000): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`nothing received within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.events.shift() as Received;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private push(event: Received): void {
    this.events.push(event);
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
