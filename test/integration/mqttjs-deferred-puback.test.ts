/**
 * Pins the two MQTT.js behaviours group commit stands on (src/shared/mqtt-puback.ts),
 * against Debian's Mosquitto: `handleMessage`'s `done(err)` writes no PUBACK (the broker sends
 * the message again on the next connection), and `_sendPacket({cmd: "puback"})` acknowledges
 * (it does not). An MQTT.js upgrade that changes either fails here, not in the field.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import mqtt, { type IPublishPacket, type MqttClient } from "mqtt";
import { deferredPuback, PUBACK_DEFERRED } from "../../src/shared/mqtt-puback.ts";
import { type MosquittoBroker, mosquittoPub } from "../support/mosquitto.ts";
import { makeThingFixture, startBrokerFor, type ThingFixture } from "../support/thing-fixture.ts";
import { waitUntil } from "../support/wait.ts";

let thing: ThingFixture;
let broker: MosquittoBroker;

beforeAll(async () => {
  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  broker = await startBrokerFor(thing);
}, 30_000);

afterAll(async () => {
  await broker?.stop();
  if (thing) rmSync(thing.dir, { recursive: true, force: true });
});

/** The thing's persistent session, with `onMessage` as its handleMessage. */
async function connect(onMessage: (client: MqttClient, packet: IPublishPacket, done: (err?: Error) => void) => void): Promise<MqttClient> {
  const client = mqtt.connect({
    protocol: "mqtts",
    host: "127.0.0.1",
    port: broker.port,
    ca: readFileSync(thing.pki.caCertPath),
    cert: thing.pki.thing.certPem,
    key: thing.pki.thing.privateKeyPem,
    clientId: thing.thingName,
    clean: false,
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
  client.handleMessage = (packet, done) => onMessage(client, packet, done);
  await new Promise<void>((resolve, reject) => client.once("connect", () => resolve()).once("error", reject));
  await client.subscribeAsync(`ingress/${thing.thingName}`, { qos: 1 });
  return client;
}

async function publish(texts: string[]) {
  const result = await mosquittoPub({
    port: broker.port,
    caCertPath: thing.pki.caCertPath,
    client: thing.pki.thing,
    clientId: "pinning-publisher",
    topic: `ingress/${thing.thingName}`,
    qos: 1,
    lines: texts,
  });
  expect(result.code).toBe(0);
}

test("done(err) writes no PUBACK: the broker sends the messages again", async () => {
  const first: string[] = [];
  let client = await connect((_c, packet, done) => (first.push(packet.payload.toString()), done(PUBACK_DEFERRED)));
  await publish(["a", "b", "c"]);
  await waitUntil("three messages", () => first.length === 3);
  await client.endAsync(true);
  const again: string[] = [];
  client = await connect((_c, packet, done) => (again.push(packet.payload.toString()), done()));
  await waitUntil("the three again", () => again.length === 3);
  expect(again).toEqual(["a", "b", "c"]);
  await client.endAsync();
});

test("a PUBACK through _sendPacket after done(err) acknowledges: nothing comes again", async () => {
  const first: string[] = [];
  let client = await connect((c, packet, done) => {
    first.push(packet.payload.toString());
    done(PUBACK_DEFERRED);
    setTimeout(() => deferredPuback(c)!(packet.messageId!), 10); // as after a commit
  });
  expect(deferredPuback(client)).toBeDefined();
  await publish(["d", "e", "f"]);
  await waitUntil("three messages", () => first.length === 3);
  await Bun.sleep(200); // the PUBACKs leave
  await client.endAsync(true);
  const again: string[] = [];
  client = await connect((_c, packet, done) => (again.push(packet.payload.toString()), done()));
  await Bun.sleep(500);
  expect(again).toEqual([]);
  await client.endAsync();
});
