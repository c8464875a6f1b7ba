/**
 * Ingress through the embedded broker with the hub database behind it, in-process: real aedes,
 * real mutual TLS on loopback, a real hub.db. A "restart" is what a kill -9 does to aedes: a new
 * broker instance with empty memory over the same database.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { type EmbeddedBroker, startEmbeddedBroker } from "../../src/hub/broker/embedded.ts";
import { ingressLedger } from "../../src/hub/messages/ingress-delivery.ts";
import type { HubStore } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { createLogger, type Logger } from "../../src/shared/log.ts";
import { storedMessages } from "../support/hub-messages.ts";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { waitUntil } from "../support/wait.ts";

const ALPHA = "ecd13b11-alpha";
const TOPIC = `ingress/${ALPHA}`;

let dir: string;
let pki: TestPki;
let store: HubStore;
let thingId: string;
let broker: EmbeddedBroker | undefined;
const clients: MqttClient[] = [];
const logLines: string[] = [];
const log: Logger = createLogger({ level: "debug", write: (l) => logLines.push(l) });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-ingress-"));
  pki = await makeTestPki(dir, { thingName: ALPHA });
  store = await openHubStore(join(dir, "hub.db"), { create: true });
  thingId = pki.thing.thingId;
  await store.insertThing({
    id: thingId,
    name: ALPHA,
    shortName: "alpha",
    publicKeyPem: pki.thing.publicKeyPem,
    certPem: pki.thing.certPem,
    certSerial: "01",
    createdAt: Date.now(),
    verifiedAt: null,
    lastSeenAt: null,
    revokedAt: null,
  });
}, 30_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await broker?.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh embedded broker over the same database: what `hub serve` is after a restart. */
async function restartBroker(): Promise<EmbeddedBroker> {
  await broker?.close();
  broker = await startEmbeddedBroker({
    host: "127.0.0.1",
    port: 0,
    caPem: pki.ca.certPem,
    certPem: pki.broker.certPem,
    keyPem: pki.broker.keyPem,
    directory: { lookup: async (name) => (name === ALPHA ? { id: thingId, name } : undefined) },
    events: {},
    log,
    ingress: ingressLedger(store),
  });
  return broker;
}

/**
 * The thing as the agent connects: client id = its name, persistent session unless told
 * otherwise. `ackDelayMs` holds each PUBACK as the agent's commit does.
 */
async function connectThing(received: string[], extra: Partial<IClientOptions> = {}, ackDelayMs = 0): Promise<MqttClient> {
  const client = mqtt.connect({
    protocol: "mqtts",
    host: "127.0.0.1",
    port: broker!.port,
    ca: pki.ca.certPem,
    cert: pki.thing.certPem,
    key: pki.thing.privateKeyPem,
    rejectUnauthorized: true,
    clientId: ALPHA,
    clean: false,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    ...extra,
  });
  clients.push(client);
  if (ackDelayMs) client.handleMessage = (_packet, done) => void setTimeout(() => done(), ackDelayMs);
  // Listening before the CONNACK: aedes sends a resumed session's queue right behind it.
  client.on("message", (topic, payload) => topic === TOPIC && received.push(payload.toString()));
  await new Promise<void>((resolve, reject) => client.once("connect", () => resolve()).once("error", reject));
  await client.subscribeAsync(TOPIC, { qos: 1 });
  return client;
}

/** What the API's publish route does: store as pending, then hand to the broker. */
async function send(text: string): Promise<string> {
  const flmessagespk = randomUUID();
  const payload = JSON.stringify({ message: text });
  await store.insertMessage({
    flmessagespk,
    thingId,
    messagetype: "ingress",
    payload,
    fltimestamp: Math.floor(Date.now() / 1000),
    datecreated: "x",
    delivery: "pending",
  });
  await broker!.sendIngress(ALPHA, { flmessagespk, payload });
  return flmessagespk;
}

async function delivery(id: string) {
  return (await storedMessages(store, thingId, { messagetype: "ingress" })).find((m) => m.flmessagespk === id)?.delivery;
}

/** Waits for what the hub does in the background, with its log when it does not happen. */
const settled = (what: string, probe: () => boolean | Promise<boolean>) => waitUntil(what, probe, 5_000, () => logLines.slice(-30).join("\n"));

