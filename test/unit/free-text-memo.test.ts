/**
 * The patterns and identifier lists free-text.ts remembers between calls: a remembered answer must be
 * the answer a fresh one would give, whatever came before it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { identifiersToScrub, quotesIdentifier, scrubText } from '../../src/deid/free-text.js';

test('an identifier found once is found again in the next text, wherever it stands (a remembered pattern starts each search at the start)', () => {
  // A global pattern's test() leaves lastIndex after its match; one remembered as it was would start
  // the next search there and miss an identifier nearer the start of a shorter text.
  assert.equal(quotesIdentifier('report for SMITHSON and SMITH', ['SMITH']), true);
  assert.equal(quotesIdentifier('SMITH', ['SMITH']), true);
  assert.equal(quotesIdentifier('by SMITH', ['SMITH']), true);
  assert.equal(quotesIdentifier('SMITHSON only', ['SMITH']), false);
  for (let round = 0; round < 3; round += 1) {
    assert.equal(quotesIdentifier('seen by dr smith today', ['SMITH']), true);
    assert.equal(quotesIdentifier('Smith', ['SMITH']), true);
  }
});

test('the same identifier compared by another folding is not answered from the other folding\'s pattern', () => {
  // ASCII folding leaves "É" and "é" apart; Latin-1 folding makes them one letter.
  const name = Buffer.from('ÉLODIE', 'latin1').toString('latin1');
  const lower = Buffer.from('élodie', 'latin1').toString('latin1');
  assert.equal(quotesIdentifier(lower, [name], 'latin1'), true);
  assert.equal(quotesIdentifier(lower, [name], 'ascii'), false);
  assert.equal(quotesIdentifier(lower, [name], 'latin1'), true);
});

test('scrubbing after a search masks every occurrence, and a search after scrubbing still finds the first', () => {
  assert.equal(quotesIdentifier('DOE here', ['DOE']), true);
  assert.equal(scrubText('DOE and DOE', ['DOE']), 'XXXXXX and XXXXXX');
  assert.equal(quotesIdentifier('DOE', ['DOE']), true);
});

test('the identifiers of the patient before are not given for the next one', () => {
  const first = identifiersToScrub(['DOE^JOHN'], ['MRN123']);
  assert.deepEqual([...first].sort(), ['DOE', 'JOHN', 'MRN123']);
  assert.equal(identifiersToScrub(['DOE^JOHN'], ['MRN123']), first, 'the same patient: the same list');
  const second = identifiersToScrub(['ROE^JANE'], ['MRN123']);
  assert.deepEqual([...second].sort(), ['JANE', 'MRN123', 'ROE']);
  // Lists whose values join to the same text are told apart.
  assert.deepEqual([...identifiersToScrub(['JOHN', 'SMITH'], [])].sort(), ['JOHN', 'SMITH']);
  assert.deepEqual([...identifiersToScrub(['JOHNS', 'MITH'], [])].sort(), ['JOHNS', 'MITH']);
  // A name and an ID of the same text are not one key: a two-letter family name counts, a two-letter ID does not.
  assert.deepEqual([...identifiersToScrub(['LI'], [])], ['LI']);
  assert.deepEqual([...identifiersToScrub([], ['LI'])], []);
  assert.deepEqual([...identifiersToScrub(['LI'], [])], ['LI']);
  assert.ok(Object.isFrozen(second), 'shared between calls: nobody may change it');
});
