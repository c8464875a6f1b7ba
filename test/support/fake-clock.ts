/**
 * The compiled binary under a fake wall clock: Debian's libfaketime through LD_PRELOAD (it fakes
 * CLOCK_REALTIME, which Bun reads through glibc's clock_gettime). FAKETIME_DONT_FAKE_MONOTONIC=1
 * keeps the monotonic clock real, as a real clock step does: timers and timeouts run as before.
 */
import { existsSync } from "node:fs";

/** The libfaketime library for this machine's architecture (Debian's `faketime` package). */
const FAKETIME_LIB = [`/usr/lib/${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu/faketime/libfaketime.so.1`].find((p) => existsSync(p));

/** The environment that runs the binary under a fake clock: an offset ("+30m", "-1d") or a file holding one. Throws when libfaketime is missing. */
export function fakeClock(clock: { offset: string } | { file: string }): Record<string, string> {
  if (!FAKETIME_LIB) throw new Error("libfaketime is missing: apt-get install -y faketime (scripts/install-system-packages.sh)");
  return {
    LD_PRELOAD: FAKETIME_LIB,
    FAKETIME_DONT_FAKE_MONOTONIC: "1",
    ...("offset" in clock ? { FAKETIME: clock.offset } : { FAKETIME_TIMESTAMP_FILE: clock.file, FAKETIME_NO_CACHE: "1" }),
  };
}
