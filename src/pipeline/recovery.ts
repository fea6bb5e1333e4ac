/**
 * Start-up after an unclean stop. A running Gantry keeps a marker file under storage.path; finding it
 * at start means the last run did not stop cleanly (crash, SIGKILL, power loss). Then the newest
 * index rows are checked against their files: a new instance's file sync and its index commit run
 * side by side (receive.ts), so a crash between them can leave a row whose file is short or missing.
 * Such a row was never acknowledged, and is removed.
 */
import { stat, writeFile, unlink, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstanceIndex } from '../index/instance-index.js';
import type { Logger } from '../observability/logger.js';
import type { ObjectStore } from '../store/object-store.js';

const MARKER = 'gantry.running';
/** Rows received this long before the newest one are checked (the window of a crash is far shorter). */
const CHECK_WINDOW_MS = 60_000;

export async function recoverIfUnclean(storagePath: string, index: InstanceIndex, store: ObjectStore, log: Logger): Promise<{ unclean: boolean; removed: number }> {
  const marker = join(storagePath, MARKER);
  const unclean = await stat(marker).then(
    () => true,
    () => false,
  );
  let removed = 0;
  if (unclean) {
    const recent = index.recentInstances(CHECK_WINDOW_MS);
    for (const row of recent) {
      const size = await stat(store.absolute(row.filePath)).then(
        (stats) => stats.size,
        () => -1,
      );
      if (size !== row.fileSize) {
        index.deleteInstance(row.sopInstanceUid);
        removed += 1;
      }
    }
    log.warn({ checked: recent.length, removed }, 'the last run did not stop cleanly; checked the newest instances against their files');
  }
  await writeFile(marker, `${process.pid}\n`);
  const handle = await open(storagePath, 'r');
  await handle.sync().finally(() => handle.close());
  return { unclean, removed };
}

/** Called last in a clean stop. */
export async function markCleanStop(storagePath: string): Promise<void> {
  await unlink(join(storagePath, MARKER)).catch(() => undefined);
}
