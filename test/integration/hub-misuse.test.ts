/**
 * The compiled hub as a new user tried it and tried to break it, on loopback: one hub home with
 * one thing, one `hub serve` (embedded broker), raw sockets and real MQTT clients.
 *
 *   hang-up         a client that closes the connection part way through a request body is one
 *                   INFO line (hub.request_abandoned), never an ERROR of kind bug, on every
 *                   route that reads a body; the hub answers on
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { type Background, binaryPath } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { tally } from "../support/tally.ts";
import { occurrences, waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-misuse-"));
let hub: HubFixture;
let serving: Background;
let thing: HubThing;

beforeAll(async () => {
  binaryPath();
  hub = await makeHubFixture(work);
  thing = await hub.createThing("misused");
  serving = await hub.serve();
}, 120_000);

afterAll(async () => {
  if (serving) expect(await serving.stop(5_000)).toBe(0);
  rmSync(work, { recursive: true, force: true });
}, 30_000);

/**
 * Sends a request head declaring a 100-byte body, then 13 bytes of it, then closes the socket
 * once they are written.
 */
function hangUpMidBody(path: string, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(hub.apiPort, "127.0.0.1", () => {
      const head = [`POST /dev/v1${path} HTTP/1.1`, "Host: 127.0.0.1", "Content-Type: application/json", "Content-Length: 100"];
      for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`);
      socket.write(`${head.join("\r\n")}\r\n\r\n{"message":1,`, () => socket.destroy());
    });
    socket.on("close", () => resolve());
    socket.on("error", reject);
  });
}

describe("a client that hangs up part way through its body", () => {
  test("publish, collect and POST /things: one INFO hub.request_abandoned each, no ERROR, no kind=bug; the hub answers on", async () => {
    const from = serving.output().length;
    const operator = { Authorization: `Bearer ${hub.token}` };
    const cases: [string, () => Promise<Record<string, string>>][] = [
      [`/things/${thing.id}/publish`, async () => operator],
      [`/things/${thing.id}/collect`, async () => ({ Authorization: `Bearer ${await signThingToken({ thingId: thing.id, privateKey: thing.privateKey })}` })],
      ["/things", async () => operator],
    ];
    for (const [path, headers] of cases) await hangUpMidBody(path, await headers());
    const log = () => serving.output().slice(from);
    await waitUntil("three hub.request_abandoned lines", () => occurrences(log(), /hub\.request_abandoned/) === 3, 10_000, log);
    for (const route of ["things/:id/publish", "things/:id/collect", "things"]) {
      expect(log()).toMatch(
        new RegExp(`INFO  hub\\.request_abandoned component=api method=POST route=${route.replace(/[/:]/g, "\\$&")} .*received=\\d+ declared=100`),
      );
    }
    expect(log()).not.toContain("ERROR");
    expect(log()).not.toContain("kind=bug");
    expect(log()).not.toContain("hub.api_failed");
    // The hub is still there for the next caller.
    expect(await hub.publish(thing.id, { after: "hang-ups" })).toBeString();
    tally("attacks", cases.length);
  }, 30_000);
});