const texts = (received: string[]) => received.map((p) => JSON.parse(p).message);

describe("ingress through the embedded broker, with the hub database behind it", () => {
  test("a message the thing acknowledged is marked delivered and not sent again after a restart", async () => {
    expect((await restartBroker()).tracksDelivery).toBe(true);
    const received: string[] = [];
    const thing = await connectThing(received);
    const id = await send("while online");
    await settled("delivered", async () => (await delivery(id)) === "delivered");
    expect(texts(received)).toEqual(["while online"]);
    await thing.endAsync();

    await restartBroker();
    const again: string[] = [];
    await connectThing(again);
    await Bun.sleep(700);
    expect(again).toEqual([]);
    await clients.pop()!.endAsync();
  }, 20_000);

  test("messages sent while the thing is offline survive a restart and arrive in order", async () => {
    await restartBroker();
    // the persistent session exists in this broker, then the thing goes away
    await (await connectThing([])).endAsync();
    const ids = [await send("offline 1"), await send("offline 2")];
    expect(await delivery(ids[0]!)).toBe("pending");

    await restartBroker(); // aedes' queue for the thing is gone with it
    const received: string[] = [];
    await connectThing(received);
    await settled("both delivered", async () => (await delivery(ids[0]!)) === "delivered" && (await delivery(ids[1]!)) === "delivered");
    expect(texts(received)).toEqual(["offline 1", "offline 2"]);
    await clients.pop()!.endAsync();
  }, 20_000);

  test("while the hub runs, aedes' session queue delivers an offline message once (no replay on top)", async () => {
    await restartBroker();
    await (await connectThing([])).endAsync();
    const id = await send("queued by aedes");
    const received: string[] = [];
    // The PUBACK comes after the SUBSCRIBE: a replay at the subscription would send it again.
    await connectThing(received, {}, 300);
    await settled("delivered", async () => (await delivery(id)) === "delivered");
    await Bun.sleep(500);
    expect(texts(received)).toEqual(["queued by aedes"]);
    await clients.pop()!.endAsync();
  }, 20_000);

  test("a message sent before the thing ever subscribed in this process is sent at its subscription", async () => {
    await restartBroker();
    const id = await send("before any session");
    expect(await delivery(id)).toBe("pending");
    const received: string[] = [];
    await connectThing(received);
    await settled("delivered", async () => (await delivery(id)) === "delivered");
    expect(texts(received)).toEqual(["before any session"]);
    await clients.pop()!.endAsync();
  }, 20_000);

  test("a clean session (the old Python client) marks what it acknowledged delivered; the agent then gets only the rest", async () => {
    await restartBroker();
    const waiting = await send("while nobody listens");
    const live: string[] = [];
    const clean = await connectThing(live, { clean: true });
    await settled("the clean session got what was pending", () => live.length === 1);
    const sent = await send("live to the clean session");
    await settled("both delivered", async () => (await delivery(waiting)) === "delivered" && (await delivery(sent)) === "delivered");
    expect(texts(live)).toEqual(["while nobody listens", "live to the clean session"]);
    await clean.endAsync();
    clients.pop();

    const later = await send("after the old client stopped");
    const received: string[] = [];
    await connectThing(received); // the agent: a persistent session
    await settled("delivered", async () => (await delivery(later)) === "delivered");
    await Bun.sleep(300);
    expect(texts(received)).toEqual(["after the old client stopped"]);
    await clients.pop()!.endAsync();
  }, 20_000);

  test("a clean session that drops before its PUBACK leaves the message pending for the next session", async () => {
    await restartBroker();
    const live: string[] = [];
    const clean = await connectThing(live, { clean: true }, 60_000); // never acknowledges
    const id = await send("unacknowledged");
    await settled("the clean session got it", () => live.length === 1);
    clean.end(true);
    clients.pop();
    await Bun.sleep(200);
    expect(await delivery(id)).toBe("pending");
    const received: string[] = [];
    await connectThing(received);
    await settled("delivered", async () => (await delivery(id)) === "delivered");
    expect(texts(received)).toEqual(["unacknowledged"]);
    await clients.pop()!.endAsync();
  }, 20_000);
});
