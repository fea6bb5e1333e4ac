/**
 * Bytes that arrive in pieces (a control PDU's body over many TCP segments, a command set over many
 * PDVs), gathered into one buffer that grows by doubling: the memory held stays within about twice
 * what arrived, whatever the size of the pieces. Kept as one Buffer per piece, a peer that sent its
 * A-ASSOCIATE-RQ a byte per segment, or a command set a byte per PDV, made an object per byte (each
 * also holding the socket's whole chunk): 55-90 times what it sent, 250 MB from 32 connections,
 * before any AE title was checked (found in the resource review).
 */
const EMPTY = Buffer.alloc(0);

export class GatheredBytes {
  private buffer = EMPTY;
  private filled = 0;

  get length(): number {
    return this.filled;
  }

  /** Appends a copy of `piece`; `expected`, when known, bounds the growth (a control PDU's length). */
  append(piece: Buffer, expected = Number.MAX_SAFE_INTEGER): void {
    const needed = this.filled + piece.length;
    if (needed > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, Math.min(expected, Math.max(this.buffer.length * 2, 256))));
      this.buffer.copy(grown, 0, 0, this.filled);
      this.buffer = grown;
    }
    piece.copy(this.buffer, this.filled);
    this.filled = needed;
  }

  /** The bytes gathered, and an empty gathering for the next. */
  take(): Buffer {
    const bytes = this.buffer.subarray(0, this.filled);
    this.clear();
    return bytes;
  }

  clear(): void {
    this.buffer = EMPTY;
    this.filled = 0;
  }
}
