/**
 * `hub backup`: a copy of the hub home that can be put back as it is, made while `hub serve`
 * runs. The database is copied with SQLite's `VACUUM INTO` (one read transaction: a consistent
 * snapshot whatever the hub commits meanwhile, where copying hub.db and its WAL file by file is
 * not) and checked with `PRAGMA integrity_check`; every other file of the home is copied with
 * its mode. The copy is made under a temporary name beside the target and renamed into place
 * once complete, so the target either is a whole backup or is not there.
 */
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  copyFileSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fsyncDirectory, fsyncFile } from "../../shared/durable-files.ts";
import { FlashlexError, UsageError } from "../../shared/errors.ts";
import { checkpoint, isWithin, removeLeftovers, temporaryTarget } from "../../shared/files.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { isNotThere, pathExists, pathKind, tooLongPath } from "../../shared/path-exists.ts";
import type { SqlDatabase } from "../../shared/sqlite/driver.ts";
import { openSqlDatabase } from "../../shared/sqlite/open.ts";
import { isoSeconds } from "../../shared/time.ts";
import { HUB_DB_DAMAGED_ADVICE } from "../store/sqlite-driver.ts";
import type { HubHome } from "./home.ts";

/** What `backUpHub` copied. */
export interface HubBackup {
  /** the backup directory, absolute */
  dir: string;
  /**
   * When the backup shows the hub, Unix ms: the start of the database snapshot's read (the
   * start of the file copy with PostgreSQL). What the hub stored later is not in it: after a
   * restore, things send it again with `flashlex outbox resend --since` this time.
   */
  takenAt: number;
  /** the database's copy; undefined when the hub's database is PostgreSQL (not in the backup) */
  database?: { schema: number; things: number; messages: number };
  /** files copied besides the database, and their bytes */
  files: number;
  bytes: number;
  /** what the operator should know about this backup (what is not in it, where parts go back) */
  notes: string[];
}

/** The home's entries that are not copied: the live database's files (hub.db is copied by VACUUM INTO), the running hub's socket, creates in flight, and a backup's own record (BACKUP_RECORD: a restore leaves it out too). */
const NOT_COPIED = new Set(["hub.db", "hub.db-wal", "hub.db-shm", "hub.db-journal", "hub.sock", "creating", "backup.json" /* BACKUP_RECORD */]);

/** How long the copy waits for a database another process holds in a way a reader must wait for (a WAL being recovered), ms. */
const LOCK_WAIT_MS = 30_000;

/**
 * How long one try of the copy waits for the lock, ms: SQLite's wait blocks the thread, so the
 * tries are short and a signal is heard between them (attack round 29, F6: SIGTERM was heard
 * only when the 30 s were over).
 */
const LOCK_TRY_MS = 200;

/**
 * Copies the hub home `home` into the new directory `target` (mode 0700; its parent must exist):
 * hub.db as a checked snapshot, then every other file with its mode, `dists/` and `releases/`
 * from `hub.sharedDir` when they live there, and a thing's zip only when the snapshot holds the
 * thing (a zip written by a create that committed after the snapshot would be a private key the
 * restored hub does not know). Writers' work in progress (temporary files, dot names in dists/
 * and releases/: a release being added), anything that is not a file or directory (a FIFO, a
 * socket) and a link back to a directory copied already are left out, the last two named in
 * `notes`. Checks `signal` between files.
 *
 * Throws as refuseTarget does (64, 77) before anything is made; FlashlexError `damaged` (74)
 * when hub.db or its snapshot is damaged; `full` or `read-only` (74) naming the copy when the
 * backup's disk cannot take it; try-later (75) when
 * the database stays locked for LOCK_WAIT_MS; what the file system throws (a full disk: io, 74).
 * Whatever it throws, `target` is not made and nothing it wrote is left.
 */
