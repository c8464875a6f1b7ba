/**
 * The hub end to end, as an operator runs it: the compiled binary (`flashlex hub ...` and the
 * thing agent) over real mutual TLS on loopback, in a temporary directory.
 *
 *   round trip      hub init, things A, B and C, hub serve (embedded broker); A bootstraps, serves,
 *                   receives `hub send`, collects; the hub stores it (export, HTTP API, thing list)
 *   thing tokens    forged, expired, not-yet-valid, wrong kid/audience, alg none, HS256 with the
 *                   public key, tampered: 401 over real HTTP, nothing stored; 415 and 413
 *   broker rules    A cannot subscribe to B's ingress, publish as B or use B's client id; a revoked
 *                   B is kicked and refused; other CAs and missing certificates fail at TLS
 *   Mosquitto       the same flow with `hub mosquitto-config` and `hub serve --broker mqtts://...`
 *
 * The describes run in order and share one hub: B is revoked in "broker rules", C in "Mosquitto".
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac, createPublicKey, generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { SignJWT } from "jose";
import type { IClientOptions, MqttClient } from "mqtt";
import { parse, stringify } from "yaml";
import { issueThingCertificate } from "../../src/crypto/x509.ts";
import { type Background, binaryPath, type RunResult, run, start } from "../support/binary.ts";
import { provisionThing } from "../support/distribution.ts";
import { listenOnLoopback, loopbackHubInit } from "../support/hub-fixture.ts";
import { freePort, type MosquittoBroker, startMosquitto } from "../support/mosquitto.ts";
import { attemptConnect, closedWithin, nextMessage, subscribeCode } from "../support/mqtt-client.ts";
import { makeTestPki } from "../support/pki.ts";
import { tally } from "../support/tally.ts";
import { occurrences, storedCount, waitForLog, waitUntil } from "../support/wait.ts";

// ---------------------------------------------------------------------------------------------
// helpers

const work = mkdtempSync(join(tmpdir(), "flashlex-hub-test-"));
const hubDir = join(work, "hub");
const background: Background[] = [];
const clients: MqttClient[] = [];
let apiPort = 0;
let brokerPort = 0;
let operatorToken = "";
let ownerId = "";
let hub: Background;

interface Thing {
  id: string;
  name: string;
  dir: string;
  keysDir: string;
  configPath: string;
  /** -c, -k and -d for the thing agent */
  flags: string[];
  certPem: string;
  privateKeyPem: string;
  publicKeyPem: string;
  privateKey: KeyObject;
}
let A: Thing, B: Thing, C: Thing;
/** E: an EC P-256 thing (`--key-type ec`); X: an RSA thing whose key the test replaces with an EC one */
let E: Thing, X: Thing;

