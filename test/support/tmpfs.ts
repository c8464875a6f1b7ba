/**
 * Small real file systems for fault tests: a tmpfs of a few hundred KiB fills up for real
 * (ENOSPC, SQLITE_FULL), and `remount,ro` makes it read-only for real (EROFS), even for root,
 * whom file modes do not stop. Mounting needs root (or CAP_SYS_ADMIN): `tmpfsUnavailable()`
 * says why it cannot be done here, so a test can skip loudly instead of passing quietly.
 */
import { closeSync, mkdtempSync, openSync, rmdirSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function sh(args: string[]): { ok: boolean; output: string } {
  const result = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" });
  return { ok: result.exitCode === 0, output: `${result.stdout}${result.stderr}`.trim() };
}

let probed: string | undefined | null = null;

/** Undefined when a tmpfs can be mounted here; otherwise the reason it cannot. */
export function tmpfsUnavailable(): string | undefined {
  if (probed !== null) return probed;
  const dir = mkdtempSync(join(tmpdir(), "flashlex-tmpfs-probe-"));
  const mounted = sh(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]);
  if (mounted.ok) sh(["umount", dir]);
  rmdirSync(dir);
  probed = mounted.ok ? undefined : `cannot mount a tmpfs here (${mounted.output || "mount failed"}); run as root`;
  return probed;
}

export interface Tmpfs {
  dir: string;
  /** fills the file system to the last byte; returns the filler's path */
  fill(): string;
  /** deletes the filler: space again */
  free(): void;
  remountReadOnly(): void;
  remountReadWrite(): void;
  unmount(): void;
}

export function mountTmpfs(sizeKiB: number): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), "flashlex-tmpfs-"));
  const mounted = sh(["mount", "-t", "tmpfs", "-o", `size=${sizeKiB}k,mode=0755`, "tmpfs", dir]);
  if (!mounted.ok) throw new Error(`mount tmpfs on ${dir}: ${mounted.output}`);
  const filler = join(dir, "filler");
  return {
    dir,
    fill() {
      const fd = openSync(filler, "a");
      const chunk = Buffer.alloc(4096, 0x66);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
      } finally {
        closeSync(fd);
      }
      // and the last partial page
      const fd2 = openSync(filler, "a");
      try {
        for (;;) writeSync(fd2, Buffer.alloc(1, 0x66));
      } catch {
        // full
      } finally {
        closeSync(fd2);
      }
      return filler;
    },
    free() {
      rmSync(filler, { force: true });
    },
    remountReadOnly() {
      const r = sh(["mount", "-o", "remount,ro", dir]);
      if (!r.ok) throw new Error(`remount ro ${dir}: ${r.output}`);
    },
    remountReadWrite() {
      const r = sh(["mount", "-o", "remount,rw", dir]);
      if (!r.ok) throw new Error(`remount rw ${dir}: ${r.output}`);
    },
    unmount() {
      sh(["umount", "-l", dir]);
      try {
        rmdirSync(dir);
      } catch {
        // still busy: left for the OS
      }
    },
  };
}
