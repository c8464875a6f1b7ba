/**
 * The thing's update poll against answers that are not a FlashLex hub's (a real HTTP server on
 * loopback): each is one clear error of kind unavailable naming the URL, never a TypeError from
 * the inside of the poll (which the agent counted as a bug).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { FlashlexError } from "../../src/shared/errors.ts";
import type { ThingIdentity } from "../../src/thing/identity.ts";
import type { ThingConfig } from "../../src/thing/settings.ts";
import { updateHubApi } from "../../src/thing/update/hub-api.ts";

let answer = "";
let server: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(answer, { headers: { "Content-Type": "application/json" } }) });
});
afterAll(() => server.stop(true));

const thingId = randomUUID();
const identity = { thingId, privateKey: generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey, caPem: "" } as unknown as ThingIdentity;
const config = () => ({ yaml: { app: { api: { endpoint: `http://127.0.0.1:${server.port}`, env: "dev" } } } }) as unknown as ThingConfig;
const poll = () => updateHubApi(config(), identity, 5_000).poll({ version: "0.1.0", target: "linux-x64" });

test("no update, and an update, are read as the hub sends them", async () => {
  answer = JSON.stringify({ status: "OK", result: { update: null } });
  expect(await poll()).toBeUndefined();
  const offer = { version: "0.2.0", manifest: "{}", signature: "c2ln" };
  answer = JSON.stringify({ status: "OK", result: { update: offer } });
  expect(await poll()).toEqual(offer);
});

test("an answer that is not a FlashLex hub's is one error naming the URL, of kind unavailable", async () => {
  for (const [body, what] of [
    ["<html>hello</html>", "not JSON"],
    [JSON.stringify({ result: null }), "no result object"],
    [JSON.stringify(null), "no result object"],
    [JSON.stringify({ result: { update: { version: 2 } } }), "its update is not {version, manifest, signature} of strings"],
  ]) {
    answer = body!;
    const err = await poll().catch((e) => e);
    expect(err).toBeInstanceOf(FlashlexError);
    expect({ body, message: err.message, kind: err.kind }).toEqual({
      body,
      message: `http://127.0.0.1:${server.port}/dev/v1/things/${thingId}/update: the answer is not a FlashLex hub's (${what}); check api.endpoint`,
      kind: "unavailable",
    });
  }
});
