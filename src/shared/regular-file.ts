import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from "node:fs";
import { ConfigError } from "./errors.ts";

/** The largest key, certificate or CA file read (bytes): a PEM chain is a few KB. */
export const MAX_PEM_FILE_BYTES = 1024 * 1024;

/**
 * The bytes of `path`, which must be a regular file of at most `maxBytes` bytes. A FIFO would
 * block the open (and the read) until a writer came, with the signal handlers unable to run, and
 * a device (/dev/zero) would be read until memory ran out; so the file is opened without
 * blocking and looked at through the open descriptor before it is read (no window for a swap).
 * Throws ConfigError (78) naming `path` and `what` ("private key") for a file of another kind
 * or over the size; what open(2) or read(2) throws (ENOENT, EACCES, EISDIR) otherwise.
 */
export function readRegularFile(path: string, what: string, maxBytes = MAX_PEM_FILE_BYTES): Buffer {
  const { fd, size } = openRegularFile(path, (kind) => new ConfigError(`${path}: the ${what} is not a regular file (${kind}); it must be the file itself`));
  try {
    if (size > maxBytes) throw new ConfigError(`${path}: ${size} bytes is too large for the ${what} (at most ${maxBytes})`);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * `path` opened for reading without blocking, once fstat(2) on that descriptor says it is a
 * regular file: the descriptor (the caller closes it) and the file's size in bytes. Anything
 * else (a FIFO, a socket, a device, a directory) throws `refuse(kind)`, kind being "a FIFO" and
 * so on, with the descriptor closed; what open(2) throws (ENOENT, EACCES) otherwise. For files
 * whose kind decides the error (ConfigError for the hub's own, InputError for what a command is
 * given).
 */
export function openRegularFile(path: string, refuse: (kind: string) => Error): { fd: number; size: number } {
  const fd = openUnlessSocket(path, refuse);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw refuse(kindOf(stat));
    return { fd, size: stat.size };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** open(2) of `path` for reading, without blocking; a UNIX socket, which open(2) refuses with ENXIO, is refused as a FIFO is. */
function openUnlessSocket(path: string, refuse: (kind: string) => Error): number {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENXIO" && statSync(path, { throwIfNoEntry: false })?.isSocket()) throw refuse("a socket");
    throw err;
  }
}

function kindOf(stat: ReturnType<typeof fstatSync>): string {
  if (stat.isDirectory()) return "a directory";
  if (stat.isFIFO()) return "a FIFO";
  if (stat.isSocket()) return "a socket";
  return "a device";
}

/**
 * Throws ConfigError (78) naming the first of `paths` that is there and is not a regular file (a
 * FIFO, a socket, a device, a directory): for a database and its side files, where SQLite would
 * block on a FIFO, or fail with an I/O error that blames the disk, and leave a new -wal behind.
 * `what` names the file ("message database"). What is not there, or cannot be looked at, passes.
 */
export function refuseIrregularFiles(paths: readonly string[], what: string): void {
  for (const path of paths) {
    let stat: ReturnType<typeof statSync> | undefined;
    try {
      stat = statSync(path, { throwIfNoEntry: false });
    } catch {
      continue; // the open says why it cannot look
    }
    if (stat && !stat.isFile()) throw new ConfigError(`${path}: not a regular file (${kindOf(stat)}), where the ${what} belongs; move it aside`);
  }
}