export async function backUpHub(home: HubHome, target: string, signal?: AbortSignal): Promise<HubBackup> {
  const dir = resolve(target);
  refuseTarget(home, dir);
  const parent = dirname(dir);
  // backups killed part way left their temporary directories (a copy of the database and the CA
  // key): the next backup into this directory removes them, whatever their target's name
  removeLeftovers(parent, PARTIAL_NAME);
  const partial = join(parent, `.${basename(dir)}.backup.${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
  mkdirSync(partial, { mode: 0o700 });
  try {
    const notes: string[] = [];
    let database: HubBackup["database"];
    let thingIds: Set<string> | undefined;
    let takenAt = Date.now();
    if (home.database.kind === "sqlite") {
      const copied = await snapshotDatabase(home.database.file, join(partial, "hub.db"), signal);
      database = copied.summary;
      thingIds = copied.thingIds;
      takenAt = copied.takenAt;
    } else {
      notes.push(`the database is PostgreSQL (${home.database.display}) and is not in this backup: back it up with pg_dump`);
    }
    const totals = { files: 0, bytes: 0 };
    const copy = { thingIds, dists: home.paths.dists, totals, signal, leftOut: [] as string[], copiedDirs: new Set<string>() };
    const shared = home.paths.shared !== home.paths.dir;
    // With hub.sharedDir the hub uses that directory's dists/ and releases/, not the home's (hub
    // init made an empty dists/ there): those are the ones copied, once.
    const notHubs = shared ? new Set([join(home.paths.dir, "dists"), join(home.paths.dir, "releases"), home.paths.shared]) : undefined;
    await copyTree(home.paths.dir, partial, { ...copy, top: true, skip: notHubs });
    if (shared) {
      for (const name of ["dists", "releases"]) {
        const from = join(home.paths.shared, name);
        if (!pathExists(from)) continue;
        await copyTree(from, join(partial, name), copy);
      }
      notes.push(`dists/ and releases/ came from hub.sharedDir (${home.paths.shared}): put them back there when you restore`);
    }
    if (copy.leftOut.length) notes.push(`left out: ${copy.leftOut.join(", ")}`);
    writeBackupRecord(partial, { takenAt: isoSeconds(takenAt), home: home.paths.dir, notes });
    await checkpoint(signal);
    fsyncDirectory(partial);
    // made meanwhile by someone else: left alone (rename would put the backup inside an empty one)
    if (entryExists(dir)) throw new UsageError(`${dir} exists now (made while the backup ran); nothing was written there`);
    renameSync(partial, dir);
    fsyncDirectory(parent);
    return { dir, takenAt, database, files: totals.files, bytes: totals.bytes, notes };
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    throw err;
  }
}

/** The file in a backup that says when it shows the hub and what its notes were, for `hub restore` (not part of the home). */
export const BACKUP_RECORD = "backup.json";

/** What BACKUP_RECORD holds. */
export interface BackupRecord {
  /** ISO 8601, seconds: HubBackup.takenAt */
  takenAt: string;
  /** the home it copied */
  home: string;
  notes: string[];
}

function writeBackupRecord(dir: string, record: BackupRecord): void {
  const file = join(dir, BACKUP_RECORD);
  writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  fsyncFile(file);
}

/** A backup's temporary directory beside its target (`.<target>.backup.<pid>-<hex>.tmp`); group 1 is the pid of the backup that made it. */
const PARTIAL_NAME = /^\..+\.backup\.(\d+)-[0-9a-f]{8}\.tmp$/;

/** What the temporary name adds to the target's (`.`, `.backup.`, a pid of up to 7 digits, `-`, 8 hex digits, `.tmp`), in bytes. */
const PARTIAL_EXTRA_BYTES = 1 + 8 + 7 + 1 + 8 + 4;

/**
 * UsageError (64) when `dir` is there already, inside what the backup copies (it would copy
 * itself), too long a path for its temporary name, or not in an existing directory;
 * FlashlexError permission (77) when that directory may be written by every user without the
 * sticky bit: another user could then swap the temporary directory for one of theirs mid-copy.
 */
function refuseTarget(home: HubHome, dir: string): void {
  const tooLong = tooLongPath(dir, PARTIAL_EXTRA_BYTES);
  if (tooLong !== undefined) throw new UsageError(`${dir}: ${tooLong}`);
  if (entryExists(dir)) throw new UsageError(`${dir} exists: give a directory that does not exist yet, which the backup makes`);
  for (const inside of new Set([home.paths.dir, home.paths.shared])) {
    if (isWithin(dir, inside)) throw new UsageError(`${dir} is inside ${inside}, which the backup copies: give a directory outside it`);
  }
  const parent = dirname(dir);
  const kind = pathKind(parent);
  if (kind !== "directory") {
    const why = kind === "none" ? "does not exist" : "is not a directory";
    throw new UsageError(`${parent} ${why}: the backup goes into a new directory inside an existing one`);
  }
  const mode = statSync(parent).mode;
  if ((mode & 0o002) !== 0 && (mode & 0o1000) === 0) {
    throw new FlashlexError(
      `${parent} may be written by every user (mode 0${(mode & 0o7777).toString(8)}): another user could replace the backup as it is made; back up into a directory only you may write in`,
      "permission",
    );
  }
}

/**
 * `VACUUM INTO` `copy` (made empty first, mode 0600: SQLite would make it with the umask's), its
 * integrity checked, fsynced. Never migrates `file`: a backup taken before an upgrade keeps the
 * schema the running hub uses (as any SQLite connection, it may checkpoint into `file` a WAL a
 * stopped hub left, which changes its bytes, not its content). Gives the copy's schema version and counts, and the
 * ids of the things it holds. Waits up to LOCK_WAIT_MS for a database another process holds, in
 * tries of LOCK_TRY_MS with `signal` checked between them (it throws the signal's reason).
 */
async function snapshotDatabase(
  file: string,
  copy: string,
  signal: AbortSignal | undefined,
): Promise<{ summary: NonNullable<HubBackup["database"]>; thingIds: Set<string>; takenAt: number }> {
  closeSync(openSync(copy, "wx", 0o600));
  let takenAt = Date.now();
  const source = openSqlDatabase(file, { create: false, damagedAdvice: HUB_DB_DAMAGED_ADVICE });
  try {
    source.exec(`PRAGMA busy_timeout = ${LOCK_TRY_MS}`);
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        takenAt = Date.now();
        source.run("VACUUM INTO ?", [copy]);
        break;
      } catch (err) {
        if (!(err instanceof FlashlexError) || err.kind !== "try-later" || Date.now() >= deadline) throw err;
        // refused at its read lock, before it wrote; emptied anyway, as VACUUM INTO wants its file
        truncateSync(copy, 0);
        await checkpoint(signal);
      }
    }
  } catch (err) {
    // VACUUM INTO reads hub.db and writes the copy
    throw onTheBackupDisk(err, file, copy, "the copy of the database");
  } finally {
    source.close();
  }
  const snapshot: SqlDatabase = openSqlDatabase(copy, { create: false });
  try {
    const problems = snapshot.all<{ integrity_check: string }>("PRAGMA integrity_check").map((r) => r.integrity_check);
    if (problems[0] !== "ok") {
      throw new FlashlexError(
        `${file}: the copy of the database failed its integrity check (${problems.slice(0, 3).join("; ")}); the hub's database may be damaged`,
        "damaged",
      );
    }
    const schema = Number(snapshot.get<{ user_version: number }>("PRAGMA user_version")!.user_version);
    const thingIds = new Set(snapshot.all<{ id: string }>("SELECT id FROM things").map((r) => r.id));
    const messages = Number(snapshot.get<{ n: number }>("SELECT COUNT(*) AS n FROM messages")!.n);
    snapshot.exec("PRAGMA journal_mode = DELETE");
    return { summary: { schema, things: thingIds.size, messages }, thingIds, takenAt };
  } finally {
    snapshot.close();
    fsyncFile(copy);
  }
}

