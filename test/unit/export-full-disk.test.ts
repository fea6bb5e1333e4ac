/**
 * An export whose --out disk fills up stops there, with a message that says so and how to go on,
 * instead of de-identifying every remaining instance only to fail each one with ENOSPC (found in this
 * session's look at the left-undone list: a 100,000-file export to a full disk ran to its end).
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Piscina } from 'piscina';
import { checkedDeidSettings } from '../../src/deid/settings.js';
import { parseConfigText } from '../../src/config/load.js';
import { exportSelection } from '../../src/toolkit/export.js';
import type { ExportBatch, ExportItemResult } from '../../src/toolkit/export-worker.js';
import { DEFAULT_LAYOUT } from '../../src/toolkit/layout.js';
import { instanceRecord, openTestIndex } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

test('an export stops at the first instance the full disk of --out fails, and says how to go on', async (t) => {
  const dir = scratchDir('export-full-disk');
  const storage = join(dir, 'storage');
  mkdirSync(storage);
  const { db, writer } = openTestIndex(t, storage);
  const count = 400;
  for (let n = 1; n <= count; n += 1) await writer.submit(instanceRecord(n));
  const config = parseConfigText(`storage:\n  path: ${storage}\ndeid:\n  secret: the secret of the test suite\n`, 'test.yaml');
  const { profiles, base } = checkedDeidSettings({ config, source: 'test.yaml' } as Parameters<typeof checkedDeidSettings>[0]);
  let batches = 0;
  // A pool whose every write fails as on a full disk, after the first batch's.
  const pool = {
    run: async (batch: ExportBatch): Promise<ExportItemResult[]> => {
      batches += 1;
      return batch.items.map((item) => ({ id: item.id, kind: 'failed', reason: 'ENOSPC (write)', code: 'ENOSPC' }));
    },
  } as unknown as Piscina;
  await assert.rejects(
    exportSelection(db, {
      out: join(dir, 'out'),
      selection: {},
      layout: DEFAULT_LAYOUT,
      pool,
      settings: { profiles, base, quarantineOnFindings: config.deid.quarantineOnFindings },
      storagePath: storage,
      concurrency: 2,
    }),
    /the disk of --out .*out is full \(ENOSPC\): the export stopped; free space there .* run the same command again: it resumes/,
  );
  assert.ok(batches <= 3, `${batches} batches of ${Math.ceil(count / 32)} run: the export went on after the disk was full`);
});
