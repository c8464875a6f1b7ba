/**
 * `hub send` and the other CLI commands that go through the running hub's socket: a hub that is
 * not there is "not running" (69), but one that took the request and went quiet (SIGSTOP, a
 * stuck disk) may have acted on it, so it is not said to be absent: 75, "look before doing it again".
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exitCodeOf } from "../../src/cli/exit-codes.ts";
import type { HubHome } from "../../src/hub/home/home.ts";
import { localRequest } from "../../src/hub/http/local-client.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-local-client-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const home = { paths: { dir, socket: join(dir, "hub.sock") }, settings: { env: "dev" } } as unknown as HubHome;

test("no hub on the socket: not running (69); a hub that took the request and never answered: it may have acted (75)", async () => {
  const absent = await localRequest(home, "POST", "/publish", {}).catch((err) => err);
  expect(exitCodeOf(absent)).toBe(69);
  expect(absent.message).toStartWith(`the hub is not running for ${dir}`);

  const silent = createServer(() => {}).listen(home.paths.socket); // accepts, reads, never answers
  await new Promise((resolve) => silent.once("listening", resolve));
  try {
    const quiet = await localRequest(home, "POST", "/publish", { message: {} }, 300).catch((err) => err);
    expect(exitCodeOf(quiet)).toBe(75);
    expect(quiet.message).toContain("took the request but did not answer within 0.3 s");
    expect(quiet.message).toContain("it may have acted on it");
    expect(quiet.message).not.toContain("not running");
  } finally {
    silent.close();
  }
});

test("a hub that read the request and cut the connection (killed mid-request) may have acted too: 75, never 'not running' (a retry could publish twice)", async () => {
  const cutting = createServer((socket) => socket.once("data", () => socket.destroy())).listen(home.paths.socket);
  await new Promise((resolve) => cutting.once("listening", resolve));
  try {
    const cut = await localRequest(home, "POST", "/publish", { message: {} }).catch((err) => err);
    expect(exitCodeOf(cut)).toBe(75);
    expect(cut.message).toBe(
      `the hub serving ${dir} took the connection but its answer was cut off (ECONNRESET): it may have acted on it; look before doing it again (for hub send: the hub's log, its hub.publish lines, or the thing's messages in the console)`,
    );
  } finally {
    cutting.close();
  }
  // a socket file a dead hub left, nobody listening: nothing was asked
  const left = await localRequest(home, "POST", "/publish", {}).catch((err) => err);
  expect(exitCodeOf(left)).toBe(69);
});
