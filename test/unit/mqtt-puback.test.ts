/**
 * src/shared/mqtt-puback.ts: PUBACKs after each message is durable, in the order the messages
 * came, on their connection, with a bounded number waiting. The client here stands in for
 * MQTT.js by its two parts used (`connected`, `_sendPacket`); the integration test
 * mqttjs-deferred-puback.test.ts pins those against a real broker.
 */
import { describe, expect, test } from "bun:test";
import type { IPublishPacket, MqttClient } from "mqtt";
import { OrderedPubacks, PUBACK_DEFERRED } from "../../src/shared/mqtt-puback.ts";

function fakeClient() {
  const sent: number[] = [];
  const client = { connected: true, _sendPacket: (p: { cmd: string; messageId: number }) => sent.push(p.messageId) };
  return { client: client as unknown as MqttClient & { connected: boolean }, sent };
}

const packet = (messageId: number, qos: 0 | 1 = 1) =>
  ({ cmd: "publish", topic: "flashlex/collect", payload: Buffer.from("x"), qos, messageId, dup: false, retain: false }) as IPublishPacket;

/** A durable() the test settles by hand. */
function gate() {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  return { durable: () => promise, resolve, reject };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("OrderedPubacks", () => {
  test("a message committed early waits for the ones before it: PUBACKs leave in arrival order", async () => {
    const { client, sent } = fakeClient();
    const acks = new OrderedPubacks({ client, onFailure: () => {} });
    acks.connectionStarted();
    const gates = [gate(), gate(), gate()];
    const dones: (Error | undefined)[] = [];
    for (const [i, g] of gates.entries()) acks.handle(packet(i + 1), (err) => dones.push(err), g.durable);
    expect(dones).toEqual([PUBACK_DEFERRED, PUBACK_DEFERRED, PUBACK_DEFERRED]); // MQTT.js reads on at once
    gates[2]!.resolve();
    gates[1]!.resolve();
    await tick();
    expect(sent).toEqual([]);
    gates[0]!.resolve();
    await tick();
    expect(sent).toEqual([1, 2, 3]);
    expect(acks.pending).toBe(0);
  });

  test("the messages of one failed commit are told as one failure (attack round 12, F5: a line per message at every reconnect)", async () => {
    const { client, sent } = fakeClient();
    const failures: number[] = [];
    const acks = new OrderedPubacks({ client, onFailure: (_err, p) => failures.push(p.messageId!) });
    acks.connectionStarted();
    const commit = gate();
    for (const id of [1, 2, 3]) acks.handle(packet(id), () => {}, commit.durable);
    commit.reject(new Error("SQLITE_FULL"));
    await tick();
    expect(failures).toEqual([1]);
    acks.connectionStarted();
    const again = gate();
    for (const id of [1, 2, 3]) acks.handle(packet(id), () => {}, again.durable);
    again.reject(new Error("SQLITE_FULL")); // the next commit's own failure: told again
    await tick();
    expect(failures).toEqual([1, 1]);
    expect(sent).toEqual([]);
  });

  test("a failure withholds its PUBACK and every later one of that connection; a new connection forgets them", async () => {
    const { client, sent } = fakeClient();
    const failures: number[] = [];
    const acks = new OrderedPubacks({ client, onFailure: (_err, p) => failures.push(p.messageId!) });
    acks.connectionStarted();
    const [a, b] = [gate(), gate()];
    acks.handle(packet(1), () => {}, a.durable);
    acks.handle(packet(2), () => {}, b.durable);
    a.reject(new Error("database down"));
    b.resolve();
    await tick();
    expect(failures).toEqual([1]);
    expect(sent).toEqual([]);
    acks.connectionStarted(); // the broker sends 1 and 2 again on the new connection
    const c = gate();
    acks.handle(packet(7), () => {}, c.durable);
    c.resolve();
    await tick();
    expect(sent).toEqual([7]);
  });

  test("a message committed after its connection ended is not acknowledged on the next one", async () => {
    const { client, sent } = fakeClient();
    const acks = new OrderedPubacks({ client, onFailure: () => {} });
    acks.connectionStarted();
    const a = gate();
    acks.handle(packet(1), () => {}, a.durable);
    acks.connectionStarted();
    a.resolve();
    await tick();
    expect(sent).toEqual([]);
  });

  test("at most maxPending wait: the next message's done is held until the oldest is acknowledged", async () => {
    const { client, sent } = fakeClient();
    const acks = new OrderedPubacks({ client, maxPending: 2, onFailure: () => {} });
    acks.connectionStarted();
    const gates = [gate(), gate()];
    const dones: number[] = [];
    for (const [i, g] of gates.entries()) acks.handle(packet(i + 1), () => dones.push(i + 1), g.durable);
    expect(dones).toEqual([1]); // the second filled the window: MQTT.js reads nothing more
    expect(acks.pending).toBe(2);
    gates[0]!.resolve();
    await tick();
    expect(sent).toEqual([1]);
    expect(dones).toEqual([1, 2]);
  });

  test("QoS 0 (no PUBACK): done after durable, MQTT.js's own way", async () => {
    const { client, sent } = fakeClient();
    const acks = new OrderedPubacks({ client, onFailure: () => {} });
    const a = gate();
    const dones: (Error | undefined)[] = [];
    acks.handle(packet(0, 0), (err) => dones.push(err), a.durable);
    expect(dones).toEqual([]);
    a.resolve();
    await tick();
    expect(dones).toEqual([undefined]);
    expect(sent).toEqual([]);
  });
});
