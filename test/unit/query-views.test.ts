/**
 * Which view a query caller gets (src/app.ts queryViewFor): a source caller (original identities) only
 * from the host its query.sourceCallers entry names, since a calling AE title is whatever the peer sends.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { queryViewFor } from '../../src/app.js';
import { parseConfigText } from '../../src/config/load.js';

const config = parseConfigText('query:\n  sourceCallers: [HOSPITAL@10.0.0.5]\n  researchCallers: [RESEARCH]\n', 'test.yaml', {});
const sources = [{ aeTitle: 'HOSPITAL', addresses: new Set(['10.0.0.5']) }];

test('a source caller gets the source view from its host only; a research caller the research view from anywhere', () => {
  assert.equal(queryViewFor(config, sources, 'HOSPITAL', '10.0.0.5'), 'source');
  assert.equal(queryViewFor(config, sources, 'HOSPITAL', '10.0.0.6'), undefined, 'the AE title from elsewhere: no query service');
  assert.equal(queryViewFor(config, sources, 'RESEARCH', '192.168.1.9'), 'research');
  assert.equal(queryViewFor(config, sources, 'MODALITY', '10.0.0.5'), undefined);
  assert.equal(queryViewFor(config, [{ aeTitle: 'HOSPITAL', addresses: new Set() }], 'HOSPITAL', '10.0.0.5'), undefined, 'a host name that did not resolve admits no one');
});
