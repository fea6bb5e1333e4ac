import type { Migration } from '../database.js';

/**
 * What identifies an original's file besides its size, recorded when it is indexed: its modification
 * time in nanoseconds and its inode, as decimal text (both can exceed 2^53, which a JavaScript number
 * does not hold exactly). A file rewritten with the same size (another instance under the same name,
 * in a folder imported in place) passed the size check and was read as the indexed instance. Rows
 * indexed before this migration have neither (NULL): their files are checked by size alone.
 */
export const migration019FileStamps: Migration = {
  version: 19,
  name: 'originals: modification time (ns) and inode when indexed',
  up(db) {
    db.exec(`
      ALTER TABLE instances ADD COLUMN file_mtime_ns TEXT;
      ALTER TABLE instances ADD COLUMN file_ino TEXT;
    `);
  },
};
