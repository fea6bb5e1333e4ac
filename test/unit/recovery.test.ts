/** The check after an unclean stop (src/pipeline/recovery.ts), on an index and a store in a folder. */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { silentLogger } from '../../src/observability/logger.js';
import { checkNewestRows, claimStorage, releaseStorage } from '../../src/pipeline/recovery.js';
import { ObjectStore } from '../../src/store/object-store.js';
import { instanceRecord } from '../helpers/index-records.js';
import { openScratchIndex } from '../helpers/scratch-index.js';
import { scratchDir } from '../helpers/scratch.js';

// Suspected in a review: a copy received again is committed, then the copy it replaced is deleted; a
// crash between the two (or a failed delete), or one between placing a new copy and committing it,
// left an original (PHI) on disk that no row names, which retention never reaches.
test('after an unclean stop, an original that no row names beside a newest row is deleted; named files stay', async (t) => {
  const storagePath = scratchDir('recovery');
  const store = new ObjectStore(storagePath);
  const index = new InstanceIndex(openScratchIndex(t, 'recovery-index'));
  const place = (relativePath: string, bytes = 'DICM') => {
    mkdirSync(dirname(store.absolute(relativePath)), { recursive: true });
    writeFileSync(store.absolute(relativePath), bytes);
  };
  const uid = '1.2.1.1.5';
  const current = store.originalPath('1.2.1', '1.2.1.1', uid, 'm3k9q2a1');
  const replaced = store.originalPath('1.2.1', '1.2.1.1', uid);
  const neverCommitted = store.originalPath('1.2.1', '1.2.1.1', uid, 'm3k9q2b7');
  // Another instance whose UID extends this one's: its file must not be taken for a variant.
  const longer = store.originalPath('1.2.1', '1.2.1.1', `${uid}.7`);
  for (const path of [current, replaced, neverCommitted, longer]) place(path);
  index.upsert(instanceRecord(5, { filePath: current, fileSize: 4, receivedAt: Date.now() }));
  index.upsert(instanceRecord(7, { sopInstanceUid: `${uid}.7`, filePath: longer, fileSize: 4, receivedAt: Date.now() }));
  await checkNewestRows(index, store, silentLogger());
  assert.equal(existsSync(store.absolute(current)), true, 'the copy its row names stays');
  assert.equal(existsSync(store.absolute(longer)), true, "another instance's file stays");
  assert.equal(existsSync(store.absolute(replaced)), false, 'the replaced copy is gone');
  assert.equal(existsSync(store.absolute(neverCommitted)), false, 'the copy never committed is gone');
});

