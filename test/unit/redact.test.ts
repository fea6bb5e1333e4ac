/** What logs say of errors: no UIDs, no quoted values, for errors that escaped every handler too. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { escapedErrorFields } from '../../src/observability/redact.js';

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
