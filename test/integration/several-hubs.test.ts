/**
 * Several hubs (issue 16, docs/scaling.md "Several hubs"): two compiled `hub serve` processes, A
 * and B, on one PostgreSQL database (test/support/postgres.ts) and one three-node RabbitMQ 3.10
 * cluster, on loopback. Two homes made from one `hub init` (B is a copy of A with its own
 * instance name and API port), one shared directory for distributions and releases. Shows:
 *
 *   1. a thing created through A is read, and its distribution downloaded, through B
 *   2. a console cookie from signing in on A works on B
 *   3. an egress message a thing publishes on flashlex/collect reaches both hubs and is stored
 *      once (one hub stores it, the other sees a repeat)
 *   4. an ingress message sent through B reaches the thing once
 *   5. rotating the token in B's console ends the sign-in made on A
 *   6. A is killed (SIGKILL) while the thing publishes: every message is stored once, through B,
 *      and B still answers the API and the thing
 *   7. a third hub C under B's instance name: the two take the session from each other, and an
 *      ERROR names the client id clash and the fix
 *
 * Bounded: the cluster must form within 150 s; afterAll stops both hubs, every node, the epmd they
 * started and PostgreSQL, whatever happened.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { cpSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { parseDocument } from "yaml";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { buildCollectEnvelope } from "../../src/protocol/collect-envelope.ts";
import { type Background, run, start } from "../support/binary.ts";
import { provisionThing } from "../support/distribution.ts";
import { type HubThing, listenOnLoopback, loopbackHubInit } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { attemptPastUnavailable } from "../support/mqtt-client.ts";
import { hasPostgres, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { type RabbitCluster, rabbitMissing, startRabbitCluster } from "../support/rabbitmq-cluster.ts";

const haveRabbit = rabbitMissing() === undefined;
const work = mkdtempSync(join(tmpdir(), "flashlex-several-hubs-"));
const homeA = join(work, "hub-a");
const homeB = join(work, "hub-b");
const shared = join(work, "shared");
let pg: TestPostgres | undefined;
let hubA: Background | undefined;
let hubB: Background | undefined;
let hubC: Background | undefined;
let token = "";
let apiA = 0;
let apiB = 0;
let cluster: RabbitCluster | undefined;
let thing: HubThing;
const clients: MqttClient[] = [];

const withLogs = (what: string) => `${what}\n--- hub A ---\n${hubA?.output().slice(-3000)}\n--- hub B ---\n${hubB?.output().slice(-3000)}`;

async function flashlex(args: string[]) {
  const result = await run(args, { timeoutMs: 60_000 });
  if (result.code !== 0) throw new Error(`flashlex ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
}

function configure(home: string, values: [string[], unknown][]): void {
  const file = join(home, "hub.yml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  for (const [path, value] of values) doc.setIn(["hub", ...path], value);
  writeFileSync(file, doc.toString());
}

const api = (port: number, path: string, init: RequestInit = {}, bearer = token) =>
  fetch(`http://127.0.0.1:${port}/dev/v1${path}`, {
    ...init,
    headers: { Authorization: `Bearer ${bearer}`, "Content-Type": "application/json", ...init.headers },
    signal: AbortSignal.timeout(15_000),
  });

const consoleGet = (port: number, path: string, cookie: string) =>
  fetch(`http://127.0.0.1:${port}${path}`, { headers: { Cookie: cookie }, redirect: "manual", signal: AbortSignal.timeout(15_000) });
const consolePost = (port: number, path: string, fields: Record<string, string>, cookie = "") =>
  fetch(`http://127.0.0.1:${port}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Origin: `http://127.0.0.1:${port}`, ...(cookie ? { Cookie: cookie } : {}) },
    body: new URLSearchParams(fields),
    redirect: "manual",
    signal: AbortSignal.timeout(15_000),
  });
const cookieOf = (response: Response) => response.headers.get("set-cookie")?.split(";")[0] ?? "";

/** Signs in to the console on `port`; the cookie and the page's CSRF token. */
async function signIn(port: number): Promise<{ cookie: string; csrf: string }> {
  const response = await consolePost(port, "/signin", { token });
  expect(response.status).toBe(303);
  const cookie = cookieOf(response);
  const page = await (await consoleGet(port, "/things", cookie)).text();
  return { cookie, csrf: /name="csrf-token" content="([^"]+)"/.exec(page)![1]! };
}

async function egress(port: number): Promise<{ flmessagespk: string; payload: any }[]> {
  const response = await api(port, `/things/${thing.id}/messages?messagetype=egress`);
  if (response.status !== 200) throw new Error(`messages answered ${response.status}`);
  return ((await response.json()) as { result: { flmessagespk: string; payload: any }[] }).result;
}

