/**
 * Writes that survive a power cut, for the files a thing cannot work without (its key and
 * certificate during enrolment and renewal). files.ts makes a replacement atomic (a reader sees
 * the old file or the new) and fsyncs the new file's data before the rename; this adds the
 * directory's fsync after it, without which a power cut may bring back
 * the old directory entry, or an entry pointing at an empty file (ext4 with data=writeback,
 * and any file system without rename ordering).
 */
import { closeSync, fsyncSync, openSync, renameSync } from "node:fs";
import { dirname } from "node:path";
import { writeFileAtomicallySync } from "./files.ts";

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
  writeFileAtomicallySync(file, content, mode);
  fsyncDirectory(dirname(file));
}

/** Renames `from` to `to` and fsyncs their directory (the same one, for the renames FlashLex makes). */
export function renameDurably(from: string, to: string): void {
  renameSync(from, to);
  fsyncDirectory(dirname(to));
}
