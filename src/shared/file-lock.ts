import { closeSync, constants, fchmodSync, fstatSync, openSync, type Stats, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { ConfigError, type FlashlexError } from "./errors.ts";
import { takeExclusiveFlock } from "./flock.ts";
import { toFlashlexError } from "./foreign-errors.ts";

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
      if (!stat.isFile()) throw new ConfigError(`${file}: not a regular file; ${options.what} needs the file itself`);
      refuseForeignFile(file, stat, fd);
      if (!(await takeExclusiveFlock(fd, options.what))) throw options.busy();
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    if (sameFile(stat, file)) return lockOn(fd, stat, file, options.removeOnRelease === true);
    closeSync(fd);
  }
  throw options.busy();
}

function openLockFile(file: string): number {
  try {
    // Made 0600 when missing, never followed through a link, and not blocking: a FIFO where the
    // file belongs would hang the open.
    return openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP") throw new ConfigError(`${file}: a symbolic link where a lock file belongs; remove it`);
    if (code === "EISDIR") throw new ConfigError(`${file}: a directory where a lock file belongs; remove it`);
    throw toFlashlexError(err, file);
  }
}

/**
 * A lock file another user made (in a directory they may write) is one they can hold, and one
 * with other names (a hard link to a file elsewhere, even a key) is not the lock's alone: both
 * refused. For root, a file of the directory's owner is fine (root serving a thing's folder).
 * One of ours that others may read is made 0600, so that no one opens it from now on.
 */
function refuseForeignFile(file: string, stat: Stats, fd: number): void {
  const self = process.geteuid?.() ?? stat.uid;
  if (stat.uid !== self && !(self === 0 && stat.uid === statSync(dirname(file)).uid)) {
    throw new ConfigError(`${file}: belongs to uid ${stat.uid}, not to this user (uid ${self}), and another user could hold it; remove it`);
  }
  if (stat.nlink !== 1) throw new ConfigError(`${file}: has ${stat.nlink} names (hard links), so it is not the lock's own file; remove it`);
  if (stat.uid === self && (stat.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
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
