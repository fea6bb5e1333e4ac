/**
 * Which view a query caller gets (src/app.ts queryViewFor): a source caller (original identities) only
 * from the host its query.sourceCallers entry names, since a calling AE title is whatever the peer sends.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { queryViewFor, resolveCallers } from '../../src/app.js';
import { canonicalAddress } from '../../src/dimse/peer-address.js';
import { silentLogger } from '../../src/observability/logger.js';
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

// Suspected in a review: addresses were compared as written, so a caller listed as 10.0.0.5 was refused
// when the node listened on "::" (the socket reports "::ffff:10.0.0.5"), and an IPv6 address written
// in upper case or with its zeros was never matched.
test("a caller's address matches however it is spelt: an IPv4 peer through a listener on '::', an IPv6 address written out", async () => {
  const spelt = await resolveCallers(['HOSPITAL@10.0.0.5', 'IMAGING@2001:DB8:0:0:0:0:0:7'], 'query.sourceCallers', silentLogger());
  assert.equal(queryViewFor(config, spelt, 'HOSPITAL', '::ffff:10.0.0.5'), 'source');
  assert.equal(queryViewFor(config, spelt, 'IMAGING', '2001:db8::7'), 'source');
  assert.equal(queryViewFor(config, spelt, 'IMAGING', '2001:db8::8'), undefined, 'another address is still refused');
  assert.equal(canonicalAddress('0:0:0:0:0:ffff:7f00:1'), '127.0.0.1');
  assert.equal(canonicalAddress('::1'), '::1');
  assert.equal(canonicalAddress('192.0.2.1'), '192.0.2.1');
});

// Found in a review: canonicalAddress put every IPv6 address through the URL parser, which refuses a
// zone ("fe80::1%eth0", what the socket reports for a link-local peer): start-up with such a caller
// listed failed with "Invalid URL", and a link-local peer's association request threw.
test('a link-local IPv6 address with its zone keeps the zone, the rest in one spelling', async () => {
  assert.equal(canonicalAddress('fe80::1%eth0'), 'fe80::1%eth0');
  assert.equal(canonicalAddress('FE80:0:0:0:0:0:0:1%eth0'), 'fe80::1%eth0');
  const linkLocal = await resolveCallers(['HOSPITAL@FE80::0001%eth0'], 'query.sourceCallers', silentLogger());
  assert.equal(queryViewFor(config, linkLocal, 'HOSPITAL', 'fe80::1%eth0'), 'source');
  assert.equal(queryViewFor(config, linkLocal, 'HOSPITAL', 'fe80::1%eth1'), undefined, 'another interface is another address');
});
