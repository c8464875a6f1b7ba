/**
 * `hub restore`: a backup made by `hub backup` put back as the hub home, while no hub serves it.
 * The backup is checked before anything changes (hub.yml there, hub.db whole by `PRAGMA
 * integrity_check`), copied beside the home under a temporary name, and renamed into place; the
 * home it replaces is renamed aside, never removed, so a restore of the wrong backup is undone by
 * renaming back. Either the home is the backup's or it is as it was.
 */
import { randomBytes } from "node:crypto";
import { accessSync, chmodSync, constants, copyFileSync, lchownSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fsyncDirectory, fsyncFile } from "../../shared/durable-files.ts";
import { FlashlexError, UsageError } from "../../shared/errors.ts";
import { isWithin, removeLeftovers } from "../../shared/files.ts";
import { isNotThere, pathKind } from "../../shared/path-exists.ts";
import { openSqlDatabase } from "../../shared/sqlite/open.ts";
import { isoSeconds } from "../../shared/time.ts";
import { socketAnswers } from "../http/bun-server.ts";
import { BACKUP_RECORD, type BackupRecord, copyTree, entryExists } from "./backup.ts";

/** What `restoreHub` put back. */
export interface HubRestore {
  /** the hub home, absolute */
  home: string;
  /** the backup it came from, absolute */
  from: string;
  /** where the home that was there went; undefined when there was none */
  aside?: string;
  /** when the backup shows the hub (ISO 8601, its BACKUP_RECORD); undefined for a backup without one (made by hand) */
  takenAt?: string;
  database: { schema: number; things: number; messages: number };
  /** files copied besides the database, and their bytes */
  files: number;
  bytes: number;
  /** the backup's own notes (what is not in it, where parts go back) */
  notes: string[];
}

/** A restore's temporary directory beside the home (`.<home>.restore.<pid>-<hex>.tmp`); group 1 is its maker's pid. */
const PARTIAL_NAME = /^\..+\.restore\.(\d+)-[0-9a-f]{8}\.tmp$/;

/**
 * Puts the backup directory `backup` back as the hub home `homeDir`: checks it, copies it
 * (hub.db mode 0600, every other file with its mode, fsynced) beside the home, renames the home
 * aside (`<home>.before-restore-<time>`) and the copy into its place. Run by root, the restored
 * files get the owner of the home they replace (else of the backup), as the hub's user runs it.
 * Checks `signal` between files.
 *
 * Throws, with the home as it was: UsageError (64) when `backup` is not a directory holding
 * hub.yml and hub.db, or the two lie one inside the other; FlashlexError try-later (75) when a
 * hub serves the home; damaged (74) when the backup's hub.db fails its integrity check; what the
 * file system throws (a full disk: 74).
 */
export async function restoreHub(backup: string, homeDir: string, signal?: AbortSignal): Promise<HubRestore> {
  const from = resolve(backup);
  const home = resolve(homeDir);
  refuseBackup(from, home);
  if (await socketAnswers(join(home, "hub.sock"))) {
    throw new FlashlexError(`a \`flashlex hub serve\` runs with ${home}: stop it, then restore (nothing was changed)`, "try-later");
  }
  refuseUnwritableParent(home);
  const database = checkedDatabase(join(from, "hub.db"));
  const record = readRecord(from);
  const parent = dirname(home);
  removeLeftovers(parent, PARTIAL_NAME);
  const partial = join(parent, `.${basename(home)}.restore.${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
  mkdirSync(partial, { mode: 0o700 });
  let aside: string | undefined;
  try {
    copyFileSync(join(from, "hub.db"), join(partial, "hub.db"), constants.COPYFILE_EXCL);
    chmodSync(join(partial, "hub.db"), 0o600);
    fsyncFile(join(partial, "hub.db"));
    const totals = { files: 0, bytes: 0 };
    const leftOut: string[] = [];
    await copyTree(from, partial, { thingIds: undefined, dists: "", totals, signal, leftOut, copiedDirs: new Set(), top: true });
    const replacing = entryExists(home);
    if (process.getuid?.() === 0) giveOwner(partial, statSync(replacing ? home : from));
    if (replacing) {
      aside = asideName(home);
      renameSync(home, aside);
    }
    try {
      renameSync(partial, home);
    } catch (err) {
      if (aside) renameSync(aside, home);
      throw err;
    }
    fsyncDirectory(parent);
    const notes = [...(record?.notes ?? []), ...(leftOut.length ? [`left out: ${leftOut.join(", ")}`] : [])];
    return { home, from, aside, takenAt: record?.takenAt, database, files: totals.files, bytes: totals.bytes, notes };
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    throw err;
  }
}

/** UsageError (64) unless `from` is a directory holding hub.yml and hub.db, apart from `home`. */
function refuseBackup(from: string, home: string): void {
  if (pathKind(from) !== "directory") throw new UsageError(`${from} is not a directory: give the directory \`flashlex hub backup\` made`);
  if (isWithin(home, from) || isWithin(from, home))
    throw new UsageError(`${from} and the hub home ${home} lie one inside the other: give a backup outside the home`);
  for (const name of ["hub.yml", "hub.db"]) {
    if (!isFile(join(from, name))) {
      const more = name === "hub.db" ? " (a backup of a hub on PostgreSQL holds no database: restore that with pg_restore and copy the files by hand)" : "";
      throw new UsageError(`${from} holds no ${name}: not a backup of a hub home${more}`);
    }
  }
  // A copy of a live (or killed) hub's home: what its hub.db-wal holds is not in hub.db, and a
  // restore copies hub.db alone (new-user pass 30, F1: "26 messages" said, 15 restored).
  for (const side of ["hub.db-wal", "hub.db-journal"]) {
    if (entryExists(join(from, side))) {
      throw new UsageError(
        `${from} holds ${side}: a copy of a running or killed hub's home, not a backup (hub.db alone would lose what ${side} holds); make one from it with \`flashlex hub backup --dir ${from} NEW\` and restore NEW`,
      );
    }
  }
}

