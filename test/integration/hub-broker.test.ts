/**
 * The hub's MQTT side, over real mutual TLS on loopback: the embedded aedes broker, then the same
 * key rules with Debian's Mosquitto configured by renderMosquittoConfig/renderMosquittoAcl, and
 * the hub as a client of that Mosquitto (connectExternalBroker).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { Aedes } from "aedes";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { exitCodeOf } from "../../src/cli/exit-codes.ts";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { createCrl } from "../../src/crypto/crl.ts";
import { issueServerCertificate } from "../../src/crypto/x509.ts";
import type { BrokerEvents, HubBroker, ThingDirectory } from "../../src/hub/broker/broker.ts";
import { type EmbeddedBroker, startEmbeddedBroker } from "../../src/hub/broker/embedded.ts";
import { connectExternalBroker } from "../../src/hub/broker/external.ts";
import { renderMosquittoAcl, renderMosquittoConfig } from "../../src/hub/broker/mosquitto-config.ts";
import { createLogger, type Logger } from "../../src/shared/log.ts";
import { freePort, type MosquittoBroker, startMosquitto } from "../support/mosquitto.ts";
import { attemptConnect, closedWithin, nextMessage } from "../support/mqtt-client.ts";
import { makeTestPki, type TestPki, type ThingFiles } from "../support/pki.ts";

const ALPHA = "ecd13b11-alpha";
const BETA = "ecd13b11-beta";
const GAMMA = "ecd13b11-gamma"; // has a hub certificate but is not in the directory (revoked)

let dir: string;
let pki: TestPki;
let alpha: ThingFiles, beta: ThingFiles, gamma: ThingFiles, hubClient: ThingFiles, stranger: ThingFiles;

/** The hub database, as far as the broker sees it. */
class FakeDirectory implements ThingDirectory {
  things = new Map<string, { id: string; name: string }>();
  add(t: ThingFiles) {
    this.things.set(t.name, { id: t.thingId, name: t.name });
  }
  async lookup(name: string) {
    return this.things.get(name);
  }
}

const logLines: string[] = [];
const log: Logger = createLogger({ level: "debug", write: (l) => logLines.push(l) });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-broker-"));
  pki = await makeTestPki(dir, { thingName: ALPHA });
  alpha = pki.thing;
  [beta, gamma, hubClient] = await Promise.all([pki.issueThing(BETA), pki.issueThing(GAMMA), pki.issueThing("flashlex-hub")]);
  // Same name as a real thing and the same CA common name: only the signature differs.
  stranger = (await pki.otherCa(ALPHA)).thing;
}, 30_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Connects once with `thing`'s certificate and its name as client id (unless `extra` says otherwise). */
const attempt = (port: number, thing: ThingFiles | undefined, extra: Partial<IClientOptions> = {}) =>
  attemptConnect({ port, caPem: pki.ca.certPem, cert: thing, clientId: thing?.name ?? "anonymous", extra });

async function connect(port: number, thing: ThingFiles, extra: Partial<IClientOptions> = {}): Promise<MqttClient> {
  const result = await attempt(port, thing, extra);
  if (!result.client) throw new Error(`${thing.name} could not connect: ${result.error?.message ?? "closed"}\n${logLines.join("\n")}`);
  return result.client;
}

