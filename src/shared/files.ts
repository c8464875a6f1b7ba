/**
 * Writing files so that no reader ever sees half of one, and secrets are never widened or put
 * over something else. Every FlashLex file that another program (or a later run) reads goes
 * through here: the systemd unit, hub.yml, CRLs, export archives, the hub's keys.
 *
 * A replacement is written to a temporary file beside its target, named
 * `.<target name>.<pid>-<8 hex>.tmp`, and renamed over it. A writer stopped by a signal it
 * handles removes its temporary file (`signal` below); one killed outright (SIGKILL, a power cut,
 * SIGTERM to a command that handles no signal) cannot, so the first time a process writes into a
 * directory it removes the temporary files that processes no longer alive left there
 * (`sweepDeadWriters`).
 */
import {
  chownSync,
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { basename, dirname, isAbsolute, join, relative } from "node:path";
import { pathKind } from "./path-exists.ts";

export interface AtomicWriteOptions {
  /**
   * Stops the write between two chunks, or while a pipe's reader does not read, when aborted
   * (SIGINT, SIGTERM: src/cli/command.ts `interruptible`): the temporary file is removed, `file`
   * is left as it was (a stream keeps what its reader took: `onStreamed`), and the abort's
   * reason is thrown.
   */
  signal?: AbortSignal;
  /**
   * Create `file`, never replace it: a file already there fails the write with EEXIST, and it is
   * left as it was. link(2) puts the finished temporary file in place, since rename(2) would
   * replace (placeWithoutReplacing: where the file system has no hard links, a look first).
   */
  exclusive?: boolean;
  /**
   * With `exclusive`: the name to try when the one tried is taken (one made meanwhile: two
   * exports of one day at once), instead of EEXIST; undefined gives up with EEXIST.
   */
  nextName?: () => string | undefined;
  /**
   * For a `file` written straight through (a stream: stdout, a FIFO, a device; no temporary file
   * to take back): called with 0 once it is open, then after each write with the bytes it has
   * taken so far, so a caller
   * stopped part way can say how much of the output its reader already has. Never called for a
   * regular file, whose reader gets the whole file or nothing.
   */
  onStreamed?: (bytes: number) => void;
}

/**
 * Replaces `file` with `content`, atomically: a temporary file in the same directory (created
 * exclusively, with `mode` whatever the umask) is written, synced and renamed over `file`, so a
 * reader sees the old file or the whole new one (rename(2)). On any failure, or an abort of
 * `options.signal`, the temporary file is removed and `file` is as it was; the error is what the
 * file system threw (ENOSPC, EACCES) or the abort's reason. Temporary files of `file` left by
 * dead processes are removed first. A `file` that is a stream, not a file (a device such as
 * /dev/null or /dev/stdout, a FIFO), or the file this process's stdin, stdout or stderr is (a
 * shell's `> out.zip` behind /dev/stdout), is written straight through, never replaced. Returns
 * the name written: `file`, or with `options.nextName` the one the file took.
 */
export async function writeFileAtomically(
  file: string,
  content: string | Uint8Array | AsyncIterable<Uint8Array>,
  mode: number,
  options: AtomicWriteOptions = {},
): Promise<string> {
  const { signal } = options;
  signal?.throwIfAborted();
  if (isStream(file)) {
    const own = ownDescriptorOf(file);
    const fd = own ?? namingTarget(undefined, file, () => openSync(file, "w"));
    let pipe: number | undefined;
    try {
      options.onStreamed?.(0);
      pipe = nonBlockingPipe(fd);
      await writeContent(pipe ?? fd, content, signal, options.onStreamed);
    } catch (err) {
      throw renamePath(err, undefined, file);
    } finally {
      if (pipe !== undefined) closeSync(pipe);
      if (own === undefined) closeSync(fd);
    }
    return file;
  }
  sweepDeadWriters(dirname(file));
  const temp = tempPathFor(file);
  const fd = namingTarget(temp, file, () => openSync(temp, "wx", mode));
  let written = file;
  let closed = false;
  try {
    fchmodSync(fd, mode); // the umask may have narrowed it
    await writeContent(fd, content, signal);
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    if (options.exclusive) written = placeUnderFreeName(temp, file, options.nextName);
    else renameSync(temp, file);
  } catch (err) {
    if (!closed) closeSync(fd);
    removeQuietly(temp);
    throw renamePath(err, temp, file);
  }
  if (options.exclusive) removeQuietly(temp);
  return written;
}

/** placeWithoutReplacing under `file`, else under each name `nextName` gives while names are taken; the name used. */
function placeUnderFreeName(temp: string, file: string, nextName: (() => string | undefined) | undefined): string {
  for (let name: string | undefined = file; ; ) {
    try {
      placeWithoutReplacing(temp, name);
      return name;
    } catch (err) {
      name = (err as NodeJS.ErrnoException).code === "EEXIST" ? nextName?.() : undefined;
      if (name === undefined) throw err;
    }
  }
}

/**
 * `writeFileAtomically` for content already in memory, without awaiting: a temporary file beside
 * `file`, written, fsynced, renamed over `file`. Synchronous, so no signal handler can run part
 * way: a process that handles SIGINT/SIGTERM finishes the write (or removes its temporary file
 * on failure) before it hears of the signal. A full disk (ENOSPC) leaves `file` as it was and no
 * temporary file. With `keepOwner`, a `file` already there keeps its owner and group: files that
 * another program's user reads (a broker's key after `chown root:mosquitto`) go on being
 * readable to it; a user who may not give them that owner (EPERM) gets the error, and `file` is
 * left as it was. `durable: false` (a cache, whose reader takes a damaged file for a miss) leaves
 * out the fsync: a power cut may then leave `file` empty, or as it was.
 */
export function writeFileAtomicallySync(
  file: string,
  content: string | Uint8Array,
  mode: number,
  options: { keepOwner?: boolean; durable?: boolean } = {},
): void {
  if (isStream(file)) {
    const own = ownDescriptorOf(file);
    namingTarget(undefined, file, () =>
      own === undefined ? writeFileSync(file, content) : writeAll(own, typeof content === "string" ? Buffer.from(content) : content),
    );
    return;
  }
  sweepDeadWriters(dirname(file));
  const temp = tempPathFor(file);
  try {
    writeTemp(temp, content, mode, options.durable ?? true);
    if (options.keepOwner) giveOwnerOf(file, temp);
    renameSync(temp, file);
  } catch (err) {
    removeQuietly(temp);
    throw renamePath(err, temp, file);
  }
}

/**
 * Creates `file` with `data` and `mode`, refusing (EEXIST) when something is already there: a
 * secret (a private key) is never written over another file or through a planted link. All or
 * nothing: the data goes to a temporary file that is fsynced, then hard-linked to `file`
 * (link(2) fails when `file` exists, where rename(2) would replace it; placeWithoutReplacing says
 * what a file system without hard links gets), so a full disk never leaves a `file` that is empty
 * or cut short. Throws what the file system throws, with nothing left behind.
 */
export function createFile(file: string, data: string | Uint8Array, mode: number): void {
  sweepDeadWriters(dirname(file));
  const temp = tempPathFor(file);
  try {
    writeTemp(temp, data, mode, true);
    placeWithoutReplacing(temp, file);
  } catch (err) {
    removeQuietly(temp);
    throw renamePath(err, temp, file);
  }
  removeQuietly(temp);
}

/**
 * Gives the finished `temp` the name `file` unless something has it (EEXIST, thrown as is):
 * link(2), which fails when `file` exists where rename(2) would replace it. A file system without
 * hard links (FAT on a USB stick: EPERM) gets a look, then rename(2): a file made between the
 * two would be replaced, a window only another writer on that stick could use.
 */
function placeWithoutReplacing(temp: string, file: string): void {
  try {
    linkSync(temp, file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw err;
    if (pathKind(file) !== "none" || isLink(file)) throw Object.assign(new Error(`EEXIST: file already exists, '${file}'`), { code: "EEXIST", path: file });
    renameSync(temp, file);
  }
}

/** Whether `path` is a symbolic link (dangling ones included). */
function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Gives `temp` the owner and group of `file`, when `file` is there and they differ. */
function giveOwnerOf(file: string, temp: string): void {
  let owner: { uid: number; gid: number };
  try {
    owner = statSync(file);
  } catch {
    return; // nothing there yet: the new file is the writer's
  }
  const made = statSync(temp);
  if (made.uid !== owner.uid || made.gid !== owner.gid) chownSync(temp, owner.uid, owner.gid);
}

/** Writes `content` to the new file `temp` (exclusively, `mode` whatever the umask) and fsyncs it. */
function writeTemp(temp: string, content: string | Uint8Array, mode: number, durable: boolean): void {
  const fd = openSync(temp, "wx", mode);
  try {
    fchmodSync(fd, mode); // the umask may have narrowed it
    const bytes = typeof content === "string" ? Buffer.from(content) : content;
    writeAll(fd, bytes);
    // The data reaches the disk before the name does: a power cut never leaves the target empty.
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Lets pending events run (a signal's handler among them), then throws `signal`'s reason if it
 * was aborted. A long piece of work calls it between steps, so SIGINT/SIGTERM stop it there.
 */
export async function checkpoint(signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  signal.throwIfAborted();
}

/**
 * Removes the entries of `dir` (files or directories) whose names match `pattern` and were left
 * by a process that is no longer alive: `pattern`'s first group is the pid that made the entry
 * (the writer's own pid is alive, so its work in progress is never touched). Returns the paths
 * removed; never throws (a directory it cannot read has nothing it could remove either).
 */
export function removeLeftovers(dir: string, pattern: RegExp): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || processIsAlive(pid)) continue;
    try {
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(join(dir, name));
    } catch {
      // another process removed it first, or it is not ours to remove
    }
  }
  return removed;
}

/** Directories this process has swept already. */
const swept = new Set<string>();

/** Every temporary name the writers here give, whatever the target; group 1 is the writer's pid. */
const ANY_TEMPORARY_NAME = /^\..+\.(\d+)-[0-9a-f]{8}\.tmp$/;

/** The file `name` is a writer's temporary for (`.x.123-0a1b2c3d.tmp` -> `x`), or undefined for any other name. */
export function temporaryTarget(name: string): string | undefined {
  return ANY_TEMPORARY_NAME.test(name) ? name.slice(1).replace(/\.\d+-[0-9a-f]{8}\.tmp$/, "") : undefined;
}

/**
 * Removes the temporary files dead writers left in `dir`, once per process and directory. Not at
 * every write: listing the directory each time made writing N files into one directory O(N²)
 * (the hub's dists/, a zip per thing: at 1,000 things, listing it took more of `hub thing
 * create` than anything but the zip). A writer that dies after the sweep is another process,
 * whose leftovers the next process to write there removes.
 */
export function sweepDeadWriters(dir: string): void {
  if (swept.has(dir)) return;
  swept.add(dir);
  removeLeftovers(dir, ANY_TEMPORARY_NAME);
}

/**
 * True while a process with this pid exists (signal 0 checks without sending; EPERM means it
 * exists but belongs to another user). A pid reused since is taken as alive: its leftover stays.
 */
export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * `err` naming `file`: a system error about the temporary file (whose name means nothing to the
 * user), or one that names no file at all (write(2) failing with ENOSPC or EIO on a descriptor
 * carries no path), is about `file` for whoever reads the message; its kind and reason stay.
 * `err.path` is what the error message names (foreign-errors.ts).
 */
function renamePath(err: unknown, temp: string | undefined, file: string): unknown {
  const e = err as NodeJS.ErrnoException | null;
  if (e && typeof e === "object" && typeof e.code === "string" && (e.path === undefined || e.path === temp)) {
    e.path = file;
    // the message names the path too ("ENOENT: ..., open '<temp>'"), and logs print it
    if (temp && typeof e.message === "string") e.message = e.message.replaceAll(temp, file);
  }
  return err;
}

function namingTarget<T>(temp: string | undefined, file: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw renamePath(err, temp, file);
  }
}

function tempPathFor(file: string): string {
  // Web Crypto's global, not node:crypto: loading that module costs a one-shot command ~5 ms of
  // its start (a compiled hello-world with and without it), and every command reaches this file
  const random = Buffer.from(crypto.getRandomValues(new Uint8Array(4))).toString("hex");
  return join(dirname(file), `.${basename(file)}.${process.pid}-${random}.tmp`);
}

/** `text` as a regular expression that matches it literally. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * True when `file` exists and is neither a regular file nor a directory (after links): a device
 * or a FIFO, which a rename would replace with a regular file (as root, /dev/null itself).
 */
function isStream(file: string): boolean {
  try {
    const stat = statSync(file);
    if (!stat.isFile() && !stat.isDirectory()) return true;
    // /dev/stdout (or /proc/self/fd/1) with stdout redirected to a file: written through, so the
    // bytes land where the shell sent them. Replaced, it was /dev/stdout itself that a root
    // process swapped for a regular file (the temporary file sat in /dev).
    return [0, 1, 2].some((fd) => isOpenAs(file, fd));
  } catch {
    return false;
  }
}

/**
 * This process's stdout or stderr when `file` is it (`/dev/stdout`, the file a shell's `>` or
 * `>>` sent it to), else undefined. Written through that descriptor, not opened again: a new
 * open starts at offset 0 (and truncates), so what went to stdout before or after (a command's
 * own lines, the earlier contents of a `>>` file) was written over.
 */
function ownDescriptorOf(file: string): number | undefined {
  return [1, 2].find((fd) => isOpenAs(file, fd));
}

/**
 * Whether `file` is the file this process has open as descriptor `fd` (`/dev/stdout` and
 * `/proc/self/fd/1` are stdout's; so is the file a shell's `>` sent stdout to). False when
 * either cannot be looked at.
 */
export function isOpenAs(file: string, fd: number): boolean {
  try {
    const open = fstatSync(fd);
    const named = statSync(file);
    return open.dev === named.dev && open.ino === named.ino;
  } catch {
    return false;
  }
}

/**
 * A second descriptor for the pipe or FIFO `fd` is, open for writing in non-blocking mode, or
 * undefined when `fd` is no pipe (a device, a regular file behind /dev/stdout). A pipe opened
 * without O_NONBLOCK (a FIFO opened by `-o FIFO`; stdout, unless the runtime made it
 * non-blocking) makes a write(2) to it block the thread while the reader
 * does not read, and a blocked thread runs no signal handler: `hub thing create -o - | sleep
 * 1000` heard SIGTERM never. Written through this one, a full pipe answers EAGAIN and
 * `writeAllWaiting` waits on the event loop, signals heard. `fd`'s own open is left as it was
 * (blocking until a reader comes; truncating a file): this open happens once `fd` is a pipe with
 * a reader, through /proc/self/fd (Linux). Where that cannot be opened (no /proc), undefined:
 * `fd` is written as before. A reader gone meanwhile (ENXIO) is EPIPE, as a write would have had.
 */
function nonBlockingPipe(fd: number): number | undefined {
  if (!fstatSync(fd).isFIFO()) return undefined;
  try {
    return openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENXIO") return undefined;
    throw Object.assign(new Error("EPIPE: broken pipe, write"), { code: "EPIPE", errno: -32, syscall: "write" });
  }
}

/** Writes `content` to `fd`, chunk by chunk, stopping between two on `signal`; `onWritten` gets the running total after each write. */
async function writeContent(
  fd: number,
  content: string | Uint8Array | AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
  onWritten?: (bytes: number) => void,
): Promise<void> {
  let total = 0;
  const counted =
    onWritten &&
    ((n: number) => {
      total += n;
      onWritten(total);
    });
  if (typeof content === "string" || content instanceof Uint8Array) {
    await writeAllWaiting(fd, typeof content === "string" ? Buffer.from(content) : content, signal, counted);
    return;
  }
  for await (const chunk of content) {
    await writeAllWaiting(fd, chunk, signal, counted);
    if (signal) await checkpoint(signal);
  }
}

/**
 * `writeAll` that waits for a full non-blocking pipe on the event loop, so a SIGINT/SIGTERM
 * (`signal`) stops it meanwhile (its reason thrown); `onWritten` gets the bytes of each write.
 */
async function writeAllWaiting(fd: number, bytes: Uint8Array, signal: AbortSignal | undefined, onWritten?: (bytes: number) => void): Promise<void> {
  for (let at = 0; at < bytes.length; ) {
    const written = writeSome(fd, bytes, at);
    if (written !== undefined) {
      at += written;
      onWritten?.(written);
      continue;
    }
    await new Promise((resolve) => setTimeout(resolve, PIPE_FULL_WAIT_MS));
    signal?.throwIfAborted();
  }
}

/**
 * Writes all of `bytes` to `fd`, however many writes it takes; throws what write(2) fails with
 * (ENOSPC, EPIPE). A pipe in non-blocking mode (stdout is one under Bun) answers EAGAIN while it
 * is full: that is waited out, PIPE_FULL_WAIT_MS at a time, until its reader takes more. Blocks
 * the thread meanwhile, as a write to a full blocking pipe would, so no signal handler runs until
 * the reader reads: only for output that fits a pipe's buffer (a token's few lines). Anything
 * larger (a zip) goes through `writeFileAtomically`, whose waits leave the event loop running.
 */
export function writeAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) {
    const written = writeSome(fd, bytes, at);
    if (written === undefined) Atomics.wait(PIPE_FULL_SLEEPER, 0, 0, PIPE_FULL_WAIT_MS);
    else at += written;
  }
}

/** How long a write to a full non-blocking pipe waits before it tries again (ms). */
const PIPE_FULL_WAIT_MS = 1;
/** Atomics.wait on it sleeps the thread (it is never notified): the portable sleep of Bun and Node. */
const PIPE_FULL_SLEEPER = new Int32Array(new SharedArrayBuffer(4));

/** One write(2) of `bytes` from `at`: the bytes written, or undefined when `fd` is a full non-blocking pipe (EAGAIN). */
function writeSome(fd: number, bytes: Uint8Array, at: number): number | undefined {
  try {
    return writeSync(fd, bytes, at, bytes.length - at);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EAGAIN") return undefined;
    throw err;
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // never made, or already gone
  }
}

/**
 * Whether `path` is `dir` or inside it, links resolved on both sides as far as they exist (a
 * `path` not made yet counts by its nearest existing parent), so a link into `dir` is inside.
 */
export function isWithin(path: string, dir: string): boolean {
  const inside = relative(realPathOf(dir), realPathOf(path));
  return !inside.startsWith("..") && !isAbsolute(inside);
}

/** `path` with links resolved as far as it exists (the rest, not made yet, appended as given). */
function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(realPathOf(parent), basename(path));
  }
}
