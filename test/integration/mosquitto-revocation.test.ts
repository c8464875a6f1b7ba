/**
 * Revocation that bites on Debian's Mosquitto 2.0.11, end to end: the compiled binary writes the
 * config (`hub mosquitto-config`, dynamic security plugin included) and serves the hub against it
 * (`hub serve --broker mqtts://...`); things are revoked with `hub thing revoke` from another
 * process, as an operator does. Mutual TLS on loopback, require_certificate true.
 *
 *   1. no reload command: a connected thing is disconnected within seconds, and when it comes
 *      back (Mosquitto still accepts its certificate: no SIGHUP) it is denied every subscription;
 *      its serve says that is a revocation, not a topic to fix
 *   2. a thing revoked while the hub is stopped is disconnected when the hub starts, and with
 *      hub.yml broker.reloadCommand the CRL then refuses it at the TLS handshake
 *   3. a thing revoked while disconnected is refused at connect within seconds; one deleted
 *      through the API (the hub's own process: no poll) is disconnected at once
 *   4. a certificate its renewal superseded (F renews over HTTP, then uses its new key once) is
 *      refused at the TLS handshake within seconds: the CRL lists it, reason superseded
 *   5. a CRL valid for 6 s (FLASHLEX_CRL_VALIDITY_SECONDS) never lapses while the hub runs:
 *      renewed and reloaded, Mosquitto keeps accepting the others past the first one's nextUpdate
 *
 * The tests run in order and share one hub home, one Mosquitto and things A, B, C (revoked one
 * by one), D (never revoked) and F (renewed).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { parseDocument } from "yaml";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { type Background, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { freePort, type MosquittoBroker, startMosquitto } from "../support/mosquitto.ts";
import { attemptConnect, closedWithin, nextMessage, subscribeCode } from "../support/mqtt-client.ts";
import { type Identity, renewOverHttp, useKey } from "../support/renewal-http.ts";
import { waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-mosquitto-revocation-"));
const confDir = join(work, "mosquitto-conf");
let fixture: HubFixture;
let mosquitto: MosquittoBroker;
let hub: Background | undefined;
let A: HubThing, B: HubThing, C: HubThing, D: HubThing, E: HubThing, F: HubThing;
const clients: MqttClient[] = [];

const withLogs = (what: string) => `${what}\n--- mosquitto ---\n${mosquitto?.log().slice(-4000)}\n--- hub ---\n${hub?.output().slice(-4000)}`;
const attempt = (thing: HubThing, cert: Identity = thing, timeoutMs?: number) =>
  attemptConnect({ port: mosquitto.port, caPem: thing.caPem, cert, clientId: thing.name, timeoutMs });
async function connected(thing: HubThing): Promise<MqttClient> {
  const result = await attempt(thing);
  if (!result.client) throw new Error(withLogs(`${thing.name} could not connect: ${result.error?.message}`));
  clients.push(result.client);
  return result.client;
}
const revoke = (thing: HubThing) => fixture.flashlex(["hub", "thing", "revoke", thing.name, "--dir", fixture.dir]);

async function serveHub(env: Record<string, string> = {}): Promise<Background> {
  hub = await fixture.serve(["--broker", `mqtts://127.0.0.1:${mosquitto.port}`], env).catch((err) => {
    throw new Error(withLogs(String(err)));
  });
  return hub;
}

/**
 * Resolves once `thing` is refused at the TLS handshake (certificate revoked) within `ms` of the
 * call, trying every 250 ms, each attempt given at most the time left (at least 1.5 s); throws
 * otherwise with each attempt's time and outcome and both logs, so a slow step (the hub's poll,
 * the reload, an attempt's own wait) can be told from a missing one.
 */
async function refusedAtHandshakeWithin(thing: HubThing, ms: number, cert: Identity = thing): Promise<void> {
  const started = Date.now();
  const trail: string[] = [];
  while (Date.now() - started < ms) {
    const at = Date.now();
    const result = await attempt(thing, cert, Math.max(1_500, Math.min(6_000, ms - (at - started))));
    const outcome = result.client ? "connected" : String(result.error?.code ?? result.error?.message);
    trail.push(`+${at - started} ms: ${outcome} (${Date.now() - at} ms)`);
    if (result.error?.code === "ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED" && Date.now() - started <= ms) return;
    await result.client?.endAsync(true);
    await Bun.sleep(250);
  }
  throw new Error(withLogs(`${thing.name} not refused at the handshake within ${ms} ms (started ${new Date(started).toISOString()}):\n${trail.join("\n")}`));
}

