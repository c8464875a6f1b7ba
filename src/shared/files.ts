/**
 * Writing files so that no reader ever sees half of one, and secrets are never widened or put
 * over something else. Every FlashLex file that another program (or a later run) reads goes
 * through here: the systemd unit, hub.yml, CRLs, export archives, the hub's keys.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, fchmodSync, fsyncSync, openSync, renameSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * Replaces `file` with `content`, atomically: a temporary file in the same directory (created
 * exclusively, with `mode` whatever the umask) is written, synced and renamed over `file`, so a
 * reader sees the old file or the whole new one (rename(2)). On any failure the temporary file
 * is removed and `file` is as it was; the error is what the file system threw (ENOSPC, EACCES).
 */
export async function writeFileAtomically(file: string, content: string | Uint8Array | AsyncIterable<Uint8Array>, mode: number): Promise<void> {
  const temp = tempPathFor(file);
  const fd = openSync(temp, "wx", mode);
  let closed = false;
  try {
    fchmodSync(fd, mode); // the umask may have narrowed it
    if (typeof content === "string" || content instanceof Uint8Array) writeAll(fd, typeof content === "string" ? Buffer.from(content) : content);
    else for await (const chunk of content) writeAll(fd, chunk);
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(temp, file);
  } catch (err) {
    if (!closed) closeSync(fd);
    removeQuietly(temp);
    throw err;
  }
}

/** `writeFileAtomically` for content already in memory, without awaiting. */
export function writeFileAtomicallySync(file: string, content: string | Uint8Array, mode: number): void {
  const temp = tempPathFor(file);
  try {
    writeFileSync(temp, content, { mode, flag: "wx" });
    chmodSync(temp, mode); // the umask may have narrowed it
    renameSync(temp, file);
  } catch (err) {
    removeQuietly(temp);
    throw err;
  }
}

/**
 * Creates `file` with `data` and `mode`, refusing (EEXIST) when something is already there: a
 * secret (a private key) is never written over another file or through a planted link.
 */
export function createFile(file: string, data: string | Uint8Array, mode: number): void {
  writeFileSync(file, data, { mode, flag: "wx" });
  chmodSync(file, mode); // the umask cannot widen the mode, but an odd file system might ignore it
}

function tempPathFor(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // never made, or already gone
  }
}
