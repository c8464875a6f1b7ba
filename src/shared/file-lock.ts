import { closeSync, constants, fchmodSync, fstatSync, openSync, type Stats, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { ConfigError, type FlashlexError } from "./errors.ts";
import { takeExclusiveFlock } from "./flock.ts";
import { toFlashlexError } from "./foreign-errors.ts";
import { userLabel } from "./passwd.ts";
import { lstatOrUndefined } from "./path-exists.ts";

/**
 * An exclusive lock on a file, flock(2) `LOCK_EX | LOCK_NB`: the kernel's, so of two processes
 * taking it at the same instant exactly one gets it, and it is gone with its process however that
 * ends (SIGKILL, OOM kill): there is never a stale lock to judge. Only a user who can open the
 * file can take it, so a lock on a 0600 file in the thing's own directories is out of other
 * users' reach; the Linux abstract socket names used before showed in
 * /proc/net/unix, and another user could take one while serve was stopped and keep it from
 * starting. flock works across network and mount namespaces (containers sharing a volume). The
 * file is the lock's alone and never renamed over: one a program rewrites by rename (a key file
 * at its renewal) is another inode each time, and the lock on the old one no longer counts.
 *
 * Neither Bun nor Node has a flock call of its own: Bun builds call the C library's through
 * bun:ffi (flock.ts), the Node build for armv7 runs util-linux's `flock -n 3` on our descriptor
 * (flock-command.ts). The descriptor is opened close-on-exec, so no child of ours inherits (and
 * keeps) the lock.
 */
export interface FileLock {
  /** Lets the lock go (and removes the file when the lock was taken with `removeOnRelease`). */
  release(): Promise<void>;
}

export interface FileLockOptions {
  /** the error to throw when another process holds the lock (kind try-later, 75) */
  busy: () => FlashlexError;
  /** "the single-serve lock", for errors */
  what: string;
  /** Remove the file on release (a lock file in a folder that is the user's, not ours). */
  removeOnRelease?: boolean;
}

/**
 * Takes an exclusive lock on `file` for as long as the process lives or until `release()`.
 * Throws `busy()` when another process (or another lock in this one) holds it; ConfigError (78)
 * naming `file` when it is not a regular file or belongs to another user; what
 * takeExclusiveFlock throws (the Node build: `unavailable` (69) when flock(1) is missing); the
 * file system's error as a FlashlexError naming `file` otherwise.
 */
export async function holdFileLock(file: string, options: FileLockOptions): Promise<FileLock> {
  // A holder that removes the file on release may do so between our open and our lock: we would
  // then hold a file nobody else opens. Try again on the file now there (a few times at most).
  for (let attempt = 0; attempt < 4; attempt++) {
    const fd = openLockFile(file);
    let stat: Stats;
    try {
      stat = fstatSync(fd);
      // something swapped in between the look before the open and the open
      if (!stat.isFile()) throw notAFile(file, stat);
      refuseForeignFile(file, stat, fd);
      if (!(await takeExclusiveFlock(fd, file, options.what))) throw options.busy();
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    if (sameFile(stat, file)) return lockOn(fd, stat, file, options.removeOnRelease === true);
    closeSync(fd);
  }
  throw options.busy();
}

/**
 * Opens `file` (made 0600 when missing). What is already there is looked at first, without
 * opening it: something other than a file is refused (78) before the open, which a device node
 * may act on and a socket fails (ENXIO). The open itself never follows a link and never blocks
 * (a FIFO put there in between would hang it). A file another user made that this one may not
 * open is refused as foreign (78), not as a permission problem of ours.
 */
function openLockFile(file: string): number {
  const there = lstatOrUndefined(file); // missing (the open makes it), or unreadable: the open says why
  if (there && !there.isFile()) throw notAFile(file, there);
  try {
    // Open for writing, though nothing is written: on NFS, Linux makes flock(2) a byte-range lock,
    // and an exclusive one needs a descriptor open for writing (flock(2), NOTES).
    return openSync(file, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOCTTY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const now = code === "ELOOP" || code === "EISDIR" || code === "ENXIO" || code === "EACCES" ? lstatOrUndefined(file) : undefined;
    if (now && !now.isFile()) throw notAFile(file, now);
    const foreign = now && code === "EACCES" ? foreignOwner(file, now) : undefined;
    if (foreign) throw new ConfigError(foreign);
    throw toFlashlexError(err, file);
  }
}

/** ConfigError (78): something other than a file (`stat`, from lstat or fstat) is where the lock file belongs. */
function notAFile(file: string, stat: Stats): ConfigError {
  return new ConfigError(`${file}: ${kindOf(stat)} where a lock file belongs; remove it`);
}

function kindOf(stat: Stats): string {
  if (stat.isSymbolicLink()) return "a symbolic link";
  if (stat.isDirectory()) return "a directory";
  if (stat.isFIFO()) return "a FIFO";
  if (stat.isSocket()) return "a socket";
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return "a device node";
  return "something other than a file";
}

/**
 * Why a file another user owns is not a lock of ours (undefined when it is ours): another user
 * can hold it. For root, a file of the directory's owner is fine (root serving a thing's folder).
 */
function foreignOwner(file: string, stat: Stats): string | undefined {
  const self = process.geteuid?.() ?? stat.uid;
  if (stat.uid === self || (self === 0 && stat.uid === statSync(dirname(file)).uid)) return undefined;
  return `${file}: belongs to ${userLabel(stat.uid)}, not to ${userLabel(self)}, whom this command runs as, and another user could hold it; remove it`;
}

/**
 * A lock file another user made (in a directory they may write) is one they can hold, and one
 * with other names (a hard link to a file elsewhere, even a key) is not the lock's alone: both
 * refused. One of ours that others may read is made 0600, so that no one opens it from now on.
 */
function refuseForeignFile(file: string, stat: Stats, fd: number): void {
  const foreign = foreignOwner(file, stat);
  if (foreign) throw new ConfigError(foreign);
  if (stat.nlink !== 1) throw new ConfigError(`${file}: has ${stat.nlink} names (hard links), so it is not the lock's own file; remove it`);
  if ((stat.mode & 0o077) !== 0 && stat.uid === (process.geteuid?.() ?? stat.uid)) fchmodSync(fd, 0o600);
}

function sameFile(stat: Stats, path: string): boolean {
  try {
    const now = statSync(path);
    return now.dev === stat.dev && now.ino === stat.ino;
  } catch {
    return false;
  }
}

function lockOn(fd: number, stat: Stats, file: string, removeOnRelease: boolean): FileLock {
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      // removed while still held, so that no one locks the name between our unlink and close
      if (removeOnRelease && sameFile(stat, file)) {
        try {
          unlinkSync(file);
        } catch {
          // gone already, or the folder became read-only: the file is left, harmless
        }
      }
      closeSync(fd);
    },
  };
}
