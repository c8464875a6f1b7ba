import { ConfigError, FlashlexError } from "../errors.ts";
import { toFlashlexError } from "../foreign-errors.ts";
import { newerSchema } from "../newer-schema.ts";
import { LOCK_WAIT_MS, type SqlDatabase } from "./driver.ts";
import { openSqlDatabase } from "./open.ts";

/** Table name → its column names, in order. */
type Schema = Map<string, string[]>;

/**
 * The tables and their columns, in order, that all of a store's migrations leave, written out
 * beside the migrations: opening a database that is current, which every command does, then
 * needs no run of the migrations in an in-memory database (~2.5 ms of each `collect`). A unit
 * test holds each snapshot to its migrations (`schemaAfter`).
 */
export type SchemaSnapshot = Readonly<Record<string, readonly string[]>>;

/**
 * What a store's migrations leave besides their list: `current` is the schema all of them leave
 * (SchemaSnapshot); `readableFrom` is the oldest schema version whose binaries can still read and
 * write that schema (default: only this one). Lower it when the last migrations only add tables,
 * or columns that older code need not fill (nullable or with a DEFAULT), and older queries name
 * their columns: a self-update that migrated the database and was rolled back then leaves the
 * previous binary a database it can use, where it would otherwise stop with 78.
 */
export interface MigrationOptions {
  current?: SchemaSnapshot;
  readableFrom?: number;
  /**
   * Told the version a database is at (1 or more) inside the transaction that migrates it, before
   * the first step: what a rolled-back self-update must take it back to (migrateDown). A throw
   * leaves the file as it was.
   */
  beforeMigrating?: (from: number) => void;
  /** Told, once the migration committed, the version an older database was at (1 or more) and the one it is at now: for a log line. */
  migrated?: (from: number, to: number) => void;
}

/**
 * Where a database newer than its reader says which older binaries may still use it: one row,
 * the schema `version` and its `readable_from`, written by the binary that migrated it last, and
 * lowered by a binary of the same schema that says less (a database last migrated before this
 * table existed has none: only its own version may use it). Binaries that know this table check
 * it before refusing a newer schema.
 */
const COMPAT_TABLE = "schema_compat";

/**
 * Forward-only migrations keyed by `PRAGMA user_version`: migration N brings the schema from
 * version N-1 to N. Returns the schema version the database is at afterwards (above
 * `migrations.length` when a newer flashlex migrated it and said this one may use it:
 * MigrationOptions.readableFrom).
 *
 * Order matters, so that a file that is not ours is never written to:
 * 1. look first, writing nothing (in a transaction that changes nothing, so the version and the
 *    tables are read from one snapshot): a database at version 0 must be empty, and at version N it
 *    must have the tables and columns migrations 1..N make; one newer than this binary that does
 *    not name this binary's version readable, or of another application, or changed by hand is
 *    refused (ConfigError, exit 78) byte-identical;
 * 2. only then switch to WAL (that writes the header);
 * 3. apply every migration still to apply in one BEGIN IMMEDIATE transaction that reads
 *    `user_version` (and checks the schema again) inside it: of two processes opening a fresh
 *    database at once (two serves, serve and collect, messages list), one migrates while the
 *    other waits on the lock (busy_timeout), then finds the work done. One transaction, so one
 *    fsync (a step each cost one: 11 on a new hub database, each milliseconds on an SD card),
 *    and no database is ever left between versions.
 */
