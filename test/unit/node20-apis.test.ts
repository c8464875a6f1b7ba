/**
 * The linux-armv7 build runs the thing's code on Node 20 (a single executable: TOOLCHAIN.md),
 * where Bun's newer JavaScript is missing; a use compiles and passes every test under Bun, then
 * fails on the device at run time (Promise.withResolvers in serve did: exit 70 at start, seen
 * only by the armv7 target test under qemu). Everything the armv7 build runs is held to Node
 * 20's APIs here; the hub, which that build refuses to run, is not.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const SRC = join(import.meta.dir, "../../src");
/** What the armv7 build runs: all of src/ but the hub and its commands. */
const NODE_RUNS = [
  "main.ts",
  "thing",
  "shared",
  "protocol",
  "crypto",
  "sdk",
  "cli/thing",
  "cli/argv.ts",
  "cli/command.ts",
  "cli/exit-codes.ts",
  "cli/input.ts",
  "cli/process-entry.ts",
];

/** APIs newer than Node 20.11 (the armv7 build's runtime), with the Node version that has them. */
const NEWER_THAN_NODE_20: [RegExp, string][] = [
  [/\bPromise\.withResolvers\b/, "Node 22"],
  [/\bPromise\.try\b/, "Node 23"],
  [/\bArray\.fromAsync\b/, "Node 22"],
  [/\b(Object|Map)\.groupBy\b/, "Node 21"],
  [/\.(union|intersection|difference|symmetricDifference|isSubsetOf|isSupersetOf|isDisjointFrom)\(/, "Node 22 (Set methods)"],
  [/\bIterator\.from\b/, "Node 22"],
  [/\bRegExp\.escape\b/, "Node 24"],
  [/\bprocess\.getBuiltinModule\b/, "Node 22"],
];

function filesUnder(path: string): string[] {
  if (statSync(path).isFile()) return path.endsWith(".ts") ? [path] : [];
  return readdirSync(path).flatMap((name) => filesUnder(join(path, name)));
}

test("the code the armv7 build runs uses no API newer than Node 20", () => {
  const found: string[] = [];
  for (const file of NODE_RUNS.flatMap((p) => filesUnder(join(SRC, p)))) {
    const lines = readFileSync(file, "utf8").split("\n");
    lines.forEach((line, i) => {
      if (/^\s*(\/\/|\*)/.test(line)) return; // comments may name them
      for (const [api, since] of NEWER_THAN_NODE_20) if (api.test(line)) found.push(`${relative(SRC, file)}:${i + 1}: ${line.trim()} (${since})`);
    });
  }
  expect(found).toEqual([]);
});
