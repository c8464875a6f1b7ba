/**
 * The hub against a three-node RabbitMQ 3.10 cluster from Debian's package, on loopback: the
 * compiled binary writes the nodes' config (`hub rabbitmq-config`), the nodes start from it and
 * cluster, and `hub serve` (pointed at the cluster by hub.yml) answers their auth backend and
 * publishes ingress through them. Shows, with things A, B and C:
 *
 *   1. A connects with its certificate (persistent session) and gets a QoS 1 ingress message
 *   2. A cannot subscribe to B's ingress nor publish outside its topics (3.10 closes the
 *      connection: its MQTT plugin has no SUBACK failure code)
 *   3. A's certificate with B's client id is refused (CONNACK 5), and so is a username/password
 *      login under B's name
 *   4. revoking A (`hub thing revoke`, another process) closes its live connection within seconds,
 *      and it cannot connect again
 *   5. a certificate a renewal superseded (D renews over HTTP, then uses its new key once) is
 *      refused at the TLS handshake by every node: they read the hub's CRL from the directory
 *      `hub rabbitmq-config` wrote (advanced.config: crl_check, ssl_crl_hash_dir)
 *   6. the node C is on stops; C reconnects to another node and gets the message sent meanwhile
 *      (its session queue is a quorum queue, replicated on the other nodes)
 *
 * Bounded: the cluster must form within 150 s or the suite fails saying so; afterAll stops every
 * node (and the epmd they started) whatever happened.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type mqtt from "mqtt";
import type { MqttClient } from "mqtt";
import type { Background } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { attemptConnect, attemptPastUnavailable, closedWithin, nextMessage } from "../support/mqtt-client.ts";
import { RABBIT_BIN, type RabbitCluster, rabbitMissing, startRabbitCluster } from "../support/rabbitmq-cluster.ts";
import { type Identity, renewOverHttp, useKey } from "../support/renewal-http.ts";

const haveRabbit = rabbitMissing() === undefined;
const work = mkdtempSync(join(tmpdir(), "flashlex-rabbitmq-"));
let fixture: HubFixture;
let hub: Background | undefined;
let cluster: RabbitCluster | undefined;
let A: HubThing, B: HubThing, C: HubThing, D: HubThing;
const clients: MqttClient[] = [];

const withLogs = (what: string) => `${what}\n--- hub ---\n${hub?.output().slice(-4000)}\n--- node1 ---\n${cluster?.nodeLog(0)}`;
const mqttPort = (i: number) => cluster!.servers[i]!.port;

/** A thing's client on node `i` (persistent session), connected; throws with the logs otherwise. */
async function connectedOn(thing: HubThing, i: number, extra: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const result = await attemptPastUnavailable({
    port: mqttPort(i),
    caPem: thing.caPem,
    cert: thing,
    clientId: thing.name,
    extra: { clean: false, ...extra },
    timeoutMs: 20_000,
  });
  if (!result.client) throw new Error(withLogs(`${thing.name} could not connect to node ${i + 1}: ${result.error?.message}`));
  clients.push(result.client);
  return result.client;
}

beforeAll(async () => {
  if (!haveRabbit) throw new Error(rabbitMissing());
  fixture = await makeHubFixture(work);
  [A, B, C] = [await fixture.createThing("alpha"), await fixture.createThing("bravo"), await fixture.createThing("charlie")];
  D = await fixture.createThing("delta");
  // Ports of their own for each node, config by `hub rabbitmq-config`, formed within 150 s.
  cluster = await startRabbitCluster(fixture.dir, work);
  // The check line docs/scaling.md shows ("Trying it on one machine").
  const confDir = join(work, "rabbit");
  expect(cluster.configOutput).toContain(`RABBITMQ_CONF_ENV_FILE=${join(confDir, "node1", "rabbitmq-env.conf")} ${RABBIT_BIN}/rabbitmqctl cluster_status`);
  // and a wait after each node's start line but the last (the support starts them so)
  const lines = cluster.configOutput.split("\n");
  const at = (node: number, what: string) => lines.findIndex((l) => l.includes(`node${node}/rabbitmq-env.conf`) && l.includes(what));
  for (const node of [1, 2]) {
    expect(lines[at(node, "rabbitmq-server -detached") + 1]).toStartWith("wait: ");
    expect(at(node, "rabbitmqctl await_startup")).toBe(at(node, "rabbitmq-server -detached") + 1);
  }
  expect(at(3, "rabbitmqctl await_startup")).toBe(-1);
  // hub.yml now names the cluster: no --broker needed.
  hub = await fixture.serve([]).catch((err) => {
    throw new Error(withLogs(String(err)));
  });
}, 240_000);

afterAll(async () => {
  for (const client of clients) await client.endAsync(true).catch(() => {});
  await hub?.stop();
  // Every node (rabbitmqctl stop, then SIGKILL to its VM) and the epmd they started.
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
}, 90_000);

