/**
 * Whether a path names something, and what, told apart from "cannot tell". node's `existsSync` answers
 * false for every failure of stat(2), so a directory on the way that this user may not search
 * (EACCES: a data directory or hub home another user owns, a `sudo` run's leftovers) read as
 * "missing", and commands went on to say "not a hub home", "create the thing again" or to make a
 * new file beside one they could not see.
 */
import { lstatSync, readlinkSync, realpathSync, type Stats, statSync } from "node:fs";
import { dirname, resolve } from "node:path";

/** Linux's longest name of one directory entry (NAME_MAX) and longest path (PATH_MAX less its NUL), in bytes. */
const NAME_MAX_BYTES = 255;
const PATH_MAX_BYTES = 4095;

/**
 * Why `path` can never be made on Linux (a name in it over NAME_MAX_BYTES, or the whole over
 * PATH_MAX_BYTES, in UTF-8 bytes), or undefined when it can; `extraBytes`: what the caller's
 * temporary name beside it adds to its last name (and so to the path). Checked before anything is made:
 * `mkdir -p` of such a path made the directories above the long name, then failed, leaving them.
 */
export function tooLongPath(path: string, extraBytes = 0): string | undefined {
  const names = path.split("/");
  const last = names.length - 1;
  const long = names.findIndex((name, i) => Buffer.byteLength(name) + (i === last ? extraBytes : 0) > NAME_MAX_BYTES);
  if (long >= 0) {
    const name = names[long]!;
    const most = NAME_MAX_BYTES - (long === last ? extraBytes : 0);
    return `the name ${name.slice(0, 16)}... is ${Buffer.byteLength(name)} bytes, over the ${most} it may have${long === last && extraBytes ? " here (the temporary name made beside it is longer)" : ""}`;
  }
  const bytes = Buffer.byteLength(path) + extraBytes;
  return bytes > PATH_MAX_BYTES ? `the path is ${bytes - extraBytes} bytes, over the ${PATH_MAX_BYTES - extraBytes} it may have` : undefined;
}

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
 * The file on the way to `path`: the first directory `path` goes through, as written (`a/..`
 * included, as the kernel walks it; a trailing slash makes the last part one), that exists but
 * is not a directory (a file, a device...), which is what ENOTDIR means. Undefined when there is
 * none, or when a part cannot be looked at. Never throws.
 */
export function fileOnTheWay(path: string): string | undefined {
  const parts = path.split("/");
  let prefix = parts[0]!;
  for (let i = 0; i < parts.length - 1; i++) {
    if (i > 0) prefix = `${prefix}/${parts[i]}`;
    if (parts[i] === "" || parts[i] === ".") continue; // the root, a doubled slash
    let kind: ReturnType<typeof pathKind>;
    try {
      kind = pathKind(prefix);
    } catch {
      return undefined;
    }
    if (kind === "other") return prefix;
    if (kind === "none") return undefined;
  }
  return undefined;
}

/**
 * True when `path` as typed ends in `/`, `/.` or `/..` (or is `.` or `..`): it names a directory
 * whatever is there, which path.resolve() would hide (`config.yml/` resolves to `config.yml`,
 * which the kernel refuses: ENOTDIR). For flags that name a file.
 */
export function endsAsDirectory(path: string): boolean {
  return /(^|\/)(\.\.?)?$/.test(path);
}

/**
 * Why `path` cannot be a directory, or undefined when it can (it is one, or nothing is there and
 * nothing on the way is a file): "not a directory" for a file there, "X is a file, not a
 * directory" for the file X on the way. For checking a directory flag before anything is made.
 */
export function notADirectory(path: string): string | undefined {
  const tooLong = tooLongPath(path);
  if (tooLong !== undefined) return tooLong;
  let kind: ReturnType<typeof pathKind>;
  try {
    kind = pathKind(path);
  } catch {
    return undefined; // what cannot be looked at is for the caller's own open to report
  }
  if (kind === "other") return "not a directory";
  if (kind === "directory") return undefined;
  const target = danglingTarget(path);
  if (target !== undefined) return `a symbolic link to ${target}, which does not exist`;
  const inTheWay = fileOnTheWay(path);
  return inTheWay === undefined ? undefined : `${inTheWay} is a file, not a directory`;
}

/**
 * What the symbolic link at `path` points to (absolute) when that is not there (mkdir then fails
 * with EEXIST); undefined for anything else, or nothing, at `path`. Never throws.
 */
export function danglingTarget(path: string): string | undefined {
  try {
    return lstatSync(path).isSymbolicLink() && statOrNone(path) === undefined ? resolve(dirname(path), readlinkSync(path)) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What the symbolic link at `path` points to (absolute) when this user may not look there (a
 * directory on the way it may not enter: stat(2) fails with EACCES); undefined for anything else,
 * or nothing, at `path`. Never throws.
 */
export function unreachableTarget(path: string): string | undefined {
  try {
    if (!lstatSync(path).isSymbolicLink()) return undefined;
    statSync(path);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "EACCES" ? resolve(dirname(path), readlinkSync(path)) : undefined;
  }
}

/**
 * For a message about `path` that could not be opened with `err`, what is not there: ": there
 * is no such file" (ENOENT), or ": there is no directory D" when its directory D is missing too,
 * or fileOnTheWayNote's; else "".
 */
export function notThereNote(err: unknown, path: string): string {
  if ((err as NodeJS.ErrnoException | null)?.code !== "ENOENT") return fileOnTheWayNote(err, path);
  return lstatOrUndefined(dirname(path)) === undefined ? `: there is no directory ${dirname(path)}` : ": there is no such file";
}

/**
 * For a message about `path` that could not be opened with `err`: ": X is a file, not a
 * directory" when it failed with ENOTDIR because of the file X on the way, else "".
 */
export function fileOnTheWayNote(err: unknown, path: string): string {
  if ((err as NodeJS.ErrnoException | null)?.code !== "ENOTDIR") return "";
  const file = fileOnTheWay(path);
  return file === undefined ? "" : `: ${file} is a file, not a directory`;
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

/**
 * For looks that only describe (a message, a note): lstat(2), readlink(2) and realpath(3) of
 * `path`, undefined for any failure, whatever it was. Never throws.
 */
export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** readlink(2) of `path`; undefined for any failure (not a link, not there, not ours to look at). Never throws. */
export function readlinkOrUndefined(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/** realpath(3) of `path`; undefined for any failure. Never throws. */
export function realpathOrUndefined(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}
