/**
 * The use cases the console added, over a real hub database: a page of things with their
 * summaries (1,000 things, a name filter with LIKE's wildcards taken literally), messages per
 * hour, the newest messages, and the live feed (collected, sent, delivered, each once).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HubBroker } from "../../src/hub/broker/broker.ts";
import type { HubHome } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import { createHubApi } from "../../src/hub/http/routes.ts";
import { type HubUseCases, hubUseCases } from "../../src/hub/hub.ts";
import { type FeedEvent, MessageFeed } from "../../src/hub/messages/feed.ts";
import { ingressLedger } from "../../src/hub/messages/ingress-delivery.ts";
import type { HubStore, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { certificateExpiry } from "../../src/hub/things/things.ts";
import { silentLogger } from "../../src/shared/log.ts";

const OWNER = "ecd13b11-6d91-4e8e-9156-60e451a3c975";
const HOUR_MS = 3_600_000;
/** a fixed clock: 2024-03-01 12:30 UTC */
const NOW = Date.UTC(2024, 2, 1, 12, 30);

let dir: string;
let home: HubHome;
let store: HubStore;
let hub: HubUseCases;
let token: string;
let real: ThingRecord;
const online = new Set<string>();

const broker: HubBroker = {
  url: "mqtts://test:8883",
  tracksDelivery: true,
  async publish() {},
  async sendIngress() {},
  isConnected: (name) => online.has(name),
  async close() {},
};

