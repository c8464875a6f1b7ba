/**
 * The hub's aedes session store keeps MQTT packet identifiers unique among one client's queued
 * packets (MQTT 3.1.1 §2.3.1), against the real aedes-persistence underneath. aedes numbers a
 * new connection's packets from a random start, which can land on an identifier a resumed
 * session still owes; here that collision is made on purpose.
 */
import { describe, expect, test } from "bun:test";
import memoryPersistence from "aedes-persistence";
import { createSessionPersistence } from "../../src/hub/broker/session-store.ts";

const client = { id: "ecd13b11-thing" };
const packet = (counter: number, messageId?: number) => ({
  cmd: "publish" as const,
  topic: `ingress/${client.id}`,
  payload: Buffer.from(`{"n":${counter}}`),
  qos: 1 as const,
  retain: false,
  dup: false,
  brokerId: "hub",
  brokerCounter: counter,
  messageId,
});

/** The persistence methods aedes calls, as it calls them (promise form, no callback). */
interface OutgoingStore {
  setup(broker: unknown): Promise<void>;
  outgoingEnqueue(sub: { clientId: string }, packet: unknown): Promise<void>;
  outgoingUpdate(c: typeof client, p: ReturnType<typeof packet>): Promise<void>;
  outgoingClearMessageId(c: typeof client, p: { messageId: number }): Promise<{ brokerCounter: number } | undefined>;
}

async function setup(persistence: unknown): Promise<OutgoingStore> {
  const store = persistence as OutgoingStore;
  await store.setup({ id: "hub" });
  // two messages queued for an offline persistent session
  await store.outgoingEnqueue({ clientId: client.id }, packet(1));
  await store.outgoingEnqueue({ clientId: client.id }, packet(2));
  return store;
}

describe("the hub's session store", () => {
  // The queue holds Y (sent as 500 on the old connection, never acknowledged) and X. On the new
  // connection X goes out first, and aedes' counter happens to give it 500 too; the thing
  // acknowledges X; later aedes resends Y from its queue.
  test("a packet given an identifier another queued packet holds gets the next free one; each PUBACK clears its own packet", async () => {
    const store = await setup(createSessionPersistence());
    await store.outgoingUpdate(client, packet(1, 500)); // Y
    const x = packet(2, 500);
    await store.outgoingUpdate(client, x);
    expect(x.messageId).toBe(501); // renumbered before aedes writes it
    expect((await store.outgoingClearMessageId(client, { messageId: x.messageId! }))?.brokerCounter).toBe(2);
    await store.outgoingUpdate(client, packet(1, 500)); // Y is still queued: resent as 500
    expect((await store.outgoingClearMessageId(client, { messageId: 500 }))?.brokerCounter).toBe(1);
  });

  test("without it (aedes' plain store) X's PUBACK clears Y, and Y's resend fails with 'no such packet'", async () => {
    const store = await setup(memoryPersistence());
    await store.outgoingUpdate(client, packet(1, 500)); // Y
    await store.outgoingUpdate(client, packet(2, 500)); // X, same identifier
    expect((await store.outgoingClearMessageId(client, { messageId: 500 }))?.brokerCounter).toBe(1); // Y, though X was acknowledged
    await expect(store.outgoingUpdate(client, packet(1, 500))).rejects.toThrow("no such packet"); // aedes drops the session
  });

  test("an identifier at the top wraps to 1; a resend keeps its identifier", async () => {
    const store = await setup(createSessionPersistence());
    const first = packet(1, 65535);
    await store.outgoingUpdate(client, first);
    const second = packet(2, 65535);
    await store.outgoingUpdate(client, second);
    expect(second.messageId).toBe(1);
    const resent = packet(1, 65535); // emptyQueue resends the first with its original identifier
    await store.outgoingUpdate(client, resent);
    expect(resent.messageId).toBe(65535);
  });

  test("a packet no longer queued (already acknowledged) is sent again, not an error that drops the session", async () => {
    const missing: (number | undefined)[] = [];
    const store = await setup(createSessionPersistence((_id, messageId) => missing.push(messageId)));
    await store.outgoingUpdate(client, packet(1, 7));
    await store.outgoingClearMessageId(client, { messageId: 7 });
    await store.outgoingUpdate(client, packet(1, 7)); // aedes' emptyQueue still held a copy
    expect(missing).toEqual([7]);
  });
});
