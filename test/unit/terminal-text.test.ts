import assert from 'node:assert/strict';
import { test } from 'node:test';
import { terminalText } from '../../src/cli/terminal-text.js';

// Found in the injection review: values of received instances and peers' comments reached the
// operator's terminal with their control characters, which cleared it and forged lines.
test('text printed for an operator shows control characters as escapes and keeps the rest as it is', () => {
  assert.equal(terminalText('Evil\x1b[31mRED\x07\r\nid: 999\t\x7f\u009b'), 'Evil\\x1b[31mRED\\x07\\r\\nid: 999\\t\\x7f\\x9b');
  assert.equal(terminalText('Müller^Hans=山田^太郎 (CT)'), 'Müller^Hans=山田^太郎 (CT)');
  assert.equal(terminalText(undefined), '');
  assert.equal(terminalText(42), '42');
});
