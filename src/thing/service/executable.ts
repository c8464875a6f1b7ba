import { realpathSync } from "node:fs";

/** What ExecStart runs; `compiled` is false when a runtime runs the source tree. */
export interface Executable {
  command: string;
  args: string[];
  compiled: boolean;
}

/**
 * The compiled Bun binary runs its entry from the embedded /$bunfs; `bun src/main.ts` has
 * Bun.main on disk. Without Bun (the armv7 Node single executable) a SEA's argv[1] is the
 * executable itself, a `node script.js` run's is the script.
 */
export function runningExecutable(): Executable {
  const bunMain = (globalThis as { Bun?: { main: string } }).Bun?.main;
  const script = bunMain ?? process.argv[1];
  const compiled = bunMain !== undefined ? bunMain.startsWith("/$bunfs/") : script === undefined || script === process.execPath;
  const command = realpathSync(process.execPath);
  return compiled || script === undefined ? { command, args: [], compiled: true } : { command, args: [realpathSync(script)], compiled: false };
}
