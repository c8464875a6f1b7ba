/**
 * Putting a verified binary in place of the running one, so that every instant leaves a binary
 * that starts (docs/updates.md, "Power loss"):
 *
 *   1. the download is already complete and synced beside the binary (same directory, so same
 *      file system: rename(2) is atomic);
 *   2. the running binary is kept as `<binary>.previous`: a hard link to the same inode (instant,
 *      no copy; a copy when the file system refuses links), renamed into place, directory synced;
 *   3. the pending marker is written and synced (marker.ts);
 *   4. the new binary is renamed over the running one (the running process keeps its open
 *      inode), directory synced.
 * A crash before 4 leaves the old binary and a marker whose version is not the one that starts:
 * the old binary clears it and reports the update failed. After 4, the guard and the new
 * binary's watchdog decide (guard.ts, updater.ts); a new binary that says it is another version
 * than its release is known by its digest (isInstalledBinary) and rolled back.
 */
import { createHash } from "node:crypto";
import { chmodSync, closeSync, copyFileSync, linkSync, openSync, readSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { escapeRegExp, removeLeftovers } from "../../shared/files.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { fsyncDirectory } from "./fsync.ts";
import { clearPending, type PendingUpdate, writePending } from "./marker.ts";

/** `<dir>/.<binary name>.download-<pid>`: where a download goes, beside the binary. */
export function downloadPath(binary: string): string {
  return join(dirname(binary), `.${basename(binary)}.download-${process.pid}`);
}

/**
 * Removes the downloads beside `binary` that processes no longer alive left (killed or cut off
 * mid-download; a serve that stops normally removes its own). Returns their paths.
 */
export function removeDeadDownloads(binary: string): string[] {
  return removeLeftovers(dirname(binary), new RegExp(`^\\.${escapeRegExp(basename(binary))}\\.download-(\\d+)$`));
}

/** `<binary>.previous`: where step 2 keeps the running binary, for a rollback. */
export function previousPath(binary: string): string {
  return `${binary}.previous`;
}

/**
 * Steps 2 to 4 above for the verified file `download`. Throws what the file system throws
 * (EACCES: the binary's directory is not writable by the service user; EROFS; EBUSY), with the
 * running binary untouched and no update marked pending unless step 4 succeeded.
 */
export function installBinary(download: string, update: Omit<PendingUpdate, "previous">, dataDir: string): PendingUpdate {
  const { binary } = update;
  const dir = dirname(binary);
  const previous = previousPath(binary);
  const staging = join(dir, `.${basename(binary)}.previous-${process.pid}`);
  rmSync(staging, { force: true });
  try {
    linkSync(binary, staging);
  } catch {
    copyFileSync(binary, staging);
    chmodSync(staging, 0o755);
  }
  renameSync(staging, previous);
  fsyncDirectory(dir);
  const pending: PendingUpdate = { ...update, previous };
  writePending(dataDir, pending);
  try {
    chmodSync(download, 0o755);
    renameSync(download, binary);
  } catch (err) {
    // Not in place: no update is pending. Left, the marker made the next start report "the install
    // was interrupted" in place of this error (EBUSY: a binary bound read-only onto itself), and
    // the guard counted starts against it.
    clearPending(dataDir);
    throw err;
  }
  fsyncDirectory(dir);
  return pending;
}

/**
 * Puts `<binary>.previous` back over `binary` (the watchdog's rollback). The previous file is
 * renamed, not copied, so it is gone afterwards: the binary that runs is the previous one.
 * Returns false when there is no previous binary to restore.
 */
export function restorePrevious(update: PendingUpdate): boolean {
  if (!pathExists(update.previous)) return false;
  renameSync(update.previous, update.binary);
  fsyncDirectory(dirname(update.binary));
  return true;
}

/**
 * Whether `binary` is the one `update` put in place (its SHA-256 is the manifest's): false when
 * the marker has no digest (an older version wrote it) or the file cannot be read. Reads the
 * whole file (1 MiB at a time): only for a marker whose version is not the one that runs.
 */
export function isInstalledBinary(update: PendingUpdate): boolean {
  if (!update.sha256) return false;
  let fd: number | undefined;
  try {
    fd = openSync(update.binary, "r");
    const hash = createHash("sha256");
    const chunk = Buffer.allocUnsafe(1 << 20);
    for (let n = readSync(fd, chunk); n > 0; n = readSync(fd, chunk)) hash.update(chunk.subarray(0, n));
    return hash.digest("hex") === update.sha256;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
