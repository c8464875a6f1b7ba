import { closeSync, fsyncSync, openSync } from "node:fs";

/**
 * fsync(2) on a directory, so a rename in it survives a power cut (the rename itself is atomic,
 * its durability needs the directory synced). Best effort: a file system that refuses to sync a
 * directory (some FUSE mounts answer EINVAL) is not a reason to fail an update.
 */
export function fsyncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // see above
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
