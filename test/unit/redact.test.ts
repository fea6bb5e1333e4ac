/** What logs say of errors: no UIDs, no quoted values, for errors that escaped every handler too. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { commentWithoutValues, escapedErrorFields, withoutUids, withoutValues } from '../../src/observability/redact.js';

// Found in a review: the node's last-resort handlers logged an escaped error's message and stack as
// they were; a parser error that quotes the value it read (a patient's name) would land in the log.
test('an error that escaped every handler is logged without the values or UIDs its message quotes', () => {
  const error = new Error('cannot read "Doe^John" of 1.2.840.113619.2.55.3 at [PAT-4711]');
  const fields = escapedErrorFields(error);
  assert.equal(fields.err, 'cannot read <value> of <uid> at <value>');
  assert.ok(fields.stack?.startsWith('Error: cannot read <value> of <uid> at <value>\n'), fields.stack);
  assert.ok(!fields.stack?.includes('Doe^John') && !fields.stack?.includes('PAT-4711'));
  assert.deepEqual(escapedErrorFields('rejected with "Doe^John"'), { err: 'rejected with <value>' });
});

// Found in a review: a quoted path was taken to end at the first apostrophe in it, so a folder named
// after a patient with one in the name (O'BRIEN, D'ANGELO) left the rest of the name in the reason that
// is stored, logged and shown by gantry quarantine ls.
test('a quoted path with an apostrophe in it is left out whole', () => {
  const message = "ENOENT: no such file or directory, open '/archive/O'BRIEN^SEAN 19700101/CT/1.dcm'";
  const reason = withoutValues(message);
  assert.doesNotMatch(reason, /BRIEN|SEAN|19700101/, reason);
  assert.equal(reason, 'ENOENT: no such file or directory, open <value>');
  const renamed = withoutValues("EACCES: permission denied, rename '/a/D'ANGELO/x' -> '/b/y'");
  assert.doesNotMatch(renamed, /ANGELO/, renamed);
  const stack = escapedErrorFields(Object.assign(new Error(message), { stack: `Error: ${message}\n    at open (node:fs:1:1)` })).stack ?? '';
  assert.doesNotMatch(stack, /BRIEN|SEAN/, stack);
  assert.match(stack, /\n    at open \(node:fs:1:1\)$/, 'the frames of the stack are kept');
});

// Found in a review: every three dotted numbers went, so a section number in an error comment read
// "PS3.4 C.<uid>", and a destination's address in a forwarding failure "<uid>:104".
test('UIDs go, but section numbers and IPv4 addresses stay', () => {
  assert.equal(withoutUids('StudyDate: not a DA value (PS3.4 C.4.1.2.1)'), 'StudyDate: not a DA value (PS3.4 C.4.1.2.1)');
  assert.equal(withoutUids('association ended while sending: 10.1.2.3:104: ECONNRESET'), 'association ended while sending: 10.1.2.3:104: ECONNRESET');
  assert.equal(withoutUids('instance 2.25.123456789 of 1.2.840.10008.5.1.4.1.1.2 in originals/1.2.3.4.5/x.dcm'), 'instance <uid> of <uid> in originals/<uid>/x.dcm');
  assert.equal(withoutUids('1.2.840.113619 and 999.1.1.1'), '<uid> and <uid>');
});

// Found in the review of the session's diff: a destination's Error Comment masked as withoutValues
// masks a path lost its explanation at the first apostrophe of a word ("Can't", "archive's").
test("a peer's Error Comment keeps its words and tags, and loses the values it quotes", () => {
  assert.equal(commentWithoutValues("Out of Resources: Can't store: the archive's disk is full"), "Out of Resources: Can't store: the archive's disk is full");
  assert.equal(commentWithoutValues("Missing attribute (0008,0020); don't resend until it's fixed"), "Missing attribute (0008,0020); don't resend until it's fixed");
  assert.equal(commentWithoutValues('element [0028,0010] missing; check 1.2.840.10008.5.1.4.1.1.2'), 'element [0028,0010] missing; check <uid>');
  assert.equal(commentWithoutValues("Patient 'O'BRIEN^SEAN' [MRN-42] \"Doe^Jane\" refused"), 'Patient <value> <value> <value> refused');
  // Found in the injection review: an OSC sequence in a comment set the window title of the operator
  // reading gantry status.
  assert.equal(commentWithoutValues('disk\x1b]0;PWN\x07 full\r\nFAKE: line'), 'disk ]0;PWN  full FAKE: line');
});