/**
 * The restored home is made beside the home and renamed into place, the old one renamed aside:
 * both need write access to the home's parent (the systemd layout's /var/lib is root's: new-user
 * pass 30, F2). Refused up front, with the way by hand: UsageError (64) when the parent is not
 * there, FlashlexError permission (77) when this user may not write in it.
 */
function refuseUnwritableParent(home: string): void {
  const parent = dirname(home);
  if (pathKind(parent) !== "directory") throw new UsageError(`${parent} is not a directory: the restored home ${home} goes into an existing one`);
  try {
    accessSync(parent, constants.W_OK);
  } catch {
    throw new FlashlexError(
      `${parent}: this user may not write in it, and hub restore makes the restored home beside ${home} and renames it into place; as root, by hand: stop hub serve, \`mv ${home} ${home}.before-restore\`, \`cp -a BACKUP ${home}\`, \`rm ${home}/backup.json\`, \`chown -R\` it to the hub's user (docs/hub.md, Backups); nothing was changed`,
      "permission",
    );
  }
}

/** Whether a regular file is at `path`; throws what stat(2) throws but for nothing there (EACCES: a backup this user may not read). */
function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch (err) {
    if (isNotThere(err)) return false;
    throw err;
  }
}

/** The backup's hub.db summed up, opened read-only; FlashlexError damaged (74) when it fails `PRAGMA integrity_check`. */
function checkedDatabase(file: string): HubRestore["database"] {
  const db = openSqlDatabase(file, { create: false, readonly: true, damagedAdvice: "restore another backup (nothing was changed)" });
  try {
    const problems = db.all<{ integrity_check: string }>("PRAGMA integrity_check").map((r) => r.integrity_check);
    if (problems[0] !== "ok") {
      throw new FlashlexError(
        `${file}: the backup's database failed its integrity check (${problems.slice(0, 3).join("; ")}); restore another backup (nothing was changed)`,
        "damaged",
      );
    }
    const schema = Number(db.get<{ user_version: number }>("PRAGMA user_version")!.user_version);
    const count = (table: string) => Number(db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`)!.n);
    return { schema, things: count("things"), messages: count("messages") };
  } finally {
    db.close();
  }
}

/** The backup's record (BACKUP_RECORD), or undefined for a backup without a readable one. */
function readRecord(from: string): BackupRecord | undefined {
  try {
    const record = JSON.parse(readFileSync(join(from, BACKUP_RECORD), "utf8")) as Partial<BackupRecord>;
    if (typeof record.takenAt !== "string") return undefined;
    return { takenAt: record.takenAt, home: String(record.home ?? ""), notes: Array.isArray(record.notes) ? record.notes.map(String) : [] };
  } catch {
    return undefined;
  }
}

/** `<home>.before-restore-<UTC time>`, with `-2`, `-3`... when a restore within the same second made one. */
function asideName(home: string): string {
  const base = `${home}.before-restore-${isoSeconds(Date.now()).replaceAll(":", "")}`;
  for (let n = 1; ; n++) {
    const name = n === 1 ? base : `${base}-${n}`;
    if (!entryExists(name)) return name;
  }
}

/** Gives `dir` and everything in it the owner and group of `like` (root restoring a home its hub's user runs). */
function giveOwner(dir: string, like: { uid: number; gid: number }): void {
  lchownSync(dir, like.uid, like.gid);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) giveOwner(path, like);
    else lchownSync(path, like.uid, like.gid);
  }
}