/**
 * `err` from copying `source` to `copy`: a full or read-only disk is the backup's, not the live
 * hub's, so it is said naming the copy (node:fs and SQLite name the source: the operator read
 * "the hub's disk is full", attack round 30, F3). Anything else as it came.
 */
function onTheBackupDisk(err: unknown, source: string, copy: string, what: string): unknown {
  const known = toFlashlexError(err);
  if (known.kind !== "full" && known.kind !== "read-only") return err;
  return new FlashlexError(`${copy}: ${what} could not be written: ${known.message.replace(`${source}: `, "")}`, known.kind, { cause: err });
}

export interface CopyOptions {
  /** the things in the database's snapshot: a zip in `dists` of any other is left out (undefined: every zip) */
  thingIds: Set<string> | undefined;
  /** the hub's dists/ (home.paths.dists), whose zips `thingIds` filters */
  dists: string;
  totals: { files: number; bytes: number };
  /** what was found and not copied, each with why (a FIFO, a link back to a directory copied already) */
  leftOut: string[];
  /** the directories copied so far, as `device:inode`: a link to one (a loop) is not followed again */
  copiedDirs: Set<string>;
  signal: AbortSignal | undefined;
  /** `from` is the home itself: its database files, socket and creating/ are left out */
  top?: boolean;
  /** paths also left out, at any depth: the home's dists/ and releases/ and the shared directory when hub.sharedDir holds the hub's */
  skip?: Set<string>;
}

