/**
 * The hub's HTTP API and MQTT egress path, called through the fetch handler (no socket), with a
 * real hub home: CA, thing keys and certificates made by the same code production uses.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac, generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { SignJWT } from "jose";
import { parse } from "yaml";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { generateRsaKeyPair, loadPrivateKey } from "../../src/crypto/keys.ts";
import type { HubBroker } from "../../src/hub/broker/broker.ts";
import { createBrokerEvents } from "../../src/hub/broker/events.ts";
import type { HubHome } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import type { HubApi } from "../../src/hub/http/routes.ts";
import { CollectAuthError, Collector } from "../../src/hub/messages/collect.ts";
import { Messages, parseIngressDocument } from "../../src/hub/messages/messages.ts";
import type { HubStore, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { distributionDownloadLine } from "../../src/hub/things/download-line.ts";
import { DownloadTokens } from "../../src/hub/things/download-tokens.ts";
import { createThing } from "../../src/hub/things/provision.ts";
import { Things } from "../../src/hub/things/things.ts";
import { ThingYamlSchema } from "../../src/protocol/thing-config.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { createLogger, silentLogger } from "../../src/shared/log.ts";
import { checkCertificate, keyMatchesCertificate } from "../support/certificates.ts";
import { hubApiOver } from "../support/hub-api.ts";
import { storedMessages } from "../support/hub-messages.ts";
import { tally } from "../support/tally.ts";

const OWNER = "ecd13b11-6d91-4e8e-9156-60e451a3c975";

let dir: string;
let home: HubHome;
let store: HubStore;
let api: ReturnType<typeof hubApiOver>;
let operatorToken: string;
let thing: ThingRecord;
let thingKey: KeyObject;
const published: { topic: string; payload: string }[] = [];

const fakeBroker: HubBroker = {
  url: "mqtts://test:8883",
  tracksDelivery: true,
  async publish(topic, payload) {
    published.push({ topic, payload: payload.toString() });
  },
  async sendIngress(thingName, message) {
    published.push({ topic: `ingress/${thingName}`, payload: message.payload });
  },
  isConnected: () => false,
  async close() {},
};

/** The distribution's file contents, by path inside the zip, and the zip's external attributes. */
function unzip(bytes: Uint8Array): Record<string, string> {
  const files = unzipSync(bytes);
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [k, new TextDecoder().decode(v)]));
}

/** Unix mode bits of every entry, read from the zip's central directory. */
function zipModes(bytes: Uint8Array): Record<string, number> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = bytes.length - 22;
  while (view.getUint32(eocd, true) !== 0x06054b50) eocd--;
  let offset = view.getUint32(eocd + 16, true);
  const count = view.getUint16(eocd + 10, true);
  const modes: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const nameLength = view.getUint16(offset + 28, true);
    const extra = view.getUint16(offset + 30, true);
    const comment = view.getUint16(offset + 32, true);
    const attrs = view.getUint32(offset + 38, true);
    const name = new TextDecoder().decode(bytes.subarray(offset + 46, offset + 46 + nameLength));
    modes[name] = (attrs >>> 16) & 0o7777;
    offset += 46 + nameLength + extra + comment;
  }
  return modes;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-api-"));
  const init = await initHub({ dir: join(dir, "hub"), ownerId: OWNER, apiUrl: "http://hub.example:8080", names: ["hub.example", "10.0.0.5"] });
  home = init.home;
  operatorToken = init.token;
  store = await openHubStore(home.paths.database);
  api = hubApiOver({ home, store, log: silentLogger, broker: fakeBroker });
  const created = await createThing(home, store, "mything");
  thing = created.thing;
  const files = unzip(await Bun.file(created.distribution).bytes());
  thingKey = loadPrivateKey(files[`${thing.name}/keys/${thing.name}-keypair-private.pem`]!);
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const base = "http://hub.example:8080/dev/v1";

function collect(opts: { token?: string; body?: string; contentType?: string; messageId?: string; thingId?: string } = {}) {
  const headers: Record<string, string> = { "Content-Type": opts.contentType ?? "application/json" };
  if (opts.token !== undefined) headers.Authorization = `Bearer ${opts.token}`;
  if (opts.messageId) headers["X-Flashlex-Message-Id"] = opts.messageId;
  return api.fetch(new Request(`${base}/things/${opts.thingId ?? thing.id}/collect`, { method: "POST", headers, body: opts.body ?? '{"foo":"bar"}' }));
}

function operator(path: string, init: RequestInit & { token?: string | null } = {}) {
  const headers = new Headers(init.headers);
  const token = init.token === undefined ? operatorToken : init.token;
  if (token !== null) headers.set("Authorization", `Bearer ${token}`);
  return api.fetch(new Request(`${base}${path}`, { ...init, headers }));
}

// The API's envelope; tests look into it freely.
const json = (response: Response): Promise<any> => response.json();
const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
const nowS = () => Math.floor(Date.now() / 1000);
const goodClaims = () => ({ iss: `urn:thing:${thing.id}`, aud: `urn:flashlex:${thing.id}`, nbf: nowS() - 360, exp: nowS() + 360, iat: nowS() });

describe("POST /things/{id}/collect", () => {
  test("stores the message and answers exactly as the guide shows", async () => {
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const response = await collect({ token });
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(body).toEqual({
      status: "OK",
      code: 200,
      messages: [{ key: "message", value: "Message collected." }],
      result: {
        message: "Message collected.",
        flthingspk: thing.id,
        flmessagespk: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      },
    });
    const stored = await storedMessages(store, thing.id, {});
    const mine = stored.find((m) => m.flmessagespk === body.result.flmessagespk)!;
    expect(JSON.parse(mine.payload)).toEqual({ foo: "bar" });
    expect(mine.messagetype).toBe("egress");
    const after = (await store.getThing(thing.id))!;
    expect(after.verifiedAt).not.toBeNull();
    expect(after.lastSeenAt).not.toBeNull();
  });

  test("a repeated X-Flashlex-Message-Id is stored once and answered the same way", async () => {
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const messageId = randomUUID();
    const first = await json(await collect({ token, messageId, body: '{"n":1}' }));
    const again = await collect({ token, messageId, body: '{"n":1}' });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(first);
    expect(first.result.flmessagespk).toBe(messageId);
    const rows = (await storedMessages(store, thing.id, {})).filter((m) => m.flmessagespk === messageId);
    expect(rows).toHaveLength(1);
  });

  test("the id of a message sent to the thing (ingress) is a 409, and nothing is stored under it (it answered 200 'collected' and kept the ingress message)", async () => {
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const messageId = randomUUID();
    await store.insertMessage({
      flmessagespk: messageId,
      thingId: thing.id,
      messagetype: "ingress",
      payload: '{"message":{"cmd":"reboot"}}',
      fltimestamp: nowS(),
      datecreated: new Date().toISOString(),
    });
    const reply = await collect({ token, messageId, body: '{"reply":"rebooted"}' });
    expect(reply.status).toBe(409);
    expect(JSON.stringify(await reply.json())).toContain("this message id is already used");
    const rows = (await storedMessages(store, thing.id, {})).filter((m) => m.flmessagespk === messageId);
    expect(rows.map((m) => [m.messagetype, m.payload])).toStrictEqual([["ingress", '{"message":{"cmd":"reboot"}}']]);
  });

  test("a malformed message id is a 400", async () => {
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    expect((await collect({ token, messageId: "not-a-uuid" })).status).toBe(400);
  });

  test("refused tokens are all a plain 401 that never echoes the token", async () => {
    const stranger = loadPrivateKey((await generateRsaKeyPair()).privateKeyPem);
    const signingInput = `${b64({ alg: "HS256", kid: thing.id, typ: "JWT" })}.${b64(goodClaims())}`;
    const hs256 = `${signingInput}.${createHmac("sha256", thing.publicKeyPem).update(signingInput).digest("base64url")}`;
    const custom = (claims: object, header: object = {}) =>
      new SignJWT({ ...claims }).setProtectedHeader({ alg: "RS256", kid: thing.id, typ: "JWT", ...header }).sign(thingKey);
    const cases: Record<string, string> = {
      forged: await signThingToken({ thingId: thing.id, privateKey: stranger }),
      expired: await signThingToken({ thingId: thing.id, privateKey: thingKey, now: nowS() - 3600 }),
      "not yet valid": await signThingToken({ thingId: thing.id, privateKey: thingKey, now: nowS() + 3600 }),
      "wrong kid": await custom(goodClaims(), { kid: randomUUID() }),
      "wrong audience": await custom({ ...goodClaims(), aud: "urn:flashlex:someone-else" }),
      "alg none": `${b64({ alg: "none", kid: thing.id, typ: "JWT" })}.${b64(goodClaims())}.`,
      "HS256 with the public key": hs256,
      garbage: "abc.def.ghi",
    };
    for (const [name, token] of Object.entries(cases)) {
      const response = await collect({ token });
      const text = await response.text();
      expect({ name, status: response.status }).toEqual({ name, status: 401 });
      expect(text).not.toContain(token);
      expect(JSON.parse(text)).toMatchObject({ status: "ERROR", code: 401, result: null });
    }
    expect((await collect({})).status).toBe(401);
  });

  test("an unknown or revoked thing gets the same 401 as a bad token", async () => {
    const unknownId = randomUUID();
    const unknown = await collect({ thingId: unknownId, token: await signThingToken({ thingId: unknownId, privateKey: thingKey }) });
    const created = await createThing(home, store, "to-revoke");
    const other = created.thing;
    const otherKey = loadPrivateKey(unzip(await Bun.file(created.distribution).bytes())[`${other.name}/keys/${other.name}-keypair-private.pem`]!);
    // Accepted before the revocation, refused after, with its own valid key.
    expect((await collect({ thingId: other.id, token: await signThingToken({ thingId: other.id, privateKey: otherKey }) })).status).toBe(200);
    await new Things({ home, store }).revoke(other);
    const revoked = await collect({ thingId: other.id, token: await signThingToken({ thingId: other.id, privateKey: otherKey }) });
    const bad = await collect({ token: "abc.def.ghi" });
    expect([unknown.status, revoked.status, bad.status]).toEqual([401, 401, 401]);
    const refusal = await bad.json();
    expect(await unknown.json()).toEqual(refusal);
    expect(await revoked.json()).toEqual(refusal);
  });

  test("a body that is not JSON: 415 for the content type, 400 for the content", async () => {
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    expect((await collect({ token, contentType: "text/plain" })).status).toBe(415);
    expect((await collect({ token, body: "{nope" })).status).toBe(400);
    expect((await collect({ token, body: "" })).status).toBe(400);
    expect((await collect({ token, contentType: "application/json; charset=utf-8" })).status).toBe(200);
  });

  test("a body over the payload limit (256 KiB) is a 413, declared or streamed", async () => {
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const big = JSON.stringify({ data: "x".repeat(300 * 1024) });
    expect((await collect({ token, body: big })).status).toBe(413);
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 40; i++) controller.enqueue(new TextEncoder().encode(`"${"y".repeat(10_000)}",`));
        controller.close();
      },
    });
    const chunked = new Request(`${base}/things/${thing.id}/collect`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: stream,
    });
    expect((await api.fetch(chunked)).status).toBe(413);
  });

  test("a body in a Content-Encoding (gzip) is a 415 saying so, with Accept-Encoding: identity (attack round 27, F5: it was 'not valid UTF-8')", async () => {
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const answer = await api.fetch(
      new Request(`${base}/things/${thing.id}/collect`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Content-Encoding": "gzip" },
        body: Bun.gzipSync(new TextEncoder().encode('{"a":1}')),
      }),
    );
    expect([answer.status, answer.headers.get("accept-encoding"), (await json(answer)).messages[0].value]).toEqual([
      415,
      "identity",
      'Content-Encoding "gzip" is not taken: send the body uncompressed',
    ]);
  });

  test("a refused body is logged once, as hub.collect_rejected with the thing, status and reason, never the body", async () => {
    const lines: string[] = [];
    const logged = hubApiOver({ home, store, log: createLogger({ write: (line) => lines.push(line) }), broker: fakeBroker });
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const post = (body: string, headers: Record<string, string> = {}) =>
      logged.fetch(
        new Request(`${base}/things/${thing.id}/collect`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...headers },
          body,
        }),
      );
    expect((await post(JSON.stringify({ secret: "s3cr3t".repeat(50_000) }))).status).toBe(413);
    expect((await post("{not json")).status).toBe(400);
    expect((await post("{}", { "X-Flashlex-Message-Id": "nope" })).status).toBe(400);
    const rejected = lines.filter((line) => line.includes("hub.collect_rejected"));
    expect(rejected).toHaveLength(3);
    expect(rejected[0]).toContain(`thing=${thing.name}`);
    expect(rejected.map((line) => line.match(/status=(\d+)/)?.[1])).toStrictEqual(["413", "400", "400"]);
    expect(lines.join("\n")).not.toContain("s3cr3t");
    // the message id given twice (two valid UUIDs, joined by the Fetch API): said so, not "not a UUID"
    const headers = new Headers({ Authorization: `Bearer ${token}`, "Content-Type": "application/json" });
    headers.append("X-Flashlex-Message-Id", crypto.randomUUID());
    headers.append("X-Flashlex-Message-Id", crypto.randomUUID());
    const twice = await logged.fetch(new Request(`${base}/things/${thing.id}/collect`, { method: "POST", headers, body: "{}" }));
    expect(twice.status).toBe(400);
    expect(JSON.stringify(await twice.json())).toContain("X-Flashlex-Message-Id is given more than once; give it once");
  });
});

