import { chmodSync, closeSync, openSync, statSync } from "node:fs";
import { ConfigError, FlashlexError } from "../../shared/errors.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { databaseFiles, refuseOddDatabaseFiles, type SqlDatabase } from "../../shared/sqlite/driver.ts";
import { applyPragmas, migrate } from "../../shared/sqlite/migrate.ts";
import { openSqlDatabase } from "../../shared/sqlite/open.ts";
import { HUB_READABLE_FROM, SQLITE_MIGRATIONS } from "./migrations.ts";
import type { HubOpenOptions, HubSql, HubSqlValue } from "./sql.ts";

/**
 * The SQLite driver of the hub store: hub.db in the hub home, through the project's SQLite seam
 * (src/shared/sqlite: bun:sqlite, or the WebAssembly SQLite on armv7), WAL, synchronous=FULL,
 * schema version in `PRAGMA user_version` (migrate.ts).
 *
 * SQLite itself is synchronous; the HubSql seam is not. A transaction's statements are awaited
 * one by one, and another caller's statement must not slip in between them on the one
 * connection (it would join the transaction, and be rolled back with it), so every statement
 * outside a transaction waits for a running transaction to finish: one lock, in this process.
 * Other processes (CLI commands beside `hub serve`) are kept apart by SQLite's own locks, as
 * before (BEGIN IMMEDIATE waits up to busy_timeout).
 */

/**
 * What a damaged hub.db calls for. Not "move it aside": a hub without its database has no things
 * and refuses its own operator token (only the token's hash is kept, in here).
 */
export const HUB_DB_DAMAGED_ADVICE =
  'stop the hub and restore hub.db from your backup of the hub home (docs/hub.md, "Backups"); do not move it aside: the things and the operator token live in it';

/**
 * ConfigError (78) for a hub home whose hub.db is not there, or is empty (`how`): restore it, or
 * start a new hub elsewhere.
 */
export function hubDatabaseMissing(file: string, how: "missing" | "empty" = "missing"): ConfigError {
  const what = how === "missing" ? "missing" : "empty (0 bytes: a copy or restore that stopped short?)";
  return new ConfigError(
    `${file}: the hub database is ${what} (the things and the operator token live in it); restore it from your backup of the hub home (docs/hub.md, "Backups"), or run \`flashlex hub init --dir <a new directory>\` to start a new hub`,
  );
}

/**
 * Whether `file` is a 0-byte file with no write-ahead log holding its pages: SQLite would take
 * it as a new database and the migration would write an empty hub into it. (A 0-byte file beside
 * a non-empty -wal is a database not yet checkpointed, which SQLite reads from the log.)
 */
function isEmptyDatabase(file: string): boolean {
  const size = (path: string) => statSync(path, { throwIfNoEntry: false })?.size ?? 0;
  return size(file) === 0 && size(`${file}-wal`) === 0;
}

/**
 * Opens (migrating as needed) the hub database file, owner-only (0600) whatever the umask: it
 * holds every thing's messages and public keys. SQLite gives the `-wal` and `-shm` files it
 * creates the main file's mode, so the main file is made 0600 before SQLite opens it, and files
 * an older version left wider are narrowed here. Only `hub init` passes `create`: for any other
 * command a missing hub.db is lost data, not a new hub. Throws what the file system or SQLite
 * throws (a file the caller may not chmod: EPERM; a missing file without `create`: ConfigError),
 * a damaged file with HUB_DB_DAMAGED_ADVICE, a database of another kind or a newer schema: ConfigError.
 */
