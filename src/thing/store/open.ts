import { closeSync, openSync, readdirSync, readSync, rmSync, type Stats, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ConfigError, FlashlexError, UsageError } from "../../shared/errors.ts";
import { temporaryTarget } from "../../shared/files.ts";
import type { Logger } from "../../shared/log.ts";
import { danglingTarget, isNotThere, pathExists, pathKind } from "../../shared/path-exists.ts";
import { databaseFiles, refuseOddDatabaseFiles } from "../../shared/sqlite/driver.ts";
import { DEFAULT_DAMAGED_ADVICE } from "../../shared/sqlite/storage-errors.ts";
import { refuseNonDirectory } from "../config-location.ts";
import type { ThingConfig } from "../settings.ts";
import { recordSchemaBeforeTrial } from "../update/trial-schema.ts";
import { MessageStore, THING_READABLE_FROM } from "./message-store.ts";
import { importPickleDb, PickleDbUnreadable } from "./pickledb-import.ts";

/**
 * Where, in the data directory, serve notes that a statement found its database damaged: SQLite
 * finds damage only on the pages a statement reads, and commits of new messages may not read
 * them, so serve stops (74) rather than acknowledge messages into the file, and the next open
 * reads every page first (openThingStore).
 */
const DAMAGE_MARK = "database-damaged";

/** What bootstrap's write probe in a data directory is a temporary of (`.bootstrap-probe.<pid>-<hex>.tmp`). */
export const WRITE_PROBE = "bootstrap-probe";

/**
 * Opens the thing's message database (serve, and the commands that use it while no serve runs),
 * taking in an old Python SDK store the first time. An old store that cannot be read does not
 * stop the agent: it is left untouched (nothing in it is lost) and every start says so, at
 * ERROR, until the owner fixes or moves it. `onDamaged` (serve's) hears of a statement that
 * finds the file damaged (serve stops); the damage mark (DAMAGE_MARK) is written then, and while
 * it is there each open checks every page first (`PRAGMA quick_check`): FlashlexError "damaged"
 * (74) if the file still is, ConfigError (78) for a directory in the mark's place, else the mark goes.
 */
export function openThingStore(config: ThingConfig, log: Logger, onDamaged?: (err: FlashlexError) => void): MessageStore {
  const mark = join(config.dataDir, DAMAGE_MARK);
  // what this open finds is thrown (74) as it is; the callback is for what serve finds after
  let opened = false;
  const store = MessageStore.open(config.paths.database, {
    // a version on trial notes what its migration changes, for a rollback to undo
    beforeMigrating: (from) => recordSchemaBeforeTrial(config.dataDir, config.paths.database, from),
    migrated: (from, to) =>
      log.warn("store.migrated", {
        database: config.paths.database,
        from,
        to,
        readableFrom: THING_READABLE_FROM,
        note: `a flashlex that knows only a schema older than ${THING_READABLE_FROM} cannot open it now; an update rolled back takes it back to the schema it found (flashlex restore-schema)`,
      }),
    onDamaged: (err) => {
      if (!opened || !onDamaged) return;
      try {
        writeFileSync(mark, `${err.message}\n`, { mode: 0o600 });
      } catch {
        // the stop below still keeps serve from acknowledging into the file
      }
      onDamaged(err);
    },
  });
  if (pathKind(mark) === "directory") {
    store.close();
    throw new ConfigError(`${mark}: a directory where serve keeps its damage mark (a file it writes and removes): remove it`);
  }
  if (pathExists(mark)) {
    let problem: string | undefined;
    try {
      problem = store.problems()[0];
    } catch (err) {
      if (!(err instanceof FlashlexError && err.kind === "damaged")) {
        store.close();
        throw err;
      }
      problem = "it cannot be read through";
    }
    if (problem !== undefined) {
      store.close();
      throw new FlashlexError(
        `${config.paths.database}: the database file is damaged (${problem}; found by PRAGMA quick_check after serve stopped for it); ${DEFAULT_DAMAGED_ADVICE}, then start serve`,
        "damaged",
      );
    }
    rmSync(mark, { force: true });
    log.warn("serve.database_checked", { file: config.paths.database, note: `${mark} said serve stopped for damage; every page reads well now` });
  }
  const legacy = legacyStoreOf(config);
  try {
    const result = importPickleDb(store, legacy, config.yaml.thing.mqtt.ingress.topic, (key, reason) =>
      log.warn("store.pickledb_entry_skipped", { file: legacy, key, reason, note: "kept in the renamed file" }),
    );
    if (result?.alreadyImported)
      log.warn("store.pickledb_already_imported", { file: legacy, renamedTo: result.renamedTo, note: "its messages were stored before: not again" });
    else if (result) log.info("store.imported_pickledb", { file: legacy, messages: result.messages, renamedTo: result.renamedTo });
  } catch (err) {
    // Only "not readable" is survivable: after a failed commit or rename, importing again
    // at the next start could store the messages twice, so those stop the start as before.
    if (!(err instanceof PickleDbUnreadable)) {
      store.close();
      throw err;
    }
    log.error("store.pickledb_unreadable", { file: legacy, error: err.message, note: "left untouched; the agent runs without it" });
  }
  opened = true;
  return store;
}

