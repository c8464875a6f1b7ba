import { afterAll, beforeAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bundleForNode, type NodeBundle } from "../../scripts/bundle-node.ts";
import { THING_MIGRATIONS } from "../../src/thing/store/message-store.ts";

/**
 * The armv7 build's bundle, proved on x64 Node 20: one CommonJS file, no `bun:` import, the
 * SQLite wasm inside it, and the message database it writes is a real SQLite file.
 */
let dir: string;
let bundle: NodeBundle;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-bundle-"));
  bundle = await bundleForNode(join(dir, "smoke.cjs"), { entry: resolve(import.meta.dir, "../support/node-smoke-entry.ts") });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("is one CommonJS file with the wasm inlined and nothing from Bun", () => {
  expect(readdirSync(dir)).toEqual(["smoke.cjs"]);
  const code = readFileSync(bundle.outFile, "utf8");
  // matched to a short string: a failing toMatch on the bundle would print all 1.7 MB of it
  expect(code.match(/.{0,40}["']bun:.{0,40}/)?.[0]).toBeUndefined();
  expect(/wasmBinary: ?Buffer\.from\("AGFzbQ/.test(code)).toBe(true); // base64 of "\0asm"
  const required = new Set([...code.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]));
  expect([...required].every((id) => id!.startsWith("node:"))).toBe(true);
  // ~1.27 MB of wasm as base64 plus the code: a jump means something unexpected got bundled
  expect(bundle.bytes).toBeGreaterThan(1_600_000);
  expect(bundle.bytes).toBeLessThan(2_500_000);
});

test("runs under node 20 from a directory without node_modules, writing a real SQLite file and holding a file lock", () => {
  const db = join(dir, "data", "messages.db");
  const run = () => JSON.parse(execFileSync("node", [bundle.outFile, db], { cwd: dir, encoding: "utf8" }));
  const first = run();
  const second = run();
  expect(first).toMatchObject({ driver: "node-sqlite3-wasm", id: 1, payload: '{"hello":"w\u00f6rld"}', journal: "wal" });
  expect(first.heldTwice).toBe(false); // the second take of the file lock refused: flock(1) took the first
  expect(first.runtime).toStartWith("v20.");
  expect(second).toMatchObject({ id: 2, count: { total: 2, unacked: 2 } });
  expect(readdirSync(join(dir, "data"))).toEqual(["messages.db"]); // closed: no lock, owner record or WAL left
  const cli = execFileSync("sqlite3", [db, "PRAGMA integrity_check; PRAGMA user_version; SELECT count(*) FROM ingress_messages;"], { encoding: "utf8" });
  expect(cli.trim().split("\n")).toEqual(["ok", String(THING_MIGRATIONS.length), "2"]);
});

test("the node:http path (armv7): one deadline for the whole request, the answer's first MiB, an abort's reason, Bun's words for a plain port", async () => {
  const http = await bundleForNode(join(dir, "http.cjs"), { entry: resolve(import.meta.dir, "../support/node-http-entry.ts") });
  const seen = JSON.parse(execFileSync("node", [http.outFile], { cwd: dir, encoding: "utf8", timeout: 30_000 }));
  // a receiver that trickles its answer: node's idle timeout never fired
  expect(seen.trickle).toMatchObject({ error: "no answer within 1 s" });
  expect(seen.trickle.ms).toBeLessThan(5_000);
  // one that streams without end: its first MiB, at once
  expect(seen.endless).toMatchObject({ status: 200, bytes: 1024 * 1024 });
  expect(seen.abort).toMatchObject({ error: "serve is stopping" });
  expect(seen.abortedBefore).toMatchObject({ error: "serve is stopping" });
  expect(seen.plainBehindHttps).toMatchObject({
    error: `127.0.0.1:${seen.dripPort}: The TLS handshake failed. Does the server speak TLS on this port?`,
    code: "EPROTO",
  });
});