/** Runs the binary and fails with its output when it does not exit 0. */
async function flashlex(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const result = await run(args, { timeoutMs: opts.timeoutMs ?? 30_000, input: opts.input });
  if (result.code !== 0) throw new Error(`flashlex ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** Starts a long-running flashlex that the final afterAll stops if the test did not. */
function launch(args: string[]): Background {
  const child = start(args);
  background.push(child);
  return child;
}

/** Provisions a thing and unpacks its distribution the way a user does (private key 0600). */
async function provision(shortName: string, keyType?: "rsa" | "ec"): Promise<Thing> {
  const thing = await provisionThing(flashlex, hubDir, work, shortName, keyType ? ["--key-type", keyType] : []);
  expect(thing.keyType).toBe(keyType ?? "rsa");
  return { ...thing, dir: thing.root };
}

const caPem = () => readFileSync(join(A.keysDir, "root-ca-cert.pem"), "utf8");

/** Waits for `pattern` in a child's log, looking only at what it wrote after `from` characters. */
// --- HTTP against the running hub

const apiBase = () => `http://127.0.0.1:${apiPort}/dev/v1`;

async function api(method: string, path: string, opts: { token?: string; body?: string; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${apiBase()}${path}`, {
    method,
    headers: { ...(opts.token === undefined ? {} : { Authorization: `Bearer ${opts.token}` }), ...opts.headers },
    body: opts.body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: response.status, headers: response.headers, body };
}

/** `POST /things/{id}/collect` as a thing would: JSON body, bearer JWT, optional message id. */
function collectHttp(thing: Thing, token: string, body: unknown, opts: { messageId?: string; contentType?: string; raw?: string } = {}) {
  return api("POST", `/things/${thing.id}/collect`, {
    token,
    body: opts.raw ?? JSON.stringify(body),
    headers: { "Content-Type": opts.contentType ?? "application/json", ...(opts.messageId ? { "X-Flashlex-Message-Id": opts.messageId } : {}) },
  });
}

/** The stored messages of a thing, through the operator API. */
async function storedMessages(thing: Thing): Promise<any[]> {
  const answer = await api("GET", `/things/${thing.id}/messages`, { token: operatorToken });
  expect(answer.status).toBe(200);
  return answer.body.result;
}

/** `hub export` into a zip; returns the message documents by file name. */
async function exportMessages(thing: Thing): Promise<Record<string, any>> {
  const zip = join(work, `export-${randomUUID()}.zip`);
  await flashlex(["hub", "export", thing.name, "--dir", hubDir, "-o", zip]);
  const files: Record<string, any> = {};
  for (const [path, bytes] of Object.entries(unzipSync(readFileSync(zip)))) {
    if (path.endsWith(".json")) files[path] = JSON.parse(new TextDecoder().decode(bytes));
  }
  return files;
}

// --- thing tokens

const now = () => Math.floor(Date.now() / 1000);
const b64url = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** The agent's claims for `thing`, with `overrides` applied (undefined removes a claim). */
function claimsFor(thing: Thing, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const t = now();
  const claims: Record<string, unknown> = {
    iss: `urn:thing:${thing.id}`,
    aud: `urn:flashlex:${thing.id}`,
    nbf: t - 360,
    exp: t + 360,
    iat: t,
    jti: randomUUID(),
    ...overrides,
  };
  for (const key of Object.keys(claims)) if (claims[key] === undefined) delete claims[key];
  return claims;
}

/** An RS256 token signed with `key`, with the agent's header unless `kid` is given. */
function rs256(key: KeyObject, kid: string, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid, typ: "JWT" }).sign(key);
}

const validToken = (thing: Thing) => rs256(thing.privateKey, thing.id, claimsFor(thing));

// --- MQTT clients with a thing's certificate

/** Connects once with `cert` as `clientId`; a client that connected is closed after the tests. */
async function attempt(port: number, cert: { certPem: string; privateKeyPem: string } | undefined, clientId: string, extra: Partial<IClientOptions> = {}) {
  const result = await attemptConnect({ port, caPem: caPem(), cert, clientId, extra });
  if (result.client) clients.push(result.client);
  return result;
}

async function connect(port: number, thing: Thing, extra: Partial<IClientOptions> = {}): Promise<MqttClient> {
  const result = await attempt(port, thing, thing.name, extra);
  if (!result.client) throw new Error(`${thing.name} could not connect: ${result.error?.message}\n--- hub log ---\n${hub?.output()}`);
  return result.client;
}

// ---------------------------------------------------------------------------------------------

// A crashed run must not leave a hub or an agent behind.
process.once("exit", () => {
  for (const b of background) if (b.proc.exitCode === null) b.proc.kill("SIGKILL");
});

beforeAll(async () => {
  binaryPath();
  [apiPort, brokerPort] = [await freePort(), await freePort()];
  const init = await flashlex([...loopbackHubInit(hubDir, apiPort, brokerPort, "127.0.0.1,localhost"), "--json"]);
  ({ token: operatorToken, ownerId } = JSON.parse(init.stdout));
  expect(operatorToken).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  listenOnLoopback(hubDir);

  [A, B, C, E, X] = await Promise.all([provision("a"), provision("b"), provision("c"), provision("e", "ec"), provision("x")]);
  hub = launch(["hub", "serve", "--dir", hubDir]);
  await hub.waitFor(/hub\.started/);
}, 120_000);

afterAll(async () => {
  // end(true) on a connection the broker already closed may never call back: bound it.
  await Promise.all(clients.map((c) => Promise.race([c.endAsync(true).catch(() => {}), Bun.sleep(1_000)])));
  for (const child of background.reverse()) await child.stop(5_000);
  rmSync(work, { recursive: true, force: true });
}, 30_000);

// ---------------------------------------------------------------------------------------------

describe("round trip: embedded broker", () => {
  let serveA: Background;

  afterAll(async () => {
    // The thing's session must be free for the MQTT clients below.
    if (serveA) expect(await serveA.stop()).toBe(0);
  });

  test("the distribution unpacks into a thing that the hub lists as created", async () => {
    expect(statSync(join(A.keysDir, `${A.name}-keypair-private.pem`)).mode & 0o777).toBe(0o600);
    expect(A.name).toBe(`${ownerId.slice(0, 8)}-a`);
    const config = parse(readFileSync(A.configPath, "utf8")).flashlex;
    expect(config.thing).toMatchObject({ id: A.id, name: A.name, endpoint: "127.0.0.1", mqtt: { port: brokerPort } });
    expect(config.app.api).toMatchObject({ endpoint: `http://127.0.0.1:${apiPort}`, env: "dev" });
    const listed = JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout);
    expect(listed.find((t: any) => t.id === A.id)).toMatchObject({ name: A.name, status: "created", lastSeenAt: null });
  });

  test("thing A's bootstrap passes all 12 checks against the hub", async () => {
    const result = await run(["bootstrap", ...A.flags], { timeoutMs: 30_000 });
    expect(result.code, `${result.stdout}\n${result.stderr}\n--- hub log ---\n${hub.output()}`).toBe(0);
    expect(result.stdout.match(/^\[PASS\]/gm)).toHaveLength(12);
    expect(result.stdout).not.toMatch(/\[(FAIL|SKIP)\]/);
    expect(result.stdout).toContain(`[PASS] ingress round trip: received on ingress/${A.name}`);
    await waitForLog(hub, new RegExp(`hub\\.thing_verified thing=${A.name}`));
    await waitForLog(hub, new RegExp(`hub\\.test_echoed thing=${A.name}`));
  }, 40_000);

  test("ingress: `hub send` reaches A's serve and `messages list` shows it", async () => {
    serveA = launch(["serve", ...A.flags]);
    await serveA.waitFor(/mqtt\.subscribed/);
    const sent = await flashlex(["hub", "send", A.name, "--dir", hubDir, "--json"], { input: '{"text":"hello, thing"}' });
    const answer = JSON.parse(sent.stdout);
    expect(answer).toMatchObject({ status: "OK", code: 200, result: { flthingspk: A.id, topic: `ingress/${A.name}`, online: true } });
    await serveA.waitFor(/ingress\.stored/);
    const listed = await flashlex(["messages", "list", "--json", ...A.flags]);
    const rows = listed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    const row = rows.find((r) => r.topic === `ingress/${A.name}` && JSON.parse(r.payload).message?.text === "hello, thing");
    expect(row, listed.stdout).toBeDefined();
    // the guide's wrapper, with the hub's id of the message (by which the agent stores it once)
    expect(JSON.parse(row.payload)).toEqual({ message: { text: "hello, thing" }, flmessagespk: answer.result.flmessagespk });
    // ... and the hub keeps its copy as an ingress message
    const stored = (await storedMessages(A)).find((m) => m.flmessagespk === answer.result.flmessagespk);
    expect(stored).toMatchObject({ messagetype: "ingress", payload: { message: { text: "hello, thing" } } });
  }, 30_000);

  test("egress: A's `collect` is stored by the hub, in the guide's export format and over the API", async () => {
    const collected = await flashlex(["collect", ...A.flags], { input: '{"temperature":21.5,"unit":"C"}' });
    expect(collected.stdout).toContain("status code: 200");
    const id = collected.stdout.match(/"flmessagespk":\s*"([0-9a-f-]{36})"/)?.[1];
    expect(id, collected.stdout).toBeDefined();

    const today = () => new Date().toISOString().slice(0, 10);
    const days = [today()];
    const files = await exportMessages(A);
    days.push(today()); // in case the export ran across midnight (UTC)
    const path = Object.keys(files).find((p) => p.endsWith(`/${id}.json`));
    expect(
      days.map((day) => `${A.id}_messages_${day}/${id}.json`),
      Object.keys(files).join("\n"),
    ).toContain(path!);
    const doc = files[path!];
    expect(Object.keys(doc)).toEqual(["payload", "flthingspk", "messagetype", "fltimestamp", "datecreated", "fluserspk", "flmessagespk"]);
    expect(doc).toMatchObject({ payload: { temperature: 21.5, unit: "C" }, flthingspk: A.id, messagetype: "egress", fluserspk: ownerId, flmessagespk: id });
    expect(Math.abs(doc.fltimestamp - now())).toBeLessThan(60);
    expect(doc.datecreated).toBe(new Date(doc.fltimestamp * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"));

    const answer = await api("GET", `/things/${A.id}/messages?messagetype=egress`, { token: operatorToken });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ status: "OK", code: 200, messages: [{ key: "message" }] });
    expect(answer.body.result.find((m: any) => m.flmessagespk === id)).toEqual(doc);
    expect(answer.body.result.every((m: any) => m.messagetype === "egress")).toBe(true);
  }, 30_000);

  test("egress over MQTT: `collect --via mqtt` goes through serve's session and is stored", async () => {
    const collected = await flashlex(["collect", ...A.flags, "--via", "mqtt", "--json"], { input: '{"via":"mqtt"}' });
    const { messageId } = JSON.parse(collected.stdout);
    expect(messageId).toMatch(/^[0-9a-f-]{36}$/);
    // stored before the PUBACK, so it is there already
    expect((await storedMessages(A)).find((m) => m.flmessagespk === messageId)).toMatchObject({ messagetype: "egress", payload: { via: "mqtt" } });
  }, 30_000);

  test("a repeated collect with the same X-Flashlex-Message-Id is stored once", async () => {
    const messageId = randomUUID();
    const first = await collectHttp(A, await validToken(A), { n: 1 }, { messageId });
    const again = await collectHttp(A, await validToken(A), { n: 1 }, { messageId });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(first.body.result).toEqual({ message: "Message collected.", flthingspk: A.id, flmessagespk: messageId });
    expect((await storedMessages(A)).filter((m) => m.flmessagespk === messageId)).toHaveLength(1);
  });

  test("`hub thing list` shows A verified and last seen", async () => {
    const listed = JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout);
    const a = listed.find((t: any) => t.id === A.id);
    expect(a).toMatchObject({ name: A.name, status: "verified", revokedAt: null });
    expect(Math.abs(Date.parse(a.lastSeenAt) - Date.now())).toBeLessThan(60_000);
    expect(Date.parse(a.verifiedAt)).toBeLessThanOrEqual(Date.parse(a.lastSeenAt));
    expect(listed.find((t: any) => t.id === B.id)).toMatchObject({ status: "created", lastSeenAt: null });
    const text = await flashlex(["hub", "thing", "list", "--dir", hubDir]);
    expect(text.stdout).toMatch(new RegExp(`${A.name}\\s+${A.id}\\s+verified\\s+(yes|no|unknown)\\s+\\d{4}-`));
  });

  test("the operator API refuses a missing or wrong operator token", async () => {
    for (const token of [undefined, "not-the-token", await validToken(A)]) {
      const answer = await api("GET", `/things/${A.id}/messages`, { token });
      expect(answer.status).toBe(401);
      expect(answer.headers.get("www-authenticate")).toBe("Bearer");
      expect(answer.body).toMatchObject({ status: "ERROR", code: 401, result: null });
    }
  });
});