describe("embedded broker (aedes)", () => {
  const directory = new FakeDirectory();
  const published: { thing?: string; topic: string; payload: string; at: number }[] = [];
  const connects: string[] = [];
  // Tests swap the store to make it slow or failing.
  let store: (topic: string, payload: Buffer) => Promise<void> = async () => {};
  const events: BrokerEvents = {
    onConnect: (name) => connects.push(name),
    async onThingPublish(thing, topic, payload) {
      await store(topic, payload);
      published.push({ thing: thing?.name, topic, payload: payload.toString(), at: performance.now() });
    },
  };
  let broker: EmbeddedBroker;
  const clients: MqttClient[] = [];
  const track = (c: MqttClient) => (clients.push(c), c);

  beforeAll(async () => {
    directory.add(alpha);
    directory.add(beta);
    broker = await startEmbeddedBroker({
      host: "127.0.0.1",
      port: 0,
      caPem: pki.ca.certPem,
      certPem: pki.broker.certPem,
      keyPem: pki.broker.keyPem,
      directory,
      events,
      log,
      maxPayloadBytes: 64 * 1024,
    });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker.close();
  });

  test("a broker whose ACL refuses the hub its topics is a configuration error (78) naming them, not 77 (which blames the hub home)", async () => {
    // a thing's certificate as the hub's: the embedded broker gives it its own topics only
    const refused = await connectExternalBroker({
      url: `mqtts://127.0.0.1:${broker.port}`,
      caPem: pki.ca.certPem,
      certPem: alpha.certPem,
      keyPem: alpha.privateKeyPem,
      clientId: alpha.name,
      directory: new FakeDirectory(),
      log,
      connectTimeoutMs: 20_000,
      events: {},
    }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(exitCodeOf(refused)).toBe(78);
    expect((refused as Error).message).toMatch(
      /refused the hub's subscription to .*flashlex\/collect.*: its ACL must let the hub's client \(flashlex-hub\) read them/,
    );
  }, 30_000);

  test("a renewed certificate is served from the next handshake on; a connected thing stays connected", async () => {
    const before = track(await connect(broker.port, alpha));
    const served = () =>
      new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ port: broker.port, host: "127.0.0.1", ca: pki.ca.certPem, cert: alpha.certPem, key: alpha.privateKeyPem }, () => {
          resolve(socket.getPeerCertificate().serialNumber);
          socket.destroy();
        });
        socket.on("error", reject);
      });
    const serialOf = (pem: string) => describeCertificate(pem).serialNumber.toUpperCase();
    expect(await served()).toBe(serialOf(pki.broker.certPem));
    const renewed = await issueServerCertificate(pki.ca, { commonName: "127.0.0.1", keyPem: pki.broker.keyPem });
    broker.useCertificate(renewed.certPem);
    expect(await served()).toBe(serialOf(renewed.certPem));
    expect(before.connected).toBe(true);
    track(await connect(broker.port, beta)).end(true);
  });

  test("a thing subscribes to its ingress and receives what the hub publishes", async () => {
    expect(broker.url).toBe(`mqtts://127.0.0.1:${broker.port}`);
    const a = track(await connect(broker.port, alpha));
    expect(connects).toContain(ALPHA);
    expect(broker.isConnected(ALPHA)).toBe(true);

    const granted = await a.subscribeAsync([`ingress/${ALPHA}`, `pubsub/${ALPHA}`], { qos: 1 });
    expect(granted.map((g) => g.qos)).toStrictEqual([1, 1]);

    const got = nextMessage(a, `ingress/${ALPHA}`, 3_000);
    await broker.publish(`ingress/${ALPHA}`, JSON.stringify({ hello: "alpha" }));
    expect(await got).toBe('{"hello":"alpha"}');

    // its own pubsub topic works both ways
    const echo = nextMessage(a, `pubsub/${ALPHA}`, 3_000);
    await a.publishAsync(`pubsub/${ALPHA}`, "ping", { qos: 1 });
    expect(await echo).toBe("ping");
  }, 15_000);

  test("a thing cannot subscribe to another thing's topics or to wildcards (SUBACK 128)", async () => {
    const a = track(await connect(broker.port, alpha, { clientId: ALPHA }));
    for (const topic of [`ingress/${BETA}`, `pubsub/${BETA}`, "ingress/#", "#", "ingress/+", "flashlex/collect", "$SYS/#"]) {
      // MQTT.js rejects a SUBACK with 128 in it, keeping the SUBACK packet on the error
      const code = await a.subscribeAsync(topic, { qos: 1 }).then(
        (granted) => granted[0]?.qos,
        (e: Error & { packet?: { granted?: number[] } }) => e.packet?.granted?.[0],
      );
      expect({ topic, code }).toEqual({ topic, code: 128 });
    }
    expect(a.connected).toBe(true); // a refused subscription does not end the session
  }, 15_000);

  test("publishing to another thing's pubsub topic gets the publisher disconnected", async () => {
    const b = track(await connect(broker.port, beta));
    await b.subscribeAsync(`pubsub/${BETA}`, { qos: 1 });
    const a = track(await connect(broker.port, alpha));
    const leaked = nextMessage(b, `pubsub/${BETA}`, 1_000);
    const closed = closedWithin(a, 3_000);
    a.publish(`pubsub/${BETA}`, "intrusion", { qos: 1 });
    expect(await closed).toBe(true);
    expect(await leaked).toBeUndefined();
    expect(logLines.some((l) => l.includes("mqtt.publish.refused") && l.includes(`pubsub/${BETA}`))).toBe(true);
    expect(b.connected).toBe(true);
  }, 15_000);

  test("client id different from the certificate CN is refused, and does not kick the real owner", async () => {
    const b = track(await connect(broker.port, beta));
    const result = await attempt(broker.port, alpha, { clientId: BETA });
    expect(result.client).toBeUndefined();
    expect(result.error?.code).toBe(2); // CONNACK identifier rejected
    await Bun.sleep(200);
    expect(b.connected).toBe(true);
    expect(broker.isConnected(BETA)).toBe(true);
  }, 15_000);

  test("a thing the directory does not know (revoked) is refused with CONNACK not authorized", async () => {
    const result = await attempt(broker.port, gamma);
    expect(result.client).toBeUndefined();
    expect(result.error?.code).toBe(5);
  }, 15_000);

  test("revoking a connected thing: disconnect() kicks it and it cannot come back", async () => {
    const revokedThing = await pki.issueThing("ecd13b11-delta");
    directory.add(revokedThing);
    const d = track(await connect(broker.port, revokedThing));
    directory.things.delete(revokedThing.name);
    const closed = closedWithin(d, 3_000);
    expect(broker.disconnect(revokedThing.name)).toBe(true);
    expect(await closed).toBe(true);
    expect(broker.disconnect(revokedThing.name)).toBe(false);
    const again = await attempt(broker.port, revokedThing);
    expect(again.error?.code).toBe(5);
  }, 15_000);

  test("deleted elsewhere (or made again under its name): disconnectStale drops that connection and no other", async () => {
    const [epsilon, zeta] = await Promise.all([pki.issueThing("ecd13b11-epsilon"), pki.issueThing("ecd13b11-zeta")]);
    directory.add(epsilon);
    directory.add(zeta);
    const e = track(await connect(broker.port, epsilon));
    const z = track(await connect(broker.port, zeta));
    expect(await broker.disconnectStale()).toEqual([]);
    // `hub thing delete` in another process, then `hub thing create` of the same name: a new id.
    directory.things.set(epsilon.name, { id: crypto.randomUUID(), name: epsilon.name });
    const closed = closedWithin(e, 3_000);
    expect(await broker.disconnectStale()).toEqual([epsilon.name]);
    expect(await closed).toBe(true);
    expect(z.connected).toBe(true);
  }, 15_000);

  test("a session made for a deleted thing is not resumed by a new thing of the same name: no subscriptions, no queued messages", async () => {
    const eta = await pki.issueThing("ecd13b11-eta");
    directory.add(eta);
    const persistent = (thing: ThingFiles) => ({ clean: false, clientId: thing.name });
    const queueOne = async (thing: ThingFiles, payload: string) => {
      const first = await connect(broker.port, thing, persistent(thing));
      await first.subscribeAsync(`ingress/${thing.name}`, { qos: 1 });
      await first.endAsync();
      await broker.publish(`ingress/${thing.name}`, payload); // queued in the offline session
    };
    // The session's queue arrives right after the CONNACK: listen from before the connect.
    const reconnect = async (thing: ThingFiles) => {
      const got: string[] = [];
      const client = mqtt.connect({
        protocol: "mqtts",
        host: "127.0.0.1",
        port: broker.port,
        ca: pki.ca.certPem,
        cert: thing.certPem,
        key: thing.privateKeyPem,
        reconnectPeriod: 0,
        ...persistent(thing),
      });
      client.on("message", (_topic, payload) => got.push(payload.toString()));
      const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => client.once("connect", resolve).once("error", reject));
      await Bun.sleep(1_000);
      await client.endAsync();
      return { sessionPresent: connack.sessionPresent, got };
    };
    // The same thing comes back: its session and the queued message are there.
    await queueOne(eta, "for the same thing");
    expect(await reconnect(eta)).toEqual({ sessionPresent: true, got: ["for the same thing"] });
    // The thing is deleted and a new one made under the name: the old session goes.
    await queueOne(eta, "for the deleted thing");
    directory.things.set(eta.name, { id: crypto.randomUUID(), name: eta.name });
    expect(await reconnect(eta)).toEqual({ sessionPresent: false, got: [] });
    expect(logLines.some((l) => l.includes("mqtt.session_dropped") && l.includes(eta.name))).toBe(true);

    // Revoked first, its device retrying (refused), then deleted and made again: the new thing
    // still starts clean; the drop is said once however often the revoked device retries
    // (verify pass 31, F1: forgetting the owner at the refused retry handed the new thing the old queue).
    const theta = await pki.issueThing("ecd13b11-theta");
    directory.add(theta);
    await queueOne(theta, "for the revoked thing");
    directory.things.delete(theta.name); // revoked: the directory no longer lets it in
    for (let i = 0; i < 2; i++) expect((await attempt(broker.port, theta, persistent(theta))).error?.code).toBe(5);
    directory.things.set(theta.name, { id: crypto.randomUUID(), name: theta.name }); // deleted, made again
    expect(await reconnect(theta)).toEqual({ sessionPresent: false, got: [] });
    expect(logLines.filter((l) => l.includes("mqtt.session_dropped") && l.includes(theta.name))).toHaveLength(1);
  }, 30_000);

  test("a certificate from another CA is refused during the TLS handshake", async () => {
    const before = logLines.length;
    const result = await attempt(broker.port, stranger);
    expect(result.client).toBeUndefined();
    expect(typeof result.error?.code).not.toBe("number"); // no CONNACK: the handshake failed (Bun just closes)
    await Bun.sleep(100);
    expect(logLines.slice(before).some((l) => l.includes("mqtt.tls.refused"))).toBe(true);
    expect(logLines.slice(before).some((l) => l.includes("mqtt.connected"))).toBe(false);
  }, 15_000);

  test("a client without a certificate is refused", async () => {
    const before = logLines.length;
    const result = await attempt(broker.port, undefined, { clientId: ALPHA });
    expect(result.client).toBeUndefined();
    expect(result.error?.code).toBe("ERR_SSL_TLSV1_ALERT_CERTIFICATE_REQUIRED");
    await Bun.sleep(100);
    expect(logLines.slice(before).some((l) => l.includes("mqtt.tls.refused"))).toBe(true);
  }, 15_000);

  test("a publish to flashlex/collect is stored before the PUBACK: a slow store delays the PUBACK", async () => {
    const a = track(await connect(broker.port, alpha));
    let release!: () => void;
    let storeStarted = 0;
    store = (topic) => {
      storeStarted = performance.now();
      return topic === "flashlex/collect" ? new Promise<void>((r) => (release = r)) : Promise.resolve();
    };
    try {
      let acked = 0;
      const puback = a.publishAsync("flashlex/collect", '{"n":1}', { qos: 1 }).then(() => (acked = performance.now()));
      await Bun.sleep(500);
      expect(storeStarted).toBeGreaterThan(0); // the store runs…
      expect(acked).toBe(0); // …and the PUBACK waits for it
      release();
      await puback;
      const stored = published.find((p) => p.payload === '{"n":1}');
      expect(stored).toMatchObject({ thing: ALPHA, topic: "flashlex/collect" });
      expect(stored!.at).toBeLessThan(acked);
      expect(acked - storeStarted).toBeGreaterThanOrEqual(450);

      // flashlex/test goes the same way
      await a.publishAsync("flashlex/test", "t", { qos: 1 });
      expect(published.at(-1)).toMatchObject({ thing: ALPHA, topic: "flashlex/test", payload: "t" });
    } finally {
      store = async () => {};
    }
  }, 15_000);

  test("a failing store means no PUBACK: the connection is dropped and the thing resends", async () => {
    let failures = 1;
    store = async () => {
      if (failures-- > 0) throw new Error("disk full");
    };
    try {
      // clean: false + reconnect: MQTT.js resends the unacknowledged QoS 1 message on the new connection
      const a = track(await connect(broker.port, alpha, { clean: false, reconnectPeriod: 100 }));
      const closed = closedWithin(a, 3_000);
      const puback = a.publishAsync("flashlex/collect", "retry-me", { qos: 1 });
      expect(await closed).toBe(true);
      await puback; // acknowledged only after the second, successful store
      expect(published.filter((p) => p.payload === "retry-me")).toHaveLength(1);
      await a.endAsync(true);
    } finally {
      store = async () => {};
    }
  }, 15_000);

  test("an oversized publish disconnects the client before it is buffered", async () => {
    const a = track(await connect(broker.port, alpha));
    const closed = closedWithin(a, 3_000);
    a.publish("flashlex/collect", Buffer.alloc(200 * 1024, 1), { qos: 1 });
    expect(await closed).toBe(true);
    expect(published.some((p) => p.payload.length > 100_000)).toBe(false);
  }, 15_000);
});

