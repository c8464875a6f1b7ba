/**
 * The thing's update poll against answers that are not a FlashLex hub's (a real HTTP server on
 * loopback): each is one clear error of kind unavailable naming the URL, never a TypeError from
 * the inside of the poll (which the agent counted as a bug).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createPublicKey, generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import { FlashlexError } from "../../src/shared/errors.ts";
import { silentLogger } from "../../src/shared/log.ts";
import { HubClock } from "../../src/thing/egress/hub-clock.ts";
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

test("a device clock 2 h behind costs one refused poll: the retry's token carries the hub's time, as collect's does (it was 401 at every check)", async () => {
  const { jwtVerify } = await import("jose");
  const publicKey = createPublicKey(identity.privateKey as unknown as KeyObject);
  let requests = 0;
  const hub = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    // the hub's own rule: the token's time claims against its clock, a minute of skew
    async fetch(request) {
      requests++;
      const token = (request.headers.get("authorization") ?? "").replace(/^Bearer /, "");
      try {
        await jwtVerify(token, publicKey, { clockTolerance: 60 });
        return Response.json({ status: "OK", result: { update: null } });
      } catch {
        return new Response("{}", { status: 401, headers: { "WWW-Authenticate": 'Bearer error="invalid_token", error_description="token expired"' } });
      }
    },
  });
  try {
    const hubConfig = { yaml: { app: { api: { endpoint: `http://127.0.0.1:${hub.port}`, env: "dev" } } } } as unknown as ThingConfig;
    const behind = () => Date.now() - 2 * 3_600_000;
    const clock = new HubClock(silentLogger, behind);
    expect(await updateHubApi(hubConfig, identity, 5_000, clock).poll({ version: "0.1.0", target: "linux-x64" })).toBeUndefined();
    expect(requests).toBe(2);
    expect(await updateHubApi(hubConfig, identity, 5_000, clock).poll({ version: "0.1.0", target: "linux-x64" })).toBeUndefined();
    expect(requests).toBe(3); // the correction is kept: no refused poll any more
    // with no clock (as before), the hub's refusal is named
    const uncorrected = updateHubApi(hubConfig, identity, 5_000, new HubClock(silentLogger, behind)).authorization;
    const refused = await fetch(`http://127.0.0.1:${hub.port}/x`, { headers: await uncorrected() });
    expect(refused.status).toBe(401);
  } finally {
    hub.stop(true);
  }
});
