import { mkdirSync, realpathSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { FlashlexError } from "../../shared/errors.ts";
import { type FileLock, holdFileLock } from "../../shared/file-lock.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { refuseNonDirectory } from "../config-location.ts";

/**
 * One `serve` per data directory: a flock(2) lock (shared/file-lock.ts) on `DATA/serve.lock`
 * (0600, in the 0700 data directory), so only the thing's own user can hold it, and the same
 * directory reached through a bind mount or another path is the same file.
 */
export const LOCK_FILE = "serve.lock";

/** What serve's lock was before it was a file lock: a key naming an abstract socket, removed once seen. */
const OLD_LOCK_KEY_FILE = "serve.lock-key";

/**
 * Takes the lock for `dataDir` (created 0700 if missing) for as long as the process lives or
 * until `release()`. Throws FlashlexError `try-later` (exit 75) when another serve holds it,
 * ConfigError (78) when something else is where the directory belongs (refuseNonDirectory) or
 * the lock file is another user's, or a file-system kind (74/77) naming the path.
 */
export async function acquireServeLock(dataDir: string): Promise<FileLock> {
  refuseNonDirectory(dataDir);
  const lock = await holdFileLock(join(makeDirectory(dataDir), LOCK_FILE), {
    busy: () =>
      new FlashlexError(
        `${dataDir}: another flashlex serve is running for this data directory (or a collect --via mqtt is publishing as the thing)`,
        "try-later",
      ),
    what: `${dataDir}: the single-serve lock`,
  });
  try {
    unlinkSync(join(dataDir, OLD_LOCK_KEY_FILE));
  } catch {
    // none: a directory made since
  }
  return lock;
}

/**
 * Takes the lock on the thing's MQTT session on this machine, held beside the data directory's by
 * every process that connects as the thing (serve, collect --via mqtt, bootstrap's connect
 * check): a second connection with the thing's client id takes its session over at the broker
 * (MQTT 3.1.1 §3.1.4), and one with another data directory, which that directory's lock does not
 * see, acknowledged messages on their way to serve and stored them elsewhere, or nowhere. The
 * lock is a file beside the private key, `<key file>.lock` (0600, SESSION_LOCK_SUFFIX; beside the
 * file a link leads to, when the key is a symbolic link): the same for every data directory, every
 * spelling of the broker's address and every link to the key, and, unlike the key file
 * itself, never renamed over: a renewal, a restore or an editor writing the key anew gives it
 * another inode, which let a second session run beside the first. A copy of the key in another
 * folder is a second device to this lock, as to the broker (serve logs the takeovers).
 * Throws `busy()` when another process holds it; ConfigError (78) or a file-system kind (77 for a
 * keys directory this user may not write, which renewal needs too) naming the lock file.
 */
export function acquireSessionLock(keyFile: string, busy: (lockFile: string) => FlashlexError): Promise<FileLock> {
  const lockFile = sessionLockFile(keyFile);
  return holdFileLock(lockFile, { busy: () => busy(lockFile), what: "the thing's MQTT session lock" });
}

/** The session lock's file is the private key file's name with this after it. */
const SESSION_LOCK_SUFFIX = ".lock";

/**
 * The session lock's file for the private key `keyFile`: beside the key file itself, symbolic
 * links followed. A keys folder of links to another folder's files is the same device, and must
 * find the same lock (it found one of its own, and two serves took the session from each other).
 * A path that cannot be resolved (no key file yet: loading the identity says so next) is taken
 * as given.
 */
export function sessionLockFile(keyFile: string): string {
  let itself = keyFile;
  try {
    itself = realpathSync(keyFile);
  } catch {
    // not there (yet)
  }
  return `${itself}${SESSION_LOCK_SUFFIX}`;
}

function makeDirectory(dir: string): string {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  } catch (err) {
    throw toFlashlexError(err, dir);
  }
}
