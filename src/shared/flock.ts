import { dlopen, FFIType, read } from "bun:ffi";
import { constants } from "node:os";
import { FlashlexError } from "./errors.ts";

/**
 * flock(2) `LOCK_EX | LOCK_NB` on an open descriptor, for shared/file-lock.ts: the C library's
 * own call through bun:ffi, in this process. Spawning util-linux's `flock -n 3` on the
 * descriptor (flock-command.ts, what the Node build does: Node has no FFI, and
 * scripts/bundle-node.ts swaps that module in for this one) cost `serve` two child processes
 * before it could connect (serve lock, then MQTT session lock: 2.5 and 1.2 ms in a profile of its
 * start; this call takes ~0.1 ms), and left the child's pid in /proc/locks.
 */

const LOCK_EX = 2;
const LOCK_NB = 4;

let libc: ReturnType<typeof openLibc> | undefined;

function openLibc() {
  // The Linux targets are linked against glibc, whose libc.so.6 is always there. musl's loader
  // (the musl targets) answers any `libc.` name with itself, by its source (ldso/dynlink.c): not
  // run here, as this machine has no musl loader.
  return dlopen("libc.so.6", {
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
  }).symbols;
}

/**
 * Takes the exclusive lock on `fd`, open on `file`, without waiting: true when taken, false when
 * another open file description holds it (EWOULDBLOCK). The lock belongs to the open file
 * description: it goes when the descriptor is closed or the process ends. Throws FlashlexError
 * `io` naming `file`, `what` the lock is for, and the errno, for any other failure.
 */
export async function takeExclusiveFlock(fd: number, file: string, what: string): Promise<boolean> {
  libc ??= openLibc();
  if (libc.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  // read at once: nothing of ours runs between the call and this read to change errno
  const errno = read.i32(libc.__errno_location()!, 0);
  if (errno === constants.errno.EWOULDBLOCK) return false;
  const name = Object.entries(constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
  const words = String(libc.strerror(errno));
  throw new FlashlexError(`${file}: flock(2) failed for ${what}: ${words.charAt(0).toLowerCase()}${words.slice(1)} (${name})`, "io");
}
