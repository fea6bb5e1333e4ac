/**
 * `gantry status` against an index with a backlog: what an operator needs to judge it is there.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { printStatus } from '../../src/cli/status.js';
import { parseConfigText, type LoadedConfig } from '../../src/config/load.js';
import { instanceRecord, openTestIndex } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

// The status screen said how many instances wait for de-identification but not for how long: 40
// received is a burst being worked through, or a pool stuck for an hour; gantry_deid_oldest_waiting_seconds
// told it, the command an operator runs on the host did not.
test('gantry status says how long the oldest instance has waited for de-identification', async (t) => {
  const storagePath = scratchDir('status-backlog');
  const { writer } = openTestIndex(t, storagePath);
  const now = Date.now();
  await writer.submit(instanceRecord(1, { receivedAt: now - 2 * 3600_000 }));
  await writer.submit(instanceRecord(2, { receivedAt: now - 60_000 }));
  const loaded: LoadedConfig = { config: parseConfigText(`storage:\n  path: ${storagePath}\n  minFreeBytes: 0\ndeid:\n  secret: a secret of this test\n`, 'test'), source: 'test', embedded: false };
  const lines: string[] = [];
  await printStatus(loaded, { limit: 10, now }, (line) => lines.push(line));
  const text = lines.join('\n');
  assert.match(text, /received 2/);
  assert.match(text, /^ {2}waiting for de-identification: 2, the oldest for 2 h \(since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$/m, text);

  // None waiting: said so, not an age of nothing.
  const emptyPath = scratchDir('status-none');
  openTestIndex(t, emptyPath);
  const empty: string[] = [];
  await printStatus({ ...loaded, config: { ...loaded.config, storage: { ...loaded.config.storage, path: emptyPath } } }, { limit: 10, now }, (line) => empty.push(line));
  assert.match(empty.join('\n'), /^ {2}waiting for de-identification: none$/m);
});