function setReloadCommand(argv: string[]) {
  const file = join(fixture.dir, "hub.yml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  doc.setIn(["hub", "broker", "reloadCommand"], argv);
  writeFileSync(file, doc.toString());
}

/** nextUpdate of a PEM CRL, in ms since the epoch (openssl, as Mosquitto's OpenSSL reads it). */
function nextUpdate(file: string): number {
  const out = execFileSync("openssl", ["crl", "-in", file, "-noout", "-nextupdate"], { encoding: "utf8" });
  return Date.parse(out.trim().replace(/^nextUpdate=/, ""));
}

beforeAll(async () => {
  fixture = await makeHubFixture(work);
  [A, B, C, D] = [
    await fixture.createThing("alpha"),
    await fixture.createThing("bravo"),
    await fixture.createThing("charlie"),
    await fixture.createThing("delta"),
  ];
  E = await fixture.createThing("echo");
  F = await fixture.createThing("foxtrot");

  const listenerPort = await freePort();
  const made = await fixture.flashlex([
    "hub",
    "mosquitto-config",
    "--dir",
    fixture.dir,
    "--out",
    confDir,
    "--port",
    String(listenerPort),
    "--bind",
    "127.0.0.1",
  ]);
  expect(made.stdout).toContain(`sudo chown -R mosquitto: ${join(confDir, "dynsec")}`);
  const generated = readFileSync(join(confDir, "mosquitto.conf"), "utf8");
  expect(generated).toContain("plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so");
  expect(generated).toContain(`plugin_opt_config_file ${join(confDir, "dynsec", "dynamic-security.json")}`);
  // What the CLI tells the operator to do: Mosquitto's user owns its dynsec state (it rewrites it).
  const uid = Number(execFileSync("id", ["-u", "mosquitto"], { encoding: "utf8" }));
  const gid = Number(execFileSync("id", ["-g", "mosquitto"], { encoding: "utf8" }));
  chownSync(join(confDir, "dynsec"), uid, gid);
  chownSync(join(confDir, "dynsec", "dynamic-security.json"), uid, gid);

  // The generated config as it is, but for the listener port and the certificate files, which the
  // helper copies where the `mosquitto` user can read them. The CRL and the dynsec state stay the
  // files the hub writes.
  mkdirSync(work, { recursive: true });
  mosquitto = await startMosquitto({
    dir: work,
    caFile: join(confDir, "root-ca-cert.pem"),
    certFile: join(confDir, "broker-cert.pem"),
    keyFile: join(confDir, "broker-key.pem"),
    requireCertificate: true,
    renderConfig: (port, files) =>
      generated
        .replace(`listener ${listenerPort} 127.0.0.1`, `listener ${port} 127.0.0.1`)
        .replace(join(confDir, "root-ca-cert.pem"), files.caFile)
        .replace(join(confDir, "broker-cert.pem"), files.certFile)
        .replace(join(confDir, "broker-key.pem"), files.keyFile),
  });
  await serveHub();
}, 90_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
  await hub?.stop();
  await mosquitto?.stop();
  rmSync(work, { recursive: true, force: true });
}, 30_000);

describe("test messages behind Mosquitto, which cannot tell the hub who published", () => {
  test("A's test message in D's name is dropped without D's token: D is not marked verified and nothing is echoed into its ingress (A's text was stored there as the owner's); D's own, with its token, is echoed without the token or the text", async () => {
    // not `connected`: the revocation tests below find D's client in `clients`
    const [d, a] = [(await attempt(D)).client!, (await attempt(A)).client!];
    expect(await subscribeCode(d, `ingress/${D.name}`)).toBe(1);
    const spoof = { thingId: D.id, thingName: D.name, message: "OWNER SAYS: unlock the door", sequence: 1, nonce: randomUUID() };
    const leaked = nextMessage(d, `ingress/${D.name}`, 2_000);
    const from = hub!.output().length;
    await a.publishAsync("flashlex/test", JSON.stringify(spoof), { qos: 1 });
    await waitUntil("the hub drops A's test message", () =>
      /hub\.test_dropped [^\n]*reason="no token: behind an external broker a test message needs its thing's token"/.test(hub!.output().slice(from)),
    );
    expect(await leaked, withLogs("echoed into D's ingress")).toBeUndefined();
    const listed = JSON.parse((await fixture.flashlex(["hub", "thing", "list", "--dir", fixture.dir, "--json"])).stdout);
    expect(listed.find((t: { id: string }) => t.id === D.id)).toMatchObject({ verifiedAt: null });

    const token = await signThingToken({ thingId: D.id, privateKey: D.privateKey });
    const own = { thingId: D.id, thingName: D.name, message: "hello", sequence: 0, nonce: randomUUID() };
    const echo = nextMessage(d, `ingress/${D.name}`, 10_000);
    await d.publishAsync("flashlex/test", JSON.stringify({ ...own, token }), { qos: 1 });
    expect(JSON.parse((await echo) ?? "null"), withLogs("no echo")).toEqual({ message: { thingId: D.id, thingName: D.name, sequence: 0, nonce: own.nonce } });
    await Promise.all([a.endAsync(), d.endAsync()]);
  }, 30_000);
});

