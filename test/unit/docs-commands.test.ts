/**
 * docs/hub.md's command table lists every hub command the binary has, and nothing it has not:
 * the table is checked against the real command table (src/main.ts COMMANDS).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { COMMANDS } from "../../src/main.ts";

describe("docs/hub.md", () => {
  test("its command table names exactly the hub commands that exist", () => {
    const text = readFileSync(join(import.meta.dir, "../../docs/hub.md"), "utf8");
    const documented = [...text.matchAll(/^\| `(hub [a-z- ]+?)(?: [A-Z][A-Z.]*)?`/gm)].map((m) => m[1]!.trim()).sort();
    const real = COMMANDS.filter((c) => c.name.startsWith("hub ")).map((c) => c.name);
    expect(documented).toEqual([...real].sort());
  });
});