describe("an EC thing end to end: embedded broker", () => {
  let serveE: Background;

  afterAll(async () => {
    if (serveE) expect(await serveE.stop()).toBe(0);
  });

  test("`hub thing create --key-type` takes rsa or ec; anything else is a usage error, and nothing is created", async () => {
    for (const keyType of ["dsa", "EC", "ed25519"]) {
      const result = await run(["hub", "thing", "create", `k-${keyType}`, "--dir", hubDir, "--key-type", keyType], { cwd: work });
      expect(result.code).toBe(64);
      expect(result.stderr.trim()).toBe(`flashlex: --key-type must be rsa or ec, not "${keyType}"`);
    }
    tally("badInputs", 3);
    const listed = JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout);
    expect(listed.filter((t: any) => t.shortName.startsWith("k-"))).toEqual([]);
    expect(listed.find((t: any) => t.id === E.id)).toMatchObject({ keyType: "ec" });
    expect(listed.find((t: any) => t.id === A.id)).toMatchObject({ keyType: "rsa" });
  });

  test("`hub thing create --key-type ec` ships an EC P-256 key (PKCS#8) and a certificate for it", () => {
    expect(E.privateKeyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
    expect(E.privateKey.asymmetricKeyType).toBe("ec");
    expect(E.privateKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(createPublicKey(E.certPem).export({ type: "spki", format: "pem" })).toBe(createPublicKey(E.privateKey).export({ type: "spki", format: "pem" }));
  });

  test("E's bootstrap passes all 12 checks (its egress check signs ES256)", async () => {
    const result = await run(["bootstrap", ...E.flags], { timeoutMs: 30_000 });
    expect(result.code, `${result.stdout}\n${result.stderr}\n--- hub log ---\n${hub.output()}`).toBe(0);
    expect(result.stdout.match(/^\[PASS\]/gm)).toHaveLength(12);
    expect(result.stdout).toContain("(ES256 key)");
    await waitForLog(hub, new RegExp(`hub\\.thing_verified thing=${E.name}`));
  }, 40_000);

  test("E serves, receives `hub send`, and collects over HTTP and over MQTT", async () => {
    serveE = launch(["serve", ...E.flags]);
    await serveE.waitFor(/mqtt\.subscribed/);
    await flashlex(["hub", "send", E.name, "--dir", hubDir], { input: '{"to":"ec"}' });
    await serveE.waitFor(/ingress\.stored/);
    const listed = (await flashlex(["messages", "list", "--json", ...E.flags])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(listed.map((r) => JSON.parse(r.payload).message)).toContainEqual({ to: "ec" });

    const overHttp = JSON.parse((await flashlex(["collect", ...E.flags, "--json"], { input: '{"via":"http","key":"ec"}' })).stdout);
    const overMqtt = JSON.parse((await flashlex(["collect", ...E.flags, "--via", "mqtt", "--json"], { input: '{"via":"mqtt","key":"ec"}' })).stdout);
    expect([overHttp.outcome, overMqtt.outcome]).toEqual(["sent", "sent"]);
    const stored = await storedMessages(E);
    expect(stored.find((m) => m.flmessagespk === overHttp.messageId)).toMatchObject({ messagetype: "egress", payload: { via: "http", key: "ec" } });
    expect(stored.find((m) => m.flmessagespk === overMqtt.messageId)).toMatchObject({ messagetype: "egress", payload: { via: "mqtt", key: "ec" } });
  }, 30_000);

  test("E's tokens are ES256, and the hub takes nothing else from E: RS256 and HS256 are a 401", async () => {
    const claims = claimsFor(E);
    const es256 = await new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: E.id, typ: "JWT" }).sign(E.privateKey);
    expect((await collectHttp(E, es256, { ok: true })).status).toBe(200);
    const input = `${b64url({ alg: "HS256", kid: E.id, typ: "JWT" })}.${b64url(claims)}`;
    const refused = [
      await rs256(A.privateKey, E.id, claims), // an RSA key, RS256, in E's name
      `${input}.${createHmac("sha256", E.publicKeyPem).update(input).digest("base64url")}`, // E's public key as an HMAC secret
    ];
    for (const token of refused) {
      const answer = await collectHttp(E, token, { refused: true });
      expect(answer.status).toBe(401);
      expect(answer.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
    }
    tally("attacks", refused.length);
  });

  test("a thing whose key was replaced by an EC key its hub never registered: 401 from the hub, never 500", async () => {
    const before = hub.output().length;
    const keyPath = join(X.keysDir, `${X.name}-keypair-private.pem`);
    const certPath = join(X.keysDir, `${X.name}-certificate.pem`);
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const ecKeyPem = privateKey.export({ type: "sec1", format: "pem" }) as string;

    // Only the key replaced: the agent refuses it before sending anything (78, one line).
    writeFileSync(keyPath, ecKeyPem, { mode: 0o600 });
    const local = await run(["collect", ...X.flags], { input: '{"never":"sent"}' });
    expect(local.code).toBe(78);
    expect(local.stderr.trim()).toBe(
      `flashlex: ${certPath}: this certificate was not issued for the private key ${keyPath}; use the certificate and key of the same distribution`,
    );

    // Key and certificate replaced (a certificate from the hub's own CA, CN = X's name): the agent
    // signs ES256 for X, the hub holds X's RSA key, and answers 401.
    const ca = { certPem: readFileSync(join(hubDir, "ca-cert.pem"), "utf8"), keyPem: readFileSync(join(hubDir, "ca-key.pem"), "utf8") };
    writeFileSync(certPath, await issueThingCertificate(ca, { thingName: X.name, publicKeyPem: publicKey.export({ type: "spki", format: "pem" }) as string }));
    const sent = await run(["collect", ...X.flags, "--json"], { input: '{"refused":"by the hub"}' });
    expect(sent.code).not.toBe(70);
    expect(sent.code).not.toBe(0);
    expect(JSON.parse(sent.stdout)).toMatchObject({ status: 401 });
    await waitForLog(hub, new RegExp(`hub\\.collect_refused [^\\n]*thing_id=${X.id} reason="algorithm not allowed"`), before);
    const direct = await collectHttp(X, await new SignJWT(claimsFor(X)).setProtectedHeader({ alg: "ES256", kid: X.id, typ: "JWT" }).sign(privateKey), {
      direct: true,
    });
    expect(direct.status).toBe(401);
    expect(direct.body).toMatchObject({ status: "ERROR", code: 401, result: null });
    expect(hub.output().slice(before)).not.toMatch(/hub\.api_failed|ERROR/);
    expect(await storedMessages(X)).toEqual([]);
    tally("attacks", 2);
  }, 30_000);
});

describe("thing tokens over HTTP against the compiled hub", () => {
  const refusedIds: string[] = [];

  /** The tokens the hub must refuse: name → [token, the reason the hub logs]. */
  async function badTokens(): Promise<Record<string, [string, string]>> {
    const t = now();
    const valid = await validToken(A);
    const [h, p, s] = valid.split(".");
    const hs256Input = `${b64url({ alg: "HS256", kid: A.id, typ: "JWT" })}.${b64url(claimsFor(A))}`;
    return {
      "no token": ["", "no token"],
      "forged: B's key with A's kid": [await rs256(B.privateKey, A.id, claimsFor(A)), "bad signature"],
      expired: [await rs256(A.privateKey, A.id, claimsFor(A, { nbf: t - 1200, iat: t - 1200, exp: t - 600 })), "expired"],
      "not yet valid": [await rs256(A.privateKey, A.id, claimsFor(A, { nbf: t + 300, iat: t + 300, exp: t + 600 })), "not yet valid"],
      "wrong kid": [await rs256(A.privateKey, randomUUID(), claimsFor(A)), "wrong kid"],
      "B's id as kid": [await rs256(A.privateKey, B.id, claimsFor(A)), "wrong kid"],
      "wrong audience": [await rs256(A.privateKey, A.id, claimsFor(A, { aud: `urn:flashlex:${B.id}` })), "wrong audience"],
      "wrong issuer": [await rs256(A.privateKey, A.id, claimsFor(A, { iss: `urn:thing:${B.id}` })), "wrong issuer"],
      "no exp": [await rs256(A.privateKey, A.id, claimsFor(A, { exp: undefined })), "missing exp"],
      "a day long": [await rs256(A.privateKey, A.id, claimsFor(A, { exp: t + 86_400 })), "lifetime too long"],
      "alg none": [`${b64url({ alg: "none", kid: A.id, typ: "JWT" })}.${b64url(claimsFor(A))}.`, "algorithm not allowed"],
      "HS256 with A's public key PEM as the secret": [
        `${hs256Input}.${createHmac("sha256", A.publicKeyPem).update(hs256Input).digest("base64url")}`,
        "algorithm not allowed",
      ],
      "tampered payload": [`${h}.${b64url({ ...JSON.parse(Buffer.from(p!, "base64url").toString()), exp: t + 600 })}.${s}`, "bad signature"],
      "another token's signature": [`${h}.${p}.${(await validToken(A)).split(".")[2]}`, "bad signature"],
    };
  }

  test("each bad token gets 401 with the JSON envelope, for the right reason, and nothing is stored", async () => {
    const before = (await storedMessages(A)).length;
    for (const [name, [token, reason]] of Object.entries(await badTokens())) {
      const messageId = randomUUID();
      refusedIds.push(messageId);
      const logFrom = hub.output().length;
      const answer = await collectHttp(A, token, { refused: name }, { messageId });
      expect({ name, status: answer.status }).toEqual({ name, status: 401 });
      expect(answer.headers.get("content-type")).toContain("application/json");
      // RFC 6750 §3: no error code without a token; the time claims are named only after a verified signature.
      const challenge =
        reason === "no token"
          ? "Bearer"
          : reason === "expired" || reason === "not yet valid"
            ? `Bearer error="invalid_token", error_description="token ${reason}"`
            : 'Bearer error="invalid_token"';
      expect({ name, challenge: answer.headers.get("www-authenticate") }).toEqual({ name, challenge });
      expect(answer.body).toEqual({ status: "ERROR", code: 401, messages: [{ key: "error", value: "the thing token was refused" }], result: null });
      if (token) expect(JSON.stringify(answer.body)).not.toContain(token.slice(0, 40));
      const logged = reason.includes(" ") ? `"${reason}"` : reason;
      await waitForLog(hub, new RegExp(`hub\\.collect_refused [^\\n]*thing_id=${A.id} reason=${logged} remote=127\\.0\\.0\\.1\\n`), logFrom).catch((err) => {
        throw new Error(`${name}: ${err.message}`);
      });
    }
    const after = await storedMessages(A);
    expect(after).toHaveLength(before);
    expect(after.filter((m) => refusedIds.includes(m.flmessagespk) || m.payload?.refused !== undefined)).toEqual([]);
  }, 30_000);

  test("A's own token, as the agent signs it, is accepted", async () => {
    const messageId = randomUUID();
    const answer = await collectHttp(A, await validToken(A), { accepted: true }, { messageId });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ status: "OK", code: 200, result: { flthingspk: A.id, flmessagespk: messageId } });
    // A's token does not open B's collect route
    expect((await collectHttp(B, await validToken(A), { wrong: "route" })).status).toBe(401);
  });

  test("415 for a body that is not application/json, 413 for one over 256 KiB; neither is stored", async () => {
    const before = (await storedMessages(A)).length;
    const plain = await collectHttp(A, await validToken(A), undefined, { raw: '{"as":"text"}', contentType: "text/plain" });
    expect(plain.status).toBe(415);
    expect(plain.body).toMatchObject({ status: "ERROR", code: 415, result: null });
    const huge = await collectHttp(A, await validToken(A), { blob: "x".repeat(256 * 1024) });
    expect(huge.status).toBe(413);
    expect(huge.body).toMatchObject({ status: "ERROR", code: 413, result: null });
    const notJson = await collectHttp(A, await validToken(A), undefined, { raw: "foo=bar" });
    expect(notJson.status).toBe(400);
    // the token is checked first: a bad token with a bad body is still a 401
    expect((await collectHttp(A, "x.y.z", undefined, { raw: "foo", contentType: "text/plain" })).status).toBe(401);
    expect(await storedMessages(A)).toHaveLength(before);
  });

  // Fails with the current hub: Bun.serve's own maxRequestBodySize (the payload limit + 64 KiB,
  // src/hub/http/bun-server.ts startHubServer) answers a bare 413 with an empty body before the route runs,
  // so neither the envelope nor "authentication first" holds for a declared body above 320 KiB.
  test("a body far over the limit (400 KiB) still gets the JSON envelope: 413 with a valid token, 401 without", async () => {
    const body = { blob: "x".repeat(400 * 1024) };
    const withToken = await collectHttp(A, await validToken(A), body);
    expect(withToken.status).toBe(413);
    expect(withToken.body).toMatchObject({ status: "ERROR", code: 413, result: null });
    const withoutToken = await collectHttp(A, "", body);
    expect(withoutToken.body).toMatchObject({ status: "ERROR", code: 401, result: null });
  });
});