describe.skipIf(!haveRabbit)("hub against a three-node RabbitMQ 3.10 cluster", () => {
  test("a thing connects with its certificate and receives a QoS 1 ingress message", async () => {
    const client = await connectedOn(A, 0);
    await client.subscribeAsync(`ingress/${A.name}`, { qos: 1 });
    const message = nextMessage(client, `ingress/${A.name}`, 15_000);
    await fixture.publish(A.id, "hello through the cluster");
    const received = await message;
    if (received === undefined) throw new Error(withLogs("no ingress message"));
    expect(JSON.parse(received).message).toBe("hello through the cluster");
  }, 30_000);

  test("a thing cannot subscribe to another's ingress nor publish outside its topics", async () => {
    const subscriber = await connectedOn(B, 1);
    const closed = closedWithin(subscriber, 10_000);
    subscriber.subscribe(`ingress/${A.name}`, { qos: 1 });
    expect(await closed).toBe(true);
    await subscriber.endAsync(true);

    const publisher = await connectedOn(B, 1);
    const publisherClosed = closedWithin(publisher, 10_000);
    publisher.publish(`ingress/${A.name}`, "not yours", { qos: 1 });
    expect(await publisherClosed).toBe(true);
    await publisher.endAsync(true);
  }, 30_000);

  test("a certificate whose CN differs from the client id is refused, as is a password login under another name", async () => {
    const wrongId = await attemptConnect({ port: mqttPort(0), caPem: B.caPem, cert: B, clientId: A.name, extra: { clean: false } });
    await wrongId.client?.endAsync(true);
    expect(wrongId.client).toBeUndefined();
    expect(wrongId.error?.code).toBe(5);

    const password = await attemptConnect({ port: mqttPort(0), caPem: B.caPem, cert: B, clientId: A.name, extra: { username: A.name, password: "x" } });
    await password.client?.endAsync(true);
    expect(password.client).toBeUndefined();
  }, 30_000);

  test("revoking a connected thing closes its connection within seconds, and it cannot come back", async () => {
    const client = await connectedOn(A, 0);
    const closed = closedWithin(client, 15_000);
    const revoked = await fixture.flashlex(["hub", "thing", "revoke", A.name, "--dir", fixture.dir]);
    // It says what happens on this broker, not Mosquitto's plugin or reload.
    expect(revoked.stdout).toContain("RabbitMQ cluster");
    expect(revoked.stdout).not.toContain("mosquitto");
    if (!(await closed)) throw new Error(withLogs("A still connected 15 s after its revocation"));
    const again = await attemptConnect({ port: mqttPort(2), caPem: A.caPem, cert: A, clientId: A.name });
    await again.client?.endAsync(true);
    expect(again.client).toBeUndefined();
  }, 40_000);

  test("a certificate its renewal superseded is refused at the handshake by every node once the hub forgot the previous key", async () => {
    const attemptOn = (i: number, cert: Identity) => attemptPastUnavailable({ port: mqttPort(i), caPem: D.caPem, cert, clientId: D.name, timeoutMs: 20_000 });
    const renewed = await renewOverHttp(fixture.apiPort, D.id, D.name, D);
    // the previous certificate still connects until the new key is used (a thing may fall back)
    const before = await attemptOn(1, D);
    expect(before.client, withLogs(`refused too early: ${before.error?.message}`)).toBeDefined();
    await before.client!.endAsync(true);
    expect(await useKey(fixture.apiPort, D.id, renewed)).toBe(200);
    // no reload: each handshake reads the CRL file the hub rewrote
    for (const i of [0, 1, 2]) {
      const deadline = Date.now() + 10_000;
      let last = "";
      for (;;) {
        const old = await attemptOn(i, D);
        await old.client?.endAsync(true);
        last = old.client ? "connected" : String(old.error?.code ?? old.error?.message);
        if (/CERTIFICATE_REVOKED/.test(last)) break;
        if (Date.now() > deadline) throw new Error(withLogs(`node ${i + 1} still takes the superseded certificate (last: ${last})`));
        await Bun.sleep(250);
      }
    }
    const fresh = await attemptOn(2, renewed);
    expect(fresh.client, withLogs(`the renewed certificate was refused: ${fresh.error?.message}`)).toBeDefined();
    clients.push(fresh.client!);
  }, 60_000);

  test("the node a thing is on stops: it reconnects to another and gets what was sent meanwhile", async () => {
    // C on node 3, with node 1 as where to go next (a load balancer would do this for a thing).
    const servers = [
      { host: "127.0.0.1", port: mqttPort(2) },
      { host: "127.0.0.1", port: mqttPort(0) },
    ];
    const client = await connectedOn(C, 2, { servers, reconnectPeriod: 500 });
    await client.subscribeAsync(`ingress/${C.name}`, { qos: 1 });
    const received: string[] = [];
    client.on("message", (_topic, payload) => received.push(JSON.parse(payload.toString()).message));
    const closed = closedWithin(client, 30_000);
    const stopped = cluster!.ctl(2, ["stop"], 30_000);
    expect(stopped.status).toBe(0);
    expect(await closed).toBe(true);
    // Sent while C is away from node 3 (the hub is on node 1).
    await fixture.publish(C.id, "sent while its node was down");
    const deadline = Date.now() + 30_000;
    while (!received.includes("sent while its node was down") && Date.now() < deadline) await Bun.sleep(250);
    if (!received.includes("sent while its node was down")) throw new Error(withLogs(`C did not get the message (connected: ${client.connected})`));
    expect(client.options.port).toBe(mqttPort(0));
  }, 60_000);
});
