/**
 * Writes that survive a power cut, for the files a thing cannot work without (its key and
 * certificate during enrolment and renewal). files.ts makes a replacement atomic (a reader sees
 * the old file or the new); this adds the two fsyncs that make it durable too: the new file's
 * data before the rename, and the directory after it, without which a power cut may bring back
 * the old directory entry, or an entry pointing at an empty file (ext4 with data=writeback,
 * and any file system without rename ordering).
 */
import { randomBytes } from "node:crypto";
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { removeLeftovers, temporaryNamePattern } from "./files.ts";

/** fsyncs a directory, so the entries created, renamed or removed in it are on disk. Throws what the file system throws. */
export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsyncs a file's data (and metadata) to disk. */
export function fsyncFile(file: string): void {
  const fd = openSync(file, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces `file` with `content` (`mode` whatever the umask): written to a temporary file beside
 * it, fsynced, renamed over `file`, and the directory fsynced. After it returns, a power cut
 * leaves the new content; before, the old. Throws what the file system throws (ENOSPC, EACCES),
 * leaving `file` as it was.
 */
export function writeFileDurably(file: string, content: string | Uint8Array, mode: number): void {
  const dir = dirname(file);
  removeLeftovers(dir, temporaryNamePattern(file));
  // The name files.ts gives its temporary files, so either writer clears the other's leftovers.
  const temp = join(dir, `.${basename(file)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
  const fd = openSync(temp, "wx", mode);
  try {
    fchmodSync(fd, mode); // the umask may have narrowed it
    const bytes = typeof content === "string" ? Buffer.from(content) : content;
    for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
    // The data reaches the disk before the rename does: a power cut never leaves `file` empty.
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  fsyncDirectory(dir);
}

/** Renames `from` to `to` and fsyncs their directory (the same one, for the renames FlashLex makes). */
export function renameDurably(from: string, to: string): void {
  renameSync(from, to);
  fsyncDirectory(dirname(to));
}