export function migrate(db: SqlDatabase, migrations: readonly string[], name: string, options: MigrationOptions = {}): number {
  const { current } = options;
  const latest = migrations.length;
  const readableFrom = options.readableFrom ?? latest;
  if (options.readableFrom !== undefined && (!Number.isInteger(readableFrom) || readableFrom < 1 || readableFrom > latest)) {
    throw new RangeError(`${name}: readableFrom ${readableFrom} is not a schema version from 1 to ${latest}`);
  }
  const expectedAt = (version: number): Schema =>
    current && version === latest ? new Map(Object.entries(current).map(([t, c]) => [t, [...c]])) : expectedSchemas(migrations)[version]!;
  // one snapshot for the version and the tables: read apart, another process's migration could
  // land between them and make a fresh database look like someone else's
  const found = db.transaction(() => {
    const version = userVersion(db);
    const actual = checkSchema(db, latest, expectedAt, name, version);
    return { version, saidReadableFrom: version === latest ? compatRow(db, actual, latest) : undefined };
  });
  enableWal(db, name);
  // Every open but the first finds the schema current (collect opens the database each time):
  // the snapshot above already checked it, and nothing is left to apply. A binary of the same
  // schema that knows older ones may use it (a later release lowered readableFrom) says so once.
  if (found.version === latest && found.saidReadableFrom !== undefined && found.saidReadableFrom > readableFrom) {
    db.transaction(() => {
      if (userVersion(db) === latest) db.run(`UPDATE ${COMPAT_TABLE} SET readable_from = ? WHERE version = ?`, [readableFrom, latest]);
    });
  }
  if (found.version >= latest) return found.version;
  const from = db.transaction(() => {
    const version = userVersion(db);
    checkSchema(db, latest, expectedAt, name, version);
    if (version >= latest) return undefined;
    if (version >= 1) options.beforeMigrating?.(version);
    for (let step = version; step < latest; step++) applyStep(db, migrations, step, name);
    // made anew: one changed by hand (other columns) would fail the INSERT
    db.exec(`DROP TABLE IF EXISTS ${COMPAT_TABLE}`);
    db.exec(`CREATE TABLE ${COMPAT_TABLE} (version INTEGER NOT NULL, readable_from INTEGER NOT NULL)`);
    db.exec(`PRAGMA user_version = ${latest}`);
    db.run(`INSERT INTO ${COMPAT_TABLE} (version, readable_from) VALUES (?, ?)`, [latest, readableFrom]);
    return version;
  });
  if (from !== undefined && from >= 1) options.migrated?.(from, latest);
  return userVersion(db);
}

/**
 * Takes a database back to schema version `to` with `downMigrations` (entry N-1 undoes migration
 * N, in SQL), so a binary that knows only version `to` opens it: an older flashlex compares the
 * tables and columns exactly and refuses a newer version with 78 (a self-update rolled back after
 * the new binary migrated, src/thing/update/trial-schema.ts). In one BEGIN IMMEDIATE transaction,
 * after the checks `migrate` makes: the file must be what its version makes. The schema_compat
 * row goes with the versions it spoke for. What an undone migration held goes with it (a column,
 * a table), as the older binary never had it. Returns the version the file was at; one already at
 * or below `to` is left as it is. Throws ConfigError (78) for a `to` that is no version of
 * `migrations`, a file newer than them (this binary does not know how to undo that) or not ours.
 */
export function migrateDown(db: SqlDatabase, migrations: readonly string[], downMigrations: readonly string[], name: string, to: number): number {
  const latest = migrations.length;
  if (!Number.isInteger(to) || to < 1 || to > latest)
    throw new ConfigError(`${name}: cannot go back to schema version ${to}: this flashlex knows versions 1 to ${latest}`);
  if (downMigrations.length !== latest) throw new RangeError(`${name}: ${downMigrations.length} down-migrations for ${latest} migrations`);
  return db.transaction(() => {
    const version = userVersion(db);
    if (version <= to) return version;
    if (version > latest)
      throw new ConfigError(`${name}: schema version ${version} is newer than this flashlex knows (${latest}): it cannot take it back to ${to}`);
    checkSchema(db, latest, (v) => expectedSchemas(migrations)[v]!, name, version);
    for (let v = version; v > to; v--) db.exec(downMigrations[v - 1]!);
    db.exec(`DROP TABLE IF EXISTS ${COMPAT_TABLE}`);
    db.exec(`PRAGMA user_version = ${to}`);
    return version;
  });
}

/**
 * Runs migration `step` (0-based). SQL of ours that fails on this file ("index ... already
 * exists": PRAGMA user_version lowered by hand) means the file is not what its version says: a
 * ConfigError (78) naming the step, not an internal error (70). A full disk, a lock or a damaged
 * file throws as it is.
 */