/** A thing row without real keys (the summary must cope with an unreadable certificate). */
function fakeThing(i: number): ThingRecord {
  const name = `ecd13b11-${i % 10 === 0 ? "pump" : "sensor"}-${String(i).padStart(4, "0")}`;
  return {
    id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    name,
    shortName: name.slice(9),
    publicKeyPem: "",
    certPem: "not a certificate",
    certSerial: `S${i}`,
    createdAt: 1_000 + i,
    verifiedAt: i % 2 ? 2_000 : null,
    lastSeenAt: null,
    revokedAt: null,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-overview-"));
  const init = await initHub({ dir: join(dir, "hub"), ownerId: OWNER, apiUrl: "http://hub.example:8080", names: ["hub.example"] });
  home = init.home;
  token = init.token;
  store = await openHubStore(home.paths.database);
  hub = hubUseCases({ home, store, log: silentLogger, broker, now: () => NOW });
  for (let i = 1; i <= 1000; i++) await store.insertThing(fakeThing(i));
  real = (await hub.things.create("odd_100")).thing;
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("Things.overview", () => {
  test("pages through 1,001 things in creation order, with the total", async () => {
    const first = await hub.things.overview({ limit: 50 });
    expect(first.total).toBe(1001);
    expect(first.items.map((s) => s.thing.name).slice(0, 2)).toStrictEqual(["ecd13b11-sensor-0001", "ecd13b11-sensor-0002"]);
    const last = await hub.things.overview({ offset: 1000, limit: 50 });
    expect(last.items.map((s) => s.thing.id)).toStrictEqual([real.id]);
    // a page is bounded whatever is asked
    expect((await hub.things.overview({ limit: 1_000_000 })).items).toHaveLength(200);
    expect((await hub.things.overview({ offset: -5, limit: 0 })).items).toHaveLength(1);
  });

  test("filters by name, case-insensitive, with _ and % matching themselves", async () => {
    const pumps = await hub.things.overview({ nameContains: "PUMP", limit: 200 });
    expect(pumps.total).toBe(100);
    expect(pumps.items.every((s) => s.thing.name.includes("pump"))).toBe(true);
    // unescaped, "_1" would match "-1" in sensor-1000 and "%" everything
    expect((await hub.things.overview({ nameContains: "_1" })).items.map((s) => s.thing.id)).toStrictEqual([real.id]);
    expect((await hub.things.overview({ nameContains: "%" })).total).toBe(0);
    expect((await hub.things.overview({ nameContains: "   " })).total).toBe(1001);
  });

  test("summarises state, connection, message counts and certificate expiry", async () => {
    await store.insertMessage({ flmessagespk: "m1", thingId: real.id, messagetype: "egress", payload: "{}", fltimestamp: 1, datecreated: "x" });
    await store.insertMessage({ flmessagespk: "m2", thingId: real.id, messagetype: "egress", payload: "{}", fltimestamp: 2, datecreated: "x" });
    await store.insertMessage({ flmessagespk: "m3", thingId: real.id, messagetype: "ingress", payload: "{}", fltimestamp: 3, datecreated: "x" });
    online.add(real.name);
    const summary = await hub.things.summary(real);
    expect(summary.status).toBe("created");
    expect(summary.connected).toBe(true);
    expect(summary.messages).toEqual({ egress: 2, ingress: 1 });
    expect(summary.certExpiresAt).toBe(certificateExpiry(real.certPem));
    expect(summary.certExpiresAt!).toBeGreaterThan(Date.now() + 300 * 24 * HOUR_MS);
    online.delete(real.name);
    expect(hub.things.isConnected(real)).toBe(false);
    const fake = (await hub.things.overview({ limit: 1 })).items[0]!;
    expect(fake).toMatchObject({ status: "verified", connected: false, messages: { egress: 0, ingress: 0 }, certExpiresAt: null });
  });

  test("without a broker nobody can tell whether a thing is connected", async () => {
    const offline = hubUseCases({ home, store, log: silentLogger });
    expect((await offline.things.summary(real)).connected).toBeNull();
  });
});

describe("Messages.hourly and Messages.latest", () => {
  test("counts the last 24 hours per hour and type, oldest first, the current hour last", async () => {
    const at = (hoursAgo: number, minute = 0) => Math.floor((NOW - hoursAgo * HOUR_MS + minute * 60_000) / 1000);
    const thing = (await hub.things.create("hourly")).thing;
    const put = (id: string, type: "egress" | "ingress", ts: number) =>
      store.insertMessage({ flmessagespk: id, thingId: thing.id, messagetype: type, payload: "{}", fltimestamp: ts, datecreated: "x" });
    await put("h-now-1", "egress", at(0, -20));
    await put("h-now-2", "egress", at(0, -29));
    await put("h-now-3", "ingress", at(0, -1));
    await put("h-5", "ingress", at(5));
    await put("h-23", "egress", at(23, -29)); // 11:01 yesterday: the first hour shown
    await put("h-24", "egress", at(24, -31)); // 10:59 yesterday: too old
    await put("h-future", "egress", at(-3)); // a clock that ran ahead
    const hours = await hub.messages.hourly(thing);
    expect(hours).toHaveLength(24);
    expect(hours[23]).toEqual({ hour: Date.UTC(2024, 2, 1, 12) / 1000, egress: 2, ingress: 1 });
    expect(hours[18]).toEqual({ hour: Date.UTC(2024, 2, 1, 7) / 1000, egress: 0, ingress: 1 });
    expect(hours[0]).toEqual({ hour: Date.UTC(2024, 1, 29, 13) / 1000, egress: 1, ingress: 0 });
    expect(hours.reduce((n, h) => n + h.egress + h.ingress, 0)).toBe(5);
    expect(await hub.messages.hourly(thing, 10_000)).toHaveLength(168);
    // the API's route answers the same counts (the console's chart and API clients agree)
    const api = createHubApi({ ...hub, log: silentLogger });
    const answer = await api.fetch(
      new Request(`http://hub.example:8080/dev/v1/things/${thing.id}/hourly?hours=2`, { headers: { Authorization: `Bearer ${token}` } }),
    );
    expect(((await answer.json()) as any).result).toEqual([
      { hour: "2024-03-01T11:00:00Z", egress: 0, ingress: 0 },
      { hour: "2024-03-01T12:00:00Z", egress: 2, ingress: 1 },
    ]);
    const refused = await api.fetch(
      new Request(`http://hub.example:8080/dev/v1/things/${thing.id}/hourly?hours=-1`, { headers: { Authorization: `Bearer ${token}` } }),
    );
    expect(refused.status).toBe(400);
  });

  test("latest gives the last stored first, by thing and type, bounded", async () => {
    const latest = await hub.messages.latest({ thing: real, limit: 2 });
    expect(latest.map((m) => m.flmessagespk)).toStrictEqual(["m3", "m2"]);
    expect((await hub.messages.latest({ thing: real, messagetype: "egress" })).map((m) => m.flmessagespk)).toStrictEqual(["m2", "m1"]);
    const all = await hub.messages.latest({ messagetype: "egress", limit: 3 });
    expect(all.map((m) => m.flmessagespk)).toStrictEqual(["h-future", "h-24", "h-23"]);
    expect(await hub.messages.latest({ limit: 100_000 })).toHaveLength(10);
  });
});

describe("the live feed", () => {
  test("hears a collected message once (a retry is silent), a sent one, and its delivery once", async () => {
    const events: FeedEvent[] = [];
    const stop = hub.feed.watch((e) => events.push(e))!;
    await hub.collector.store(real, "7c0a52de-3b09-4c51-9a57-2f0b1f6f0a01", '{"t":1}');
    await hub.collector.store(real, "7c0a52de-3b09-4c51-9a57-2f0b1f6f0a01", '{"t":1}');
    const { flmessagespk } = await hub.messages.send(real, { hello: "<script>" });
    const ledger = ingressLedger(store, hub.feed);
    await ledger.delivered(flmessagespk, NOW + 5, real.name);
    await ledger.delivered(flmessagespk, NOW + 9, real.name); // a second PUBACK changes nothing
    stop();
    await hub.collector.store(real, undefined, "{}");
    expect(events.map((e) => e.type)).toStrictEqual(["collected", "sent", "delivered"]);
    expect(events[0]).toMatchObject({ thingId: real.id, thingName: real.name, message: { payload: '{"t":1}', messagetype: "egress" } });
    expect(events[1]).toMatchObject({ message: { flmessagespk, payload: '{"message":{"hello":"<script>"}}', delivery: "pending" } });
    expect(events[2]).toEqual({ type: "delivered", thingName: real.name, flmessagespk, at: NOW + 5 });
  });

  test("a watcher that throws is dropped; the others still hear", () => {
    const feed = new MessageFeed();
    const heard: string[] = [];
    feed.watch(() => {
      throw new Error("gone");
    });
    feed.watch((e) => heard.push(e.type));
    const event: FeedEvent = { type: "delivered", thingName: "x", flmessagespk: "y", at: 1 };
    feed.publish(event);
    feed.publish(event);
    expect(heard).toEqual(["delivered", "delivered"]);
    expect(feed.watchers).toBe(1);
  });
});