describe("a token that verified once (the agent reuses its token for a while)", () => {
  test("is refused as soon as its thing is revoked or has another key, and past its exp and the skew, as a fresh one would be", async () => {
    let nowMs = Date.now();
    let record: ThingRecord = { ...thing };
    let version = 0;
    // the store as the hub sees it, with this thing's row changed by the test: each change
    // commits a new things version, and the next request comes in a later turn of the event loop
    const view = Object.create(store, {
      getThing: { value: async (id: string) => (id === thing.id ? record : undefined) },
      thingsVersion: { value: async () => version },
    }) as HubStore;
    const change = async (next: ThingRecord) => {
      record = next;
      version++;
      await new Promise((resolve) => setImmediate(resolve));
    };
    const collector = new Collector({ store: view, log: silentLogger, now: () => nowMs });
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey, now: Math.floor(nowMs / 1000) });
    const accepted = async () =>
      collector.authenticate(thing.id, token).then(
        () => true,
        (err) => (err instanceof CollectAuthError ? false : Promise.reject(err)),
      );
    expect(await accepted()).toBe(true);
    expect(await accepted()).toBe(true);
    await change({ ...thing, revokedAt: nowMs });
    expect(await accepted()).toBe(false);
    await change({ ...thing, publicKeyPem: generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "pem" }).toString() });
    expect(await accepted()).toBe(false);
    await change({ ...thing });
    expect(await accepted()).toBe(true);
    // exp is signing time + 360 s; the signature check allows a minute of skew past it
    nowMs += 400_000;
    expect(await accepted()).toBe(true);
    nowMs += 30_000;
    expect(await accepted()).toBe(false);
  });
});

describe("a thing deleted between its lookup and the commit", () => {
  test("its collect is refused as an unknown thing's (401 with the challenge, a WARN), not a 500 logged as a bug", async () => {
    // what the store answers when the thing's row went before the batch committed (insertMessages' existingThings)
    const deleted = Object.create(store, {
      insertMessages: { value: async (items: readonly unknown[]) => items.map(() => ({ inserted: false, message: undefined })) },
    }) as HubStore;
    const lines: string[] = [];
    const log = createLogger({ write: (line) => lines.push(line), level: "debug" });
    const raced = hubApiOver({ home, store: deleted, log, broker: fakeBroker });
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const answer = await raced.fetch(
      new Request(`${base}/things/${thing.id}/collect`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: "{}",
      }),
    );
    expect(answer.status).toBe(401);
    expect(answer.headers.get("WWW-Authenticate")).toBe('Bearer error="invalid_token"');
    expect(lines.join("\n")).toContain("hub.collect_refused");
    expect(lines.join("\n")).not.toContain("hub.api_failed");
  });
});

describe("a thing whose stored key is damaged (a tampered or badly restored hub.db)", () => {
  test("its collect fails as the hub's fault, and the log names the thing, so the row can be found among thousands", async () => {
    const damaged = Object.create(store, {
      getThing: { value: async (id: string) => ({ ...(await store.getThing(id))!, publicKeyPem: "garbage" }) },
    }) as HubStore;
    const lines: string[] = [];
    const log = createLogger({ write: (line) => lines.push(line), level: "debug" });
    const api = hubApiOver({ home, store: damaged, log, broker: fakeBroker });
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const answer = await api.fetch(
      new Request(`${base}/things/${thing.id}/collect`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: "{}",
      }),
    );
    expect(answer.status).toBe(500);
    const failed = lines.filter((line) => line.includes("hub.api_failed"));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toContain(`id=${thing.id}`);
    expect(failed[0]).not.toContain(token);
  });
});

describe("a 5xx the hub knows the cause of (a full disk) is logged as every route logs it", () => {
  test("an update poll on a full store: 503, WARN hub.api_failed with kind=full and the route's pattern, the thing's id apart, as collect's (new-user pass 25, F10: it was ERROR with the raw path)", async () => {
    const full = new FlashlexError("/x/hub.db: cannot write: the file system is full (SQLITE_FULL)", "full");
    const tables = new Proxy({}, { get: () => async () => Promise.reject(full) });
    const fullStore = Object.create(store, { updates: { value: tables } }) as HubStore;
    const lines: string[] = [];
    const log = createLogger({ write: (line) => lines.push(line), level: "debug" });
    const api = hubApiOver({ home, store: fullStore, log, broker: fakeBroker });
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const answer = await api.fetch(
      new Request(`${base}/things/${thing.id}/update?version=1.0.0&target=linux-x64`, { headers: { Authorization: `Bearer ${token}` } }),
    );
    expect(answer.status).toBe(503);
    const failed = lines.filter((line) => line.includes("hub.api_failed"));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatch(/WARN +hub\.api_failed component=api method=GET route=things\/:id\/update id=\S+ status=503 kind=full error=/);
    expect(failed[0]).toContain(`id=${thing.id}`);
  });
});

