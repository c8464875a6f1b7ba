import { Database, type SQLQueryBindings } from "bun:sqlite";
import type { OpenSqlDatabase, Row, SqlDatabase, SqlValue } from "./driver.ts";
import { storageError } from "./storage-errors.ts";
import { refuseWasmHolder } from "./wasm-lock.ts";

/**
 * The `bun:sqlite` driver: native SQLite with POSIX locks, so other processes may read the file.
 * Every failure leaves as a FlashlexError naming the file (storage-errors.ts).
 */
export const openBunSqlite: OpenSqlDatabase = (file, options = {}) => {
  const guard = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw storageError(err, file, options.damagedAdvice);
    }
  };
  // the WebAssembly driver sees no POSIX locks: never open a file one of its processes holds (wasm-lock.ts)
  if (file !== ":memory:" && file !== "") guard(() => refuseWasmHolder(file));
  // safeIntegers: without it an INTEGER beyond 2^53 comes back silently rounded; with it every
  // INTEGER is a bigint, so rows are narrowed back to number where that is exact (as the wasm driver does)
  const db = guard(() =>
    options.readonly
      ? new Database(file, { readonly: true, safeIntegers: true })
      : new Database(file, { create: options.create ?? true, readwrite: true, safeIntegers: true }),
  );
  // bun:sqlite types its bindings narrower than SqlValue (no readonly arrays, no bigint in some overloads).
  const params = (values: readonly SqlValue[] | undefined) => (values ?? []) as SQLQueryBindings[];
  const wrapper: SqlDatabase = {
    driver: "bun:sqlite",
    holdsFileWhileOpen: false,
    exec: (sql) => guard(() => void db.run(sql)),
    run: (sql, values) =>
      guard(() => {
        const result = db.query(sql).run(...params(values));
        return { changes: result.changes, lastInsertRowid: Number(result.lastInsertRowid) };
      }),
    all: <T>(sql: string, values?: readonly SqlValue[]) => guard(() => (db.query(sql).all(...params(values)) as Row[]).map(narrow) as T[]),
    get: <T>(sql: string, values?: readonly SqlValue[]) =>
      guard(() => {
        const row = db.query(sql).get(...params(values)) as Row | null;
        return (row ? narrow(row) : undefined) as T | undefined;
      }),
    transaction: (fn) => guard(() => db.transaction(fn).immediate()),
    close: () => guard(() => db.close()),
  };
  return wrapper;
};

function narrow(row: Row): Row {
  for (const key in row) {
    const value = row[key];
    if (typeof value === "bigint" && value >= Number.MIN_SAFE_INTEGER && value <= Number.MAX_SAFE_INTEGER) row[key] = Number(value);
  }
  return row;
}
