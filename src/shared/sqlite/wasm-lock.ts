import {
  closeSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { type ErrorKind, FlashlexError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { pathExists } from "../path-exists.ts";

/**
 * node-sqlite3-wasm locks a database by creating the directory `<db>.lock` (no POSIX locks, so
 * the kernel never releases it): a SIGKILL, an OOM kill or a power cut leaves it behind and every
 * later open fails with "database is locked". Next to it we keep `<db>.lock-owner`, naming the
 * process that holds the lock by pid, kernel start time and boot id, so a later open can tell a
 * dead holder (break the lock) from a live one (refuse, never break).
 *
 * Ordering keeps the owner file honest: it is written only after the library holds the lock
 * directory and removed before the directory is; a stale record is claimed by renaming it
 * (atomic, so of two processes breaking the same lock only one proceeds).
 */
export interface LockOwner {
  pid: number;
  /** field 22 of /proc/<pid>/stat: tells a reused pid from the process that wrote the record */
  start: string | null;
  /** /proc/sys/kernel/random/boot_id: after a reboot every recorded holder is gone */
  boot: string | null;
}

/**
 * The database is in use by another process, or being opened by one: kind `try-later` (75). Kind
 * `io` (74) for a lock no process can be named for, or a stale lock that cannot be removed.
 */
export class DatabaseLockedError extends FlashlexError {
  /**
   * @param held another process has the file open, or is opening it: it may be done in a moment,
   *   so the opener waits (OpenOptions.holderWaitMs) before it gives up
   */
  constructor(
    message: string,
    kind: ErrorKind = "try-later",
    readonly held = false,
  ) {
    super(message, kind);
    this.name = "DatabaseLockedError";
  }
}

export const lockDirOf = (file: string) => `${file}.lock`;
export const ownerFileOf = (file: string) => `${file}.lock-owner`;

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function startTimeOf(pid: number): string | null {
  // Through task/<pid>/ (the main thread: same values): qemu-user answers /proc/self/stat and
  // /proc/<own pid>/stat for the emulated process itself with a start time of its own making,
  // often one tick off what every other process reads there.
  const stat = readText(`/proc/${pid}/task/${pid}/stat`);
  // the command name (field 2) may hold spaces and parentheses: count fields after the last ")"
  return stat?.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
}

/** The record for `pid`: its start time (clock ticks since boot) and this boot's id, each null where /proc does not say. */
export function ownerOf(pid: number): LockOwner {
  return { pid, start: startTimeOf(pid), boot: readText("/proc/sys/kernel/random/boot_id")?.trim() ?? null };
}

function parseOwner(text: string | null): LockOwner | null {
  try {
    const o = JSON.parse(text ?? "");
    return Number.isSafeInteger(o?.pid) && o.pid > 0 ? { pid: o.pid, start: o.start ?? null, boot: o.boot ?? null } : null;
  } catch {
    return null;
  }
}

export const readOwner = (file: string) => parseOwner(readText(ownerFileOf(file)));

const sameOwner = (a: LockOwner | null, b: LockOwner) => a !== null && a.pid === b.pid && a.start === b.start && a.boot === b.boot;

/**
 * False only when `owner` is surely gone: another boot, no such pid (ESRCH), or the pid's start
 * time off by more than START_SLACK_TICKS (a reused pid). Another user's pid (EPERM) is alive.
 */
export function isAlive(owner: LockOwner): boolean {
  const now = ownerOf(owner.pid);
  if (owner.boot && now.boot && owner.boot !== now.boot) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    // EPERM: the pid exists but belongs to another user, which still holds the lock
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  return !(owner.start && now.start && Math.abs(Number(owner.start) - Number(now.start)) > START_SLACK_TICKS);
}

/**
 * How far two readings of one process's start time may differ (clock ticks, 100 a second), so an
 * emulator that approximates it cannot make a live holder look dead. The price is the safe one:
 * a pid reused within 5 s of the dead holder's start reads as alive, and the open is refused.
 */
const START_SLACK_TICKS = 500;

/**
 * Who holds `<db>.lock`: null when nobody does. A live holder lacks its record only for moments
 * (taking the lock, closing), so it is given those; a directory still without one is refused
 * (74) as an unknown process's.
 */
function recordedHolder(file: string, log?: Logger): LockOwner | null {
  const lockDir = lockDirOf(file);
  if (!pathExists(lockDir)) return null;
  let owner = readOwner(file);
  for (let waited = 0; !owner && waited < 500; waited += 50) {
    sleepSync(50);
    if (!pathExists(lockDir)) return null;
    owner = readOwner(file);
  }
  if (!owner) {
    // A holder killed between taking the lock and recording itself (or between releasing its
    // record and the directory) leaves a lock nobody can name. When no process has the database
    // open, nobody holds it: removing it is safe, and leaving it would stop serve (74) until
    // someone removed it by hand. When that cannot be known, it stays and is refused.
    if (openedByNobody(file)) {
      try {
        rmdirSync(lockDir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw unknownHolder(file);
      }
      log?.warn("store.stale_lock_removed", { file, note: "a lock without an owner record, and no process had the database open" });
      return null;
    }
    throw unknownHolder(file);
  }
  return owner;
}

function unknownHolder(file: string): DatabaseLockedError {
  return new DatabaseLockedError(
    `${file} is locked (${lockDirOf(file)} exists) by an unknown process; if no flashlex process is using it, remove that directory`,
    "io",
  );
}

/**
 * True only when no process has the database (or its -wal or -journal) open, from every
 * process's /proc/PID/fd (proc(5)). False when any has, and when that cannot be known: no
 * procfs, or a process whose descriptors this user may not read (another user's could hold it).
 */
function openedByNobody(file: string): boolean {
  let real: string;
  try {
    real = join(realpathSync(dirname(file)), basename(file)); // as /proc names it: absolute, links resolved
  } catch {
    return false;
  }
  const paths = new Set([real, `${real}-wal`, `${real}-journal`]);
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return false;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // it exited meanwhile
      return false;
    }
    for (const fd of fds) {
      try {
        if (paths.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) return false;
      } catch {
        // closed meanwhile
      }
    }
  }
  return true;
}

/**
 * Called before opening: refuses a lock held by a live process (or one we cannot attribute), and
 * removes one left by a dead process.
 */
export function breakStaleLock(file: string, log?: Logger): void {
  const lockDir = lockDirOf(file);
  const owner = recordedHolder(file, log);
  if (!owner) return;
  if (isAlive(owner)) {
    if (owner.pid === process.pid) throw new DatabaseLockedError(`${file} is in use by this process (opened twice)`);
    throw new DatabaseLockedError(
      `${file} is in use by process ${owner.pid} (this build opens it one process at a time); try again when it is done, or stop it if it is a serve`,
      "try-later",
      true,
    );
  }

  const claimed = `${ownerFileOf(file)}.${process.pid}.stale`;
  try {
    renameSync(ownerFileOf(file), claimed);
  } catch {
    throw new DatabaseLockedError(`${file} is being opened by another process; try again`, "try-later", true);
  }
  if (!sameOwner(parseOwner(readText(claimed)), owner)) {
    // another opener replaced the record after we read it: that holder is live, give it back
    renameSync(claimed, ownerFileOf(file));
    throw new DatabaseLockedError(`${file} is being opened by another process; try again`, "try-later", true);
  }
  try {
    rmdirSync(lockDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      renameSync(claimed, ownerFileOf(file));
      throw new DatabaseLockedError(`${file}: cannot remove the stale lock ${lockDir}: ${(err as Error).message}`, "io");
    }
  }
  unlinkSync(claimed);
  log?.warn("store.stale_lock_removed", { file, pid: owner.pid });
}

/**
 * The two SQLites never share a file: the WebAssembly driver takes no POSIX locks and sees none,
 * so while one of each has the file open, each writes blind to the other (measured: rows a
 * bun:sqlite writer committed meanwhile were gone once the wasm holder wrote and closed). That
 * happens where a native `flashlex` (x64, arm64) meets the WebAssembly one: an app using
 * flashlex-sdk under Node with serve stopped. Each side checks for the other before it opens;
 * two opens within the same few milliseconds are not told apart.
 *
 * For a native SQLite (bun:sqlite) about to open `file`: refuses (75) while a live process holds
 * it through the WebAssembly driver. A dead holder's lock is left to the next wasm opener to break.
 */
export function refuseWasmHolder(file: string): void {
  const owner = recordedHolder(file);
  if (!owner || !isAlive(owner)) return;
  const who = owner.pid === process.pid ? "this process" : `process ${owner.pid}`;
  throw new DatabaseLockedError(
    `${file} is in use by ${who} through the WebAssembly SQLite (an app using flashlex-sdk under Node, or flashlex on armv7), which cannot share it; try again when it has closed the file`,
  );
}

/**
 * For the WebAssembly driver about to open `file`: refuses (75) while a process has it open with a
 * native SQLite (flashlex serve or messages on x64/arm64, an app's own sqlite3). In WAL mode a
 * native connection holds POSIX locks on the file and its `-shm` for as long as it is open
 * (SQLite's unix VFS: a shared lock on the wal-index's DMS byte, https://sqlite.org/walformat.html),
 * and Linux lists every such lock with its pid and file in /proc/locks (proc(5)). Without procfs
 * there is nothing to learn and nothing is refused.
 */
export function refuseNativeHolder(file: string): void {
  let locks: string;
  try {
    locks = readFileSync("/proc/locks", "utf8");
  } catch {
    return;
  }
  const ours = new Set<string>();
  for (const path of [file, `${file}-shm`]) {
    try {
      const { dev, ino } = statSync(path, { bigint: true });
      // glibc's major()/minor() (sys/sysmacros.h): /proc/locks names a file MAJOR:MINOR:INODE, in hex, hex, decimal
      const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
      const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
      ours.add(`${major}:${minor}:${ino}`);
    } catch {
      // absent: nobody has it open
    }
  }
  if (ours.size === 0) return;
  for (const line of locks.split("\n")) {
    // "1: POSIX  ADVISORY  READ 29708 fe:00:2244639 128 128" (a waiter's line has "->" after the number)
    const fields = line.trim().split(/\s+/);
    const at = fields.findIndex((f) => /^[0-9a-f]+:[0-9a-f]+:\d+$/.test(f));
    if (at < 1) continue;
    const [major, minor, ino] = fields[at]!.split(":");
    if (!ours.has(`${BigInt(`0x${major}`)}:${BigInt(`0x${minor}`)}:${ino}`)) continue;
    const pid = Number(fields[at - 1]);
    const who = pid === process.pid ? "this process" : pid > 0 ? `process ${pid}` : "another process";
    throw new DatabaseLockedError(
      `${file} is open in ${who} with a native SQLite (flashlex serve, flashlex messages, or another program), which the WebAssembly SQLite cannot share; try again when it has closed the file`,
    );
  }
}

/** Called once the library holds the lock directory. Synced: a power cut must not leave the directory without its owner. */
export function recordOwner(file: string): void {
  const tmp = `${ownerFileOf(file)}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, `${JSON.stringify(ownerOf(process.pid))}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, ownerFileOf(file));
  syncDir(dirname(file));
}

/** Called before the library removes the lock directory. */
export function releaseOwner(file: string): void {
  if (!sameOwner(readOwner(file), ownerOf(process.pid))) return;
  try {
    unlinkSync(ownerFileOf(file));
  } catch {
    // already gone: nothing to release
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // some filesystems refuse fsync on a directory; the record is still written
  }
}
