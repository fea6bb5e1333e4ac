/**
 * Splits the bytes of a transport connection into PDUs (PS3.8 9.3). Control PDUs are collected whole
 * (they are small); P-DATA-TF PDUs are never collected: the data of each PDV is handed on in the
 * slices in which it arrives, so a 1 GB dataset passes through without being held in memory.
 */
import { GatheredBytes } from './gathered-bytes.js';
import { AbortReason, PduError, PduType } from './pdu.js';

export interface PduStreamSink {
  /** A whole control PDU: its type and its body (the bytes after the 6-byte header). */
  controlPdu(type: number, body: Buffer): void;
  /** A slice of a PDV's data, in order. */
  pdvData(presentationContextId: number, isCommand: boolean, data: Buffer): void;
  /** The end of one PDV; `isLast` is the PDV's "last fragment" bit (PS3.8 E.2). */
  pdvEnd(presentationContextId: number, isCommand: boolean, isLast: boolean): void;
}

const HEADER_LENGTH = 6;
const PDV_HEADER_LENGTH = 6;
/** Control PDUs (association negotiation) larger than this are refused; real ones are a few KB. */
const MAX_CONTROL_PDU_LENGTH = 256 * 1024;

type State = 'pduHeader' | 'controlBody' | 'pdvHeader' | 'pdvData';

export class PduStream {
  private state: State = 'pduHeader';
  private readonly header = Buffer.alloc(HEADER_LENGTH);
  private headerFilled = 0;
  private pduType = 0;
  /** The body of the control PDU being read, collected as it arrives (never allocated ahead). */
  private readonly controlBody = new GatheredBytes();
  private controlLength = 0;
  /** Bytes of the current P-DATA-TF PDU not consumed yet. */
  private pduRemaining = 0;
  private pdvRemaining = 0;
  private pdvContextId = 0;
  private pdvIsCommand = false;
  private pdvIsLast = false;

  constructor(private readonly sink: PduStreamSink) {}

  /** True between PDUs: a clean place for the connection to end. */
  get atPduBoundary(): boolean {
    return this.state === 'pduHeader' && this.headerFilled === 0;
  }

  /** Consumes one chunk of the connection. Throws PduError on a malformed PDU. */
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      switch (this.state) {
        case 'pduHeader':
        case 'pdvHeader': {
          const need = HEADER_LENGTH - this.headerFilled;
          const take = Math.min(need, chunk.length - offset);
          chunk.copy(this.header, this.headerFilled, offset, offset + take);
          this.headerFilled += take;
          offset += take;
          if (this.headerFilled === HEADER_LENGTH) {
            this.headerFilled = 0;
            if (this.state === 'pduHeader') this.startPdu();
            else this.startPdv();
          }
          break;
        }
        case 'controlBody': {
          const take = Math.min(this.controlLength - this.controlBody.length, chunk.length - offset);
          this.controlBody.append(chunk.subarray(offset, offset + take), this.controlLength);
          offset += take;
          if (this.controlBody.length === this.controlLength) this.finishControlPdu();
          break;
        }
        case 'pdvData': {
          const take = Math.min(this.pdvRemaining, chunk.length - offset);
          if (take > 0) {
            this.pdvRemaining -= take;
            this.pduRemaining -= take;
            this.sink.pdvData(this.pdvContextId, this.pdvIsCommand, chunk.subarray(offset, offset + take));
            offset += take;
          }
          if (this.pdvRemaining === 0) this.finishPdv();
          break;
        }
      }
    }
  }

  private startPdu(): void {
    this.pduType = this.header[0] as number;
    const length = this.header.readUInt32BE(2);
    if (this.pduType === PduType.PDataTf) {
      if (length < PDV_HEADER_LENGTH) throw new PduError(`P-DATA-TF of length ${length} holds no PDV`, AbortReason.InvalidPduParameterValue);
      this.pduRemaining = length;
      this.state = 'pdvHeader';
      return;
    }
    if (this.pduType < PduType.AssociateRq || this.pduType > PduType.Abort) {
      throw new PduError(`unrecognized PDU type 0x${this.pduType.toString(16)}`, AbortReason.UnrecognizedPdu);
    }
    if (length > MAX_CONTROL_PDU_LENGTH) {
      throw new PduError(`PDU type 0x${this.pduType.toString(16)} of ${length} bytes is too long`, AbortReason.InvalidPduParameterValue);
    }
    this.controlBody.clear();
    this.controlLength = length;
    if (length === 0) this.finishControlPdu();
    else this.state = 'controlBody';
  }

  private finishControlPdu(): void {
    const body = this.controlBody.take();
    this.state = 'pduHeader';
    this.sink.controlPdu(this.pduType, body);
  }

  private startPdv(): void {
    const itemLength = this.header.readUInt32BE(0);
    if (itemLength < 2 || itemLength + 4 > this.pduRemaining) {
      throw new PduError(`PDV item length ${itemLength} does not fit its P-DATA-TF PDU`, AbortReason.InvalidPduParameterValue);
    }
    this.pduRemaining -= PDV_HEADER_LENGTH;
    this.pdvRemaining = itemLength - 2;
    this.pdvContextId = this.header[4] as number;
    // PS3.8 E.2: bits 2-7 of the message control header are sent as 0 and never checked on receipt.
    const control = this.header[5] as number;
    this.pdvIsCommand = (control & 1) === 1;
    this.pdvIsLast = (control & 2) === 2;
    this.state = 'pdvData';
    if (this.pdvRemaining === 0) this.finishPdv();
  }

  private finishPdv(): void {
    if (this.pduRemaining > 0 && this.pduRemaining < PDV_HEADER_LENGTH) {
      throw new PduError(`P-DATA-TF ends with ${this.pduRemaining} bytes that are no PDV`, AbortReason.InvalidPduParameterValue);
    }
    this.state = this.pduRemaining > 0 ? 'pdvHeader' : 'pduHeader';
    this.sink.pdvEnd(this.pdvContextId, this.pdvIsCommand, this.pdvIsLast);
  }
}