describe("broker rules: the compiled hub's embedded broker", () => {
  test("A cannot subscribe to B's topics or wildcards (SUBACK 128) but gets its own", async () => {
    const a = await connect(brokerPort, A);
    for (const topic of [`ingress/${B.name}`, `pubsub/${B.name}`, "ingress/#", "#", "flashlex/collect"]) {
      expect({ topic, code: await subscribeCode(a, topic) }).toEqual({ topic, code: 128 });
    }
    expect(await subscribeCode(a, `ingress/${A.name}`)).toBe(1);
    expect(a.connected).toBe(true);
    // what the hub sends A arrives; what it sends B does not
    const mine = nextMessage(a, `ingress/${A.name}`, 5_000);
    await flashlex(["hub", "send", A.name, "--dir", hubDir], { input: '{"to":"a"}' });
    await flashlex(["hub", "send", B.name, "--dir", hubDir], { input: '{"to":"b"}' });
    expect(JSON.parse((await mine)!).message).toEqual({ to: "a" });
    const leaked = nextMessage(a, `ingress/${B.name}`, 500);
    expect(await leaked).toBeUndefined();
    await a.endAsync();
  }, 20_000);

  test("one SUBSCRIBE of 3,000 topics A may not have writes at most 20 refusal lines and then their count (each was a line: 9 MB of log in 2 s)", async () => {
    const a = await connect(brokerPort, A);
    const from = hub.output().length;
    const topics = Array.from({ length: 3000 }, (_, i) => `spam/${i}`);
    // MQTT.js rejects a SUBACK of refusals; the packet is on the error
    const granted: number[] = await a.subscribeAsync(topics, { qos: 1 }).then(
      (grants) => grants.map((g) => g.qos),
      (err: { packet?: { granted?: number[] } }) => err.packet?.granted ?? [],
    );
    expect({ count: granted.length, refused: granted.every((code) => code === 128) }).toEqual({ count: 3000, refused: true });
    const summary = await waitForLog(hub, /mqtt\.subscribe\.refused [^\n]*suppressed=(\d+)/, from, 15_000);
    const written = occurrences(hub.output().slice(from), /mqtt\.subscribe\.refused [^\n]*topic=spam\//);
    expect(written).toBeLessThanOrEqual(20);
    expect(written + Number(/suppressed=(\d+)/.exec(summary)![1])).toBeGreaterThanOrEqual(3000);
    expect(a.connected).toBe(true);
    await a.endAsync();
  }, 30_000);

  test("A publishing to B's pubsub topic is disconnected, and B gets nothing", async () => {
    const b = await connect(brokerPort, B);
    expect(await subscribeCode(b, `pubsub/${B.name}`)).toBe(1);
    const a = await connect(brokerPort, A);
    const leaked = nextMessage(b, `pubsub/${B.name}`, 1_500);
    const closed = closedWithin(a, 5_000);
    a.publish(`pubsub/${B.name}`, "intrusion", { qos: 1 });
    expect(await closed).toBe(true);
    expect(await leaked).toBeUndefined();
    expect(b.connected).toBe(true);
    await waitForLog(hub, new RegExp(`mqtt\\.publish\\.refused [^\\n]*thing=${A.name} topic=pubsub/${B.name}`));
    await b.endAsync();
  }, 20_000);

  test("A cannot collect or send test messages in B's name, even with a token B signed", async () => {
    const b = await connect(brokerPort, B);
    expect(await subscribeCode(b, `ingress/${B.name}`)).toBe(1);
    const a = await connect(brokerPort, A);
    const echo = nextMessage(b, `ingress/${B.name}`, 1_500);
    const logFrom = hub.output().length;
    const messageId = randomUUID();
    // a stolen (valid) token of B's, published on A's own connection
    await a.publishAsync("flashlex/collect", JSON.stringify({ messageId, thingId: B.id, token: await validToken(B), payload: { as: "b" } }), { qos: 1 });
    await a.publishAsync("flashlex/test", JSON.stringify({ thingId: B.id, thingName: B.name, message: "as b", sequence: 0, nonce: randomUUID() }), { qos: 1 });
    await waitForLog(hub, new RegExp(`hub\\.collect_dropped [^\\n]*thing=${A.name} reason="thingId is not the publisher's"`), logFrom);
    await waitForLog(hub, new RegExp(`hub\\.test_dropped [^\\n]*thing=${A.name}`), logFrom);
    expect(await echo).toBeUndefined(); // no bootstrap echo into B's ingress
    expect((await storedMessages(B)).filter((m) => m.messagetype === "egress")).toEqual([]);
    // B is verified by its own connection now; A's test message in its name was not taken as B's
    expect(hub.output().slice(logFrom)).not.toMatch(new RegExp(`hub\\.(test|thing_verified) [^\\n]*thing=${B.name}`));
    await Promise.all([a.endAsync(), b.endAsync()]);
  }, 20_000);

  test("A connecting with B's name as client id is refused (CONNACK 2) and does not kick B", async () => {
    const b = await connect(brokerPort, B);
    const spoof = await attempt(brokerPort, A, B.name);
    expect(spoof.client).toBeUndefined();
    expect(spoof.error?.code).toBe(2);
    await Bun.sleep(200);
    expect(b.connected).toBe(true);
    await b.endAsync();
  }, 20_000);

  test("`hub thing revoke B`: a connected B is kicked within 5 s, cannot connect again, and its tokens are refused", async () => {
    const b = await connect(brokerPort, B);
    const kicked = closedWithin(b, 10_000);
    const revoke = await flashlex(["hub", "thing", "revoke", B.name, "--dir", hubDir]);
    const revokedAt = Date.now();
    expect(revoke.stdout).toContain(`revoked ${B.name}`);
    // `revoke` only writes the database; the running hub polls it every 3 s.
    expect(await kicked).toBe(true);
    expect(Date.now() - revokedAt).toBeLessThan(5_000);
    await waitForLog(hub, new RegExp(`mqtt\\.kicked component=broker thing=${B.name}`));

    const again = await attempt(brokerPort, B, B.name);
    expect(again.client).toBeUndefined();
    expect(again.error?.code).toBe(5); // CONNACK not authorized

    expect((await collectHttp(B, await validToken(B), { after: "revoke" })).status).toBe(401);
    const listed = JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout);
    expect(listed.find((t: any) => t.id === B.id)).toMatchObject({ status: "revoked", distribution: null });
    const dist = await run(["hub", "thing", "dist", B.name, "--dir", hubDir, "-o", join(work, "b-again.zip")]);
    expect(dist.code).toBe(65);
    const send = await run(["hub", "send", B.name, "--dir", hubDir], { input: '{"to":"revoked"}' });
    expect(send.code).toBe(65);
    expect(send.stderr).toContain("revoked");
  }, 20_000);

  test("a certificate from another CA (same CN as A) fails the TLS handshake", async () => {
    const other = await (await makeTestPki(join(work, "pki"))).otherCa(A.name);
    const before = hub.output().length;
    const result = await attempt(brokerPort, other.thing, A.name);
    expect(result.client).toBeUndefined();
    expect(typeof result.error?.code).not.toBe("number"); // no CONNACK: refused before MQTT
    await waitForLog(hub, /mqtt\.tls\.refused/, before);
    expect(hub.output().slice(before)).not.toContain("mqtt.connected");
  }, 20_000);

  test("a client without a certificate fails the TLS handshake", async () => {
    const before = hub.output().length;
    const result = await attempt(brokerPort, undefined, A.name);
    expect(result.client).toBeUndefined();
    expect(typeof result.error?.code).not.toBe("number");
    await waitForLog(hub, /mqtt\.tls\.refused/, before);
  }, 20_000);
});

