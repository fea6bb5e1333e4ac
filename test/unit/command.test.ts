import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandError, CommandField, decodeCommand, encodeCommand, NO_DATASET } from '../../src/dimse/command.js';

test('a C-STORE-RSP encodes as implicit VR little endian with a right group length', () => {
  const bytes = encodeCommand({
    commandField: CommandField.CStoreRsp,
    messageIdBeingRespondedTo: 7,
    commandDataSetType: NO_DATASET,
    status: 0xa700,
    affectedSopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    affectedSopInstanceUid: '1.2.3',
    errorComment: 'out of resources',
  });
  assert.equal(bytes.readUInt32LE(8), bytes.length - 12);
  const decoded = decodeCommand(bytes);
  assert.equal(decoded.status, 0xa700);
  assert.equal(decoded.messageIdBeingRespondedTo, 7);
  assert.equal(decoded.affectedSopInstanceUid, '1.2.3');
  assert.equal(decoded.errorComment, 'out of resources');
  // UIDs are padded with NUL to even length (PS3.5 7.1.1).
  assert.ok(bytes.includes(Buffer.from('1.2.3\0', 'latin1')));
});

test('an error comment is cut to the 64 characters of LO', () => {
  const decoded = decodeCommand(encodeCommand({ commandField: 0x8001, commandDataSetType: NO_DATASET, errorComment: 'x'.repeat(100) }));
  assert.equal(decoded.errorComment?.length, 64);
});

/** The Error Comment (0000,0902) element of an encoded command set, as bytes. */
function errorCommentBytes(command: Buffer): Buffer {
  for (let at = 0; at + 8 <= command.length; ) {
    const element = command.readUInt16LE(at + 2);
    const length = command.readUInt32LE(at + 4);
    if (element === 0x0902) return command.subarray(at + 8, at + 8 + length);
    at += 8 + length;
  }
  throw new Error('no Error Comment');
}

// Found in a review: a C-FIND cut at query.maxResults of 100,000 or more said "more matches than
// query.maxResults (100000): the rest were left out", 66 characters, and went out as "... left o".
test('a long error comment is cut at a word, within the 64 characters of LO, and says it was cut', () => {
  const text = 'more matches than query.maxResults (100000): the rest were left out';
  const bytes = errorCommentBytes(encodeCommand({ commandField: CommandField.CFindRsp, commandDataSetType: NO_DATASET, status: 0xfe00, errorComment: text }));
  const sent = bytes.toString('latin1').trimEnd();
  assert.ok(bytes.length <= 64, `${bytes.length} bytes`);
  assert.ok(sent.endsWith('...'), sent);
  const kept = sent.slice(0, -3);
  assert.ok(text.startsWith(kept) && /^[ ,:;(]/.test(text.slice(kept.length)), `cut at a word: "${sent}"`);
});

// The command set has no Specific Character Set: Error Comment is of the default repertoire. Written
// as latin1, "ü" went out as the byte 0xFC and "山" (U+5C71) as "q".
test('an error comment with characters outside ASCII goes out as ASCII, one "?" per character, within 64 bytes', () => {
  const text = 'cannot open /in/Müller^Jörg/山田/😀\\x\tdone';
  const bytes = errorCommentBytes(encodeCommand({ commandField: CommandField.CStoreRsp, commandDataSetType: NO_DATASET, status: 0xa700, errorComment: text }));
  assert.ok(bytes.every((byte) => byte >= 0x20 && byte <= 0x7e), bytes.toString('latin1'));
  assert.equal(bytes.toString('latin1').trimEnd(), 'cannot open /in/M?ller^J?rg/??/?/x done');
  const long = errorCommentBytes(encodeCommand({ commandField: CommandField.CStoreRsp, commandDataSetType: NO_DATASET, status: 0xa700, errorComment: '山'.repeat(100) }));
  assert.ok(long.length <= 64 && long.every((byte) => byte >= 0x20 && byte <= 0x7e), long.toString('latin1'));
});

test('a command set without CommandField or with a foreign group is refused', () => {
  assert.throws(() => decodeCommand(Buffer.from([0, 0, 0, 8, 2, 0, 0, 0, 1, 0])), CommandError);
  assert.throws(() => decodeCommand(Buffer.from([8, 0, 0x18, 0, 2, 0, 0, 0, 1, 0])), CommandError);
});

// Found in review: 70,000 failed sub-operations were reported as 4,464 (70000 & 0xffff).
test('C-MOVE/C-GET sub-operation counts above 65535 are reported as 65535, not wrapped (PS3.7 9.3.4.2)', () => {
  const decoded = decodeCommand(
    encodeCommand({
      commandField: CommandField.CMoveRsp,
      messageIdBeingRespondedTo: 1,
      commandDataSetType: NO_DATASET,
      status: 0xa702,
      numberOfRemainingSuboperations: 0,
      numberOfCompletedSuboperations: 65_535,
      numberOfFailedSuboperations: 70_000,
      numberOfWarningSuboperations: 3,
    }),
  );
  assert.equal(decoded.numberOfFailedSuboperations, 0xffff);
  assert.equal(decoded.numberOfCompletedSuboperations, 65_535);
  assert.equal(decoded.numberOfWarningSuboperations, 3);
});

// Found in the hostile-peer review: a C-ECHO-RQ sent without its last-fragment bit ran into the next
// one; the two read as one command (the second's Message ID over the first's) and request 11 was
// never answered, without a word.
test('a command set whose elements repeat or go back is refused (two command sets run together)', () => {
  const echo = (messageId: number) => encodeCommand({ commandField: CommandField.CEchoRq, messageId, affectedSopClassUid: '1.2.840.10008.1.1', commandDataSetType: NO_DATASET });
  assert.throws(() => decodeCommand(Buffer.concat([echo(11), echo(12)])), (error: unknown) => error instanceof CommandError && /ascending order, each once/.test(error.message));
  assert.equal(decodeCommand(echo(12)).messageId, 12);
});
