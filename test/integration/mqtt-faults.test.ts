/**
 * What the MQTT session does when the broker will not have it, with the compiled binary:
 * - two devices with one identity (a copied distribution): the broker closes each connection
 *   when the other connects; `serve` says so at WARN, with the likely cause, and slows down, and
 *   the hub's broker says so once, naming the thing;
 * - a subscription the broker refuses (SUBACK 128): `serve` says which and why at ERROR, and
 *   waits the longest backoff before it tries again, instead of reconnecting at once;
 * - a connection the broker refuses (CONNACK 5, a revoked thing): one WARN saying what it means
 *   and what to do, then the longest backoff each time;
 * - a broker that is down: one WARN per failed connect, however often the error is passed on;
 *   one that goes away after a connection: no hint to change the address that worked;
 * - a broker that refuses the thing's certificate with nothing but a close: one WARN saying so.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { binaryPath, start } from "../support/binary.ts";
import { makeHubFixture } from "../support/hub-fixture.ts";
import { tally } from "../support/tally.ts";
import { makeThingFixture, startBrokerFor } from "../support/thing-fixture.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-mqtt-faults-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * The thing's keys as a second device has them: a copy. The lock on the thing's MQTT session is on
 * the key file, so a second serve given the same keys on this machine is refused (75).
 */
function secondDeviceKeys(keysDir: string, name: string): string {
  const copy = join(work, `${name}-keys`);
  cpSync(keysDir, copy, { recursive: true });
  return copy;
}

/** Makes the thing in `thingRoot` reconnect after 0.1 s, at most `maxSeconds`; returns its config.yml. */
function quickReconnects(thingRoot: string, maxSeconds: number): string {
  const configPath = join(thingRoot, "config.yml");
  const config = parseDocument(readFileSync(configPath, "utf8"));
  config.setIn(["flashlex", "thing", "mqtt", "autoReconnectBackoffTime"], {
    baseReconnectQuietTimeSecond: 0.1,
    maxReconnectQuietTimeSecond: maxSeconds,
    stableConnectionTimeSecond: 2,
  });
  writeFileSync(configPath, config.toString());
  return configPath;
}

