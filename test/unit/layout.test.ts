/**
 * The layout's import rules (DESIGN.md, "Layout"), read from the code with Bun's own parser:
 * thing/ and hub/ never import each other; protocol/ imports neither (it is what they agree on);
 * shared/ and crypto/ import no part above them; nothing under cli/ opens a store itself; only
 * main.ts reaches cli/ (the SDK only its exit codes). Type-only imports count too: a type is
 * coupling as much as a value.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { Glob } from "bun";

const SRC = join(import.meta.dir, "../../src");

/** A rule: no file under `from` may import a file under any of `mayNot` (paths relative to src/). */
interface Rule {
  from: string;
  mayNot: string[];
  why: string;
}

const STORES = ["thing/store/", "hub/store/", "shared/sqlite/"];

const RULES: Rule[] = [
  { from: "thing/", mayNot: ["hub/", "cli/", "sdk/"], why: "the agent runs on the device without the hub" },
  { from: "hub/", mayNot: ["thing/", "cli/", "sdk/"], why: "the hub knows things only through protocol/" },
  { from: "protocol/", mayNot: ["thing/", "hub/", "cli/", "sdk/", "crypto/"], why: "protocol/ is what thing and hub agree on, importing neither" },
  { from: "crypto/", mayNot: ["thing/", "hub/", "cli/", "sdk/", "protocol/"], why: "crypto/ is keys, certificates and tokens, no policy" },
  { from: "shared/", mayNot: ["thing/", "hub/", "cli/", "sdk/", "protocol/", "crypto/"], why: "shared/ is the ground every part stands on" },
  { from: "cli/", mayNot: STORES, why: "a command calls a use case; it opens no store and runs no SQL" },
  { from: "sdk/", mayNot: ["hub/"], why: "the SDK is the application's side of the thing" },
];

/** Makes type-only imports visible to the parser (`import type`, `export type`, `{ type X }`), which drops them otherwise. */
function withTypeImportsAsValues(source: string): string {
  return source
    .replace(/^#!.*\n/, "\n")
    .replace(/\bimport\s+type\s+(?=[{*\w])/g, "import ")
    .replace(/\bexport\s+type\s+(?=[{*])/g, "export ")
    .replace(/([{,]\s*)type\s+(?=[A-Za-z_$][\w$]*\s*(?:,|\}|\bas\b))/g, "$1");
}

const transpiler = new Bun.Transpiler({ loader: "ts", trimUnusedImports: false });

/** The files of this tree that `file` (relative to src/) imports, relative to src/; packages and node: modules are left out. */
function importsOf(file: string, source: string): string[] {
  return transpiler
    .scanImports(withTypeImportsAsValues(source))
    .map((entry) => entry.path)
    .filter((path) => path.startsWith("."))
    .map((path) => normalize(join(dirname(file), path)));
}

/** Every import that breaks a rule, as `from -> to (why)`. */
function violations(files: Map<string, string[]>, rules: Rule[] = RULES): string[] {
  const found: string[] = [];
  for (const [file, imports] of files) {
    for (const target of imports) {
      for (const rule of rules) {
        if (file.startsWith(rule.from) && rule.mayNot.some((area) => target.startsWith(area))) found.push(`${file} -> ${target} (${rule.why})`);
      }
      // cli/ is the top: only main.ts and cli/ itself reach it (and the SDK its exit codes, which
      // it tells apps as the CLI would end); nothing imports main.ts.
      const sdkExitCodes = file.startsWith("sdk/") && target === "cli/exit-codes.ts";
      if (target.startsWith("cli/") && file !== "main.ts" && !file.startsWith("cli/") && !sdkExitCodes)
        found.push(`${file} -> ${target} (only main.ts reaches cli/)`);
      if (target === "main.ts") found.push(`${file} -> main.ts (main.ts is the entrypoint, imported by nothing)`);
    }
  }
  return [...new Set(found)];
}

function sourceTree(): Map<string, string[]> {
  const files = new Map<string, string[]>();
  for (const file of new Glob("**/*.ts").scanSync(SRC)) {
    if (file.endsWith(".d.ts")) continue;
    files.set(file, importsOf(file, readFileSync(join(SRC, file), "utf8")));
  }
  return files;
}

describe("the layout", () => {
  test("src/ holds the parts DESIGN.md names, and nothing else", () => {
    expect(readdirSync(SRC).sort()).toEqual(["cli", "crypto", "hub", "main.ts", "protocol", "sdk", "shared", "thing"]);
  });

  test("no import breaks a rule", () => {
    const tree = sourceTree();
    expect(tree.size).toBeGreaterThan(50);
    expect(violations(tree)).toEqual([]);
  });

  test("the rules catch what they forbid, type-only imports included", () => {
    const planted = new Map([
      ["thing/agent.ts", importsOf("thing/agent.ts", 'import type { HubStore } from "../hub/store/hub-store.ts";')],
      ["hub/service.ts", importsOf("hub/service.ts", 'import { type ThingConfig, loadThingConfig } from "../thing/settings.ts";')],
      ["protocol/topics.ts", importsOf("protocol/topics.ts", 'export type { HubBroker } from "../hub/broker/broker.ts";')],
      ["shared/log.ts", importsOf("shared/log.ts", 'import { ExitCode } from "../cli/exit-codes.ts";')],
      ["cli/thing/messages.ts", importsOf("cli/thing/messages.ts", 'import { MessageStore } from "../../thing/store/message-store.ts";')],
      ["cli/hub/send.ts", importsOf("cli/hub/send.ts", 'import { openHubStore } from "../../hub/store/hub-store.ts";')],
      ["hub/hub.ts", importsOf("hub/hub.ts", 'const cli = await import("../cli/command.ts");')],
      ["cli/command.ts", importsOf("cli/command.ts", 'import { EXIT_CODE_OF_KIND } from "../main.ts";')],
    ]);
    const found = violations(planted);
    expect([...new Set(found.map((v) => v.split(" (")[0]))]).toStrictEqual([
      "thing/agent.ts -> hub/store/hub-store.ts",
      "hub/service.ts -> thing/settings.ts",
      "protocol/topics.ts -> hub/broker/broker.ts",
      "shared/log.ts -> cli/exit-codes.ts",
      "cli/thing/messages.ts -> thing/store/message-store.ts",
      "cli/hub/send.ts -> hub/store/hub-store.ts",
      "hub/hub.ts -> cli/command.ts",
      "cli/command.ts -> main.ts",
    ]);
    // a file the rules allow stays quiet
    expect(violations(new Map([["cli/hub/send.ts", importsOf("cli/hub/send.ts", 'import { withHub } from "../../hub/hub.ts";')]]))).toEqual([]);
  });
});
