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