export function openSqliteHubSql(file: string, options: HubOpenOptions = {}): HubSql {
  const create = options.create ?? false;
  if (!create && !pathExists(file)) throw hubDatabaseMissing(file);
  ownerOnlyDatabase(file, create);
  refuseOddDatabaseFiles(file, "hub database");
  if (!create && isEmptyDatabase(file)) throw hubDatabaseMissing(file, "empty");
  const db = openSqlDatabase(file, { create, damagedAdvice: HUB_DB_DAMAGED_ADVICE });
  try {
    applyPragmas(db);
    migrate(db, SQLITE_MIGRATIONS, file, { readableFrom: HUB_READABLE_FROM, migrated: options.migrated });
    // A driver that makes its journal itself (the WebAssembly one) may not copy the mode.
    ownerOnlyDatabase(file, false);
  } catch (err) {
    db.close();
    throw err;
  }
  return sqliteHubSql(db);
}

/** The HubSql seam over an open (migrated) SQLite connection; `close` closes it. */
export function sqliteHubSql(db: SqlDatabase): HubSql {
  // One queue for the connection: a statement or a whole transaction at a time, in call order.
  let tail: Promise<unknown> = Promise.resolve();
  let closed = false;
  const exclusive = <T>(fn: () => T | Promise<T>): Promise<T> => {
    // A use after close is a stopping hub's late work (a create whose key was still being made),
    // not a bug: said so, as 503 try-later, instead of SQLite's "Cannot use a closed database".
    const result = tail.then(() => {
      if (closed) throw new FlashlexError("the hub database is closed: the hub is stopping", "unavailable", { clientSafe: true });
      return fn();
    });
    tail = result.catch(() => {});
    return result;
  };
  const params = (values?: readonly HubSqlValue[]) => values ?? [];
  // Inside a transaction the queue is already held: statements run at once.
  const tx: HubSql = {
    dialect: "sqlite",
    all: async <T>(sql: string, values?: readonly HubSqlValue[]) => db.all<T>(sql, params(values)),
    get: async <T>(sql: string, values?: readonly HubSqlValue[]) => db.get<T>(sql, params(values)),
    run: async (sql: string, values?: readonly HubSqlValue[]) => ({ changes: db.run(sql, params(values)).changes }),
    transaction: () => Promise.reject(new Error("nested transactions are not supported")),
    close: () => Promise.reject(new Error("close the store, not a transaction")),
  };
  return {
    dialect: "sqlite",
    all: (sql, values) => exclusive(() => tx.all(sql, values)),
    get: (sql, values) => exclusive(() => tx.get(sql, values)),
    run: (sql, values) => exclusive(() => tx.run(sql, values)),
    transaction: <T>(fn: (tx: HubSql) => Promise<T>, options?: { durable?: boolean }) =>
      exclusive(async () => {
        const lazy = options?.durable === false;
        if (lazy) db.exec("PRAGMA synchronous = NORMAL");
        db.exec("BEGIN IMMEDIATE");
        try {
          const result = await fn(tx);
          db.exec("COMMIT");
          return result;
        } catch (err) {
          try {
            db.exec("ROLLBACK");
          } catch {
            // SQLite rolled back already (an I/O error, a full disk): nothing left to undo
          }
          throw err;
        } finally {
          if (lazy) db.exec("PRAGMA synchronous = FULL");
        }
      }),
    // after what is queued; a second close does nothing
    close: () => {
      const result = tail.then(() => {
        if (!closed) db.close();
        closed = true;
      });
      tail = result.catch(() => {});
      return result;
    },
  };
}

/**
 * With `create`, creates `file` empty with mode 0600 if absent (an empty file is an empty SQLite
 * database); narrows it and its side files to the owner's bits (0600 at most): group and other
 * lose theirs, the owner gains none (a `chmod 400 hub.db` an operator chose stays read-only).
 */
function ownerOnlyDatabase(file: string, create: boolean): void {
  if (create) closeSync(openSync(file, "a", 0o600));
  for (const path of databaseFiles(file)) {
    let mode: number;
    try {
      mode = statSync(path).mode & 0o777;
    } catch {
      continue; // no such side file
    }
    const narrowed = mode & 0o600;
    if (mode !== narrowed) chmodSync(path, narrowed);
  }
}