function applyStep(db: SqlDatabase, migrations: readonly string[], step: number, name: string): void {
  try {
    db.exec(migrations[step]!);
  } catch (err) {
    const known = toFlashlexError(err);
    if (known.kind !== "bug") throw err;
    const said = known.message.startsWith(`${name}: `) ? known.message.slice(name.length + 2) : known.message;
    throw new ConfigError(
      `${name}: schema step ${step + 1} failed on it (${said}): it is not what schema version ${step} makes: not a FlashLex database, or changed by hand`,
      { cause: err },
    );
  }
}

/**
 * Settings of the connection, set before anything is read: wait up to `lockWaitMs` (default
 * LOCK_WAIT_MS) for another process's lock (a commit, a migration) instead of failing at once.
 * The journal mode is set by `migrate`, once it knows the file is ours.
 */
export function applyPragmas(db: SqlDatabase, lockWaitMs = LOCK_WAIT_MS): void {
  db.exec(`PRAGMA busy_timeout = ${lockWaitMs}`);
}

/** What a WAL is cut back to when a checkpoint has emptied it, in bytes (PRAGMA journal_size_limit). */
const WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024;

/**
 * WAL lets a reader (an application, `flashlex messages`) work while `serve` writes.
 * synchronous=FULL makes every commit survive a power cut, which is what a Pi with an SD card
 * sees most; see bench/ for what it costs.
 */
function enableWal(db: SqlDatabase, name: string): void {
  const mode = whileBusy(() => {
    const current = db.get<{ journal_mode: string }>("PRAGMA journal_mode")?.journal_mode;
    return current === "wal" ? current : db.get<{ journal_mode: string }>("PRAGMA journal_mode = WAL")?.journal_mode;
  });
  if (mode !== "wal") throw new FlashlexError(`${name}: the database refused WAL mode (journal_mode=${mode})`, "io");
  db.exec("PRAGMA synchronous = FULL");
  // The WAL keeps the size of its largest burst (92 MB after 20,000 messages of 4 KiB) unless
  // cut back when a checkpoint empties it: on an SD card shared with logs that is the room the
  // next burst needs. 4 MiB is what the automatic checkpoint (1,000 pages) lets it reach anyway.
  db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
}

/**
 * Switching a fresh file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once,
 * without waiting in busy_timeout, when two connections both hold a shared lock and want it (its
 * deadlock rule). Seen with serve, collect and messages opening a new database together: retry
 * for up to the busy timeout, a few milliseconds apart.
 */
function whileBusy<T>(fn: () => T, timeoutMs = LOCK_WAIT_MS): T {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof FlashlexError) || err.kind !== "try-later" || Date.now() > deadline) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5 + Math.random() * 20);
    }
  }
}

function userVersion(db: SqlDatabase): number {
  return Number(db.get<{ user_version: number }>("PRAGMA user_version")!.user_version);
}

/**
 * The `readable_from` the COMPAT_TABLE row for `version` says: a schema version (a whole number
 * from 1), from the one row of a table with the two columns. Anything else says nothing (a table
 * changed by hand: other columns, several rows, NULL, 0 or 10.5), and the database is then what
 * its own version makes it; it was an internal error (70), or a readable one.
 */
function compatRow(db: SqlDatabase, actual: Schema, version: number): number | undefined {
  const columns = actual.get(COMPAT_TABLE);
  if (!columns?.includes("version") || !columns.includes("readable_from")) return undefined;
  const rows = db.all<{ version: unknown; readable_from: unknown }>(`SELECT version, readable_from FROM ${COMPAT_TABLE} LIMIT 2`);
  if (rows.length !== 1 || rows[0]!.version !== version) return undefined;
  const said = rows[0]!.readable_from;
  return typeof said === "number" && Number.isInteger(said) && said >= 1 && said <= version ? said : undefined;
}

/**
 * Refuses (ConfigError) a database that is not what `version` of the `latest` migrations makes
 * (`expectedAt`); returns the tables and columns it found.
 */
