/**
 * The seam between the hub store's one SQL implementation (sql-hub-store.ts) and a database
 * driver: SQLite (sqlite-driver.ts) or PostgreSQL (postgres-driver.ts). Statements are written
 * once, with `?` placeholders, in the SQL both dialects share; where they differ, the store asks
 * `dialect` (the insertion order column, see `seq`, and a row lock PostgreSQL needs where SQLite's
 * one writer at a time already keeps others out).
 *
 * Every integer comes back as a number (a driver narrows its BIGINTs); a value beyond 2^53 would
 * come back as a bigint, which no hub column holds.
 */
export type HubSqlValue = string | number | null;
export type HubSqlRow = Record<string, unknown>;

/** How a driver opens the hub's database. */
export interface HubOpenOptions {
  /** `hub init` only: make the database (SQLite: the file), else a missing one is refused */
  create?: boolean;
  /** told, once it committed, that an older database was migrated: the version it was at (1 or more) and the one it is at now */
  migrated?: (from: number, to: number) => void;
}

export interface HubSql {
  readonly dialect: "sqlite" | "postgres";
  /** the rows of a query */
  all<T = HubSqlRow>(sql: string, params?: readonly HubSqlValue[]): Promise<T[]>;
  /** the first row, or undefined */
  get<T = HubSqlRow>(sql: string, params?: readonly HubSqlValue[]): Promise<T | undefined>;
  /** a statement that changes rows; how many it changed */
  run(sql: string, params?: readonly HubSqlValue[]): Promise<{ changes: number }>;
  /**
   * Runs `fn` in one transaction (SQLite: BEGIN IMMEDIATE, so writers queue before they read;
   * PostgreSQL: READ COMMITTED, the statements re-check their own conditions) and commits; rolls
   * back and rethrows when it throws. Statements inside go through `tx` only.
   *
   * `durable: false` commits without waiting for the disk (SQLite: synchronous=NORMAL for this
   * commit; PostgreSQL: synchronous_commit off for this transaction), for writes a power cut
   * may undo harmlessly because the database's state before them is handled anyway: the
   * commit is atomic all the same, and on disk within moments (the next durable commit, a
   * checkpoint, PostgreSQL's WAL writer).
   */
  transaction<T>(fn: (tx: HubSql) => Promise<T>, options?: { durable?: boolean }): Promise<T>;
  close(): Promise<void>;
}

/** The column that orders a thing's messages by insertion: SQLite's rowid, PostgreSQL's identity `seq`. */
export function seqColumn(sql: Pick<HubSql, "dialect">): string {
  return sql.dialect === "sqlite" ? "rowid" : "seq";
}

/** Narrows a driver's bigint to a number where that is exact (every hub integer is). */
export function narrowRow<T>(row: Record<string, unknown>): T {
  for (const key in row) {
    const value = row[key];
    if (typeof value === "bigint" && value >= Number.MIN_SAFE_INTEGER && value <= Number.MAX_SAFE_INTEGER) row[key] = Number(value);
  }
  return row as T;
}
