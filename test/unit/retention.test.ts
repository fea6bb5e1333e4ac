/** Retention on disk: a file that cannot be deleted neither stops the sweep nor leaves the other files
 * of its page deleted but recorded as present, and its path (original UIDs) is not what gets logged. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { test } from 'node:test';
import { RetentionWork } from '../../src/index/retention-work.js';
import { createLogger } from '../../src/observability/logger.js';
import { Retention } from '../../src/pipeline/retention.js';
import { instanceRecord, openTestIndex } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

test('an original that cannot be deleted is skipped: the others are deleted and recorded, and the sweep goes on', async (t) => {
  const storagePath = scratchDir('retention-undeletable');
  const { db, writer } = openTestIndex(t, storagePath);
  const paths = [1, 2, 3].map((n) => `originals/1.2.1/1.2.1.1/1.2.1.1.${n}.dcm`);
  for (const [index, filePath] of paths.entries()) await writer.submit(instanceRecord(index + 1, { filePath }));
  db.prepare(`UPDATE instances SET state = 'forwarded', state_changed_at = 1`).run();
  mkdirSync(join(storagePath, 'originals/1.2.1/1.2.1.1'), { recursive: true });
  // The second "file" is a directory with something in it: unlink fails (EISDIR), even as root.
  for (const [index, filePath] of paths.entries()) {
    if (index === 1) {
      mkdirSync(join(storagePath, filePath));
      writeFileSync(join(storagePath, filePath, 'x'), 'x');
    } else writeFileSync(join(storagePath, filePath), 'dicom');
  }
  const lines: string[] = [];
  const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  const retention = new Retention({ work: new RetentionWork(db), storagePath, log, settings: () => ({ retainOriginalsMs: 1000, retainDeidentifiedMs: 0 }) });

  const outcome = await retention.sweep().then(
    (result) => result,
    (error: Error) => error,
  );
  const rows = db.prepare('SELECT file_path AS filePath, original_deleted_at AS deletedAt FROM instances ORDER BY id').all() as Array<{ filePath: string; deletedAt: number | null }>;
  for (const row of rows) {
    assert.equal(row.deletedAt !== null, !existsSync(join(storagePath, row.filePath)), `${row.filePath}: recorded deleted exactly when it is gone`);
  }
  assert.deepEqual(outcome, { originals: 2, deidentified: 0 });
  assert.deepEqual(rows.map((row) => row.deletedAt !== null), [true, false, true]);
  assert.ok(!lines.some((line) => line.includes('1.2.1.1.')), `no path of an original in the log: ${lines.join('')}`);
});