describe("the thing rows the collector keeps between requests", () => {
  test("are read again once the things version changed, whichever connection changed them; never for a thing only seen", async () => {
    const created = await createThing(home, store, "kept-row");
    const files = unzip(await Bun.file(created.distribution).bytes());
    const key = loadPrivateKey(files[`${created.thing.name}/keys/${created.thing.name}-keypair-private.pem`]!);
    let reads = 0;
    const counting = Object.create(store, {
      getThing: {
        value: (id: string) => {
          reads++;
          return store.getThing(id);
        },
      },
    }) as HubStore;
    const collector = new Collector({ store: counting, log: silentLogger });
    const token = await signThingToken({ thingId: created.thing.id, privateKey: key });
    const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
    const accepted = () =>
      collector.authenticate(created.thing.id, token).then(
        () => true,
        (err) => (err instanceof CollectAuthError ? false : Promise.reject(err)),
      );
    for (let i = 0; i < 5; i++) {
      expect(await accepted()).toBe(true);
      await nextTurn();
    }
    expect(reads).toBe(1);
    // last seen is not a change: each batch of messages marks it
    await store.markVerified(created.thing.id, Date.now());
    await nextTurn();
    expect(await accepted()).toBe(true);
    expect(reads).toBe(1);
    // revoked through another connection to the same file, as `hub thing revoke` in another process does
    const other = await openHubStore(home.paths.database);
    try {
      expect(await other.revokeThing(created.thing.id, Date.now())).toBe(true);
    } finally {
      await other.close();
    }
    await nextTurn();
    expect(await accepted()).toBe(false);
    expect(reads).toBe(2);
    // an unknown thing is looked up every time: it may be made the next moment
    const unknown = crypto.randomUUID();
    for (let i = 0; i < 2; i++) await expect(collector.authenticate(unknown, token)).rejects.toThrow("unknown thing");
    expect(reads).toBe(4);
  });

  test("a write of this process is seen at once, within the same turn: a revoke by this hub, then a token that verified before, is refused (the version read earlier in the turn was reused)", async () => {
    const created = await createThing(home, store, "same-turn");
    const files = unzip(await Bun.file(created.distribution).bytes());
    const key = loadPrivateKey(files[`${created.thing.name}/keys/${created.thing.name}-keypair-private.pem`]!);
    const collector = new Collector({ store, log: silentLogger });
    const token = await signThingToken({ thingId: created.thing.id, privateKey: key });
    expect((await collector.authenticate(created.thing.id, token)).id).toBe(created.thing.id);
    await new Promise((resolve) => setImmediate(resolve));
    // one turn from here on: the verified token needs no signature check, the store answers at once
    expect((await collector.authenticate(created.thing.id, token)).id).toBe(created.thing.id);
    expect(await store.revokeThing(created.thing.id, Date.now())).toBe(true);
    await expect(collector.authenticate(created.thing.id, token)).rejects.toThrow("revoked thing");
  });
});

