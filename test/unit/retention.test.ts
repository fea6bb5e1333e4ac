/** Retention on disk: a file that cannot be deleted neither stops the sweep nor leaves the other files
 * of its page deleted but recorded as present, and its path (original UIDs) is not what gets logged;
 * a command on the index from another process cannot slip between a sweep's choice and its record. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { forwardStudy } from '../../src/cli/queue.js';
import { parseConfigText } from '../../src/config/load.js';
import { RetentionWork } from '../../src/index/retention-work.js';
import { stampOf } from '../../src/index/file-stamp.js';
import { openDatabase } from '../../src/db/database.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { Outbox } from '../../src/queue/outbox.js';
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

// Found in a review: the files a sweep could not delete were selected again by every page, so a
// full page of them (a series folder the node may not write, 200 files) ended every sweep there,
// and no other expired original was ever deleted.
for (const instants of ['one instant each', 'all at one instant'] as const) {
test(`a full page of originals that cannot be deleted does not stop retention of the files after it (${instants})`, async (t) => {
  const storagePath = scratchDir('retention-stuck-page');
  const { db, writer } = openTestIndex(t, storagePath);
  const folder = 'originals/1.2.1/1.2.1.1';
  mkdirSync(join(storagePath, folder), { recursive: true });
  const undeletable = 201;
  const total = undeletable + 30;
  for (let n = 1; n <= total; n += 1) {
    const filePath = `${folder}/1.2.1.1.${n}.dcm`;
    await writer.submit(instanceRecord(n, { filePath }));
    // The oldest are directories with something in them: unlink fails (EISDIR), even as root.
    if (n <= undeletable) {
      mkdirSync(join(storagePath, filePath));
      writeFileSync(join(storagePath, filePath, 'x'), 'x');
    } else writeFileSync(join(storagePath, filePath), 'dicom');
  }
  // A purge or a reroute stamps every instance it counts forwarded with one instant.
  db.prepare(`UPDATE instances SET state = 'forwarded', state_changed_at = ${instants === 'all at one instant' ? '1' : 'id'}`).run();
  const retention = new Retention({ work: new RetentionWork(db), storagePath, log: silentLogger(), settings: () => ({ retainOriginalsMs: 1000, retainDeidentifiedMs: 0 }) });
  assert.deepEqual(await retention.sweep(), { originals: total - undeletable, deidentified: 0 });
  const kept = db.prepare('SELECT count(*) FROM instances WHERE original_deleted_at IS NULL').pluck().get();
  assert.equal(kept, undeletable, 'only the files that cannot be deleted are kept');
});
}

// Found in a review: the receiver deletes the original a copy received again replaced, after the
// commit; when that delete failed (EACCES, EIO) the error was logged and nothing tried again, and
// retention deletes only the file a row names: the replaced original (PHI) was kept for good. Found
// in a later review: the row named one such original, and an instance received a third time before
// the sweep named only the second: the first (left by a failed delete or a crash) was kept for good.
test('every original a copy received again replaced, which the receiver could not delete, is deleted by the next sweep', async (t) => {
  const storagePath = scratchDir('retention-replaced');
  const { db, writer } = openTestIndex(t, storagePath);
  const folder = 'originals/1.2.1/1.2.1.1';
  mkdirSync(join(storagePath, folder), { recursive: true });
  const first = (n: number) => `${folder}/1.2.1.1.${n}.dcm`;
  const again = (n: number) => `${folder}/1.2.1.1.${n}.k7.dcm`;
  const third = `${folder}/1.2.1.1.4.m2.dcm`;
  // Received again under a corrected Study Instance UID: the new copy is in another study's folder.
  const moved = 'originals/1.2.9/1.2.9.1/1.2.1.1.5.q3.dcm';
  mkdirSync(join(storagePath, 'originals/1.2.9/1.2.9.1'), { recursive: true });
  for (const n of [1, 2, 3, 4, 5]) await writer.submit(instanceRecord(n, { filePath: first(n) }));
  for (const n of [1, 2, 3, 4]) await writer.submit(instanceRecord(n, { filePath: again(n) }));
  await writer.submit(instanceRecord(4, { filePath: third }));
  await writer.submit(instanceRecord(5, { studyInstanceUid: '1.2.9', seriesInstanceUid: '1.2.9.1', filePath: moved }));
  for (const path of [again(1), again(2), again(3), third, moved]) writeFileSync(join(storagePath, path), 'dicom');
  // Left by failed deletes (or a crash between a commit and its delete); the second is gone already.
  for (const path of [first(1), first(4), first(5)]) writeFileSync(join(storagePath, path), 'the replaced original');
  // The third cannot be deleted (a directory with something in it).
  mkdirSync(join(storagePath, first(3)));
  writeFileSync(join(storagePath, first(3), 'x'), 'x');
  const listed = () => db.prepare('SELECT file_path FROM replaced_originals ORDER BY id').pluck().all() as string[];
  assert.deepEqual(listed(), [first(1), first(2), first(3), first(4), again(4), first(5)]);
  const retention = new Retention({ work: new RetentionWork(db), storagePath, log: silentLogger(), settings: () => ({ retainOriginalsMs: 0, retainDeidentifiedMs: 0 }) });
  await retention.sweep();
  for (const path of [first(1), first(4), first(5)]) assert.equal(existsSync(join(storagePath, path)), false, `${path}: the replaced original is deleted`);
  assert.deepEqual(listed(), [first(3)], 'forgotten once gone; the one that cannot be deleted is kept to try again');
  for (const path of [again(1), again(2), again(3), third, moved]) assert.equal(existsSync(join(storagePath, path)), true, `${path}: the copy each row names stays`);
});

test('an original listed as replaced that its row names again is forgotten, not deleted', async (t) => {
  const storagePath = scratchDir('retention-replaced-named-again');
  const { db, writer } = openTestIndex(t, storagePath);
  const folder = 'originals/1.2.1/1.2.1.1';
  mkdirSync(join(storagePath, folder), { recursive: true });
  const [a, b] = [`${folder}/1.2.1.1.1.dcm`, `${folder}/1.2.1.1.1.k7.dcm`];
  for (const path of [a, b, a]) await writer.submit(instanceRecord(1, { filePath: path }));
  writeFileSync(join(storagePath, a), 'dicom');
  const retention = new Retention({ work: new RetentionWork(db), storagePath, log: silentLogger(), settings: () => ({ retainOriginalsMs: 0, retainDeidentifiedMs: 0 }) });
  await retention.sweep();
  assert.equal(existsSync(join(storagePath, a)), true, 'the file the row names stays');
  assert.deepEqual(db.prepare('SELECT count(*) FROM replaced_originals').pluck().get(), 0);
});

// Found in the review of the session's diff: a replaced original listed by its plain name (an
// instance's first copy), whose row was deleted since (gantry quarantine delete), is the name the
// instance's next first copy takes: a sweep between that copy's placing and its commit deleted the
// copy the sender was then told was stored. The replaced file is known by its inode.
test('a listed replaced original is deleted only while its path holds that file, not a new first copy of the instance', async (t) => {
  const storagePath = scratchDir('retention-replaced-reused-name');
  const { db, writer, index } = openTestIndex(t, storagePath);
  const folder = 'originals/1.2.1/1.2.1.1';
  mkdirSync(join(storagePath, folder), { recursive: true });
  const plain = `${folder}/1.2.1.1.7.dcm`;
  const variant = `${folder}/1.2.1.1.7.k1.dcm`;
  const place = (path: string, text: string, at?: Date) => {
    writeFileSync(join(storagePath, path), text);
    if (at) utimesSync(join(storagePath, path), at, at);
    return stampOf(statSync(join(storagePath, path), { bigint: true }));
  };
  const sweep = () => new Retention({ work: new RetentionWork(db), storagePath, log: silentLogger(), settings: () => ({ retainOriginalsMs: 0, retainDeidentifiedMs: 0 }) }).sweep();
  // Received an hour ago: a file placed now has another modification time, whatever inode it gets.
  await writer.submit(instanceRecord(7, { filePath: plain, fileStamp: place(plain, 'the first copy', new Date(Date.now() - 3_600_000)) }));
  await writer.submit(instanceRecord(7, { filePath: variant, fileStamp: place(variant, 'the second copy') }));
  // The receiver deleted the first copy; the row goes (a quarantine delete); the instance comes again,
  // and its first copy is placed under the plain name before its row is committed.
  unlinkSync(join(storagePath, plain));
  index.deleteInstance('1.2.1.1.7');
  const again = place(plain, 'the new first copy, about to be acknowledged');
  await sweep();
  assert.equal(existsSync(join(storagePath, plain)), true, 'another file at the listed path stays');
  await writer.submit(instanceRecord(7, { filePath: plain, fileStamp: again }));
  await sweep();
  assert.equal(existsSync(join(storagePath, plain)), true, 'the file the row names stays');
  assert.deepEqual(db.prepare('SELECT file_path FROM replaced_originals').pluck().all(), [], 'named again: forgotten');
  // The replaced file itself, its row gone, still goes (PHI).
  await writer.submit(instanceRecord(7, { filePath: variant, fileStamp: place(variant, 'a third copy') }));
  index.deleteInstance('1.2.1.1.7');
  await sweep();
  assert.equal(existsSync(join(storagePath, plain)), false, 'the replaced original, by its inode, is deleted');
});

test('a study re-queued by another process (gantry forward) while a sweep picks its files keeps them: deleted exactly when recorded deleted', async (t) => {
  const storagePath = scratchDir('retention-other-process');
  const { db, writer } = openTestIndex(t, storagePath);
  await writer.submit(instanceRecord(1));
  mkdirSync(join(storagePath, 'deidentified'), { recursive: true });
  writeFileSync(join(storagePath, 'deidentified/1.dcm'), 'dicom');
  db.prepare(
    `UPDATE instances SET state = 'forwarded', state_changed_at = 1, deid_file_path = 'deidentified/1.dcm', deid_sop_instance_uid = '2.25.1',
       deid_study_instance_uid = '2.25.10', routed_at = 1`,
  ).run();
  // The CLI's own connection to the same index, as `gantry forward` opens it; it gives up at once
  // rather than after the busy timeout (this test runs both on one thread).
  const cli = openDatabase(join(storagePath, 'index.sqlite'));
  t.after(() => cli.close());
  cli.pragma('busy_timeout = 0');
  let forwardedAgain: unknown;
  const sweep = () =>
    new RetentionWork(db).deleteExpired('deidentified', Date.now(), 200, (filePath) => {
      // Between the sweep's choice of files and its record of them, the operator re-forwards the study.
      try {
        forwardedAgain = new Outbox(cli).forwardStudyNow('2.25.10');
      } catch (error) {
        forwardedAgain = error;
      }
      unlinkSync(join(storagePath, filePath));
      return true;
    });
  try {
    sweep();
  } catch {
    // A sweep that cannot record what it chose records nothing: checked below.
  }
  const row = db.prepare(`SELECT state, deid_deleted_at AS deletedAt FROM instances`).get() as { state: string; deletedAt: number | null };
  assert.equal(row.deletedAt !== null, !existsSync(join(storagePath, 'deidentified/1.dcm')), `recorded deleted exactly when gone (${String(forwardedAgain)})`);
  if (row.state === 'deidentified') assert.ok(existsSync(join(storagePath, 'deidentified/1.dcm')), 'a copy queued again is still there to be sent');
});

// Suspected in a review: gantry forward of a whole study queued only the instances whose de-identified
// copy was still there; those whose copy retention had deleted, originals kept, were skipped without a
// word, and the study went out in part.
test('forwarding a study again makes again the copies retention deleted, from the originals still kept', async (t) => {
  const storagePath = scratchDir('retention-forward-again');
  const { db, writer } = openTestIndex(t, storagePath);
  for (const n of [1, 2, 3]) await writer.submit(instanceRecord(n));
  db.prepare(`UPDATE instances SET state = 'forwarded', state_changed_at = 1, deid_file_path = 'deidentified/x.dcm', routed_at = 1, deid_deleted_at = 2`).run();
  db.prepare(`UPDATE instances SET original_deleted_at = 3 WHERE sop_instance_uid = '1.2.1.1.3'`).run();
  const config = parseConfigText(JSON.stringify({ storage: { path: storagePath }, forward: { destinations: [{ name: 'research', aeTitle: 'RESEARCH', host: '127.0.0.1', port: 11113 }] } }), 'test.yaml', {});
  const outcome = await forwardStudy({ config, source: 'test.yaml', embedded: false }, '1.2.1', silentLogger());
  assert.equal(outcome.redone, 2);
  const states = db.prepare('SELECT sop_instance_uid AS uid, state FROM instances ORDER BY uid').all();
  assert.deepEqual(
    states,
    [
      { uid: '1.2.1.1.1', state: 'received' },
      { uid: '1.2.1.1.2', state: 'received' },
      { uid: '1.2.1.1.3', state: 'forwarded' },
    ],
    'made again, but for the instance whose original is gone too',
  );
});

// Found in a review: retention deleted files and never a folder, so every series left two empty
// folders for good, named by its original Study and Series Instance UIDs.
test('the series and study folders a sweep empties are removed and reported; one still holding a file stays', async (t) => {
  const storagePath = scratchDir('retention-folders');
  const { db, writer } = openTestIndex(t, storagePath);
  const expiring = ['originals/1.2.1/1.2.1.1/1.2.1.1.1.dcm', 'originals/1.2.1/1.2.1.1/1.2.1.1.2.dcm', 'originals/1.2.2/1.2.2.1/1.2.2.1.3.dcm'];
  const kept = 'originals/1.2.2/1.2.2.2/1.2.2.2.4.dcm';
  for (const [index, filePath] of [...expiring, kept].entries()) {
    const [, study, series] = filePath.split('/');
    await writer.submit(instanceRecord(index + 1, { filePath, studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: `${series}.${index + 1}` }));
    mkdirSync(join(storagePath, dirname(filePath)), { recursive: true });
    writeFileSync(join(storagePath, filePath), 'dicom');
  }
  db.prepare(`UPDATE instances SET state = 'forwarded', state_changed_at = CASE WHEN file_path = ? THEN ? ELSE 1 END`).run(kept, Date.now());
  const removed: string[] = [];
  const retention = new Retention({
    work: new RetentionWork(db),
    storagePath,
    log: silentLogger(),
    settings: () => ({ retainOriginalsMs: 60_000, retainDeidentifiedMs: 0 }),
    folderRemoved: (folder) => removed.push(folder),
  });
  assert.deepEqual(await retention.sweep(), { originals: 3, deidentified: 0 });
  assert.deepEqual(removed.sort(), ['originals/1.2.1', 'originals/1.2.1/1.2.1.1', 'originals/1.2.2/1.2.2.1']);
  assert.ok(!existsSync(join(storagePath, 'originals/1.2.1')), 'an emptied study goes with its series');
  assert.ok(!existsSync(join(storagePath, 'originals/1.2.2/1.2.2.1')));
  assert.ok(existsSync(join(storagePath, kept)), 'a study with a file kept stays, and so does that series');
  assert.ok(existsSync(join(storagePath, 'originals')), 'never the folder of all originals');
});
