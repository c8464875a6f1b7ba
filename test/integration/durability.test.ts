/**
 * kill -9: what was acknowledged survives. The thing agent is killed while Mosquitto is
 * delivering a stream of QoS 1 messages; after a restart every message is in its database once,
 * in order (a message whose PUBACK the kill cut off comes again and is recognised). The hub
 * is killed right after answering collects with 200; after a restart it still has them all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { binaryPath, run, start } from "../support/binary.ts";
import { unpackDistribution } from "../support/distribution.ts";
import { freePort, type MosquittoBroker } from "../support/mosquitto.ts";
import { makeThingFixture, startBrokerFor, type ThingFixture } from "../support/thing-fixture.ts";

async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await Bun.sleep(25);
  }
}

describe("the thing agent, killed while receiving", () => {
  let thing: ThingFixture;
  let broker: MosquittoBroker;

  beforeAll(async () => {
    binaryPath();
    thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
    broker = await startBrokerFor(thing, "max_queued_messages 100000");
  });

  afterAll(async () => {
    await broker?.stop();
    if (thing) rmSync(thing.dir, { recursive: true, force: true });
  });

  test("every message the broker handed over is in the database after a restart", async () => {
    const total = 2000;
    const payloads = Array.from({ length: total }, (_, i) => JSON.stringify({ n: i }));
    // The persistent session must exist before the stream, so the broker queues for it.
    let serve = start(["serve", ...thing.flags]);
    await serve.waitFor(/mqtt\.subscribed/);
    await serve.stop();
    const publisher = await thing.pki.issueThing("durability-publisher");
    const pub = Bun.spawn(
      ["mosquitto_pub", "-h", "127.0.0.1", "-p", String(broker.port), "--cafile", thing.pki.caCertPath, "--cert", publisher.certPath, "--key", publisher.privateKeyPath, "-i", "durability-publisher", "-q", "1", "-t", `ingress/${thing.thingName}`, "-l"],
      { stdin: new Blob([payloads.join("\n") + "\n"]) },
    );
    expect(await pub.exited).toBe(0);

    const stored = () => {
      try {
        const db = new Database(join(thing.dataDir, "subscription.db"), { readonly: true });
        const rows = db.query("SELECT payload FROM ingress_messages").all() as { payload: string }[];
        db.close();
        return rows.map((r) => r.payload);
      } catch {
        return [];
      }
    };
    serve = start(["serve", ...thing.flags]);
    await waitUntil(() => stored().length >= total / 4, 30_000, "a quarter of the stream stored");
    serve.proc.kill("SIGKILL");
    await serve.proc.exited;
    const beforeRestart = stored().length;
    expect(beforeRestart).toBeLessThan(total);

    serve = start(["serve", ...thing.flags]);
    try {
      await waitUntil(() => new Set(stored()).size >= total, 60_000, "the whole stream stored");
    } finally {
      await serve.stop();
    }
    // Exactly once: what the kill left stored but unacknowledged comes again with DUP set and is
    // recognised (same packet id, topic and payload among the newest rows), not stored twice.
    expect(stored()).toEqual(payloads);
  }, 120_000);
});

describe("the hub, killed after acknowledging", () => {
  const work = mkdtempSync(join(tmpdir(), "flashlex-durability-"));
  const hubDir = join(work, "hub");
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test("every collect answered 200 is still stored after kill -9", async () => {
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    const init = await run(["hub", "init", "--dir", hubDir, "--api-url", `http://127.0.0.1:${apiPort}`, "--broker-host", "127.0.0.1", "--broker-port", String(brokerPort), "--name", "127.0.0.1"]);
    expect(init.code).toBe(0);
    const created = JSON.parse((await run(["hub", "thing", "create", "sturdy", "--dir", hubDir, "--json"])).stdout);
    const zip = join(work, "sturdy.zip");
    expect((await run(["hub", "thing", "dist", created.name, "--dir", hubDir, "-o", zip])).code).toBe(0);
    const root = unpackDistribution(zip, join(work, "thing"), created.name);
    const flags = ["-c", join(root, "config.yml"), "-k", join(root, "keys"), "-d", join(root, "data")];

    let hub = start(["hub", "serve", "--dir", hubDir]);
    await hub.waitFor(/hub\.started/);
    const sent: string[] = [];
    for (let i = 0; i < 10; i++) {
      const result = await run(["collect", ...flags, "--json"], { input: JSON.stringify({ reading: i }) });
      expect(result.code).toBe(0);
      sent.push(JSON.parse(result.stdout).messageId);
    }
    hub.proc.kill("SIGKILL");
    await hub.proc.exited;

    hub = start(["hub", "serve", "--dir", hubDir]);
    try {
      await hub.waitFor(/hub\.started/);
    } finally {
      expect(await hub.stop()).toBe(0);
    }
    const archive = join(work, "export.zip");
    expect((await run(["hub", "export", created.name, "--dir", hubDir, "--type", "egress", "-o", archive])).code).toBe(0);
    const stored = Object.keys(unzipSync(readFileSync(archive))).map((path) => path.split("/").pop()!.replace(/\.json$/, ""));
    expect(new Set(stored)).toEqual(new Set(sent));
  }, 120_000);
});
