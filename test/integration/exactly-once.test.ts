/**
 * Exactly once, whatever the broker does. `serve` is killed with SIGKILL ten times while a
 * stream of QoS 1 messages arrives, and restarted at once each time; afterwards every message
 * is in the thing's database once, in order, counted by an id the test put in each payload.
 *
 * - the hub's embedded broker (aedes), fed through the operator API's publish route: aedes
 *   resends unacknowledged messages without the DUP flag (MQTT 3.1.1 §3.3.1.1 says it must set
 *   it), and may deliver a queued message both from its session queue and live; the agent
 *   recognises a redelivery by the hub's message id in the payload;
 * - Debian's Mosquitto, fed by mosquitto_pub with plain payloads (no hub id): the agent
 *   recognises a redelivery by its packet identifier, topic and payload among the messages it
 *   stored before the broker resumed the session (DUP set or not).
 */

import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { parse } from "yaml";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import { makeHubFixture } from "../support/hub-fixture.ts";
import { type MosquittoBroker, mosquittoPub } from "../support/mosquitto.ts";
import { tally } from "../support/tally.ts";
import { makeThingFixture, startBrokerFor, type ThingFixture } from "../support/thing-fixture.ts";
import { waitUntil } from "../support/wait.ts";

const KILLS = 10;
const work = mkdtempSync(join(tmpdir(), "flashlex-exactly-once-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The `n` of every stored ingress message, in storage order (the test's id in each payload). */
function storedIds(dataDir: string): number[] {
  let db: Database | undefined;
  try {
    db = new Database(join(dataDir, "subscription.db"), { readonly: true });
    const rows = db.query("SELECT CAST(payload AS TEXT) AS payload FROM ingress_messages ORDER BY id").all() as { payload: string }[];
    return rows.map((r) => {
      const doc = JSON.parse(r.payload);
      return (doc.message ?? doc).n as number;
    });
  } catch {
    return [];
  } finally {
    db?.close();
  }
}

/**
 * Kills serve `KILLS` times while the stream arrives: each time a few more messages were
 * stored since the last start, SIGKILL, and start again at once. Returns the serve left running.
 */
async function killRepeatedly(serveArgs: string[], dataDir: string, total: number): Promise<Background> {
  serves.length = 0;
  let serve = start(serveArgs);
  serves.push(serve);
  for (let kill = 0; kill < KILLS; kill++) {
    const before = storedIds(dataDir).length;
    const step = 20 + Math.floor(Math.random() * (total / (KILLS * 3)));
    await waitUntil(
      `serve stored ${step} more messages (kill ${kill + 1})`,
      () => storedIds(dataDir).length >= Math.min(before + step, total),
      60_000,
      () => serve.output(),
    );
    serve.proc.kill("SIGKILL");
    await serve.proc.exited;
    tally("faults");
    serve = start(serveArgs);
    serves.push(serve);
  }
  return serve;
}

/** Every serve `killRepeatedly` started, for checks on their logs. */
const serves: Background[] = [];

/** No serve had its session dropped by the broker: each connected at most once. */
function expectNoSessionDropped() {
  expect(serves.map((s) => (s.output().match(/mqtt\.connected/g) ?? []).length).filter((n) => n > 1)).toStrictEqual([]);
}

function expectExactlyOnce(ids: number[], total: number, dataDir?: string) {
  if (process.env.DEBUG_EO && dataDir) {
    const db = new Database(join(dataDir, "subscription.db"), { readonly: true });
    const rows = db.query("SELECT id, packet_id, CAST(payload AS TEXT) AS p, received_at FROM ingress_messages ORDER BY id").all() as any[];
    const seen = new Map<number, any>();
    let shown = 0;
    for (const r of rows) {
      const n = JSON.parse(r.p).n ?? JSON.parse(r.p).message?.n;
      if (seen.has(n) && shown++ < 15) console.log("dup", n, JSON.stringify(seen.get(n)), JSON.stringify({ id: r.id, pid: r.packet_id, at: r.received_at }));
      else seen.set(n, { id: r.id, pid: r.packet_id, at: r.received_at });
    }
    console.log(
      serves
        .map((s) =>
          s
            .output()
            .split("\n")
            .filter((l) => /connected|redelivery|subscribed/.test(l))
            .slice(0, 4)
            .join("\n"),
        )
        .join("\n--\n")
        .slice(0, 3000),
    );
  }
  const distinct = new Set(ids).size;
  tally("lost", total - distinct);
  tally("duplicates", ids.length - distinct);
  expect(ids.length - distinct).toBe(0);
  expect(ids).toEqual(Array.from({ length: total }, (_, i) => i));
}

describe("exactly once across kill -9 of serve", () => {
  test("the hub's embedded broker: ten kills in a stream of 2,000, every message stored once, in order", async () => {
    binaryPath();
    const total = 2000;
    const hub = await makeHubFixture(join(work, "embedded"));
    const thing = await hub.createThing("steady");
    const dataDir = thing.flags[thing.flags.indexOf("-d") + 1]!;
    // debug: aedes' client errors ("no such packet") are logged at that level
    const hubProcess = await hub.serve([], { FLASHLEX_LOG_LEVEL: "debug" });
    // The thing's persistent session exists before the stream, as for any installed thing.
    const first = start(["serve", ...thing.flags]);
    await first.waitFor(/mqtt\.subscribed/);
    await first.stop();

    const publishing = (async () => {
      for (let n = 0; n < total; n++) await hub.publish(thing.id, { n });
    })();
    const serve = await killRepeatedly(["serve", ...thing.flags], dataDir, total);
    await publishing;
    try {
      await waitUntil(
        "every message stored",
        () => new Set(storedIds(dataDir)).size >= total,
        90_000,
        () => serve.output() + hubProcess.output(),
      );
      await waitUntil(
        "the hub's record says delivered",
        async () => (await hub.ingress(thing.id)).every((m) => m.delivery === "delivered"),
        30_000,
        () => hubProcess.output(),
      );
      await Bun.sleep(500); // a late redelivery would land now
      expectExactlyOnce(storedIds(dataDir), total);
      expect(hubProcess.output()).not.toContain("no such packet");
      expectNoSessionDropped();
    } finally {
      expect(await serve.stop()).toBe(0);
      expect(await hubProcess.stop()).toBe(0);
    }
  }, 240_000);

  describe("Mosquitto", () => {
    let thing: ThingFixture;
    let broker: MosquittoBroker;
    afterAll(async () => {
      await broker?.stop();
    });

    test("ten kills in a stream of 2,000 from mosquitto_pub, every message stored once, in order", async () => {
      binaryPath();
      const total = 2000;
      thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
      broker = await startBrokerFor(thing, "max_queued_messages 100000");
      const first = start(["serve", ...thing.flags]);
      await first.waitFor(/mqtt\.subscribed/);
      await first.stop();

      const publisher = await thing.pki.issueThing("exactly-once-publisher");
      const lines = Array.from({ length: total }, (_, n) => JSON.stringify({ n }));
      const published = await mosquittoPub({
        port: broker.port,
        caCertPath: thing.pki.caCertPath,
        client: publisher,
        clientId: "exactly-once-publisher",
        qos: 1,
        topic: `ingress/${thing.thingName}`,
        lines,
      });
      expect(published.code).toBe(0);
      const serve = await killRepeatedly(["serve", ...thing.flags], thing.dataDir, total);
      try {
        await waitUntil(
          "every message stored",
          () => new Set(storedIds(thing.dataDir)).size >= total,
          90_000,
          () => serve.output(),
        );
        await Bun.sleep(500);
        expectExactlyOnce(storedIds(thing.dataDir), total, thing.dataDir);
        expectNoSessionDropped();
      } finally {
        expect(await serve.stop()).toBe(0);
        rmSync(thing.dir, { recursive: true, force: true });
      }
    }, 240_000);
  });
});

describe("group commit: killed between a batch's COMMIT and its PUBACKs", () => {
  test("the whole batch comes again and is stored once (Mosquitto, plain payloads: matched by packet id)", async () => {
    binaryPath();
    const total = 1500;
    const thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
    const broker = await startBrokerFor(thing, "max_queued_messages 100000");
    try {
      const first = start(["serve", ...thing.flags]);
      await first.waitFor(/mqtt\.subscribed/);
      await first.stop();
      const publisher = await thing.pki.issueThing("commit-kill-publisher");
      const pub = await mosquittoPub({
        port: broker.port,
        caCertPath: thing.pki.caCertPath,
        client: publisher,
        clientId: "commit-kill-publisher",
        topic: `ingress/${thing.thingName}`,
        qos: 1,
        lines: Array.from({ length: total }, (_, n) => JSON.stringify({ n })),
      });
      expect(pub.code).toBe(0);
      // dies right after its second batch is committed, before one of its PUBACKs leaves
      const killed = start(["serve", ...thing.flags], { env: { FLASHLEX_FAULT_KILL_AFTER_COMMIT: "2" } });
      expect(await killed.proc.exited).toBe(137);
      tally("faults");
      const committed = storedIds(thing.dataDir).length;
      expect(committed).toBeGreaterThan(0);
      const serve = start(["serve", ...thing.flags]);
      try {
        await waitUntil(
          "every message stored",
          () => new Set(storedIds(thing.dataDir)).size >= total,
          60_000,
          () => serve.output(),
        );
        await Bun.sleep(500);
        expect(serve.output()).toMatch(/ingress\.redelivery_skipped/);
        expectExactlyOnce(storedIds(thing.dataDir), total);
      } finally {
        expect(await serve.stop()).toBe(0);
      }
    } finally {
      await broker.stop();
      rmSync(thing.dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("sessions the broker keeps, and the old distribution's clean session", () => {
  test("a clean-session client (the old Python SDK) and then the agent: nothing lost, nothing replayed", async () => {
    binaryPath();
    const hub = await makeHubFixture(join(work, "clean"));
    const thing = await hub.createThing("migrating");
    const hubProcess = await hub.serve();
    const config = parse(readFileSync(join(thing.root, "config.yml"), "utf8")).flashlex.thing;
    const key = (name: string) => readFileSync(join(thing.root, "keys", config.keys[name]), "utf8");
    const texts = (payloads: string[]) => payloads.map((p) => JSON.parse(p).message.text);

    const whileAway = await hub.publish(thing.id, { text: "sent before the old client connected" });
    const old = mqtt.connect({
      protocol: "mqtts",
      host: "127.0.0.1",
      port: hub.brokerPort,
      ca: key("rootCA"),
      cert: key("cert"),
      key: key("privateKey"),
      rejectUnauthorized: true,
      clientId: thing.name,
      clean: true,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    const received: string[] = [];
    old.on("message", (_topic, payload) => received.push(payload.toString()));
    await new Promise<void>((resolve, reject) => old.once("connect", () => resolve()).once("error", reject));
    await old.subscribeAsync(`ingress/${thing.name}`, { qos: 1 });
    await waitUntil(
      "the old client got what was pending",
      () => received.length === 1,
      10_000,
      () => hubProcess.output(),
    );
    const live = await hub.publish(thing.id, { text: "sent while the old client listened" });
    await waitUntil(
      "the hub's record says both delivered",
      async () => (await hub.ingress(thing.id)).every((m) => m.delivery === "delivered"),
      10_000,
      () => hubProcess.output(),
    );
    expect(texts(received)).toEqual(["sent before the old client connected", "sent while the old client listened"]);
    await old.endAsync();

    const afterwards = await hub.publish(thing.id, { text: "sent after the move to the agent" });
    const serve = start(["serve", ...thing.flags]);
    try {
      await serve.waitFor(/ingress\.stored/);
      await waitUntil(
        "the hub's record says delivered",
        async () => (await hub.ingress(thing.id)).every((m) => m.delivery === "delivered"),
        10_000,
        () => hubProcess.output(),
      );
      await Bun.sleep(500);
      const stored = (await hub.flashlex(["messages", "list", "--json", ...thing.flags])).stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).payload);
      // what the old client acknowledged is not replayed to the agent; what it never had arrives
      tally("duplicates", stored.length - 1);
      expect(texts(stored)).toEqual(["sent after the move to the agent"]);
      expect(new Set([whileAway, live, afterwards]).size).toBe(3);
    } finally {
      expect(await serve.stop()).toBe(0);
      expect(await hubProcess.stop()).toBe(0);
    }
  }, 60_000);

  test("a broker session collect --via mqtt began (the old one lost), from another data directory too, is subscribed by the next serve: it was taken for serve's own and nothing arrived (attack rounds 14 F1 and 15 F3)", async () => {
    binaryPath();
    const thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
    const broker = await startBrokerFor(thing);
    try {
      let serve = start(["serve", ...thing.flags]);
      await serve.waitFor(/mqtt\.subscribed/);
      expect(await serve.stop()).toBe(0);
      // the broker loses the thing's session (as a restart without persistence does): a clean
      // connect under its client id ends it, on the same broker, so serve's memory still matches
      const wipe = await mqtt.connectAsync({
        protocol: "mqtts",
        host: "127.0.0.1",
        port: broker.port,
        ca: readFileSync(thing.pki.caCertPath, "utf8"),
        cert: thing.pki.thing.certPem,
        key: thing.pki.thing.privateKeyPem,
        clientId: thing.thingName,
        clean: true,
        reconnectPeriod: 0,
        protocolVersion: 4,
      });
      await wipe.endAsync();
      // from another data directory: what a data directory remembered of the broker's session could not know
      const elsewhere = thing.flags.map((flag, i) => (thing.flags[i - 1] === "-d" ? join(thing.dir, "collect-data") : flag));
      const collect = await run(["collect", "--via", "mqtt", ...elsewhere], { input: '{"t":1}', timeoutMs: 60_000 });
      expect(collect.stderr).not.toContain("flashlex:"); // it connected as the thing and published
      serve = start(["serve", ...thing.flags]);
      await serve.waitFor(/mqtt\.subscribed/);
      const publisher = await thing.pki.issueThing("after-collect-publisher");
      expect(
        (
          await mosquittoPub({
            caCertPath: thing.pki.caCertPath,
            client: publisher,
            clientId: "after-collect-publisher",
            qos: 1,
            topic: `ingress/${thing.thingName}`,
            message: '{"mode":"boost"}',
            port: broker.port,
          })
        ).code,
      ).toBe(0);
      await serve.waitFor(/ingress\.stored/);
      expect(await serve.stop()).toBe(0);
      expect(storedModes(thing.dataDir)).toEqual(["boost"]);
    } finally {
      await broker.stop().catch(() => {});
      rmSync(thing.dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("serve subscribes on every connection, and a retained message is stored once across restarts", async () => {
    binaryPath();
    const thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
    const broker = await startBrokerFor(thing);
    try {
      const publisher = await thing.pki.issueThing("retained-publisher");
      const retained = {
        caCertPath: thing.pki.caCertPath,
        client: publisher,
        clientId: "retained-publisher",
        qos: 1 as const,
        retain: true,
        topic: `ingress/${thing.thingName}`,
        message: '{"mode":"eco"}',
      };
      expect((await mosquittoPub({ ...retained, port: broker.port })).code).toBe(0);
      let serve = start(["serve", ...thing.flags]);
      await serve.waitFor(/ingress\.stored/);
      expect(await serve.stop()).toBe(0);
      serve = start(["serve", ...thing.flags]);
      await serve.waitFor(/mqtt\.subscribed [^\n]*session=resumed/); // subscribed again: the retained message comes again
      await Bun.sleep(500);
      expect(await serve.stop()).toBe(0);
      expect(storedModes(thing.dataDir)).toEqual(["eco"]);
      // A new subscription (here: the broker lost the session) gets the retained message again: recognised.
      await broker.stop();
      const fresh = await startBrokerFor(thing);
      try {
        expect((await mosquittoPub({ ...retained, port: fresh.port })).code).toBe(0);
        serve = start(["serve", ...thing.flags]);
        await serve.waitFor(/ingress\.redelivery_skipped [^\n]*matchedBy=retained/);
        expect(await serve.stop()).toBe(0);
        expect(storedModes(thing.dataDir)).toEqual(["eco"]);
      } finally {
        await fresh.stop();
      }
    } finally {
      await broker.stop().catch(() => {});
      rmSync(thing.dir, { recursive: true, force: true });
    }
  }, 60_000);
});

function storedModes(dataDir: string): string[] {
  const db = new Database(join(dataDir, "subscription.db"), { readonly: true });
  try {
    return (db.query("SELECT CAST(payload AS TEXT) AS payload FROM ingress_messages ORDER BY id").all() as { payload: string }[]).map(
      (r) => JSON.parse(r.payload).mode,
    );
  } finally {
    db.close();
  }
}