/** Publishes one collect envelope (QoS 1) as the thing; resolves on the PUBACK. */
async function collect(client: MqttClient, messageId: string, payload: unknown): Promise<void> {
  const jwt = await signThingToken({ thingId: thing.id, privateKey: thing.privateKey });
  await client.publishAsync("flashlex/collect", buildCollectEnvelope({ messageId, thingId: thing.id, token: jwt, payload }), { qos: 1 });
}

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(withLogs(`not within ${ms} ms: ${what}`));
    await Bun.sleep(200);
  }
}

beforeAll(async () => {
  if (!haveRabbit) throw new Error(rabbitMissing());
  if (!hasPostgres) throw new Error("PostgreSQL 15 is not installed: run scripts/install-system-packages.sh");
  pg = await startPostgres(work);
  const db = pg.createDatabase("fleet");
  [apiA, apiB] = [await freePort(), await freePort()];
  const init = await flashlex([...loopbackHubInit(homeA, apiA, 8883, "127.0.0.1"), "--db", db, "--json"]);
  token = JSON.parse(init.stdout).token;
  listenOnLoopback(homeA);

  // The cluster's files from A's home (its hub.yml then names the cluster), the nodes formed.
  cluster = await startRabbitCluster(homeA, work);
  // B: a copy of A's home (the CA, the broker secret, hub.yml with the database and the
  // cluster), its own instance and API port; both share one directory for distributions.
  mkdirSync(shared);
  // No hub.instance anywhere: each hub's name is derived from its home's path, so a copy made
  // after A's first start (the docs advise copying) still gets its own (home/instance.ts).
  configure(homeA, [
    [["sharedDir"], shared],
    [["metrics", "listen"], false],
  ]);
  cpSync(homeA, homeB, { recursive: true });
  configure(homeB, [[["api", "port"], apiB]]);

  hubA = start(["hub", "serve", "--dir", homeA]);
  hubB = start(["hub", "serve", "--dir", homeB]);
  await hubA.waitFor(/hub\.started/, 30_000);
  await hubB.waitFor(/hub\.started/, 30_000);
  thing = await provisionThing(flashlex, homeA, work, "pump");
}, 240_000);

afterAll(async () => {
  for (const client of clients) await client.endAsync(true).catch(() => {});
  await hubA?.stop();
  await hubB?.stop();
  await hubC?.stop();
  // Every node (rabbitmqctl stop, then SIGKILL to its VM) and the epmd they started.
  await cluster?.stop();
  await pg?.stop();
  rmSync(work, { recursive: true, force: true });
}, 90_000);

