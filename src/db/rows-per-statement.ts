/**
 * Writes many rows with one statement per chunk of them instead of one per row.
 *
 * Why: inside a transaction, SQLite's cost per statement is large on Gantry's busiest tables, beyond
 * the cost per row: a statement on a table with triggers (the counts of migration 20) sets up the
 * trigger's program, and a statement journal since a trigger may fail, each time. Measured on 2,000
 * outbox items (forward_outbox: seven B-trees and a counting trigger, 2-core VM): 43-49 ms one row
 * per statement, 16-19 ms with the trigger dropped, 19-26 ms for the same rows 50 per statement.
 * Calls from JavaScript into SQLite cost less too (bench/persist's mappings).
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';

/** Rows per statement: 25 or 100 measured the same as 50 (bench/persist). */
export const ROWS_PER_STATEMENT = 50;

/** `C`: what every row of one `run` shares (a time), given to `columns` beside each row. */
export class RowsPerStatement<T, C = undefined> {
  private readonly many: Statement;
  /** Statements for fewer rows than ROWS_PER_STATEMENT (the rest of a run), by row count, made when
   * first needed: a batch of 128 rows is two statements of 50 and one of 28, not 28 of one. */
  private readonly fewer = new Map<number, { statement: Statement; values: unknown[] }>();
  private readonly values: unknown[];

  /**
   * @param sqlFor the statement for `rows` rows: its parameters are every row's `columns`, in order
   * @param columns puts a row's parameters, `width` of them, into `into` from `at`
   */
  constructor(
    private readonly db: Db,
    private readonly sqlFor: (rows: number) => string,
    private readonly width: number,
    private readonly columns: (row: T, into: unknown[], at: number, shared: C) => void,
  ) {
    this.many = db.prepare(sqlFor(ROWS_PER_STATEMENT));
    // Reused from one statement to the next: no array per statement.
    this.values = new Array<unknown>(ROWS_PER_STATEMENT * width);
  }

  /**
   * Runs the statements for every row, in order (the caller's transaction makes them one).
   * @param named values every row shares, bound by name (`@name` in sqlFor's statement) once per
   * statement rather than once per row: binding 100,000 pseudonym mappings' kind and time by name
   * made recording them 83 ms instead of 102 (bench/persist's data, 2-core VM)
   */
  run(rows: readonly T[], shared: C, named?: Readonly<Record<string, unknown>>): void {
    const whole = rows.length - (rows.length % ROWS_PER_STATEMENT);
    for (let start = 0; start < whole; start += ROWS_PER_STATEMENT) {
      for (let row = 0; row < ROWS_PER_STATEMENT; row += 1) this.columns(rows[start + row] as T, this.values, row * this.width, shared);
      runWith(this.many, this.values, named);
    }
    const rest = rows.length - whole;
    if (rest === 0) return;
    const fewer = this.fewerStatement(rest);
    for (let row = 0; row < rest; row += 1) this.columns(rows[whole + row] as T, fewer.values, row * this.width, shared);
    runWith(fewer.statement, fewer.values, named);
  }

  private fewerStatement(rows: number): { statement: Statement; values: unknown[] } {
    let fewer = this.fewer.get(rows);
    if (!fewer) {
      fewer = { statement: this.db.prepare(this.sqlFor(rows)), values: new Array<unknown>(rows * this.width) };
      this.fewer.set(rows, fewer);
    }
    return fewer;
  }
}

function runWith(statement: Statement, values: unknown[], named: Readonly<Record<string, unknown>> | undefined): void {
  if (named) statement.run(values, named);
  else statement.run(values);
}

/** `rows` copies of a row's VALUES tuple, for sqlFor. */
export function valuesList(tuple: string, rows: number): string {
  return Array(rows).fill(tuple).join(', ');
}
