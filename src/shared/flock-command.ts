import { spawn } from "node:child_process";
import { FlashlexError } from "./errors.ts";
import { toFlashlexError } from "./foreign-errors.ts";

/**
 * flock(2) `LOCK_EX | LOCK_NB` on an open descriptor where there is no FFI (the Node build for
 * armv7; scripts/bundle-node.ts swaps this module in for flock.ts): util-linux's `flock -n 3`
 * (busybox's too) takes the lock on our descriptor, passed as the child's fd 3. The lock belongs
 * to the open file description, which outlives the child. A few ms per lock.
 */

/** How long `flock -n` may take: it answers at once, or something is wrong with the machine. */
const FLOCK_TIMEOUT_MS = 10_000;

/**
 * Takes the exclusive lock on `fd`, open on `file`, without waiting: true when taken, false when
 * another open file description holds it. Throws FlashlexError `unavailable` (69) when flock(1)
 * is not on PATH, and `io` naming `file` and `what` the lock is for when it fails otherwise or
 * takes longer than FLOCK_TIMEOUT_MS (killed then: a start never waits on it without end).
 */
export function takeExclusiveFlock(fd: number, file: string, what: string): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const child = spawn("flock", ["-n", "3"], { stdio: ["ignore", "ignore", "pipe", fd], timeout: FLOCK_TIMEOUT_MS });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "ENOENT"
          ? new FlashlexError(`flock(1) was not found on PATH; ${what} needs it (Debian's util-linux package, or busybox)`, "unavailable")
          : toFlashlexError(err, `${file}: flock(1) for ${what}`),
      ),
    );
    // flock -n exits 1 when the lock is held (util-linux and busybox alike), other codes on errors
    child.on("close", (code, signal) => {
      if (signal) reject(new FlashlexError(`${file}: flock(1) for ${what} did not finish within ${FLOCK_TIMEOUT_MS / 1000} s (${signal})`, "io"));
      else if (code === 0) resolve(true);
      else if (code === 1 && stderr.trim() === "") resolve(false);
      else reject(new FlashlexError(`${file}: flock(1) failed for ${what} (exit ${code}): ${stderr.trim().split("\n")[0]}`, "io"));
    });
  });
}
