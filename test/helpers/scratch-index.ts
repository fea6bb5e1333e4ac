/** A fresh index in a scratch folder, closed after the test, and a row count of one of its tables. */
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { openDatabase, type Db } from '../../src/db/database.js';
import { scratchDir } from './scratch.js';

export function openScratchIndex(t: TestContext, name: string): Db {
  const db = openDatabase(join(scratchDir(name), 'index.sqlite'));
  t.after(() => db.close());
  return db;
}

export function countRows(db: Db, table: string): number {
  return db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
}