describe("the same flow with Mosquitto and the generated config", () => {
  let mosquitto: MosquittoBroker;
  let externalHub: Background;
  let serveA: Background;
  const confDir = join(work, "mosquitto-conf");
  const withLog = (what: string) => `${what}\n--- mosquitto ---\n${mosquitto?.log()}\n--- hub ---\n${externalHub?.output()}`;

  beforeAll(async () => {
    // One hub process at a time: stop the embedded one, then serve the same home through Mosquitto.
    expect(await hub.stop()).toBe(0);
    expect(hub.output()).toContain("hub.stopped");

    const listenerPort = await freePort();
    await flashlex(["hub", "mosquitto-config", "--dir", hubDir, "--out", confDir, "--port", String(listenerPort), "--bind", "127.0.0.1"]);
    const generated = readFileSync(join(confDir, "mosquitto.conf"), "utf8");
    expect(generated).toContain(`listener ${listenerPort} 127.0.0.1`);
    expect(generated).toContain(`crlfile ${join(confDir, "crl.pem")}`);
    // The helper runs the generated config with its own port and with copies of the certificate
    // files readable by the `mosquitto` user. The CRL stays the file the hub rewrites on revoke.
    mosquitto = await startMosquitto({
      dir: work,
      caFile: join(confDir, "root-ca-cert.pem"),
      certFile: join(confDir, "broker-cert.pem"),
      keyFile: join(confDir, "broker-key.pem"),
      aclFile: join(confDir, "mosquitto.acl"),
      requireCertificate: true,
      renderConfig: (port, files) =>
        generated
          .replace(`listener ${listenerPort} 127.0.0.1`, `listener ${port} 127.0.0.1`)
          .replace(join(confDir, "root-ca-cert.pem"), files.caFile)
          .replace(join(confDir, "broker-cert.pem"), files.certFile)
          .replace(join(confDir, "broker-key.pem"), files.keyFile)
          .replace(join(confDir, "mosquitto.acl"), files.aclFile!),
    });
    // mosquitto-config pointed hub.yml at the port it wrote; the helper's Mosquitto listens on its own.
    // A plain `hub serve` (as a systemd unit runs it) then logs in there, at the broker host things use.
    const settingsFile = join(hubDir, "hub.yml");
    const settings = readFileSync(settingsFile, "utf8");
    expect(settings).toContain(`external: mqtts://127.0.0.1:${listenerPort}`);
    writeFileSync(settingsFile, settings.replace(`external: mqtts://127.0.0.1:${listenerPort}`, `external: mqtts://127.0.0.1:${mosquitto.port}`));
    externalHub = launch(["hub", "serve", "--dir", hubDir]);
    await externalHub.waitFor(/hub\.started/, 20_000).catch((err) => {
      throw new Error(withLog(String(err)));
    });
    // A was made for the embedded broker's port; point it at Mosquitto's.
    const config = parse(readFileSync(A.configPath, "utf8"));
    config.flashlex.thing.mqtt.port = mosquitto.port;
    writeFileSync(A.configPath, stringify(config));
  }, 60_000);

  afterAll(async () => {
    if (serveA) await serveA.stop();
    if (externalHub) await externalHub.stop();
    await mosquitto?.stop();
  }, 30_000);

  test("thing A's bootstrap passes all 12 checks through Mosquitto (ingress echo and egress included)", async () => {
    const result = await run(["bootstrap", ...A.flags], { timeoutMs: 30_000 });
    expect(result.code, withLog(`${result.stdout}\n${result.stderr}`)).toBe(0);
    expect(result.stdout.match(/^\[PASS\]/gm)).toHaveLength(12);
    expect(result.stdout).toContain(`[PASS] mutual-TLS connect: 127.0.0.1:${mosquitto.port} as ${A.name}`);
    expect(result.stdout).toContain(`[PASS] ingress round trip: received on ingress/${A.name}`);
    await waitForLog(externalHub, new RegExp(`hub\\.test_echoed thing=${A.name}`));
  }, 40_000);

  test("`hub send` reaches A's serve through Mosquitto", async () => {
    serveA = launch(["serve", ...A.flags]);
    await serveA.waitFor(/mqtt\.subscribed/);
    await flashlex(["hub", "send", A.name, "--dir", hubDir], { input: '{"via":"mosquitto"}' });
    await serveA.waitFor(/ingress\.stored/, 10_000);
    const rows = (await flashlex(["messages", "list", "--json", ...A.flags])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(
      rows.some((r) => JSON.stringify(JSON.parse(r.payload).message) === '{"via":"mosquitto"}'),
      withLog(JSON.stringify(rows)),
    ).toBe(true);
  }, 30_000);

  // Fails with the current hub: with an external broker HubBroker.connected() is always [] (src/hub/broker/external.ts),
  // so POST /things/{id}/publish answers online: false and `hub send` tells the operator a connected thing is offline.
  test("`hub send` does not claim that a connected thing is offline", async () => {
    const sent = await flashlex(["hub", "send", A.name, "--dir", hubDir], { input: '{"online":"?"}' });
    expect(sent.stdout).toContain(`sent to ingress/${A.name}`);
    expect(sent.stdout).not.toContain("not connected");
  });

  test("`collect --via mqtt` is stored by the hub (hub export shows it)", async () => {
    const collected = await flashlex(["collect", ...A.flags, "--via", "mqtt", "--json"], { input: '{"egress":"mosquitto"}' });
    const { messageId } = JSON.parse(collected.stdout);
    // Mosquitto's PUBACK to the thing does not wait for the hub: poll the hub's database.
    const doc = await waitUntil(
      "the exported message",
      async () => Object.entries(await exportMessages(A)).find(([path]) => path.endsWith(`/${messageId}.json`))?.[1],
      10_000,
    ).catch((err) => {
      throw new Error(withLog(String(err)));
    });
    expect(doc).toMatchObject({ payload: { egress: "mosquitto" }, flthingspk: A.id, messagetype: "egress", fluserspk: ownerId, flmessagespk: messageId });
  }, 30_000);

  test("a thing using another thing's topics gets nothing delivered", async () => {
    const c = await connect(mosquitto.port, C);
    // Mosquitto grants the SUBSCRIBE but filters delivery by the ACL.
    await c.subscribeAsync([`ingress/${A.name}`, "ingress/#", `pubsub/${A.name}`], { qos: 1 });
    const leaked = nextMessage(c, `ingress/${A.name}`, 2_000);
    const storedBefore = storedCount(serveA.output());
    await flashlex(["hub", "send", A.name, "--dir", hubDir], { input: '{"secret":"for a"}' });
    expect(await leaked).toBeUndefined();
    await waitUntil("A's copy", () => storedCount(serveA.output()) > storedBefore);
    // C forging ingress for A: acknowledged by Mosquitto, never delivered
    await c.publishAsync(`ingress/${A.name}`, '{"message":"forged"}', { qos: 1 });
    await Bun.sleep(1_000);
    const rows = (await flashlex(["messages", "list", "--json", "--all", ...A.flags])).stdout;
    expect(rows).toContain("for a");
    expect(rows).not.toContain("forged");
    await c.endAsync();
  }, 30_000);

  test("a thing revoked earlier is refused; revoking C while Mosquitto runs takes effect after the reload", async () => {
    const b = await attempt(mosquitto.port, B, B.name);
    expect(b.client, withLog("B (revoked before the config was made) connected")).toBeUndefined();
    expect(b.error?.code).toBe("ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED"); // the CRL, not the ACL

    const before = await attempt(mosquitto.port, C, C.name);
    expect(before.client, withLog("C should connect before it is revoked")).toBeDefined();
    await before.client!.endAsync(true);

    const revoke = await flashlex(["hub", "thing", "revoke", C.name, "--dir", hubDir]);
    expect(revoke.stdout).toContain(`CRL updated: ${join(confDir, "crl.pem")}`);
    await mosquitto.reload();
    const after = await attempt(mosquitto.port, C, C.name);
    expect(after.client, withLog("C connected after revocation")).toBeUndefined();
    expect(after.error?.code).toBe("ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED");
    // A is unaffected, and the revoked C's tokens are refused by the hub
    expect(serveA.output().match(/mqtt\.connected/g)).toHaveLength(1);
    expect(serveA.output()).not.toMatch(/mqtt\.(error|reconnect_scheduled)/);
    expect((await collectHttp(C, await validToken(C), { after: "revoke" })).status).toBe(401);
  }, 30_000);

  test("the hub and the agent stop cleanly", async () => {
    expect(await serveA.stop()).toBe(0);
    expect(await externalHub.stop()).toBe(0);
    expect(externalHub.output()).toContain("hub.stopped");
    expect(existsSync(join(A.dir, "data", "flashlex.sock"))).toBe(false);
  }, 20_000);
});