describe.skipIf(!haveRabbit || !hasPostgres)("two hubs on one PostgreSQL database and one RabbitMQ cluster", () => {
  let client: MqttClient;
  let cookieA = "";

  test("each hub has its own MQTT session (client id flashlex-hub-<instance>, derived from its home)", async () => {
    const named = /hub\.instance instance=(\S+) from=derived/;
    await hubA!.waitFor(named);
    await hubB!.waitFor(named);
    const [a, b] = [named.exec(hubA!.output())![1]!, named.exec(hubB!.output())![1]!];
    expect(a).not.toBe(b);
    await hubA!.waitFor(new RegExp(`mqtt\\.connected.*flashlex-hub-${a}`));
    await hubB!.waitFor(new RegExp(`mqtt\\.connected.*flashlex-hub-${b}`));
  });

  test("a thing created through A is read, and its distribution downloaded, through B", async () => {
    const created = await api(apiA, "/things", { method: "POST", body: JSON.stringify({ name: "valve" }) });
    expect(created.status).toBeLessThan(300);
    const id = ((await created.json()) as { result: { id: string } }).result.id;
    const read = await api(apiB, `/things/${id}`);
    expect(read.status).toBe(200);
    expect(((await read.json()) as { result: { id: string } }).result.id).toBe(id);
    expect((await api(apiB, `/things/${id}/dist`)).status).toBe(200);
  });

  test("a console cookie from A works on B", async () => {
    cookieA = (await signIn(apiA)).cookie;
    const onB = await consoleGet(apiB, "/things", cookieA);
    expect(onB.status).toBe(200);
    expect(await onB.text()).toContain(thing.name);
  });

  test("an egress message on flashlex/collect reaches both hubs and is stored once", async () => {
    // Past CONNACK 3, as the agent's reconnect goes: the cluster's client-id tracking can time out
    // for a while after it formed on a busy machine (the hubs connecting first is no proof).
    const connected = await attemptPastUnavailable({
      port: cluster!.servers[1]!.port,
      caPem: thing.caPem,
      cert: thing,
      clientId: thing.name,
      extra: { clean: false },
      timeoutMs: 20_000,
    });
    if (!connected.client)
      throw new Error(withLogs(`the thing could not connect to node 2: ${connected.error?.message}\n--- node 2 ---\n${cluster!.nodeLog(1)}`));
    client = connected.client;
    clients.push(client);
    const id = randomUUID();
    await collect(client, id, { n: "once" });
    // Both hubs handled it: one stored it, the other found it stored (a repeat).
    await until("both hubs logged the message", () => hubA!.output().includes(id) && hubB!.output().includes(id));
    const lines = [hubA!, hubB!].map(
      (h) =>
        h
          .output()
          .split("\n")
          .find((l) => l.includes(id) && l.includes("hub.collect"))!,
    );
    expect(lines.filter((l) => l.includes("repeat=true")).length).toBe(1);
    expect((await egress(apiB)).filter((m) => m.flmessagespk === id).length).toBe(1);
  }, 90_000);

  test("an ingress message sent through B reaches the thing once", async () => {
    const received: string[] = [];
    client.on("message", (_topic, payload) => received.push(JSON.parse(payload.toString()).message));
    await client.subscribeAsync(`ingress/${thing.name}`, { qos: 1 });
    const sent = await api(apiB, `/things/${thing.id}/publish`, { method: "POST", body: JSON.stringify({ message: "through B" }) });
    expect(sent.status).toBe(200);
    // A marker sent after it through A: once the marker is here, a second copy would be too.
    expect((await api(apiA, `/things/${thing.id}/publish`, { method: "POST", body: JSON.stringify({ message: "marker" }) })).status).toBe(200);
    await until("the marker arrived", () => received.includes("marker"));
    expect(received.filter((m) => m === "through B").length).toBe(1);
  }, 30_000);

  test("rotating the token in B's console ends the sign-in made on A", async () => {
    const onB = await signIn(apiB);
    const rotated = await consolePost(apiB, "/token", { csrf: onB.csrf }, onB.cookie);
    expect(rotated.status).toBe(200);
    token = /<pre id="new-token"><code>([\w-]{43})<\/code><\/pre>/.exec(await rotated.text())![1]!;
    const onA = await consoleGet(apiA, "/things", cookieA);
    expect(onA.status).toBe(303);
    expect(onA.headers.get("location")).toBe("/signin?expired=1");
    expect((await api(apiA, "/things")).status).toBe(200); // the new token works on A
  });

  test("A is killed mid-stream: every message is stored once, and B keeps answering", async () => {
    const ids = Array.from({ length: 20 }, () => randomUUID());
    for (const [i, id] of ids.entries()) {
      if (i === 8) hubA!.proc.kill("SIGKILL");
      await collect(client, id, { n: i });
    }
    await hubA!.proc.exited;
    await until("B stored all 20", async () => {
      const stored = new Set((await egress(apiB)).map((m) => m.flmessagespk));
      return ids.every((id) => stored.has(id));
    });
    const all = (await egress(apiB)).map((m) => m.flmessagespk);
    expect(all.length).toBe(new Set(all).size);
    // B still answers the API, the console and the thing.
    expect((await api(apiB, "/things")).status).toBe(200);
    expect((await signIn(apiB)).csrf.length).toBeGreaterThan(0);
    const received: string[] = [];
    client.on("message", (_topic, payload) => received.push(JSON.parse(payload.toString()).message));
    expect((await api(apiB, `/things/${thing.id}/publish`, { method: "POST", body: JSON.stringify({ message: "after A" }) })).status).toBe(200);
    await until("the thing got the message sent after A died", () => received.includes("after A"));
  }, 60_000);

  test("a third hub under B's instance name: the clash is named in an ERROR with the fix", async () => {
    const b = /hub\.instance instance=(\S+)/.exec(hubB!.output())![1]!;
    const homeC = join(work, "hub-c");
    // B is running: its control socket stays behind (cp cannot copy a socket).
    cpSync(homeB, homeC, { recursive: true, filter: (src) => !lstatSync(src).isSocket() });
    configure(homeC, [
      [["instance"], b],
      [["api", "port"], await freePort()],
    ]);
    hubC = start(["hub", "serve", "--dir", homeC]);
    // Either may be the first to see three short sessions in a row; both do within seconds.
    const clash = /ERROR mqtt\.client_id_clash .*client_id=(\S+) .*hub\.instance/;
    await until("an ERROR naming the client id clash", () => clash.test(hubB!.output()) || clash.test(hubC!.output()), 60_000);
    const named = (clash.exec(hubB!.output()) ?? clash.exec(hubC!.output()))![1];
    expect(named).toBe(`flashlex-hub-${b}`);
    await hubC.stop();
  }, 90_000);
});
