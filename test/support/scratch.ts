/**
 * Temporary directories for tests that make keys, databases or files on the way: each is removed
 * after the run (test/preload.ts registers removeScratchDirs as a global afterAll), passed or
 * failed, so a run leaves nothing in /tmp (some hold private keys). bun test fires no process
 * `exit` event, hence the preload.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const made: string[] = [];

/** A new directory under the system's temporary directory, named `prefix` + random; removed after the run. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every directory scratchDir made (test/preload.ts calls it once, after all tests). */
export function removeScratchDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}