/** What serve and collect put in a data directory beside the database and its side files. */
const DATA_DIRECTORY_NAMES = new Set([
  "serve.lock",
  "config.parsed.json",
  "egress-token.json" /* egress/token-file.ts */,
  "flashlex.sock",
  "update",
  "serve.lock-key" /* serve's lock before it was a file lock */,
  DAMAGE_MARK,
  WRITE_PROBE,
]);

/**
 * For the commands that read or change what is stored (`messages`, `outbox`, the SDKs' calls but
 * collect), which never make a database: "there" to open it (also when only the old Python SDK's
 * store, `legacy`, is there: opening takes it in, as serve would); "not yet" when `file` is
 * missing (or has no bytes or no tables, as while SQLite makes it) in a directory that is a thing's (nothing
 * else in it: serve starting beside the command, which must answer as for an empty database),
 * or when the directory is not there at all (the default data/ of a folder serve never ran in).
 * Anywhere else a missing database is a wrong -d: opening it made an empty one in any directory
 * (`-d /tmp`) and, through a link to nothing, the link's target. Throws UsageError (64) naming
 * the file and `flag`; ConfigError (78) for a file SQLite could not use (refuseOddDatabaseFiles);
 * what cannot be looked at is left to the open ("there").
 */
export function databaseState(file: string, options: { flag?: string; legacy?: string } = {}): "there" | "not yet" {
  // a file where data/ belongs, or a FIFO at the -wal, is refused whether or not the database is there yet
  refuseNonDirectory(dirname(file));
  refuseOddDatabaseFiles(file, "message database");
  const advice = `serve makes it when it first runs; pass the data directory serve uses (${options.flag ?? "-d"})`;
  const target = danglingTarget(file);
  if (target !== undefined) throw new UsageError(`${file}: a symbolic link to ${target}, which does not exist; ${advice}`);
  let stats: Stats | undefined;
  try {
    stats = statSync(file);
  } catch (err) {
    if (!isNotThere(err)) return "there";
  }
  if (stats !== undefined && !(stats.isFile() && (stats.size === 0 || holdsNoTables(file)))) return "there";
  if (options.legacy !== undefined && options.legacy !== file && pathExists(options.legacy, { cannotLook: true })) return "there";
  let others: string[];
  try {
    // theirs, or one of theirs being written (serve writing its lock key as the command looks)
    const database = new Set(databaseFiles(basename(file)));
    const theirs = (name: string) => database.has(name) || DATA_DIRECTORY_NAMES.has(name);
    others = readdirSync(dirname(file)).filter((name) => !theirs(name) && !theirs(temporaryTarget(name) ?? ""));
  } catch (err) {
    // the default data/ of a folder serve never ran in: nothing arrived there yet, and nothing is made
    if (isNotThere(err)) return "not yet";
    return "there"; // the open says why it cannot
  }
  if (others.length === 0) return "not yet";
  const what =
    stats === undefined
      ? "no message database here"
      : stats.size === 0
        ? "an empty file, not a message database"
        : "a SQLite database with no tables, not a message database";
  throw new UsageError(`${file}: ${what}, and ${dirname(file)} holds other files: not a thing's data directory; ${advice}`);
}

/** "SQLite format 3" and its NUL: the first 16 bytes of every SQLite database (file format §1.3). */
const SQLITE_MAGIC = Buffer.from("SQLite format 3\0", "latin1");

/**
 * Whether `file` (a regular file) is a SQLite database whose schema is empty, with no -wal that
 * could hold what the file does not yet: what `sqlite3 x.db 'pragma journal_mode=wal'` leaves,
 * or serve's database between its making and its first commit. Read from the file format
 * (sqlite.org/fileformat2.html): the schema table's root is page 1, whose b-tree header follows
 * the 100-byte database header; a leaf table page (type 13) with no cells holds no table, index or
 * view. Opening it to ask would write the schema into it (the open migrates). Never throws: a file
 * that cannot be read is left to the open.
 */
function holdsNoTables(file: string): boolean {
  try {
    if ((statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0) > 0) return false;
    const head = Buffer.alloc(108);
    const fd = openSync(file, "r");
    try {
      if (readSync(fd, head, 0, head.length, 0) < head.length) return false;
    } finally {
      closeSync(fd);
    }
    return head.subarray(0, 16).equals(SQLITE_MAGIC) && head[100] === 13 && head.readUInt16BE(103) === 0;
  } catch {
    return false;
  }
}

/** The old Python SDK's store beside the database `config` names (openThingStore takes it in). */
export function legacyStoreOf(config: ThingConfig): string {
  return join(config.dataDir, config.yaml.app.db.subscriptionData);
}