describe("EC things: the algorithm follows the registered key, nothing else", () => {
  let ec: ThingRecord;
  let ecKey: KeyObject;
  const post = (body: string) => operator("/things", { method: "POST", body, headers: { "Content-Type": "application/json" } });

  beforeAll(async () => {
    const created = await post('{"name":"ec-thing","keyType":"ec"}');
    expect(created.status).toBe(201);
    const result = (await json(created)).result;
    expect(result).toMatchObject({ name: "ecd13b11-ec-thing", keyType: "ec" });
    ec = (await store.getThing(result.id))!;
    const files = unzip(new Uint8Array(await (await operator(`/things/${ec.id}/dist`)).arrayBuffer()));
    const keyPem = files[`${ec.name}/keys/${ec.name}-keypair-private.pem`]!;
    expect(keyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
    ecKey = loadPrivateKey(keyPem);
    expect(ecKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    const cert = files[`${ec.name}/keys/${ec.name}-certificate.pem`]!;
    expect(checkCertificate(cert, files[`${ec.name}/keys/root-ca-cert.pem`]!, new Date()).ok).toBe(true);
    expect(keyMatchesCertificate(ecKey, cert)).toBe(true);
  });

  test("POST /things takes keyType rsa or ec (default rsa) and refuses anything else with 400", async () => {
    expect((await json(await post('{"name":"rsa-default"}'))).result.keyType).toBe("rsa");
    expect((await json(await post('{"name":"rsa-explicit","keyType":"rsa"}'))).result.keyType).toBe("rsa");
    for (const keyType of ['"dsa"', '"EC"', "null", "256", '["ec"]', '{"ec":1}']) {
      const response = await post(`{"name":"bad-${randomUUID().slice(0, 8)}","keyType":${keyType}}`);
      expect({ keyType, status: response.status }).toEqual({ keyType, status: 400 });
      expect((await json(response)).messages[0].value).toBe("keyType must be rsa or ec");
    }
    tally("badInputs", 6);
  });

  test("the EC thing's own ES256 token is accepted", async () => {
    const token = await signThingToken({ thingId: ec.id, privateKey: ecKey });
    expect(JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString())).toEqual({ alg: "ES256", kid: ec.id, typ: "JWT" });
    expect((await collect({ thingId: ec.id, token })).status).toBe(200);
  });

  test("no algorithm confusion: every token whose algorithm is not the registered key's is a 401", async () => {
    const claimsFor = (id: string) => ({ iss: `urn:thing:${id}`, aud: `urn:flashlex:${id}`, nbf: nowS() - 360, exp: nowS() + 360, iat: nowS() });
    const sign = (alg: string, key: KeyObject, id: string) => new SignJWT(claimsFor(id)).setProtectedHeader({ alg, kid: id, typ: "JWT" }).sign(key);
    const otherEc = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    const hmac = (id: string, secret: string) => {
      const input = `${b64({ alg: "HS256", kid: id, typ: "JWT" })}.${b64(claimsFor(id))}`;
      return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
    };
    const cases: [string, string, Promise<string> | string][] = [
      ["RS256 to the EC thing, signed with the RSA thing's key", ec.id, sign("RS256", thingKey, ec.id)],
      ["ES256 to the RSA thing, signed with the EC thing's key", thing.id, sign("ES256", ecKey, thing.id)],
      ["ES256 to the RSA thing, signed with a stranger's P-256 key", thing.id, sign("ES256", otherEc, thing.id)],
      ["ES256 to the EC thing, signed with a stranger's P-256 key", ec.id, sign("ES256", otherEc, ec.id)],
      ["ES384 to the P-256 thing", ec.id, sign("ES384", p384, ec.id)],
      ["HS256 keyed with the EC thing's public key", ec.id, hmac(ec.id, ec.publicKeyPem)],
      ["alg none to the EC thing", ec.id, `${b64({ alg: "none", kid: ec.id, typ: "JWT" })}.${b64(claimsFor(ec.id))}.`],
    ];
    for (const [name, thingId, token] of cases) {
      const response = await collect({ thingId, token: await token });
      expect({ name, status: response.status }).toEqual({ name, status: 401 });
      expect(await json(response)).toMatchObject({ status: "ERROR", code: 401, result: null });
    }
    tally("attacks", cases.length);
  });
});

describe("WWW-Authenticate on a refused thing token (RFC 6750 §3)", () => {
  const challenge = async (opts: { token?: string; thingId?: string }) => (await collect(opts)).headers.get("www-authenticate");
  const stranger = async () => loadPrivateKey((await generateRsaKeyPair()).privateKeyPem);

  test("expired / not yet valid, with a verified signature: the description says so", async () => {
    expect(await challenge({ token: await signThingToken({ thingId: thing.id, privateKey: thingKey, now: nowS() - 3600 }) })).toBe(
      'Bearer error="invalid_token", error_description="token expired"',
    );
    expect(await challenge({ token: await signThingToken({ thingId: thing.id, privateKey: thingKey, now: nowS() + 3600 }) })).toBe(
      'Bearer error="invalid_token", error_description="token not yet valid"',
    );
  });

  test("every other refusal is a plain invalid_token, even an expired token signed by someone else", async () => {
    const plain = 'Bearer error="invalid_token"';
    expect(await challenge({ token: await signThingToken({ thingId: thing.id, privateKey: await stranger(), now: nowS() - 3600 }) })).toBe(plain);
    expect(await challenge({ token: await signThingToken({ thingId: thing.id, privateKey: await stranger(), now: nowS() + 3600 }) })).toBe(plain);
    expect(await challenge({ token: "abc.def.ghi" })).toBe(plain);
    const unknown = randomUUID();
    expect(await challenge({ thingId: unknown, token: await signThingToken({ thingId: unknown, privateKey: thingKey, now: nowS() - 3600 }) })).toBe(plain);
    const longLived = await new SignJWT({ ...goodClaims(), exp: nowS() + 7200 }).setProtectedHeader({ alg: "RS256", kid: thing.id, typ: "JWT" }).sign(thingKey);
    expect(await challenge({ token: longLived })).toBe(plain);
  });

  test("no token at all: a bare Bearer challenge (§3.1: no error code when no credentials came)", async () => {
    expect(await challenge({})).toBe("Bearer");
  });
});

describe("operator routes", () => {
  test("answers that hold secrets say no cache may keep them (a distribution zip, a new enrolment token: Cache-Control: no-store); a thing's collect answer is left as it is", async () => {
    const zip = await operator(`/things/${thing.id}/dist`);
    const token = await operator("/enroll-tokens", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    const refused = await operator("/things", { token: null });
    const collected = await collect({ token: await signThingToken({ thingId: thing.id, privateKey: thingKey }) });
    expect([zip, token, refused, collected].map((r) => [r.status, r.headers.get("cache-control")])).toStrictEqual([
      [200, "no-store"],
      [201, "no-store"],
      [401, "no-store"],
      [200, null],
    ]);
  });

  test("a body giving a name twice is a 400 naming it and where, a request's field and a message's member alike (JSON.parse kept the last without a word); nothing is stored", async () => {
    const send = (path: string, body: string) =>
      operator(path, { method: "POST", headers: { "Content-Type": "application/json" }, body }).then(async (r) => ({
        status: r.status,
        said: ((await r.json()) as any).messages?.[0]?.value,
      }));
    const twice = (name: string, at: string) => ({
      status: 400,
      said: `the body: the name "${name}" at ${at} is given twice in one object: only its last value would be kept; give each name once`,
    });
    expect(await send("/things", '{"name":"dup","name" : "dup2"}')).toEqual(twice("name", "line 1, column 15"));
    expect(await send("/enroll-tokens", '{"maxUses":50,"maxUses":1}')).toEqual(twice("maxUses", "line 1, column 15"));
    expect(await send(`/things/${thing.id}/publish`, '{"message":{"go":1},\n "message":{"go":2}}')).toEqual(twice("message", "line 2, column 2"));
    expect(await send("/publish", `{"things":["${thing.id}"],"message":1,"things":["${thing.id}"]}`)).toEqual(twice("things", "line 1, column 64"));
    // escapes name the same field: "n\u0061me" is "name"
    expect(await send("/things", '{"name":"a","n\\u0061me":"b"}')).toEqual(twice("name", "line 1, column 13"));
    // inside the message too: `{"a":1,"a":2}` was stored as {"a":2}
    const before = (await storedMessages(store, thing.id)).length;
    expect(await send(`/things/${thing.id}/publish`, '{"message":{"a":1,"b":["message",{"a":0,"a":1}]}}')).toEqual(twice("a", "line 1, column 41"));
    const collected = await collect({ token: await signThingToken({ thingId: thing.id, privateKey: thingKey }), body: '{"a":1,"a":2}' });
    expect(collected.status).toBe(400);
    expect(((await collected.json()) as any).messages?.[0]?.value).toContain('the name "a" at line 1, column 8 is given twice');
    expect((await storedMessages(store, thing.id)).length).toBe(before);
    // a name or value from the request is quoted with its invisible and bidirectional characters escaped
    expect(await send("/things", '{"n\u202eame":"x"}')).toEqual({ status: 400, said: 'unknown field "n\\u202eame"; the body takes name, keyType' });
    const query = await operator(`/things/${thing.id}/messages?x\u202e=1`);
    expect(((await query.json()) as any).messages?.[0]?.value).toStartWith('unknown query parameter "x\\u202e";');
    // a field the publish routes do not take is refused, not ignored: {"dryRun": true} published
    expect(await send(`/things/${thing.id}/publish`, '{"message":1,"dryRun":true}')).toEqual({
      status: 400,
      said: 'unknown field "dryRun"; the body takes message',
    });
    expect(await send("/publish", `{"things":["${thing.id}"],"message":1,"dryRun":true}`)).toEqual({
      status: 400,
      said: 'unknown field "dryRun"; the body takes things, message',
    });
    expect((await storedMessages(store, thing.id)).length).toBe(before);
    // the same names in different objects, and a string value that looks like a name, are fine
    expect((await send(`/things/${thing.id}/publish`, '{"message":{"a":1,"b":["message",{"a":0,"message":0}]}}')).status).toBe(200);
  });

  test("a thing's zip also takes a one-time download token: that thing's zip only, once (HEAD uses nothing), before it expires; refusals say nothing of the thing", async () => {
    const second = (await createThing(home, store, "second-for-download")).thing;
    const things = new Things({ home, store });
    const downloads = (now = Date.now) => new DownloadTokens({ home, store, now, distribution: (t) => things.distribution(t) });
    const bearerOf = (line: string) => /Bearer (flxd_[\w-]{43})' \|/.exec(line)![1]!;
    const made = await downloads().line(thing);
    expect(made.line).toBe(
      `(umask 077; echo 'Authorization: Bearer ${bearerOf(made.line)}' | curl -fo ${thing.name}.zip.part -H @- ${base}/things/${thing.id}/dist && mv -f ${thing.name}.zip.part ${thing.name}.zip || (echo 'the download failed (the line above says why): a 401 means this line was used or is past its time, so ask the hub operator for a new one (flashlex hub thing dist ${thing.name} --curl); after any other error, run the same line again'; exit 1))`,
    );
    const token = bearerOf(made.line);
    // an IPv6 hub's URL is quoted: `[::1]` is a glob in zsh, which refused the line (attack round 26, F9)
    const ipv6 = { settings: { api: { ...home.settings.api, publicUrl: "http://[::1]:8080" }, env: "dev" }, paths: home.paths };
    expect(distributionDownloadLine(thing, "flxd_x", ipv6)).toContain(` -H @- 'http://[::1]:8080/dev/v1/things/${thing.id}/dist' && mv`);
    const refusals: [string, Response][] = [
      ["another thing's zip", await operator(`/things/${second.id}/dist`, { token })],
      ["no such thing", await operator(`/things/${randomUUID()}/dist`, { token })],
      ["another route", await operator(`/things/${thing.id}`, { token })],
      ["an unknown token", await operator(`/things/${thing.id}/dist`, { token: `flxd_${"A".repeat(43)}` })],
    ];
    const head = await operator(`/things/${thing.id.toUpperCase()}/dist`, { method: "HEAD", token });
    const got = await operator(`/things/${thing.id.toUpperCase()}/dist`, { token });
    expect([head.status, got.status, got.headers.get("content-type")]).toEqual([200, 200, "application/zip"]);
    expect(Object.keys(unzip(new Uint8Array(await got.arrayBuffer())))).toContain(`${thing.name}/config.yml`);
    refusals.push(["used once already", await operator(`/things/${thing.id}/dist`, { token })]);
    const expired = bearerOf((await downloads(() => Date.now() - 3_600_001).line(second)).line);
    refusals.push(["expired", await operator(`/things/${second.id}/dist`, { token: expired })]);
    const answers = await Promise.all(refusals.map(async ([why, r]) => [why, r.status, (await json(r)).messages[0].value]));
    const tokenWords =
      "the download token was refused: each fetches one thing's zip, once, within an hour of being made (make another: flashlex hub thing dist <thing> --curl)";
    const accessWords = "a valid access token is required (Authorization: Bearer <token>)";
    expect(answers).toEqual([
      ["another thing's zip", 401, tokenWords],
      ["no such thing", 401, tokenWords],
      ["another route", 401, accessWords],
      ["an unknown token", 401, tokenWords],
      ["used once already", 401, tokenWords],
      ["expired", 401, tokenWords],
    ]);
    // two fetches racing with one token: one zip
    const racing = bearerOf((await downloads().line(second)).line);
    const both = await Promise.all([1, 2].map(() => operator(`/things/${second.id}/dist`, { token: racing })));
    expect(both.map((r) => r.status).toSorted()).toStrictEqual([200, 401]);
    // no line for a thing without a zip; a line made before the revoke fetches nothing after it
    const early = bearerOf((await downloads().line(second)).line);
    await things.revoke(second);
    await expect(downloads().line((await things.get(second.id))!)).rejects.toThrow(/has no distribution to download: it was revoked/);
    const afterRevoke = await operator(`/things/${second.id}/dist`, { token: early });
    expect(afterRevoke.status).toBe(404);
    await things.delete(second);
    tally("attacks", 8);
  });

  test("need the access token", async () => {
    for (const [path, method] of [
      ["/things", "GET"],
      ["/things", "POST"],
      [`/things/${thing.id}`, "GET"],
      [`/things/${thing.id}`, "DELETE"],
      [`/things/${thing.id}/messages`, "GET"],
      [`/things/${thing.id}/messages`, "DELETE"],
      [`/things/${thing.id}/archive`, "GET"],
      [`/things/${thing.id}/dist`, "GET"],
      [`/things/${thing.id}/publish`, "POST"],
      [`/things/${thing.id}/revoke`, "POST"],
      ["/publish", "POST"],
    ] as const) {
      for (const token of [null, "wrong", await signThingToken({ thingId: thing.id, privateKey: thingKey })]) {
        const response = await operator(path, { method, token });
        expect({ path, method, status: response.status }).toEqual({ path, method, status: 401 });
        expect(response.headers.get("www-authenticate")).toBe("Bearer");
      }
    }
    expect(await store.getThing(thing.id)).toBeDefined();
  });

  test("GET /things lists things with their status and no key material", async () => {
    const response = await operator("/things");
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(body.status).toBe("OK");
    const mine = body.result.find((t: { id: string }) => t.id === thing.id);
    expect(mine).toMatchObject({ name: "ecd13b11-mything", shortName: "mything", status: "verified" });
    expect(mine.topics).toEqual({ ingress: "ingress/ecd13b11-mything", pubsub: "pubsub/ecd13b11-mything", egress: "flashlex/collect" });
    expect(JSON.stringify(body)).not.toContain("BEGIN");
    // connected now, as the console shows it (new-user pass 26, F2): this broker says no; one that cannot tell says null
    expect(mine.connected).toBe(false);
    const online = hubApiOver({ home, store, log: silentLogger, broker: { ...fakeBroker, isConnected: (name) => name === thing.name } });
    const one = await json(await online.fetch(new Request(`${base}/things/${thing.id}`, { headers: { Authorization: `Bearer ${operatorToken}` } })));
    expect(one.result.connected).toBe(true);
    const external = hubApiOver({ home, store, log: silentLogger, broker: { ...fakeBroker, isConnected: () => undefined } });
    const listed = await json(await external.fetch(new Request(`${base}/things`, { headers: { Authorization: `Bearer ${operatorToken}` } })));
    expect(listed.result.find((t: { id: string }) => t.id === thing.id).connected).toBeNull();
  });

  test("GET /things?q=&status= narrows the list: a name holding q (any case), a status or active (all but revoked); a status it does not know, or a filter with a control character, is a 400 (new-user pass 26, F8)", async () => {
    const extra = await createThing(home, store, "FilterRevoked");
    await store.revokeThing(extra.thing.id, Date.now());
    await createThing(home, store, "FilterNew");
    const names = async (query: string) => {
      const answer = await operator(`/things?${query}`);
      expect({ query, status: answer.status }).toEqual({ query, status: 200 });
      return (await json(answer)).result.map((t: { shortName: string }) => t.shortName).sort();
    };
    expect(await names("q=FILTERrev")).toEqual(["FilterRevoked"]);
    expect(await names("q=filter")).toEqual(["FilterNew", "FilterRevoked"]);
    expect(await names("q=filterrevoked&status=active")).toEqual([]);
    expect(await names("status=revoked")).toContain("FilterRevoked");
    expect(await names("status=active")).not.toContain("FilterRevoked");
    expect(await names("q=filter&status=created")).toEqual(["FilterNew"]);
    expect(await names("q=filter&status=verified")).toEqual([]);
    for (const [query, said] of [
      ["status=gone", 'status must be one of created, verified, revoked, active, not "gone"'],
      ["q=a%01b", "the name filter holds a control character"],
      ["q=", "q is empty; leave it out instead"],
      ["name=x", 'unknown query parameter "name"; this route takes q, status'],
    ]) {
      const refused = await operator(`/things?${query}`);
      expect({ query, status: refused.status, said: (await json(refused)).messages[0].value }).toEqual({
        query,
        status: 400,
        said: expect.stringContaining(said!),
      });
    }
  });

  test("POST /things provisions; bad and duplicate names are refused", async () => {
    const post = (body: string) => operator("/things", { method: "POST", body, headers: { "Content-Type": "application/json" } });
    const created = await post('{"name":"sensor_1"}');
    expect(created.status).toBe(201);
    expect((await json(created)).result).toMatchObject({ name: "ecd13b11-sensor_1", status: "created" });
    expect((await post('{"name":"sensor_1"}')).status).toBe(409);
    expect((await post('{"name":"has space"}')).status).toBe(400);
    expect((await post('{"name":""}')).status).toBe(400);
    expect((await post(`{"name":"${"a".repeat(41)}"}`)).status).toBe(400);
    expect((await post("{}")).status).toBe(400);
    expect((await post("not json")).status).toBe(400);
    // said as what it is (attack round 27, F4: each was "a undefined: a thing name is ...")
    for (const [body, said] of [
      ["{}", "no thing name was given: a thing name is"],
      ["[]", 'the body must be a JSON object: {"name": ...}'],
      ["null", 'the body must be a JSON object: {"name": ...}'],
      ['"x"', 'the body must be a JSON object: {"name": ...}'],
    ] as const) {
      expect({ body, said: (await json(await post(body))).messages[0].value }).toEqual({ body, said: expect.stringContaining(said) });
    }
  });

  test("unknown routes, things and methods: 404, 404, 405", async () => {
    expect((await operator("/nothing")).status).toBe(404);
    // another env's path, or none: JSON saying where this hub's API is (no env was the console's 303 to its sign-in page)
    for (const path of ["/prod/v1/things", "/v1/things", "/v1"]) {
      const answer = await api.fetch(new Request(`http://hub.example:8080${path}`));
      expect({ path, status: answer.status, error: (await json(answer)).messages[0].value }).toEqual({
        path,
        status: 404,
        error: "no such route: this hub's API is under /dev/v1",
      });
    }
    expect((await json(await operator("/nothing"))).messages[0].value).toBe("no such route");
    // a thing's collect or renewal under another env (a thing made before hub.env changed): the
    // hub says so, as its agent queues each message for ever on the 404 (new-user pass 23, F2)
    const lines: string[] = [];
    const logged = hubApiOver({ home, store, log: createLogger({ write: (line) => lines.push(line) }), broker: fakeBroker });
    for (const path of [`/prod/v1/things/${thing.id}/collect`, `/prod/v1/things/${thing.id}/certificate`, "/prod/v1/things", "/v1/things"]) {
      expect((await logged.fetch(new Request(`http://hub.example:8080${path}`, { method: "POST", body: "{}" }))).status).toBe(404);
    }
    const otherEnv = lines.filter((line) => line.includes("hub.other_env_refused"));
    expect(otherEnv).toHaveLength(2);
    expect(otherEnv[0]).toMatch(
      /WARN +hub\.other_env_refused component=api env=prod thing=[0-9a-f-]{36} route=collect note="this hub's env is dev: .*" fix="set flashlex\.app\.api\.env: dev in that thing's config\.yml \(or hub\.env back\)"/,
    );
    expect((await operator(`/things/${randomUUID()}`)).status).toBe(404);
    expect((await operator(`/things/not-a-uuid`)).status).toBe(404);
    expect((await operator(`/things/${thing.id}/nothing`)).status).toBe(404);
    // a segment that is not percent-encoded UTF-8 names no thing, like any other unknown name (was "no such route")
    for (const path of ["/things/%ff", "/things/%ff/messages", "/things/caf%C3%A9/messages"]) {
      const answer = await operator(path);
      expect({ path, status: answer.status, error: (await json(answer)).messages[0].value }).toEqual({ path, status: 404, error: "no such thing" });
    }
    const wrongMethod = await operator("/things", { method: "PUT" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("GET, HEAD, POST");
    // HEAD is answered as GET is (the server leaves the body out)
    expect((await operator("/things", { method: "HEAD" })).status).toBe(200);
    expect((await operator(`/things/${randomUUID()}`, { method: "HEAD" })).status).toBe(404);
  });

  test("the update routes answer other methods and HEAD as the other routes do: 405 with Allow, HEAD as GET (they were 404 'no such route', and a 405 without Allow)", async () => {
    for (const [path, method, allow] of [
      ["/update-key", "POST", "GET, HEAD"],
      ["/releases", "DELETE", "GET, HEAD"],
      ["/updates", "DELETE", "GET, HEAD, POST"],
      [`/things/${thing.id}/update`, "PUT", "GET, HEAD, POST"],
      [`/things/${thing.id}/update/binary`, "POST", "GET, HEAD"],
    ] as const) {
      const answer = await operator(path, { method });
      expect({ path, method, status: answer.status, allow: answer.headers.get("allow") }).toEqual({ path, method, status: 405, allow });
    }
    for (const path of ["/update-key", "/releases", "/updates"])
      expect({ path, status: (await operator(path, { method: "HEAD" })).status }).toEqual({ path, status: 200 });
    expect((await operator(`/things/${thing.id}/nothing/more`)).status).toBe(404);
  });

  test("GET messages streams a range of many pages whole, in order, as the one envelope it was (memory holds a page, not the answer)", async () => {
    const target = (await createThing(home, store, "paged")).thing;
    // 4 messages per page at the default 256 KiB payload limit: 11 are three pages
    for (let i = 0; i < 11; i++) {
      await store.insertMessage({
        flmessagespk: randomUUID(),
        thingId: target.id,
        messagetype: "egress",
        payload: `{"i":${i}}`,
        fltimestamp: 5000 + i,
        datecreated: "x",
      });
    }
    const answer = await operator(`/things/${target.id}/messages`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toStartWith("application/json");
    const text = await answer.text();
    const body = JSON.parse(text);
    expect(body.messages).toEqual([{ key: "message", value: "11 messages." }]);
    expect(body.result.map((m: { payload: { i: number } }) => m.payload.i)).toStrictEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // byte for byte what the whole envelope at once was
    expect(text).toBe(JSON.stringify(body));
    const none = JSON.parse(await (await operator(`/things/${target.id}/messages?startts=9999999`)).text());
    expect(none).toEqual({ status: "OK", code: 200, messages: [{ key: "message", value: "0 messages." }], result: [] });
  });

  test("GET and DELETE messages by time range and type", async () => {
    const target = (await createThing(home, store, "ranged")).thing;
    for (const [ts, type] of [
      [1000, "egress"],
      [2000, "egress"],
      [3000, "ingress"],
    ] as const) {
      await store.insertMessage({
        flmessagespk: randomUUID(),
        thingId: target.id,
        messagetype: type,
        payload: `{"ts":${ts}}`,
        fltimestamp: ts,
        datecreated: "x",
      });
    }
    const get = async (q: string) => (await json(await operator(`/things/${target.id}/messages${q}`))).result as { fltimestamp: number }[];
    expect((await get("")).map((m) => m.fltimestamp)).toStrictEqual([1000, 2000, 3000]);
    expect((await get("?startts=1500&endts=3000")).map((m) => m.fltimestamp)).toStrictEqual([2000, 3000]);
    expect((await get("?messagetype=ingress")).map((m) => m.fltimestamp)).toStrictEqual([3000]);
    expect((await operator(`/things/${target.id}/messages?startts=yesterday`)).status).toBe(400);
    // every numeric parameter is a bounded whole number, a 400 naming it otherwise (never SQLite's 500)
    for (const [route, param] of [
      ["messages", "startts"],
      ["messages", "endts"],
      ["archive", "startts"],
      ["archive", "endts"],
      ["hourly", "hours"],
    ] as const) {
      for (const bad of ["1e20", "1e300", "-1", "1.5", "99999999999999999999", "abc"]) {
        const answer = await operator(`/things/${target.id}/${route}?${param}=${bad}`);
        expect(answer.status, `${route} ${param}=${bad}`).toBe(400);
        expect(JSON.stringify(await answer.json())).toContain(`${param} must be a whole number from`);
      }
    }
    // an inverted range is refused, not answered with nothing
    const inverted = await operator(`/things/${target.id}/messages?startts=3000&endts=1000`);
    expect(inverted.status).toBe(400);
    expect(JSON.stringify(await inverted.json())).toContain("startts (3000) must not be after endts (1000)");
    expect((await operator(`/things/${target.id}/archive?startts=3000&endts=1000`)).status).toBe(400);
    expect((await operator(`/things/${target.id}/messages?startts=3000&endts=1000`, { method: "DELETE" })).status).toBe(400);
    expect((await operator(`/things/${target.id}/messages?messagetype=sideways`)).status).toBe(400);
    // given empty (an unset shell variable) or twice: a 400 naming it, never read as "no bound"
    for (const [query, says] of [
      ["startts=", "startts is empty; leave it out instead"],
      ["endts=&messagetype=", "endts is empty; leave it out instead"],
      ["messagetype=", "messagetype is empty; leave it out instead"],
      ["startts=1&startts=abc", "startts is given 2 times; give it once"],
      ["messagetype=egress&messagetype=xx", "messagetype is given 2 times; give it once"],
    ] as const) {
      for (const method of ["DELETE", "GET"]) {
        const answer = await operator(`/things/${target.id}/messages?${query}`, { method });
        expect([method, query, answer.status, JSON.stringify(await answer.json()).includes(says)]).toEqual([method, query, 400, true]);
      }
    }
    // a misspelt or unknown parameter is not "no bound": DELETE ?startTs=... deleted everything
    for (const query of ["startTs=9999999999", "start_ts=1", "from=1", "startts%5B%5D=1"]) {
      for (const [method, route] of [
        ["DELETE", "messages"],
        ["GET", "messages"],
        ["GET", "archive"],
        ["GET", "hourly"],
      ] as const) {
        const answer = await operator(`/things/${target.id}/${route}?${query}`, { method });
        expect([method, route, query, answer.status]).toEqual([method, route, query, 400]);
        expect(JSON.stringify(await answer.json())).toContain("unknown query parameter");
      }
    }
    // every operator route refuses what it does not take: DELETE ?dryRun=true deleted the thing,
    // and GET /things?name=... listed them all
    for (const [method, route] of [
      ["DELETE", `/things/${target.id}`],
      ["GET", `/things/${target.id}`],
      ["GET", "/things"],
      ["POST", "/things"],
      ["GET", `/things/${target.id}/dist`],
      ["POST", `/things/${target.id}/publish`],
      ["POST", `/things/${target.id}/revoke`],
      ["POST", "/publish"],
      ["GET", "/releases"],
      ["GET", "/updates"],
      ["POST", "/updates/stop"],
    ] as const) {
      const answer = await operator(`${route}?dryRun=true`, {
        method,
        body: method === "POST" ? "{}" : undefined,
        headers: { "Content-Type": "application/json" },
      });
      expect([method, route, answer.status]).toEqual([method, route, 400]);
      const takes = route === "/things" && method === "GET" ? "q, status" : "none";
      expect(JSON.stringify(await answer.json())).toContain(`unknown query parameter \\"dryRun\\"; this route takes ${takes}`);
    }
    expect((await json(await operator(`/things/${target.id}`))).result.status).not.toBe("revoked");
    tally("badInputs", 25);
    expect((await get("")).map((m) => m.fltimestamp)).toStrictEqual([1000, 2000, 3000]);
    const deleted = await operator(`/things/${target.id}/messages?endts=1500`, { method: "DELETE" });
    expect((await json(deleted)).result).toEqual({ deleted: 1 });
    expect((await get("")).map((m) => m.fltimestamp)).toStrictEqual([2000, 3000]);
  });

  test("GET archive: one <flmessagespk>.json per message, in the guide's format and folder", async () => {
    const target = (await createThing(home, store, "archived")).thing;
    const at = Date.UTC(2019, 6, 20, 1, 45, 44);
    const api2 = hubApiOver({ home, store, log: silentLogger, now: () => at });
    const messageId = "1bdae18a-d97f-48ac-8256-f753de1c032f";
    await store.insertMessage({
      flmessagespk: messageId,
      thingId: target.id,
      messagetype: "egress",
      payload: '{"foo":"bar"}',
      fltimestamp: at / 1000,
      datecreated: "2019-07-20T01:45:44Z",
    });
    const response = await api2.fetch(new Request(`${base}/things/${target.id}/archive?startts=0`, { headers: { Authorization: `Bearer ${operatorToken}` } }));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/zip");
    const folder = `${target.id}_messages_2019-07-20`;
    expect(response.headers.get("content-disposition")).toBe(`attachment; filename="${folder}.zip"`);
    const files = unzip(new Uint8Array(await response.arrayBuffer()));
    expect(Object.keys(files)).toEqual([`${folder}/${messageId}.json`]);
    const text = files[`${folder}/${messageId}.json`]!;
    expect(JSON.parse(text)).toEqual({
      payload: { foo: "bar" },
      flthingspk: target.id,
      messagetype: "egress",
      fltimestamp: 1563587144,
      datecreated: "2019-07-20T01:45:44Z",
      fluserspk: OWNER,
      flmessagespk: messageId,
    });
    // Same key order as the guide's file.
    expect(Object.keys(JSON.parse(text))).toEqual(["payload", "flthingspk", "messagetype", "fltimestamp", "datecreated", "fluserspk", "flmessagespk"]);
  });

  test("GET dist: the distribution zip, whose config.yml validates and whose key is 0600", async () => {
    const response = await operator(`/things/${thing.id}/dist`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-disposition")).toBe(`attachment; filename="${thing.name}.zip"`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const files = unzip(bytes);
    const n = thing.name;
    expect(Object.keys(files).sort()).toEqual(
      [
        `${n}/README.md`,
        `${n}/config.yml`,
        `${n}/flashlex.py`,
        `${n}/keys/${n}-certificate.pem`,
        `${n}/keys/${n}-keypair-private.pem`,
        `${n}/keys/${n}-keypair-public.pem`,
        `${n}/keys/root-ca-cert.pem`,
      ].sort(),
    );
    const config = ThingYamlSchema.parse(parse(files[`${n}/config.yml`]!)).flashlex;
    expect(config.app.api).toEqual({ endpoint: "http://hub.example:8080", env: "dev" });
    expect(config.thing).toMatchObject({ id: thing.id, name: n, endpoint: "hub.example" });
    expect(config.thing.mqtt.ingress.topic).toBe(`ingress/${n}`);
    expect(zipModes(bytes)[`${n}/keys/${n}-keypair-private.pem`]).toBe(0o600);
    expect(zipModes(bytes)[`${n}/config.yml`]).toBe(0o644);
    expect(zipModes(bytes)[`${n}/flashlex.py`]).toBe(0o644);
    const check = checkCertificate(files[`${n}/keys/${n}-certificate.pem`]!, files[`${n}/keys/root-ca-cert.pem`]!, new Date());
    expect(check.ok).toBe(true);
    expect(files[`${n}/README.md`]).toContain(`chmod +x flashlex && mv flashlex ${n}/\n    cd ${n}\n`);
  });

  test("POST publish sends {message} to ingress/<name> and stores it as ingress", async () => {
    published.length = 0;
    const response = await operator(`/things/${thing.id}/publish`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: '{"message":{"message":"this is a test message YO!"}}',
    });
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(published).toEqual([{ topic: `ingress/${thing.name}`, payload: '{"message":{"message":"this is a test message YO!"}}' }]);
    const stored = (await storedMessages(store, thing.id, { messagetype: "ingress" })).find((m) => m.flmessagespk === body.result.flmessagespk);
    expect(JSON.parse(stored!.payload)).toEqual({ message: { message: "this is a test message YO!" } });
    expect(stored!.delivery).toBe("pending"); // this broker tracks PUBACKs
    const missing = await operator(`/things/${thing.id}/publish`, { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"text":"x"}' });
    expect(missing.status).toBe(400);
    const noBroker = hubApiOver({ home, store, log: silentLogger });
    const unavailable = await noBroker.fetch(
      new Request(`${base}/things/${thing.id}/publish`, {
        method: "POST",
        headers: { Authorization: `Bearer ${operatorToken}`, "Content-Type": "application/json" },
        body: '{"message":1}',
      }),
    );
    expect(unavailable.status).toBe(503);
  });

  test("POST /publish sends one message to each thing named, stored in one go; a bad list stores nothing", async () => {
    const a = (await createThing(home, store, "fan-a")).thing;
    const b = (await createThing(home, store, "fan-b")).thing;
    const post = (body: unknown) =>
      operator("/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
    const ingressOf = async (id: string) => (await storedMessages(store, id, { messagetype: "ingress" })).length;
    const before = [await ingressOf(a.id), await ingressOf(b.id)];
    const limit = home.settings.api.payloadLimitBytes;

    published.length = 0;
    const response = await post({ things: [a.id, b.id.toUpperCase()], message: { cmd: "reboot" } });
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(body.messages[0].value).toBe("Published to 2 things.");
    expect(body.result.map((r: { flthingspk: string }) => r.flthingspk)).toStrictEqual([a.id, b.id]);
    expect(body.result[1]).toMatchObject({ topic: `ingress/${b.name}`, online: false });
    expect(published.map((p) => p.topic)).toStrictEqual([`ingress/${a.name}`, `ingress/${b.name}`]);
    for (const [i, target] of [a, b].entries()) {
      const stored = (await storedMessages(store, target.id, { messagetype: "ingress" })).find((m) => m.flmessagespk === body.result[i].flmessagespk);
      expect(stored).toMatchObject({ payload: '{"message":{"cmd":"reboot"}}', delivery: "pending" });
    }

    // every refusal names what is wrong, and nothing is stored or published
    published.length = 0;
    const refusals: [unknown, number, RegExp][] = [
      [{ message: 1 }, 400, /"things"/],
      [{ things: [a.id] }, 400, /"message"/],
      [{ things: [], message: 1 }, 400, /1 to 10000 thing ids/],
      [{ things: a.id, message: 1 }, 400, /array/],
      [{ things: [a.id, "kitchen"], message: 1 }, 400, /things\[1\] is not a thing id/],
      [{ things: [a.id, a.id.toUpperCase()], message: 1 }, 400, /things\[1\] repeats/],
      [{ things: Array.from({ length: 10_001 }, () => randomUUID()), message: 1 }, 400, /1 to 10000/],
      [{ things: [a.id, randomUUID()], message: 1 }, 404, /^no such thing: things\[1\] [0-9a-f-]{36}$/],
      [
        { things: [randomUUID(), a.id, randomUUID(), randomUUID(), randomUUID(), randomUUID()], message: 1 },
        404,
        /things\[0\] .*, things\[2\] .*, things\[3\] \S+ and 2 more$/,
      ],
      ["[1]", 400, /"things"/],
      // over the message limit: 413 as on /things/{id}/publish, counted in UTF-8 bytes, not characters
      [{ things: [a.id], message: "€".repeat(Math.ceil(limit / 3)) }, 413, /^the message: \d+ bytes as \{"message": \.\.\.\}, over the hub's \d+-byte limit$/],
    ];
    for (const [request, status, message] of refusals) {
      const refused = await post(request);
      expect({ status: refused.status }).toEqual({ status });
      expect((await json(refused)).messages[0].value).toMatch(message);
    }
    // a body pretty-printed with 10,000 ids and a message near the limit is read, not refused for its size
    const pretty = JSON.stringify({ things: Array.from({ length: 10_000 }, () => randomUUID()), message: "x".repeat(limit - 100) }, null, 4);
    expect(pretty.length).toBeGreaterThan(limit + 10_000 * 40);
    const unknownMany = await post(pretty);
    expect(unknownMany.status).toBe(404);
    expect((await json(unknownMany)).messages[0].value).toMatch(/and 9997 more$/);
    const revoked = (await createThing(home, store, "fan-revoked")).thing;
    await new Things({ home, store }).revoke(revoked);
    const conflict = await post({ things: [a.id, revoked.id], message: 1 });
    expect(conflict.status).toBe(409);
    expect((await json(conflict)).messages[0].value).toContain(revoked.name);
    expect(published).toEqual([]);
    expect([await ingressOf(a.id), await ingressOf(b.id)]).toEqual([before[0]! + 1, before[1]! + 1]);
  });

  test("a publish is held to its message, not to how it is written: pretty-printed over the limit is sent, a message over it is 413", async () => {
    const limit = home.settings.api.payloadLimitBytes;
    const target = (await createThing(home, store, "pretty")).thing;
    const message = { rows: Array.from({ length: 4000 }, (_, i) => ({ n: i, v: "x".repeat(20) })) };
    const compact = Buffer.byteLength(JSON.stringify({ message }));
    const pretty = JSON.stringify({ message }, null, 8);
    expect(compact).toBeLessThan(limit);
    expect(pretty.length).toBeGreaterThan(limit);
    const publish = (body: string) => operator(`/things/${target.id}/publish`, { method: "POST", headers: { "Content-Type": "application/json" }, body });
    expect((await publish(pretty)).status).toBe(200);
    const over = JSON.stringify({ message: { text: "x".repeat(limit) } }, null, 2);
    const refused = await publish(over);
    expect(refused.status).toBe(413);
    expect((await json(refused)).messages[0].value).toMatch(/bytes as \{"message": \.\.\.\}, over the hub's \d+-byte limit/);
    // hub send reads its file the same way
    expect(parseIngressDocument(JSON.stringify(message, null, 8), limit, "pretty.json")).toEqual(message);
    expect(() => parseIngressDocument(JSON.stringify({ text: "x".repeat(limit) }), limit, "big.json")).toThrow(/big\.json: \d+ bytes as/);
  });

  test("a fan-out's 64 MiB bound counts UTF-8 bytes: 300 copies of 87,000 euro signs (26 M characters, 78 MB) are refused before anything is stored", async () => {
    const limit = home.settings.api.payloadLimitBytes;
    const thing = (await createThing(home, store, "fan-bytes")).thing;
    const many = Array.from({ length: 300 }, (_, i) => ({ ...thing, id: randomUUID(), name: `${thing.name}-${i}` }));
    const message = "€".repeat(Math.floor((limit - 20) / 3));
    const sending = new Messages({ home, store, log: silentLogger, broker: fakeBroker }).sendToMany(many, message);
    await expect(sending).rejects.toThrow(/^300 copies of a \d+-byte message are \d+ bytes, over the 67108864-byte limit of one fan-out; send it in parts$/);
    await expect(sending).rejects.toMatchObject({ problem: "too_large" });
    for (const copy of many.slice(0, 3)) expect(await storedMessages(store, copy.id, { messagetype: "ingress" })).toEqual([]);
  });

  test("POST /publish: a copy the broker refuses is not stored and is answered as such; the rest stand", async () => {
    const a = (await createThing(home, store, "fan-ok")).thing;
    const b = (await createThing(home, store, "fan-refused")).thing;
    const choosy = hubApiOver({
      home,
      store,
      log: silentLogger,
      broker: {
        ...fakeBroker,
        async sendIngress(name, message) {
          if (name === b.name) throw new Error("queue full");
          await fakeBroker.sendIngress(name, message);
        },
      },
    });
    const send = (things: string[]) =>
      choosy.fetch(
        new Request(`${base}/publish`, {
          method: "POST",
          headers: { Authorization: `Bearer ${operatorToken}`, "Content-Type": "application/json" },
          body: JSON.stringify({ things, message: "hello" }),
        }),
      );
    const partly = await send([a.id, b.id]);
    expect(partly.status).toBe(200);
    const body = await json(partly);
    expect(body.messages[0].value).toBe("Published to 1 of 2 things; the broker did not accept 1.");
    expect(body.result[1]).toEqual({ flthingspk: b.id, topic: `ingress/${b.name}`, error: "the broker did not accept the message; it is not stored" });
    expect(await storedMessages(store, b.id, { messagetype: "ingress" })).toEqual([]);
    expect((await storedMessages(store, a.id, { messagetype: "ingress" })).map((m) => m.flmessagespk)).toStrictEqual([body.result[0].flmessagespk]);
    expect((await send([b.id])).status).toBe(503);
  });

  test("GET messages says what the hub knows of each ingress message's delivery; egress entries keep the guide's keys", async () => {
    const target = (await createThing(home, store, "delivery")).thing;
    const send = async (through: HubApi, text: string): Promise<string> => {
      const headers = { Authorization: `Bearer ${operatorToken}`, "Content-Type": "application/json" };
      const request = new Request(`${base}/things/${target.id}/publish`, { method: "POST", headers, body: JSON.stringify({ message: text }) });
      return (await json(await through.fetch(request))).result.flmessagespk;
    };
    const tracked = await send(api, "tracked");
    const external = hubApiOver({ home, store, log: silentLogger, broker: { ...fakeBroker, tracksDelivery: false, isConnected: () => undefined } });
    const untracked = await send(external, "untracked");
    const delivered = await send(api, "delivered");
    await store.markDelivered([{ flmessagespk: delivered, at: Date.UTC(2024, 0, 2, 3, 4, 5) }]);
    await store.insertMessage({ flmessagespk: randomUUID(), thingId: target.id, messagetype: "egress", payload: "1", fltimestamp: 1, datecreated: "x" });

    const entries = (await json(await operator(`/things/${target.id}/messages`))).result as any[];
    const byId = Object.fromEntries(entries.map((m) => [m.flmessagespk, m]));
    expect(byId[tracked]).toMatchObject({ messagetype: "ingress", delivery: "pending", deliveredAt: null });
    expect(byId[untracked]).toMatchObject({ messagetype: "ingress", delivery: "unknown", deliveredAt: null });
    expect(byId[delivered]).toMatchObject({ messagetype: "ingress", delivery: "delivered", deliveredAt: "2024-01-02T03:04:05Z" });
    const egress = entries.find((m) => m.messagetype === "egress");
    expect(Object.keys(egress)).toEqual(["payload", "flthingspk", "messagetype", "fltimestamp", "datecreated", "fluserspk", "flmessagespk"]);
  });

  test("POST /things/{id}/revoke revokes it as `hub thing revoke` does: no collect, no distribution, disconnected once", async () => {
    const target = await createThing(home, store, "revoked-by-api");
    const files = unzip(await Bun.file(target.distribution).bytes());
    const privateKey = loadPrivateKey(files[`${target.thing.name}/keys/${target.thing.name}-keypair-private.pem`]!);
    const token = await signThingToken({ thingId: target.thing.id, privateKey });
    expect((await collect({ token, thingId: target.thing.id })).status).toBe(200);
    const kicked: string[] = [];
    const api2 = hubApiOver({ home, store, log: silentLogger, disconnect: (name) => kicked.push(name) });
    const revoke = () =>
      api2.fetch(
        new Request(`${base}/things/${target.thing.id.toUpperCase()}/revoke`, { method: "POST", headers: { Authorization: `Bearer ${operatorToken}` } }),
      );
    const first = await revoke();
    expect(first.status).toBe(200);
    expect((await json(first)).result).toEqual({ id: target.thing.id, name: target.thing.name, changed: true });
    expect(kicked).toEqual([target.thing.name]);
    expect((await json(await operator(`/things/${target.thing.id}`))).result.status).toBe("revoked");
    expect((await operator(`/things/${target.thing.id}/dist`)).status).toBe(404);
    expect((await collect({ token, thingId: target.thing.id })).status).toBe(401);
    // again: nothing changes, and the thing is not disconnected twice
    const again = await revoke();
    expect(again.status).toBe(200);
    expect((await json(again)).result.changed).toBe(false);
    expect(kicked).toEqual([target.thing.name]);
    expect((await operator(`/things/${randomUUID()}/revoke`, { method: "POST" })).status).toBe(404);
    const wrongMethod = await operator(`/things/${target.thing.id}/revoke`);
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("POST");
  });

  test("the routes that take no body refuse one (400) before they act: a body's dryRun was ignored and the thing deleted; an empty body is no body", async () => {
    const target = (await createThing(home, store, "bodied")).thing;
    const token = (await json(await operator("/enroll-tokens", { method: "POST", body: "{}", headers: { "Content-Type": "application/json" } }))).result
      .id as string;
    await store.insertMessage({ flmessagespk: randomUUID(), thingId: target.id, messagetype: "egress", payload: "1", fltimestamp: 1, datecreated: "x" });
    const routes = [
      ["DELETE", `/things/${target.id}`],
      ["POST", `/things/${target.id}/revoke`],
      ["POST", `/things/${target.id}/rotate`],
      ["DELETE", `/things/${target.id}/messages`],
      ["DELETE", `/enroll-tokens/${token}`],
    ] as const;
    for (const [method, route] of routes) {
      for (const body of ['{"dryRun":true}', "hello"]) {
        const answer = await operator(route, { method, body, headers: { "Content-Type": "application/json" } });
        tally("badInputs");
        expect([method, route, body, answer.status]).toEqual([method, route, body, 400]);
        expect((await json(answer)).messages[0].value).toBe(`${method} takes no body here (what it does is in its path and query); send none`);
      }
    }
    // nothing was done
    expect((await json(await operator(`/things/${target.id}`))).result.status).not.toBe("revoked");
    expect(await storedMessages(store, target.id, {})).toHaveLength(1);
    expect((await json(await operator("/enroll-tokens"))).result.find((t: { id: string }) => t.id === token).state).toBe("active");
    // with none (or an empty one) they act
    expect((await operator(`/things/${target.id}/revoke`, { method: "POST", body: "" })).status).toBe(200);
    expect((await operator(`/things/${target.id}`, { method: "DELETE" })).status).toBe(200);
  });

  test("POST /enroll-tokens takes its defaults from no body at all, however it is left out (no body and no Content-Type was 415)", async () => {
    const chunkedEmpty = () => new ReadableStream({ start: (controller) => controller.close() });
    for (const init of [
      { method: "POST" },
      { method: "POST", headers: { "Content-Length": "0" } },
      { method: "POST", body: "" },
      { method: "POST", body: chunkedEmpty() },
      { method: "POST", body: " \n", headers: { "Content-Type": "text/plain" } },
    ] as RequestInit[]) {
      const answer = await operator("/enroll-tokens", init);
      expect(answer.status).toBe(201);
      expect((await json(answer)).result.maxUses).toBe(1);
    }
    // a body that says something must still say it in JSON
    const typed = await operator("/enroll-tokens", { method: "POST", body: '{"maxUses":2}', headers: { "Content-Type": "text/plain" } });
    tally("badInputs");
    expect(typed.status).toBe(415);
  });

  test("DELETE a thing removes it, its messages and its distribution", async () => {
    const target = (await createThing(home, store, "doomed")).thing;
    await store.insertMessage({ flmessagespk: randomUUID(), thingId: target.id, messagetype: "egress", payload: "1", fltimestamp: 1, datecreated: "x" });
    const kicked: string[] = [];
    const api2 = hubApiOver({ home, store, log: silentLogger, disconnect: (name) => kicked.push(name) });
    const response = await api2.fetch(new Request(`${base}/things/${target.id}`, { method: "DELETE", headers: { Authorization: `Bearer ${operatorToken}` } }));
    expect(response.status).toBe(200);
    expect(kicked).toEqual([target.name]);
    expect(await store.getThing(target.id)).toBeUndefined();
    expect(await storedMessages(store, target.id, {})).toEqual([]);
    expect((await operator(`/things/${target.id}/dist`)).status).toBe(404);
  });
});

describe("MQTT egress (BrokerEvents)", () => {
  const events = () => createBrokerEvents({ store, collector: api.collector, log: silentLogger, payloadLimitBytes: 256 * 1024 });
  const envelope = async (messageId: string, payload: unknown, thingId = thing.id) =>
    Buffer.from(JSON.stringify({ messageId, thingId, token: await signThingToken({ thingId, privateKey: thingKey }), payload }));

  test("a collect envelope with a valid token is stored once by messageId", async () => {
    const e = events();
    const id = randomUUID();
    await e.handleThingPublish({ id: thing.id, name: thing.name }, "flashlex/collect", await envelope(id, { t: 21.5 }));
    await e.handleThingPublish(undefined, "flashlex/collect", await envelope(id, { t: 21.5 })); // external broker: publisher unknown
    const rows = (await storedMessages(store, thing.id, {})).filter((m) => m.flmessagespk === id);
    expect(rows).toHaveLength(1);
    expect(JSON.parse(rows[0]!.payload)).toEqual({ t: 21.5 });
  });

  test("ids in upper case are the same ids: an envelope's, then the same message by HTTP, stored once", async () => {
    const e = events();
    const id = randomUUID();
    const token = await signThingToken({ thingId: thing.id, privateKey: thingKey });
    const upper = JSON.stringify({ messageId: id.toUpperCase(), thingId: thing.id.toUpperCase(), token, payload: { case: "upper" } });
    await e.handleThingPublish({ id: thing.id, name: thing.name }, "flashlex/collect", Buffer.from(upper));
    expect((await storedMessages(store, thing.id, {})).filter((m) => m.flmessagespk === id)).toHaveLength(1);
    const resent = await collect({ token, messageId: id, body: '{"case":"upper"}' });
    expect((await json(resent)).result.flmessagespk).toBe(id);
    expect((await storedMessages(store, thing.id, {})).filter((m) => m.flmessagespk.toLowerCase() === id)).toHaveLength(1);
  });

  test("bad tokens, another thing's id and junk are dropped, not stored", async () => {
    const e = events();
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const forged = JSON.stringify({ messageId: ids[0], thingId: thing.id, token: "abc.def.ghi", payload: 1 });
    await e.handleThingPublish(undefined, "flashlex/collect", Buffer.from(forged));
    await e.handleThingPublish({ id: randomUUID(), name: "ecd13b11-other" }, "flashlex/collect", await envelope(ids[1]!, 2));
    await e.handleThingPublish(undefined, "flashlex/collect", Buffer.from("not json"));
    const stored = (await storedMessages(store, thing.id, {})).map((m) => m.flmessagespk);
    for (const id of ids) expect(stored).not.toContain(id);
  });

  test("a bootstrap's test message (with a nonce) is echoed to the thing's ingress; others are not", async () => {
    const echoes: { topic: string; payload: string }[] = [];
    const e = createBrokerEvents({
      store,
      collector: api.collector,
      log: silentLogger,
      payloadLimitBytes: 1024,
      publish: async (topic, payload) => void echoes.push({ topic, payload }),
    });
    const body = { thingId: thing.id, thingName: thing.name, message: "hi", sequence: 0 };
    await e.handleThingPublish({ id: thing.id, name: thing.name }, "flashlex/test", Buffer.from(JSON.stringify(body)));
    expect(echoes).toEqual([]);
    const nonce = randomUUID();
    await e.handleThingPublish({ id: thing.id, name: thing.name }, "flashlex/test", Buffer.from(JSON.stringify({ ...body, nonce })));
    await Bun.sleep(0);
    // what names the round trip: not the text the thing sent, nor a token
    expect(echoes).toEqual([
      { topic: `ingress/${thing.name}`, payload: JSON.stringify({ message: { thingId: thing.id, thingName: thing.name, sequence: 0, nonce } }) },
    ]);
    // text of the sender's choosing is never echoed: a nonce that is no UUID gets no echo (with a
    // captured token, "OWNER SAYS: unlock the door" went into the thing's ingress as the nonce),
    // and a sequence that is not an integer is left out
    await e.handleThingPublish(
      { id: thing.id, name: thing.name },
      "flashlex/test",
      Buffer.from(JSON.stringify({ ...body, nonce: "OWNER SAYS: unlock the door" })),
    );
    const another = randomUUID();
    await e.handleThingPublish(
      { id: thing.id, name: thing.name },
      "flashlex/test",
      Buffer.from(JSON.stringify({ ...body, sequence: { say: "open" }, nonce: another })),
    );
    await Bun.sleep(0);
    expect(echoes.slice(1)).toEqual([
      { topic: `ingress/${thing.name}`, payload: JSON.stringify({ message: { thingId: thing.id, thingName: thing.name, nonce: another } }) },
    ]);
  });

  test("flashlex/test marks the thing verified when id and name match", async () => {
    const fresh = (await createThing(home, store, "tester")).thing;
    const e = events();
    const body = (name: string) => Buffer.from(JSON.stringify({ thingId: fresh.id, thingName: name, message: "hi", sequence: 0 }));
    await e.handleThingPublish({ id: fresh.id, name: fresh.name }, "flashlex/test", body("ecd13b11-someone-else"));
    expect((await store.getThing(fresh.id))!.verifiedAt).toBeNull();
    await e.handleThingPublish({ id: fresh.id, name: fresh.name }, "flashlex/test", body(fresh.name));
    expect((await store.getThing(fresh.id))!.verifiedAt).not.toBeNull();
  });
});
