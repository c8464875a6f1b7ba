/**
 * Whether a path names something, and what, told apart from "cannot tell". node's `existsSync` answers
 * false for every failure of stat(2), so a directory on the way that this user may not search
 * (EACCES: a data directory or hub home another user owns, a `sudo` run's leftovers) read as
 * "missing", and commands went on to say "not a hub home", "create the thing again" or to make a
 * new file beside one they could not see.
 */
import { type Stats, statSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * True when `path` names a file, directory or other entry (following symbolic links, as stat(2)
 * does); false when it does not: ENOENT (a dangling link too) or ENOTDIR (a part of the path is a
 * file). Throws the errno error of anything else, naming `path`: EACCES or EPERM (permission, 77),
 * ELOOP, ENAMETOOLONG, EIO (I/O, 74), so the caller's failure says why it cannot look; with
 * `options.cannotLook`, that answer instead, where the caller has a safe one (an optional file,
 * a hint, a serve nobody here could reach) and what follows names the real problem.
 */
export function pathExists(path: string, options?: { cannotLook: boolean }): boolean {
  try {
    return statOrNone(path) !== undefined;
  } catch (err) {
    if (options) return options.cannotLook;
    throw err;
  }
}

/**
 * What is at `path`, after links: a directory, something else (a file, a device, a FIFO), or
 * nothing ("none": as pathExists says false). Throws as pathExists does when it cannot tell.
 */
export function pathKind(path: string): "directory" | "other" | "none" {
  const stats = statOrNone(path);
  return stats === undefined ? "none" : stats.isDirectory() ? "directory" : "other";
}

/**
 * The file on the way to `path`: the nearest directory `path` lies under that exists but is not
 * a directory (a file, a device...), which is what ENOTDIR means; undefined when there is none,
 * or when a part cannot be looked at. `path` itself is not looked at. Never throws.
 */
export function fileOnTheWay(path: string): string | undefined {
  for (let up = dirname(resolve(path)); ; up = dirname(up)) {
    let kind: ReturnType<typeof pathKind>;
    try {
      kind = pathKind(up);
    } catch {
      return undefined;
    }
    if (kind === "other") return up;
    if (kind === "directory" || dirname(up) === up) return undefined;
  }
}

/**
 * Whether a file system error says the path is not there (ENOENT: a dangling link too; ENOTDIR:
 * a part of it is a file), as against "cannot tell" (EACCES, ELOOP, EIO...).
 */
export function isNotThere(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function statOrNone(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (err) {
    if (isNotThere(err)) return undefined;
    throw err;
  }
}
