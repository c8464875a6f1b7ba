import { Database } from "node-sqlite3-wasm";
import { LOCK_WAIT_MS, type OpenSqlDatabase, type SqlDatabase, type SqlValue } from "./driver.ts";
import { storageError } from "./storage-errors.ts";
import { breakStaleLock, DatabaseLockedError, recordOwner, refuseNativeHolder, releaseOwner } from "./wasm-lock.ts";

/**
 * The WebAssembly driver (node-sqlite3-wasm) for the Node build on armv7, where `bun:sqlite`
 * does not exist. It writes an ordinary SQLite file, but locks it with a `<db>.lock` directory
 * instead of POSIX locks, so it holds the file exclusively for as long as it is open: no other
 * process, not even a native SQLite, may open it meanwhile (DESIGN.md, "The message database").
 *
 * Statements are prepared per call: the library finalizes them itself, so nothing leaks when a
 * call throws, and preparing costs little next to a commit (bench/store-drivers.ts). Every
 * failure leaves as a FlashlexError naming the file (storage-errors.ts).
 */
export const openWasmSqlite: OpenSqlDatabase = (file, options = {}) => {
  const guard = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw storageError(err, file, options.damagedAdvice);
    }
  };
  const onDisk = file !== ":memory:" && file !== "";
  const lockedOpen = (): Database => {
    if (onDisk) {
      guard(() => breakStaleLock(file, options.log));
      guard(() => refuseNativeHolder(file));
    }
    const opened = guard(() => new Database(file, { readOnly: options.readonly ?? false, fileMustExist: options.create === false }));
    try {
      // Without shared memory WAL works only in exclusive locking mode (journal_mode=WAL otherwise
      // answers "delete"). Reading once takes the lock now, while we can still say who holds it.
      opened.exec("PRAGMA locking_mode = EXCLUSIVE");
      opened.exec("SELECT count(*) FROM sqlite_schema");
    } catch (err) {
      opened.close();
      if (/locked|busy/i.test((err as Error).message)) {
        throw new DatabaseLockedError(`${file} is in use by another process (${(err as Error).message})`, "try-later", true);
      }
      throw storageError(err, file, options.damagedAdvice);
    }
    return opened;
  };
  // Another process that has it open (a collect, `messages list`) is most often done in a moment:
  // wait for it as bun:sqlite's busy_timeout waits for a lock, a few ms at a time.
  const deadline = Date.now() + (options.holderWaitMs ?? LOCK_WAIT_MS);
  let db: Database;
  for (;;) {
    try {
      db = lockedOpen();
      break;
    } catch (err) {
      if (!(err instanceof DatabaseLockedError) || !err.held || Date.now() >= deadline) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10 + Math.random() * 40);
    }
  }
  try {
    if (onDisk) recordOwner(file);
  } catch (err) {
    db.close();
    throw storageError(err, file, options.damagedAdvice);
  }

  const wrapper: SqlDatabase = {
    driver: "node-sqlite3-wasm",
    holdsFileWhileOpen: onDisk,
    exec: (sql) => guard(() => db.exec(sql)),
    run: (sql, values) =>
      guard(() => {
        const result = db.run(sql, bindable(values));
        return { changes: result.changes, lastInsertRowid: Number(result.lastInsertRowid) };
      }),
    // the library already answers number for safe integers and bigint beyond, as the contract wants
    all: <T>(sql: string, values?: readonly SqlValue[]) => guard(() => db.all(sql, bindable(values)) as T[]),
    get: <T>(sql: string, values?: readonly SqlValue[]) => guard(() => (db.get(sql, bindable(values)) ?? undefined) as T | undefined),
    transaction: (fn) =>
      guard(() => {
        // nested calls become savepoints, as bun:sqlite does, so an inner failure undoes only itself
        const nested = db.inTransaction;
        db.exec(nested ? "SAVEPOINT flashlex_tx" : "BEGIN IMMEDIATE");
        try {
          const result = fn();
          db.exec(nested ? "RELEASE flashlex_tx" : "COMMIT");
          return result;
        } catch (err) {
          if (db.inTransaction) db.exec(nested ? "ROLLBACK TO flashlex_tx; RELEASE flashlex_tx" : "ROLLBACK");
          throw err;
        }
      }),
    close: () =>
      guard(() => {
        if (!db.isOpen) return;
        // the record goes first: an owner file must never name a lock directory that is gone
        if (onDisk) releaseOwner(file);
        db.close();
      }),
  };
  return wrapper;
};

function bindable(values: readonly SqlValue[] | undefined): SqlValue[] | undefined {
  if (!values) return undefined;
  for (const value of values) {
    // the library passes text to SQLite NUL-terminated: it would silently cut the string there
    if (typeof value === "string" && value.includes("\0")) {
      throw new RangeError("node-sqlite3-wasm cannot bind a string containing U+0000; store it as a Uint8Array");
    }
  }
  return values as SqlValue[];
}