describe("the broker will not have the session", () => {
  test("two devices with the same identity: WARN with the likely cause, then slower reconnects", async () => {
    binaryPath();
    const thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
    const broker = await startBrokerFor(thing);
    // the same config, a copy of the keys, another data directory: as on a second device
    const first = start(["serve", "-c", thing.configPath, "-k", thing.keysDir, "-d", join(work, "device-1")]);
    const second = start(["serve", "-c", thing.configPath, "-k", secondDeviceKeys(thing.keysDir, "device-2"), "-d", join(work, "device-2")]);
    try {
      const warned = await Promise.race([first, second].map((s) => s.waitFor(/WARN +mqtt\.session_taken_over[^\n]*/, 30_000).then((line) => ({ s, line }))));
      tally("faults");
      expect(warned.line).toContain("same thing name and certificate");
      // the warning comes once per episode, and the next wait is the takeover floor or more
      await warned.s.waitFor(/mqtt\.session_taken_over[\s\S]*mqtt\.reconnect_scheduled inMs=\d+/, 5_000);
      const delays = [
        ...warned.s
          .output()
          .split("mqtt.session_taken_over")[1]!
          .matchAll(/mqtt\.reconnect_scheduled inMs=(\d+)/g),
      ].map((m) => Number(m[1]));
      expect(delays[0]).toBeGreaterThanOrEqual(15_000);
      expect(warned.s.output().match(/mqtt\.session_taken_over/g)).toHaveLength(1);
    } finally {
      const codes = [await first.stop(), await second.stop()];
      if (codes.some((c) => c !== 0)) console.log(first.output().slice(-3000), "\n-----\n", second.output().slice(-3000));
      expect(codes).toEqual([0, 0]);
      await broker.stop();
      rmSync(thing.dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("two devices with the same identity on the hub's broker: the hub WARNs once, naming the thing", async () => {
    const hub = await makeHubFixture(join(work, "contested"));
    const thing = await hub.createThing("contested");
    const configPath = quickReconnects(thing.root, 0.5);
    const hubProcess = await hub.serve();
    const first = start(["serve", "-c", configPath, "-k", thing.keysDir, "-d", join(work, "contested-1")]);
    const second = start(["serve", "-c", configPath, "-k", secondDeviceKeys(thing.keysDir, "contested-2"), "-d", join(work, "contested-2")]);
    try {
      const line = await hubProcess.waitFor(/WARN +mqtt\.identity_contested[^\n]*/, 45_000);
      tally("faults");
      expect(line).toContain(`thing=${thing.name}`);
      expect(line).toContain("run its distribution on one device only");
      await Bun.sleep(2000);
      expect(hubProcess.output().match(/mqtt\.identity_contested/g)).toHaveLength(1);
    } finally {
      expect([await first.stop(), await second.stop(), await hubProcess.stop()]).toEqual([0, 0, 0]);
    }
  }, 60_000);

  test("a revoked thing: one WARN with what the CONNACK refusal means and the fix, then every retry at the longest backoff", async () => {
    const hub = await makeHubFixture(join(work, "revoked"));
    const thing = await hub.createThing("revoked");
    quickReconnects(thing.root, 0.7);
    await hub.flashlex(["hub", "thing", "revoke", thing.name, "--dir", hub.dir]);
    const hubProcess = await hub.serve();
    const serve = start(["serve", ...thing.flags]);
    try {
      await serve.waitFor(/(mqtt\.reconnect_scheduled[^\n]*\n[\s\S]*){4}/, 20_000);
      tally("attacks");
      const log = serve.output();
      const warnings = log.split("\n").filter((line) => line.includes("mqtt.connect_refused"));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/ WARN +mqtt\.connect_refused /);
      expect(warnings[0]).toContain("code=5");
      expect(warnings[0]).toContain("it may be revoked, or unknown to this hub");
      expect(warnings[0]).toContain("flashlex hub thing list");
      expect(log).not.toMatch(/mqtt\.error[^\n]*Not authorized/);
      const delays = [...log.matchAll(/mqtt\.reconnect_scheduled inMs=(\d+)/g)].map((m) => Number(m[1]));
      expect(delays.length).toBeGreaterThanOrEqual(4);
      expect(new Set(delays)).toEqual(new Set([700]));
    } finally {
      expect(await serve.stop()).toBe(0);
      expect(await hubProcess.stop()).toBe(0);
    }
  }, 60_000);

  test("a broker that will not take the thing's certificate and only closes: one WARN with the likely causes", async () => {
    // a thing of one hub, pointed at another hub's broker and trusting that broker's CA beside
    // its own: the broker refuses the certificate at TLS, and the thing sees nothing but a close
    const home = await makeHubFixture(join(work, "home-hub"));
    const other = await makeHubFixture(join(work, "other-hub"));
    const thing = await home.createThing("stray");
    const configPath = quickReconnects(thing.root, 0.5);
    const config = parseDocument(readFileSync(configPath, "utf8"));
    config.setIn(["flashlex", "thing", "mqtt", "port"], other.brokerPort);
    writeFileSync(configPath, config.toString());
    const rootCA = join(thing.keysDir, "root-ca-cert.pem");
    writeFileSync(rootCA, readFileSync(rootCA, "utf8") + readFileSync(join(other.dir, "ca-cert.pem"), "utf8"));
    const otherProcess = await other.serve();
    const serve = start(["serve", ...thing.flags]);
    try {
      await serve.waitFor(/(mqtt\.reconnect_scheduled[^\n]*\n[\s\S]*){4}/, 20_000);
      tally("faults");
      const warnings = serve
        .output()
        .split("\n")
        .filter((line) => / WARN +mqtt\.(closed_before_connack|error) /.test(line));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain("does not accept this thing's certificate");
      expect(warnings[0]).toContain(`:${other.brokerPort} hint=`);
    } finally {
      expect([await serve.stop(), await otherProcess.stop()]).toEqual([0, 0]);
    }
  }, 60_000);

  test("a broker that is down: each failed connect is one WARN line, not two", async () => {
    const thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
    const serve = start(["serve", ...thing.flags]);
    try {
      await serve.waitFor(/(mqtt\.reconnect_scheduled[^\n]*\n[\s\S]*){4}/, 20_000);
      tally("faults");
      // up to the last retry scheduled: each failed connect, then its retry
      const output = serve.output();
      const log = output.slice(0, output.lastIndexOf("mqtt.reconnect_scheduled") + "mqtt.reconnect_scheduled".length);
      const events = [...log.matchAll(/(mqtt\.error|mqtt\.reconnect_scheduled)/g)].map((m) => m[1]);
      expect(events.length).toBeGreaterThanOrEqual(6);
      expect(events.join(" ")).toBe(Array.from({ length: events.length / 2 }, () => "mqtt.error mqtt.reconnect_scheduled").join(" ") || "none");
    } finally {
      expect(await serve.stop()).toBe(0);
      rmSync(thing.dir, { recursive: true, force: true });
    }
  }, 30_000);

  test("a broker that goes away after a connection: the retries say what failed, with no hint to change the settings that worked", async () => {
    const thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
    const broker = await startBrokerFor(thing);
    const serve = start(["serve", ...thing.flags]);
    try {
      await serve.waitFor(/mqtt\.connected/, 20_000);
      await broker.stop();
      await serve.waitFor(/(WARN +mqtt\.error [^\n]*ECONNREFUSED[\s\S]*){3}/, 20_000);
      tally("faults");
      const errors = serve
        .output()
        .split("\n")
        .filter((line) => / WARN +mqtt\.error /.test(line));
      expect(errors.length).toBeGreaterThanOrEqual(3);
      for (const line of errors) expect(line).not.toContain("hint=");
    } finally {
      expect(await serve.stop()).toBe(0);
      rmSync(thing.dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("a subscription the hub's broker refuses: ERROR naming the topic and the key to fix, and the longest backoff", async () => {
    binaryPath();
    const hub = await makeHubFixture(join(work, "refused"));
    const thing = await hub.createThing("wrong-topic");
    const other = await hub.createThing("someone-else");
    const configPath = join(thing.root, "config.yml");
    const config = parseDocument(readFileSync(configPath, "utf8"));
    config.setIn(["flashlex", "thing", "mqtt", "ingress", "topic"], `ingress/${other.name}`);
    config.setIn(["flashlex", "thing", "mqtt", "autoReconnectBackoffTime", "maxReconnectQuietTimeSecond"], 7);
    writeFileSync(configPath, config.toString());
    const hubProcess = await hub.serve();
    const serve = start(["serve", ...thing.flags]);
    try {
      const line = await serve.waitFor(/ERROR +mqtt\.subscription_refused[^\n]*/, 20_000);
      tally("badInputs");
      expect(line).toContain(`ingress/${other.name}`);
      expect(line).toContain("flashlex.thing.mqtt.ingress.topic");
      const next = await serve.waitFor(/mqtt\.subscription_refused[\s\S]*?mqtt\.reconnect_scheduled inMs=\d+/, 5_000);
      expect(Number(next.match(/inMs=(\d+)$/)![1])).toBe(7_000);
    } finally {
      expect(await serve.stop()).toBe(0);
      expect(await hubProcess.stop()).toBe(0);
    }
  }, 60_000);
});
