/**
 * `npm run typecheck` as a test: the sources (tsconfig.json) and the console's browser script
 * (its own tsconfig: DOM types, no Node ones) both typecheck. Bun runs TypeScript without
 * checking it, so without this a type error, or a server module reached from the browser
 * script, would pass the whole suite.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");
const TSC = join(ROOT, "node_modules/.bin/tsc");

test.each([
  ["the sources", "tsconfig.json"],
  ["the console's browser script", "src/hub/console/client/tsconfig.json"],
])(
  "%s typecheck (tsc -p %s)",
  (_what, project) => {
    const tsc = Bun.spawnSync([TSC, "--noEmit", "-p", project], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect(`${tsc.stdout}${tsc.stderr}`).toBe("");
    expect(tsc.exitCode).toBe(0);
  },
  60_000,
);
