import { Database } from "bun:sqlite";
import type { OpenSqlDatabase, SqlDatabase, SqlValue } from "./driver.ts";

/** The `bun:sqlite` driver: native SQLite with POSIX locks, so other processes may read the file. */
export const openBunSqlite: OpenSqlDatabase = (file, options = {}) => {
  const db = options.readonly ? new Database(file, { readonly: true }) : new Database(file, { create: true, readwrite: true });
  const params = (values: readonly SqlValue[] | undefined) => (values ?? []) as any[];
  const wrapper: SqlDatabase = {
    driver: "bun:sqlite",
    exec: (sql) => void db.run(sql),
    run: (sql, values) => {
      const result = db.query(sql).run(...params(values));
      return { changes: result.changes, lastInsertRowid: Number(result.lastInsertRowid) };
    },
    all: <T>(sql: string, values?: readonly SqlValue[]) => db.query(sql).all(...params(values)) as T[],
    get: <T>(sql: string, values?: readonly SqlValue[]) => (db.query(sql).get(...params(values)) ?? undefined) as T | undefined,
    transaction: (fn) => db.transaction(fn).immediate(),
    close: () => db.close(),
  };
  return wrapper;
};