// Found in a review: a store renames its file into originals/ and then commits its row; a crash
// between the two left the file of an instance with no row at all (the check above reads only the
// folders of the newest rows), never acknowledged, and PHI that nothing would ever delete.
test('after an unclean stop, an original placed just before it that no row names is deleted, in any folder', async (t) => {
  const storagePath = scratchDir('recovery-unindexed');
  const store = new ObjectStore(storagePath);
  const index = new InstanceIndex(openScratchIndex(t, 'recovery-unindexed-index'));
  const place = (relativePath: string) => {
    mkdirSync(dirname(store.absolute(relativePath)), { recursive: true });
    writeFileSync(store.absolute(relativePath), 'DICM');
    return relativePath;
  };
  // An older row, out of the window, whose folder the crashed run wrote into too.
  const older = place(store.originalPath('1.2.1', '1.2.1.1', '1.2.1.1.1'));
  index.upsert(instanceRecord(1, { filePath: older, fileSize: 4, receivedAt: Date.now() - 3_600_000 }));
  const newest = place(store.originalPath('1.2.2', '1.2.2.1', '1.2.2.1.1'));
  index.upsert(instanceRecord(2, { studyInstanceUid: '1.2.2', seriesInstanceUid: '1.2.2.1', sopInstanceUid: '1.2.2.1.1', filePath: newest, fileSize: 4, receivedAt: Date.now() }));
  const besideOlder = place(store.originalPath('1.2.1', '1.2.1.1', '1.2.1.1.9'));
  const newSeries = place(store.originalPath('1.2.3', '1.2.3.1', '1.2.3.1.1'));
  const variant = place(store.originalPath('1.2.3', '1.2.3.1', '1.2.3.1.2', 'm3k9q2d5'));
  // An instance UID that is no plain UID is named by a hash (found in a review: such copies were left).
  const hashedUnindexed = place(store.originalPath('1.2.3', '1.2.3.1', 'not a UID'));
  const hashedVariant = place(store.originalPath('1.2.3', '1.2.3.1', 'not a UID either', 'm3k9q2e6'));
  const hashedNamed = place(store.originalPath('1.2.3', '1.2.3.1', 'an indexed non-UID', 'm3k9q2f8'));
  index.upsert(instanceRecord(3, { studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.1', sopInstanceUid: 'an indexed non-UID', filePath: hashedNamed, fileSize: 4, receivedAt: Date.now() - 3_600_000 }));
  // Other names (an import's copy under its own name) are left.
  const imported = place(join(dirname(newSeries), '1.2.3.1.7.import-0a1b2c3d4e5f.dcm'));
  await checkNewestRows(index, store, silentLogger());
  for (const kept of [older, newest, hashedNamed, imported]) assert.equal(existsSync(store.absolute(kept)), true, `${kept} stays`);
  for (const gone of [besideOlder, newSeries, variant, hashedUnindexed, hashedVariant]) assert.equal(existsSync(store.absolute(gone)), false, `${gone} is deleted`);
});

// Found in a review: the window was measured from the newest row of any kind, and gantry import,
// run while the node was down, stamps its rows with its own time: the crashed run's rows then fell
// out of the window, and a row naming a file cut short was never checked.
test('after an unclean stop, rows an import wrote later do not move the window past the crashed run', async (t) => {
  const storagePath = scratchDir('recovery-import-after');
  const store = new ObjectStore(storagePath);
  const index = new InstanceIndex(openScratchIndex(t, 'recovery-import-after-index'));
  const place = (relativePath: string, bytes: string) => {
    mkdirSync(dirname(store.absolute(relativePath)), { recursive: true });
    writeFileSync(store.absolute(relativePath), bytes);
    return relativePath;
  };
  const cut = place(store.originalPath('1.2.1', '1.2.1.1', '1.2.1.1.1'), 'DI');
  index.upsert(instanceRecord(1, { filePath: cut, fileSize: 4, receivedAt: Date.now() - 600_000 }));
  const imported = place(store.originalPath('1.2.5', '1.2.5.1', '1.2.5.1.1'), 'DICM');
  index.upsert(instanceRecord(2, { studyInstanceUid: '1.2.5', seriesInstanceUid: '1.2.5.1', sopInstanceUid: '1.2.5.1.1', filePath: imported, fileSize: 4, sourcePath: '/archive/a.dcm', receivedAt: Date.now() }));
  await checkNewestRows(index, store, silentLogger());
  assert.equal(index.hasInstance('1.2.1.1.1'), false, 'the row naming a file cut short is removed');
  assert.equal(existsSync(store.absolute(cut)), false);
  assert.equal(index.hasInstance('1.2.5.1.1'), true, 'the imported row stays');
});

// Found in a review: any error reading a newest row's file counted as "missing", so the row (an
// acknowledged instance) was deleted. A folder the node may not read (a volume restored under another
// owner: EACCES), or a failing disk (EIO), then lost one acknowledged instance per start, since the
// delete of the file failed next and stopped the start with the marker left. Root passes EACCES,
// so a link that loops (ELOOP) stands in for it here: the file is there, it only cannot be checked.
test('after an unclean stop, a newest row whose file cannot be checked (not missing) stays', async (t) => {
  const storagePath = scratchDir('recovery-unreadable');
  const store = new ObjectStore(storagePath);
  const index = new InstanceIndex(openScratchIndex(t, 'recovery-unreadable-index'));
  const path = store.originalPath('1.2.1', '1.2.1.1', '1.2.1.1.9');
  mkdirSync(dirname(store.absolute(path)), { recursive: true });
  symlinkSync(store.absolute(path), store.absolute(path));
  index.upsert(instanceRecord(9, { filePath: path, fileSize: 4, receivedAt: Date.now() }));
  assert.equal(await checkNewestRows(index, store, silentLogger()), 0);
  assert.ok(index.hasInstance('1.2.1.1.9'), 'the row of a file that could not be checked stays');
  assert.ok(lstatSync(store.absolute(path)), 'and so does its file');
});

// Found in a review: the claim on storage.path was only the PID in the marker, and every container
// runs Gantry as PID 1. A second container on the same volume (a rolling update, a scaled service)
// read PID 1, took it for its own previous run, and ran the unclean-stop check beside the live node:
// it deleted the live node's incoming files and a re-sent copy placed but not yet committed, which
// the live node then acknowledged (and deleted the copy it replaced). Here a process of its own holds
// the storage, and the marker is made to hold this process's PID, as the other container sees it.
test('a storage.path claimed by a live process is refused even when the marker holds our own PID', async (t) => {
  const storagePath = scratchDir('claim');
  const recovery = new URL('../../src/pipeline/recovery.js', import.meta.url).href;
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `
    const { claimStorage } = await import(${JSON.stringify(recovery)});
    await claimStorage(${JSON.stringify(storagePath)});
    process.stdout.write('claimed\\n');
    setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => holder.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    holder.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('claimed') && resolve());
    holder.once('exit', (code) => reject(new Error(`the holder exited (${code})`)));
  });
  writeFileSync(join(storagePath, 'gantry.running'), `${process.pid}\n`);
  await assert.rejects(claimStorage(storagePath), /storage\.path .* is in use by another Gantry \(it holds gantry\.lock\)/, "not our own PID: the lock tells");
  holder.kill('SIGKILL');
  await once(holder, 'exit');
  // Killed, it holds nothing: the next start takes the storage, after an unclean stop.
  assert.deepEqual(await claimStorage(storagePath), { unclean: true });
  await releaseStorage(storagePath);
  assert.deepEqual(await claimStorage(storagePath), { unclean: false });
  // A stop that left stores unfinished releases the storage but keeps the marker: the next start checks.
  await releaseStorage(storagePath, false);
  assert.deepEqual(await claimStorage(storagePath), { unclean: true });
  await releaseStorage(storagePath);
});

// Suspected in a review: retention deletes an original inside the transaction that records it, so a
// power loss before the commit left a forwarded row whose original was gone; when that row was among
// the newest (a quiet node, a short retainOriginals) the unclean-stop check deleted the whole row: the
// instance's history, its research row, and the record of its de-identified copy.
test('after an unclean stop, a forwarded newest row whose original is gone stays, marked as retention would have', async (t) => {
  const storagePath = scratchDir('recovery-forwarded');
  const store = new ObjectStore(storagePath);
  const db = openScratchIndex(t, 'recovery-forwarded-index');
  const index = new InstanceIndex(db);
  const path = store.originalPath('1.2.1', '1.2.1.1', '1.2.1.1.3');
  index.upsert(instanceRecord(3, { filePath: path, fileSize: 4, receivedAt: Date.now() }));
  db.prepare(`UPDATE instances SET state = 'forwarded'`).run();
  assert.equal(await checkNewestRows(index, store, silentLogger()), 0);
  assert.ok(index.hasInstance('1.2.1.1.3'), 'the row stays');
  assert.ok(db.prepare('SELECT original_deleted_at FROM instances').pluck().get(), 'its original is recorded as deleted');
});

// Found in a review: a claim that took the lock and then could not write its marker (a full or
// read-only storage.path, refused as a config problem) kept the lock's connection open: the storage
// stayed locked by a node that never started, and another process was told a Gantry used it.
test('a claim that fails after taking the lock releases it', async () => {
  const storagePath = scratchDir('claim-fails');
  // The marker cannot be written where a folder has its name.
  mkdirSync(join(storagePath, 'gantry.running'));
  await assert.rejects(claimStorage(storagePath), (error: NodeJS.ErrnoException) => error.code === 'EISDIR');
  rmSync(join(storagePath, 'gantry.running'), { recursive: true });
  const recovery = new URL('../../src/pipeline/recovery.js', import.meta.url).href;
  const other = spawn(process.execPath, ['--input-type=module', '-e', `
    const { claimStorage, releaseStorage } = await import(${JSON.stringify(recovery)});
    await claimStorage(${JSON.stringify(storagePath)}).then(() => process.stdout.write('claimed'), (error) => process.stdout.write(error.message));
    await releaseStorage(${JSON.stringify(storagePath)});`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  other.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await once(other, 'exit');
  assert.equal(output, 'claimed', 'another process takes the storage');
});