describe("revocation on Mosquitto 2.0.11 with the dynamic security plugin", () => {
  test("a connected thing is disconnected within seconds of `hub thing revoke`; back without a SIGHUP, it is denied everything", async () => {
    const a = await connected(A);
    expect(await subscribeCode(a, `ingress/${A.name}`)).toBe(1);
    const closed = closedWithin(a, 10_000);
    const revokedAt = Date.now();
    await revoke(A);
    expect(await closed, withLogs("A was not disconnected")).toBe(true);
    const ms = Date.now() - revokedAt;
    // the hub's poll (3 s) plus one dynsec round trip
    expect(ms, withLogs(`disconnected after ${ms} ms`)).toBeLessThan(6_000);
    expect(mosquitto.log()).toContain(`Client ${A.name} been disconnected by administrative action`);
    await hub!.waitFor(/hub\.revocation_enforced/);

    // No reload command yet: Mosquitto still has the CRL it started with, so the handshake passes
    // (and dynsec's `disabled` is not checked for certificate identities) — but the revoked role
    // denies every subscription, its own topics included.
    const back = await connected(A);
    expect(await subscribeCode(back, `ingress/${A.name}`)).toBe(128);
    expect(await subscribeCode(back, `pubsub/${A.name}`)).toBe(128);
    // A's own serve hears it as a revocation, not as a topic to fix (new-user pass 23, F4)
    const doc = parseDocument(readFileSync(A.configPath, "utf8"));
    doc.setIn(["flashlex", "thing", "mqtt", "port"], mosquitto.port);
    writeFileSync(A.configPath, doc.toString());
    const serve = start(["serve", ...A.flags]);
    try {
      const refused = await serve.waitFor(/ERROR +mqtt\.subscription_refused[^\n]*/, 20_000);
      expect(refused).toContain(`to subscribe to its own ingress/${A.name}: most likely this thing is revoked or unknown to this hub`);
      expect(refused).not.toContain("flashlex.thing.mqtt.ingress.topic");
    } finally {
      expect(await serve.stop()).toBe(0);
    }
    // the others are untouched
    const d = await connected(D);
    expect(await subscribeCode(d, `ingress/${D.name}`)).toBe(1);
    expect(hub!.output()).toContain("hub.broker_reload_unset");
  }, 30_000);

  test("a revocation made while the hub was stopped takes effect when it starts (and the CRL, once reloaded, refuses the handshake)", async () => {
    expect(await hub!.stop()).toBe(0);
    const c = await connected(C);
    await revoke(C);
    // Nobody tells Mosquitto: C stays connected while the hub is down.
    expect(await closedWithin(c, 1_500)).toBe(false);

    setReloadCommand(["kill", "-HUP", String(mosquitto.pid)]);
    const closed = closedWithin(c, 15_000);
    const startAt = Date.now();
    await serveHub();
    expect(await closed, withLogs("C was not disconnected at the hub's start")).toBe(true);
    expect(Date.now() - startAt).toBeLessThan(15_000);
    // dynsec did it (the reconcile at start), not the reload: a SIGHUP leaves connections alone
    expect(mosquitto.log()).toContain(`Client ${C.name} been disconnected by administrative action`);
    expect(hub!.output()).toMatch(/hub\.broker_reloaded/);
    // the CRL the hub re-signed at its start is what Mosquitto now checks: C and A fail at TLS
    await refusedAtHandshakeWithin(C, 5_000);
    await refusedAtHandshakeWithin(A, 5_000);
    // the reload did not disturb D's connection
    expect(clients.find((x) => x.options.clientId === D.name)?.connected).toBe(true);
  }, 45_000);

  test("a thing revoked while disconnected is refused at connect within seconds", async () => {
    const before = await attempt(B);
    expect(before.client, withLogs("B should connect before it is revoked")).toBeDefined();
    await before.client!.endAsync(true);
    const from = hub!.output().length;
    await revoke(B);
    // "within seconds": the hub's 3 s poll, the reload, then an attempt, on a machine a
    // parallel shard keeps busy (one CI run took 8.2 s)
    await refusedAtHandshakeWithin(B, 12_000);
    expect(hub!.output().slice(from)).toMatch(/hub\.broker_reloaded .*reason=revocation/);
    const d = await attempt(D);
    expect(d.client, withLogs("D refused")).toBeDefined();
    await d.client!.endAsync(true);
  }, 30_000);

  test("a thing deleted through the API is shut out at once (same process: no poll)", async () => {
    const e = await connected(E);
    const closed = closedWithin(e, 5_000);
    const at = Date.now();
    const response = await fetch(`http://127.0.0.1:${fixture.apiPort}/dev/v1/things/${E.id}`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${fixture.token}` },
      signal: AbortSignal.timeout(10_000),
    });
    expect(response.status).toBe(200);
    expect(await closed, withLogs("E stayed connected")).toBe(true);
    expect(Date.now() - at).toBeLessThan(1_500);
    // a deleted thing's certificate goes on the CRL (as superseded): once Mosquitto reloaded it,
    // the handshake itself fails
    await refusedAtHandshakeWithin(E, 10_000);
    const crl = execFileSync("openssl", ["crl", "-in", join(confDir, "crl.pem"), "-noout", "-text"], { encoding: "utf8" });
    expect(crl.replace(/\s+/g, " ")).toMatch(new RegExp(`Serial Number: 0*${describeCertificate(E.certPem).serialNumber.replace(/^0+/, "")} `, "i"));
  }, 20_000);

  test("a certificate its renewal superseded is refused at the handshake once the hub forgot the previous key", async () => {
    const old = await connected(F);
    await old.endAsync(true);
    const renewed = await renewOverHttp(fixture.apiPort, F.id, F.name, F);
    // until the new key is used, the previous one stays accepted (a thing may fall back to it)
    const stillOld = await attempt(F);
    expect(stillOld.client, withLogs(`the previous certificate was refused too early: ${stillOld.error?.message}`)).toBeDefined();
    await stillOld.client!.endAsync(true);
    expect(await useKey(fixture.apiPort, F.id, renewed)).toBe(200);
    await refusedAtHandshakeWithin(F, 10_000);
    const crl = execFileSync("openssl", ["crl", "-in", join(confDir, "crl.pem"), "-noout", "-text"], { encoding: "utf8" });
    const serial = describeCertificate(F.certPem).serialNumber.replace(/^0+/, "");
    expect(crl.replace(/\s+/g, " ")).toMatch(new RegExp(`Serial Number: 0*${serial} Revocation Date: (?:(?!Serial).)*? Reason Code: Superseded`, "i"));
    expect(hub!.output()).toMatch(/hub\.broker_reloaded .*reason=superseded/);
    // the renewed certificate connects and gets its own topic
    const fresh = await attempt(F, renewed);
    expect(fresh.client, withLogs(`the renewed certificate was refused: ${fresh.error?.message}`)).toBeDefined();
    clients.push(fresh.client!);
    expect(await subscribeCode(fresh.client!, `ingress/${F.name}`)).toBe(1);
    // the previous key no longer signs tokens either
    expect(await useKey(fixture.apiPort, F.id, F)).toBe(401);
  }, 30_000);

  test("a CRL valid for 6 s never lapses while the hub runs: renewed, reloaded, the others keep connecting", async () => {
    expect(await hub!.stop()).toBe(0);
    await serveHub({ FLASHLEX_CRL_VALIDITY_SECONDS: "6" });
    const crl = join(confDir, "crl.pem");
    const seen = new Set<number>();
    const started = Date.now();
    // 10 s: past the nextUpdate of the CRL Mosquitto loaded at the hub's start (6 s)
    while (Date.now() - started < 10_000) {
      const next = nextUpdate(crl);
      expect(next, withLogs("the CRL on disk lapsed")).toBeGreaterThan(Date.now());
      seen.add(next);
      await Bun.sleep(500);
    }
    expect(seen.size, "renewed every 2 s").toBeGreaterThanOrEqual(3);
    const d = await attempt(D);
    expect(d.client, withLogs(`D refused after 10 s: ${d.error?.message}`)).toBeDefined();
    await d.client!.endAsync(true);
    // and the revoked stay refused by the renewed CRL
    await refusedAtHandshakeWithin(B, 3_000);
    expect(hub!.output()).toMatch(/hub\.broker_reloaded .*reason="crl renewal"/);
    // and the deleted, whose certificates the renewed CRL lists too
    await refusedAtHandshakeWithin(E, 3_000);
    // Why the hub must renew and reload: with the hub stopped, the CRL Mosquitto loaded last
    // lapses within 6 s, and then Mosquitto 2.0.11 refuses every certificate at the handshake.
    expect(await hub!.stop()).toBe(0);
    await Bun.sleep(Math.max(0, nextUpdate(crl) - Date.now()) + 1_000);
    const lapsed = await attempt(D);
    await lapsed.client?.endAsync(true);
    expect(lapsed.client, "D connected with a lapsed CRL").toBeUndefined();
  }, 45_000);
});