/** Where writers keep work in progress under a dot name (a zip being written, a release being added): never part of a backup. */
const IN_PROGRESS_DIRS = new Set(["dists", "releases"]);

/**
 * Copies the directory `from` into `to` (given `from`'s mode), file by file with their modes,
 * fsynced. Links are followed (dists/ or releases/ may be links to another disk), each directory
 * once: a link back to one copied already is left out, named.
 */
export async function copyTree(from: string, to: string, opts: CopyOptions): Promise<void> {
  const dirStats = statSync(from);
  opts.copiedDirs.add(`${dirStats.dev}:${dirStats.ino}`);
  if (!opts.top) {
    mkdirSync(to);
    chmodSync(to, dirStats.mode & 0o7777); // whatever the umask
  }
  const inDists = from === opts.dists;
  const inProgressHere = IN_PROGRESS_DIRS.has(basename(from));
  for (const name of readdirSync(from).sort()) {
    if ((opts.top && NOT_COPIED.has(name)) || opts.skip?.has(join(from, name))) continue;
    if (temporaryTarget(name) !== undefined || (inProgressHere && name.startsWith("."))) continue;
    if (inDists && opts.thingIds && name.endsWith(".zip") && !opts.thingIds.has(name.slice(0, -".zip".length))) continue;
    await checkpoint(opts.signal);
    const source = join(from, name);
    let stats: Stats;
    try {
      stats = statSync(source);
    } catch (err) {
      // removed while the backup ran (a zip of a thing deleted meanwhile)
      if (isNotThere(err)) continue;
      throw err;
    }
    if (stats.isDirectory()) {
      if (opts.copiedDirs.has(`${stats.dev}:${stats.ino}`)) opts.leftOut.push(`${source} (a link to a directory copied already)`);
      else await copyTree(source, join(to, name), { ...opts, top: false });
    } else if (stats.isFile()) {
      try {
        copyFileSync(source, join(to, name), constants.COPYFILE_EXCL);
        chmodSync(join(to, name), stats.mode & 0o7777); // copyFileSync makes it with the umask's bits
        fsyncFile(join(to, name));
      } catch (err) {
        throw onTheBackupDisk(err, source, join(to, name), "the copy");
      }
      opts.totals.files++;
      opts.totals.bytes += stats.size;
    } else opts.leftOut.push(`${source} (neither a file nor a directory)`);
  }
  fsyncDirectory(to);
}

/** True when something (a dangling link too) is at `path`. */
export function entryExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch (err) {
    if (isNotThere(err)) return false;
    throw err;
  }
}
