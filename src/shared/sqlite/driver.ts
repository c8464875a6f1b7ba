/**
 * The seam between the stores (the thing's message database, the hub's database) and a SQLite
 * implementation: `bun:sqlite` in Bun builds, a WebAssembly SQLite in the Node (armv7) build
 * (open.ts picks it; scripts/bundle-node.ts swaps in open-wasm.ts). Only what the stores use is here,
 * and every driver passes the same contract tests (test/unit/store-contract.test.ts).
 */

import { lstatSync, readlinkSync } from "node:fs";
import { dirname } from "node:path";
import { ConfigError, FlashlexError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { danglingTarget, pathKind } from "../path-exists.ts";
import { refuseIrregularFiles } from "../regular-file.ts";

/**
 * How long, in ms, a connection waits for another process's lock (a commit, a migration, an
 * application's write) before it gives up: SQLite's busy_timeout, and the WebAssembly driver's
 * wait for a process holding the file. The thread waits the whole time, so whoever asks serve
 * something gives it at least this long (local/client.ts).
 */
export const LOCK_WAIT_MS = 5000;

/** The files SQLite keeps beside a database (WAL, its index, a rollback journal), by suffix. */
export const SIDE_FILE_SUFFIXES = ["-wal", "-shm", "-journal"] as const;

/** `file` and the side files SQLite keeps beside it. */
export function databaseFiles(file: string): string[] {
  return [file, ...SIDE_FILE_SUFFIXES.map((suffix) => file + suffix)];
}

/**
 * Throws ConfigError (78) naming the first file of the database `file` that SQLite could not use
 * as it is, before SQLite opens anything: one that is not a regular file (refuseIrregularFiles),
 * or a side file that is a symbolic link (SQLite opens those with O_NOFOLLOW and fails with
 * SQLITE_CANTOPEN naming the database, not the link). The database itself may be a link: SQLite
 * follows it, and makes the file at its target, when the target's directory is there (else 78:
 * SQLITE_CANTOPEN, 74, blamed the disk). `what` names the database ("hub database").
 */
export function refuseOddDatabaseFiles(file: string, what: string): void {
  refuseIrregularFiles([file], what);
  // SQLite makes the file a link to nothing points to, not the directory it would go in
  const target = danglingTarget(file);
  if (target !== undefined && pathKind(dirname(target)) !== "directory") {
    throw new ConfigError(
      `${file}: a symbolic link to ${target}, whose directory ${dirname(target)} does not exist: the ${what} cannot be made there; make that directory, or move the link aside`,
    );
  }
  const sides = SIDE_FILE_SUFFIXES.map((suffix) => file + suffix);
  for (const side of sides) {
    const link = linkTarget(side);
    if (link !== undefined) {
      throw new ConfigError(
        `${side}: a symbolic link (to ${link}), where the ${what}'s side file belongs; SQLite does not follow a link for a side file: move it aside`,
      );
    }
  }
  refuseIrregularFiles(sides, what);
}

/** What the symbolic link `path` points to, or undefined when `path` is no link (or cannot be looked at: the open says why). */
function linkTarget(path: string): string | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink() ? readlinkSync(path) : undefined;
  } catch {
    return undefined;
  }
}

export type SqlValue = string | number | bigint | null | Uint8Array;
export type Row = Record<string, SqlValue>;

export interface RunResult {
  changes: number;
  lastInsertRowid: number;
}

export interface SqlDatabase {
  /** runs one or more statements without parameters (schema, pragmas) */
  exec(sql: string): void;
  run(sql: string, params?: readonly SqlValue[]): RunResult;
  all<T = Row>(sql: string, params?: readonly SqlValue[]): T[];
  get<T = Row>(sql: string, params?: readonly SqlValue[]): T | undefined;
  /** runs fn inside BEGIN IMMEDIATE … COMMIT, rolling back if it throws */
  transaction<T>(fn: () => T): T;
  close(): void;
  /** the driver's name, for logs and `bootstrap` */
  readonly driver: string;
  /**
   * No other process may open the file while this connection is open (the WebAssembly driver's
   * lock directory); false where SQLite locks only while it reads or writes (bun:sqlite).
   */
  readonly holdsFileWhileOpen: boolean;
}

/**
 * `db`, telling `onDamaged` of each error that says its file is damaged (SQLITE_CORRUPT,
 * SQLITE_NOTADB: a FlashlexError of kind "damaged", storage-errors.ts) before the error goes on
 * to the caller. SQLite finds damage only on the pages a statement reads, so a writer that never
 * reads the damaged part would go on committing into the file: the one who holds it can stop.
 */
export function reportingDamage(db: SqlDatabase, onDamaged: (err: FlashlexError) => void): SqlDatabase {
  const watched =
    <A extends unknown[], R>(fn: (...args: A) => R) =>
    (...args: A): R => {
      try {
        return fn(...args);
      } catch (err) {
        if (err instanceof FlashlexError && err.kind === "damaged") onDamaged(err);
        throw err;
      }
    };
  return {
    ...db,
    exec: watched(db.exec),
    run: watched(db.run),
    all: watched(db.all) as SqlDatabase["all"],
    get: watched(db.get) as SqlDatabase["get"],
    transaction: watched(db.transaction) as SqlDatabase["transaction"],
  };
}

export interface OpenOptions {
  readonly?: boolean;
  /** make the file when it is not there (default true); false: a missing file is an error */
  create?: boolean;
  /**
   * What to tell the user to do with a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB), after the
   * reason; default DEFAULT_DAMAGED_ADVICE (storage-errors.ts), which fits a database FlashLex
   * may start afresh. A database that must not be replaced by an empty one (the hub's) says so.
   */
  damagedAdvice?: string;
  /** told of recoveries worth a line in the journal (a stale lock removed) */
  log?: Logger;
  /**
   * How long, in ms, to wait for another process that has the file open before refusing it
   * (default LOCK_WAIT_MS). Only the WebAssembly driver, which
   * lets one process at a time open a file, ever waits here.
   */
  holderWaitMs?: number;
}

export type OpenSqlDatabase = (file: string, options?: OpenOptions) => SqlDatabase;
