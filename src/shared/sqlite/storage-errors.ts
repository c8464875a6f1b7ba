import { accessSync, constants, statfsSync } from "node:fs";
import { dirname } from "node:path";
import { type ErrorKind, FlashlexError } from "../errors.ts";
import { sqliteCodeOf, toFlashlexError } from "../foreign-errors.ts";
import { whyDenied } from "../why-denied.ts";

/**
 * What to do with a damaged database file when its opener says nothing else: right for a database
 * FlashLex can start afresh (the thing's message database: what it held was delivered already or
 * is resent by the broker). The hub's database gives its own advice (src/hub/store/hub-store.ts).
 */
export const DEFAULT_DAMAGED_ADVICE = "move it aside (flashlex starts a new one) or restore a backup";

/**
 * Turns what a SQLite driver threw into a FlashlexError naming the database file, with its kind
 * (src/shared/errors.ts); a damaged file's message ends with `damagedAdvice` (default
 * DEFAULT_DAMAGED_ADVICE). Errors that are not SQLite's or the file system's (a RangeError from binding,
 * a FlashlexError from inside a transaction) pass through unchanged.
 *
 * SQLite tells only part of the story: it reports a read-only mount or a denied directory as
 * SQLITE_CANTOPEN or SQLITE_READONLY, and the WebAssembly driver reports a full disk as "disk I/O
 * error". When the kind is that vague, the file system is asked what it is: full, read-only,
 * or not ours to write.
 */
export function storageError(err: unknown, file: string, damagedAdvice = DEFAULT_DAMAGED_ADVICE): unknown {
  if (err instanceof FlashlexError) return err;
  const code = err !== null && typeof err === "object" ? sqliteCodeOf(err) : undefined;
  const errno = (err as NodeJS.ErrnoException | null)?.code;
  if (!code && typeof errno !== "string") return err;
  const error = toFlashlexError(err, file);
  if (error.kind === "damaged") return new FlashlexError(`${error.message}; ${damagedAdvice}`, "damaged", { cause: err });
  if (error.kind !== "io" && error.kind !== "read-only") return error;
  const found = probeFileSystem(file);
  if (!found || found.kind === error.kind) return error;
  return new FlashlexError(`${file}: ${found.reason}${code ? ` (${code})` : ""}`, found.kind, { cause: err });
}

/**
 * What stands in the way of writing `file`, if the file system can tell; undefined otherwise.
 * Read-only comes first: a full SD card the kernel remounted read-only is not helped by freeing
 * space (attack round 27, F6: it was called full).
 */
export function probeFileSystem(file: string): { kind: ErrorKind; reason: string } | undefined {
  const dir = dirname(file);
  let denied: { kind: ErrorKind; reason: string } | undefined;
  // The directory first: one this user may not search hides whether the file is there at all.
  for (const path of [dir, file]) {
    try {
      accessSync(path, constants.R_OK | constants.W_OK);
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException).code;
      if (errno === "EROFS") return { kind: "read-only", reason: `cannot write: ${path} is on a read-only file system` };
      if (errno === "EACCES" || errno === "EPERM") {
        const why = whyDenied(file);
        denied = { kind: "permission", reason: `cannot write: permission denied on ${path}${why ? `: ${why}` : ""}` };
        break;
      }
      if (errno === "ENOENT" && path === dir) {
        denied = { kind: "io", reason: `cannot open: ${path} does not exist` };
        break;
      }
    }
  }
  try {
    const fs = statfsSync(dir);
    if (fs.bavail === 0 || fs.bfree === 0) return { kind: "full", reason: "cannot write: the file system is full" };
  } catch {
    // no such directory: access() above said so
  }
  return denied;
}
