/**
 * What starting `flashlex` loads before it knows the command (src/cli/command.ts, "Start-up"):
 * the static imports of src/main.ts, followed file by file, reach none of the libraries a
 * command loads for itself. A static import of a use case in a command file would put the
 * broker, MQTT and the X.509 library back into every start (`--version` took 9x a compiled
 * hello-world with them, 3.6x without); type-only imports load nothing and are not followed.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";

const SRC = join(import.meta.dir, "../../src");

/** Packages that cost start-up time, each loaded by the commands that use it. */
const LOADED_BY_COMMANDS = [
  "mqtt",
  "aedes",
  "aedes-persistence",
  "@peculiar/x509",
  "reflect-metadata",
  "jose",
  "zod",
  "yaml",
  "bun:sqlite",
  "node-sqlite3-wasm",
  "zip-stream",
  "fflate",
];

/**
 * Node modules whose Bun implementation is slow to load: alone, in a compiled binary with
 * bytecode, node:http ~12 ms, node:tty ~9 (it brings net and streams), node:worker_threads ~4.6
 * (measured 2026-12-04; node:fs, node:path and node:os, which every command needs, ~4 together).
 */
const SLOW_BUILTINS = ["node:http", "node:https", "node:tls", "node:net", "node:child_process", "node:tty", "node:worker_threads"];

const transpiler = new Bun.Transpiler({ loader: "ts", trimUnusedImports: true });

/** Every file and package src/main.ts loads at start: static value imports, followed; `await import()` is not. */
function loadedAtStart(): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const source = readFileSync(join(SRC, file), "utf8").replace(/^#!.*\n/, "\n");
    for (const entry of transpiler.scanImports(source)) {
      if (entry.kind === "dynamic-import") continue;
      if (entry.path.startsWith(".")) visit(normalize(join(dirname(file), entry.path)));
      else packages.set(entry.path, file);
    }
  };
  visit("main.ts");
  return { files, packages };
}

test("starting flashlex loads the command table and cac, no library a command loads for itself", () => {
  const { files, packages } = loadedAtStart();
  const offending = [...packages]
    .filter(([name]) => LOADED_BY_COMMANDS.includes(name) || SLOW_BUILTINS.includes(name))
    .map(([name, by]) => `${name} (imported by src/${by})`);
  expect(offending).toEqual([]);
  expect(packages.has("cac")).toBe(true);
  // the command files are there (the table is whole), the use cases are not
  expect(files.has("cli/thing/collect.ts")).toBe(true);
  expect([...files].filter((f) => f.startsWith("thing/agent") || f.startsWith("hub/service") || f.startsWith("thing/egress/"))).toEqual([]);
});