function checkSchema(db: SqlDatabase, latest: number, expectedAt: (version: number) => Schema, name: string, version: number): Schema {
  const actual = schemaOf(db);
  const foreign = () => {
    const tables = [...actual.keys()].slice(0, 5).join(", ");
    return new ConfigError(`${name}: not a FlashLex database (it holds other tables: ${tables}); move it aside or point flashlex at another file`);
  };
  if (version === 0) {
    if (actual.size) throw foreign();
    return actual;
  }
  // PRAGMA user_version set by hand: below 0 is no schema (it failed inside the migrations, 70)
  if (version < 0) throw new ConfigError(`${name}: schema version ${version} is no FlashLex schema: not a FlashLex database, or changed by hand`);
  if (version > latest) {
    // a later FlashLex adds tables and columns but keeps these: without them it is someone else's file
    if ([...expectedAt(latest).keys()].some((table) => !actual.has(table))) throw foreign();
    // a row written for another version (user_version set by hand) says nothing of this one
    const readableFrom = compatRow(db, actual, version);
    if (typeof readableFrom === "number" && readableFrom <= latest) {
      // Readable means widened: every table this binary knows keeps its columns, in their order,
      // with any new ones after them (ALTER TABLE ADD COLUMN appends). Anything else would fail
      // at the first statement that names a column, as an internal error, not as this 78.
      for (const [table, columns] of expectedAt(latest)) {
        const found = actual.get(table)!;
        if (found.slice(0, columns.length).join(",") !== columns.join(",")) {
          throw new ConfigError(
            `${name}: table ${table} has columns (${found.join(", ")}), not those of schema version ${latest} (${columns.join(", ")}) followed by new ones, though its schema_compat row says version ${latest} may read it: changed by hand, or a flashlex that should have said otherwise; upgrade flashlex`,
          );
        }
      }
      return actual;
    }
    throw new ConfigError(newerSchema(name, version, latest, readableFrom));
  }
  const expected = expectedAt(version);
  for (const [table, columns] of expected) {
    const found = actual.get(table);
    if (!found) {
      if (actual.size && ![...expected.keys()].some((t) => actual.has(t))) throw foreign();
      throw new ConfigError(`${name}: table ${table} is missing at schema version ${version}: not a FlashLex database, or changed by hand`);
    }
    if (found.join(",") !== columns.join(",")) {
      throw new ConfigError(
        `${name}: table ${table} has columns (${found.join(", ")}), not those of schema version ${version} (${columns.join(", ")}): not a FlashLex database, or changed by hand`,
      );
    }
  }
  return actual;
}

function schemaOf(db: SqlDatabase): Schema {
  // one statement for every table's columns: this runs on each open of the database
  const rows = db.all<{ tableName: string; column: string }>(
    `SELECT t.name AS tableName, c.name AS column FROM sqlite_schema AS t, pragma_table_info(t.name) AS c
     WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY t.name, c.cid`,
  );
  const schema: Schema = new Map();
  for (const { tableName, column } of rows) {
    const columns = schema.get(tableName);
    if (columns) columns.push(column);
    else schema.set(tableName, [column]);
  }
  return schema;
}

/** The schema `migrations` leave, as a SchemaSnapshot: what a store's written-out snapshot must equal. */
export function schemaAfter(migrations: readonly string[]): SchemaSnapshot {
  return Object.fromEntries(expectedSchemas(migrations).at(-1)!);
}

const expectedCache = new WeakMap<readonly string[], Schema[]>();

/** The schema after each version (index = version), made by running the migrations in memory. */
function expectedSchemas(migrations: readonly string[]): Schema[] {
  const cached = expectedCache.get(migrations);
  if (cached) return cached;
  const db = openSqlDatabase(":memory:");
  try {
    const schemas: Schema[] = [new Map()];
    for (const migration of migrations) {
      db.exec(migration);
      schemas.push(schemaOf(db));
    }
    expectedCache.set(migrations, schemas);
    return schemas;
  } finally {
    db.close();
  }
}