describe("Mosquitto with the rendered config", () => {
  let mosquitto: MosquittoBroker;
  let hub: HubBroker;
  const clients: MqttClient[] = [];
  const track = (c: MqttClient) => (clients.push(c), c);
  const hubReceived: { thing: unknown; topic: string; payload: string }[] = [];
  let failNextStore = false;

  beforeAll(async () => {
    const aclFile = join(dir, "acl");
    writeFileSync(aclFile, renderMosquittoAcl());
    const crlFile = join(dir, "crl.pem");
    writeFileSync(crlFile, await createCrl(pki.ca, [])); // an empty CRL must not lock anyone out
    mosquitto = await startMosquitto({
      dir,
      caFile: pki.caCertPath,
      certFile: pki.brokerCertPath,
      keyFile: pki.brokerKeyPath,
      aclFile,
      crlFile,
      requireCertificate: true,
      renderConfig: (port, files) =>
        renderMosquittoConfig({
          port,
          bindAddress: "127.0.0.1",
          caFile: files.caFile,
          certFile: files.certFile,
          keyFile: files.keyFile,
          aclFile: files.aclFile!,
          crlFile: files.crlFile,
        }),
    });
    hub = await connectExternalBroker({
      url: `mqtts://127.0.0.1:${mosquitto.port}`,
      caPem: pki.ca.certPem,
      certPem: hubClient.certPem,
      keyPem: hubClient.privateKeyPem,
      directory: new FakeDirectory(),
      log,
      connectTimeoutMs: 5_000,
      events: {
        async onThingPublish(thing, topic, payload) {
          if (failNextStore) {
            failNextStore = false;
            throw new Error("database locked");
          }
          hubReceived.push({ thing, topic, payload: payload.toString() });
        },
      },
    });
  }, 30_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await hub?.close();
    await mosquitto?.stop();
  });

  const failWithLog = (msg: string) => `${msg}\n--- mosquitto log ---\n${mosquitto.log()}`;

  test("the hub receives a thing's flashlex/collect publish (thing unknown: undefined)", async () => {
    const a = track(await connect(mosquitto.port, alpha));
    await a.publishAsync("flashlex/collect", '{"egress":1}', { qos: 1 });
    for (let i = 0; i < 100 && !hubReceived.some((m) => m.payload === '{"egress":1}'); i++) await Bun.sleep(20);
    expect(
      hubReceived.find((m) => m.payload === '{"egress":1}'),
      failWithLog("not received"),
    ).toEqual({
      thing: undefined,
      topic: "flashlex/collect",
      payload: '{"egress":1}',
    });
    expect(hub.isConnected(ALPHA)).toBeUndefined(); // an external broker does not tell the hub who is connected
  }, 15_000);

  test("a failed store is not acknowledged: Mosquitto redelivers after the hub reconnects", async () => {
    const a = track(await connect(mosquitto.port, alpha));
    failNextStore = true;
    await a.publishAsync("flashlex/collect", "redeliver-me", { qos: 1 });
    for (let i = 0; i < 250 && !hubReceived.some((m) => m.payload === "redeliver-me"); i++) await Bun.sleep(20);
    expect(
      hubReceived.filter((m) => m.payload === "redeliver-me"),
      failWithLog("not redelivered"),
    ).toHaveLength(1);
  }, 15_000);

  test("ingress reaches only its thing; another thing's subscription gets nothing", async () => {
    const a = track(await connect(mosquitto.port, alpha));
    const b = track(await connect(mosquitto.port, beta));
    await a.subscribeAsync(`ingress/${ALPHA}`, { qos: 1 });
    // Mosquitto's ACL file does not check SUBSCRIBE (it grants it) but filters delivery by read access.
    await b.subscribeAsync([`ingress/${ALPHA}`, "ingress/#"], { qos: 1 });
    const toA = nextMessage(a, `ingress/${ALPHA}`, 3_000);
    const toB = nextMessage(b, `ingress/${ALPHA}`, 1_000);
    await hub.publish(`ingress/${ALPHA}`, "for alpha only");
    expect(await toA, failWithLog("alpha got nothing")).toBe("for alpha only");
    expect(await toB).toBeUndefined();
  }, 15_000);

  test("a thing cannot publish to another thing's pubsub or ingress", async () => {
    const a = track(await connect(mosquitto.port, alpha));
    const b = track(await connect(mosquitto.port, beta));
    await b.subscribeAsync([`pubsub/${BETA}`, `ingress/${BETA}`], { qos: 1 });
    const leakedPubsub = nextMessage(b, `pubsub/${BETA}`, 1_000);
    const leakedIngress = nextMessage(b, `ingress/${BETA}`, 1_000);
    // MQTT 3.1.1: Mosquitto acknowledges and drops a denied publish (it does not disconnect).
    await a.publishAsync(`pubsub/${BETA}`, "intrusion", { qos: 1 });
    await a.publishAsync(`ingress/${BETA}`, "forged ingress", { qos: 1 });
    expect(await leakedPubsub).toBeUndefined();
    expect(await leakedIngress).toBeUndefined();
    // its own pubsub still works
    await a.subscribeAsync(`pubsub/${ALPHA}`, { qos: 1 });
    const own = nextMessage(a, `pubsub/${ALPHA}`, 3_000);
    await a.publishAsync(`pubsub/${ALPHA}`, "mine", { qos: 1 });
    expect(await own).toBe("mine");
  }, 15_000);

  test("a client id that is not the CN is replaced by the CN: it cannot kick the real owner", async () => {
    const b = track(await connect(mosquitto.port, beta));
    const spoof = track(await connect(mosquitto.port, alpha, { clientId: BETA }));
    await Bun.sleep(500);
    expect(b.connected).toBe(true);
    expect(spoof.connected).toBe(true);
    // the spoofing connection is still alpha for the ACL: beta's ingress never reaches it
    await spoof.subscribeAsync(`ingress/${BETA}`, { qos: 1 });
    const leaked = nextMessage(spoof, `ingress/${BETA}`, 1_000);
    await hub.publish(`ingress/${BETA}`, "for beta");
    expect(await leaked).toBeUndefined();
    expect(mosquitto.log()).toContain(`as ${ALPHA} (`); // Mosquitto logs the connection under the CN
  }, 15_000);

  test("a certificate from another CA, and no certificate, are refused at TLS", async () => {
    const strangerResult = await attempt(mosquitto.port, stranger);
    const anonymous = await attempt(mosquitto.port, undefined);
    expect(strangerResult.client).toBeUndefined();
    expect(strangerResult.error?.code).toBe("ERR_SSL_TLSV1_ALERT_UNKNOWN_CA");
    expect(anonymous.client).toBeUndefined();
    expect(anonymous.error?.code).toBe("ERR_SSL_TLSV1_ALERT_CERTIFICATE_REQUIRED");
  }, 15_000);

  test("a revoked certificate (CRL + SIGHUP) is refused", async () => {
    const before = await attempt(mosquitto.port, gamma);
    expect(before.client, failWithLog("gamma should connect before revocation")).toBeDefined();
    await before.client!.endAsync(true);

    writeFileSync(mosquitto.files.crlFile!, await createCrl(pki.ca, [describeCertificate(gamma.certPem).serialNumber]));
    await mosquitto.reload();
    const after = await attempt(mosquitto.port, gamma);
    expect(after.client, failWithLog("gamma connected after revocation")).toBeUndefined();
    // the others are unaffected
    const a = track(await connect(mosquitto.port, alpha));
    expect(a.connected).toBe(true);
  }, 15_000);

  test("the hub waits for a broker that is not up yet (a cluster still booting), and fails at once when the broker refuses its certificate", async () => {
    // Nothing listens on the port for 3 s, then a relay to Mosquitto does: as a node that boots.
    const port = await freePort();
    const linesBefore = logLines.length;
    let relay: net.Server | undefined;
    const opening = setTimeout(() => {
      relay = net.createServer((socket) => {
        const upstream = net.connect(mosquitto.port, "127.0.0.1");
        socket.pipe(upstream).pipe(socket);
        const close = () => (socket.destroy(), upstream.destroy());
        socket.on("error", close).on("close", close);
        upstream.on("error", close).on("close", close);
      });
      relay.listen(port, "127.0.0.1");
    }, 3_000);
    const late = await connectExternalBroker({
      url: `mqtts://127.0.0.1:${port}`,
      caPem: pki.ca.certPem,
      certPem: hubClient.certPem,
      keyPem: hubClient.privateKeyPem,
      directory: new FakeDirectory(),
      log,
      clientId: "flashlex-hub-late",
      connectTimeoutMs: 15_000,
      events: {},
    }).finally(() => clearTimeout(opening));
    await late.close();
    relay?.close();
    // at most one mqtt.error line per attempt (MQTT.js reports a TLS connection's error twice)
    const waited = logLines.slice(linesBefore).filter((l) => l.includes(`127.0.0.1:${port}`));
    const attempts = waited.filter((l) => l.includes("mqtt.reconnecting")).length + 1;
    const errors = waited.filter((l) => l.includes("mqtt.error")).length;
    expect(errors).toBeGreaterThan(0);
    expect(errors).toBeLessThanOrEqual(attempts);

    // A wait long past the test's own bound: were the refusal waited on, the test would time out.
    const refused = await connectExternalBroker({
      url: `mqtts://127.0.0.1:${mosquitto.port}`,
      caPem: pki.ca.certPem,
      certPem: stranger.certPem,
      keyPem: stranger.privateKeyPem,
      directory: new FakeDirectory(),
      log,
      connectTimeoutMs: 120_000,
      events: {},
    }).then(
      () => "connected",
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/cannot use broker .*(certificate|unknown ca|alert)/i);
  }, 40_000);

  test("the hub waits through CONNACK 3 (a RabbitMQ cluster still electing its client-id tracking leader), and fails at once on CONNACK 5", async () => {
    // A broker that answers its first two CONNECTs with CONNACK 3, as a booting cluster does;
    // then `refuseWith` says what it answers (0: accepted).
    let attempts = 0;
    let refuseWith = 0;
    const booting = await Aedes.createBroker({
      authenticate: (_client, _user, _password, done) => {
        const code = ++attempts <= 2 ? 3 : refuseWith;
        if (code) done(Object.assign(new Error("refused"), { returnCode: code }), false);
        else done(null, true);
      },
    });
    const server = tls.createServer(
      { requestCert: true, rejectUnauthorized: true, ca: pki.ca.certPem, cert: pki.broker.certPem, key: pki.broker.keyPem },
      (socket) => booting.handle(socket),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const connectHub = () =>
      connectExternalBroker({
        url: `mqtts://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
        caPem: pki.ca.certPem,
        certPem: hubClient.certPem,
        keyPem: hubClient.privateKeyPem,
        directory: new FakeDirectory(),
        log,
        clientId: "flashlex-hub-waits",
        connectTimeoutMs: 20_000,
        events: {},
      });
    try {
      const hub = await connectHub();
      await hub.close();
      expect(attempts).toBe(3);

      refuseWith = 5; // not authorized: will not change, so no waiting and no more attempts
      const started = Date.now();
      const refused = await connectHub().then(
        () => "connected",
        (err: Error) => err.message,
      );
      expect(refused).toMatch(/cannot use broker .*Not authorized/i);
      expect(Date.now() - started).toBeLessThan(10_000);
      const triedBefore = attempts;
      await Bun.sleep(2_500); // past the reconnect period: a retry would have come
      expect(attempts).toBe(triedBefore);
    } finally {
      server.close();
      await new Promise<void>((resolve) => booting.close(() => resolve()));
    }
  }, 40_000);
});

describe("an external broker whose certificate is not for the URL's host", () => {
  test("is a configuration error (78) at once, naming the host and hub.broker.names: trying again cannot help", async () => {
    // The hub's own CA signed a broker certificate for another name only, as a hub init whose
    // --name left out the address hub.yml's broker.external (or --broker) gives.
    const other = await makeTestPki(join(dir, "other-names"), { serverNames: ["broker.example"] });
    const server = tls.createServer({ cert: other.broker.certPem, key: other.broker.keyPem });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const refused = await connectExternalBroker({
        url: `mqtts://127.0.0.1:${port}`,
        caPem: other.ca.certPem,
        certPem: hubClient.certPem,
        keyPem: hubClient.privateKeyPem,
        directory: new FakeDirectory(),
        log,
        connectTimeoutMs: 120_000,
        events: {},
      }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(exitCodeOf(refused)).toBe(78);
      expect((refused as Error).message).toBe(
        `cannot use broker mqtts://127.0.0.1:${port}: its certificate is not for 127.0.0.1; name the broker by one of the names hub init gave it (hub.yml hub.broker.names) in --broker or hub.broker.external`,
      );
    } finally {
      server.close();
    }
  }, 30_000);
});
