/**
 * IngressDelivery's rules without a broker: what is handed to aedes when, and what a PUBACK marks.
 * The broker is a list of publishes; the ledger is the database's pending list.
 */
import { describe, expect, test } from "bun:test";
import { IngressDelivery, type PendingIngress } from "../../src/hub/messages/ingress-delivery.ts";
import { ingressMessageId } from "../../src/protocol/ingress.ts";
import { silentLogger } from "../../src/shared/log.ts";

const THING = "ecd13b11-thing";
const TOPIC = `ingress/${THING}`;

function setup(initial: PendingIngress[] = []) {
  const pending = [...initial];
  const delivered: string[] = [];
  const published: string[] = [];
  let pendingReads = 0;
  let gate: Promise<void> | undefined;
  const delivery = new IngressDelivery({
    log: silentLogger,
    ledger: {
      async pending(name) {
        expect(name).toBe(THING);
        pendingReads++;
        await gate;
        return [...pending];
      },
      async delivered(id) {
        const index = pending.findIndex((m) => m.flmessagespk === id);
        if (index < 0) return;
        delivered.push(nameOf(id));
        pending.splice(index, 1);
      },
    },
    async publish(topic, payload) {
      expect(topic).toBe(TOPIC);
      expect(JSON.parse(payload)).toEqual({ message: nameOf(ingressMessageId(payload)!), flmessagespk: ingressMessageId(payload) });
      published.push(nameOf(ingressMessageId(payload)!));
    },
  });
  /** what the API does: store as pending, then send */
  const send = (name: string) => {
    const message = msg(name);
    pending.push(message);
    return delivery.send(THING, message);
  };
  const settle = () => new Promise((r) => setTimeout(r, 10));
  return {
    delivery,
    send,
    settle,
    published,
    delivered,
    pending,
    reads: () => pendingReads,
    hold: () => {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

/** Messages are named by a letter; their ids are UUIDs made from it. */
const idOf = (name: string) => `00000000-0000-4000-8000-${Buffer.from(name).toString("hex").padStart(12, "0")}`;
const nameOf = (id: string) => Buffer.from(id.slice(24).replace(/^0+/, ""), "hex").toString();
const msg = (name: string): PendingIngress => ({ flmessagespk: idOf(name), payload: JSON.stringify({ message: name }) });
/** aedes' copy of a packet it sent, as its `ack` event gives it */
const wire = (name: string) => JSON.stringify({ message: name, flmessagespk: idOf(name) });

describe("IngressDelivery: a persistent session", () => {
  test("the first subscription after a start replays what is pending, oldest first; later ones do not", async () => {
    const s = setup([msg("a"), msg("b")]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toEqual(["a", "b"]);
    // a reconnect of the same persistent session: aedes holds its queue, nothing is handed over again
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toHaveLength(2);
    expect(s.reads()).toBe(1);
  });

  test("a message sent while the session is subscribed is handed over once", async () => {
    const s = setup();
    s.delivery.sessionSubscribed(THING);
    await s.send("a");
    await s.send("b");
    expect(s.published).toEqual(["a", "b"]);
  });

  test("a message sent before any subscription is published (live subscribers) and replayed at the subscription", async () => {
    const s = setup();
    await s.send("a");
    expect(s.published).toEqual(["a"]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toEqual(["a", "a"]);
  });

  test("a send racing the replay keeps the order and goes out once", async () => {
    const s = setup([msg("old")]);
    const release = s.hold(); // the replay's database read is slow
    s.delivery.sessionSubscribed(THING);
    const sent = s.send("new");
    await s.settle();
    expect(s.published).toEqual([]);
    release();
    await sent;
    expect(s.published).toEqual(["old", "new"]);
  });

  test("a PUBACK marks the message it carries the id of delivered, however often it comes", async () => {
    const s = setup([msg("a"), msg("b"), msg("c")]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    s.delivery.acknowledged(THING, wire("c"));
    s.delivery.acknowledged(THING, '{"message":{"thingId":"x","nonce":"n"}}'); // the bootstrap echo: not stored
    s.delivery.acknowledged(THING, Buffer.from(wire("a")));
    s.delivery.acknowledged(THING, wire("a")); // again: nothing left to mark
    await s.settle();
    expect(s.delivered).toEqual(["c", "a"]);
    expect(s.pending.map((m) => nameOf(m.flmessagespk))).toStrictEqual(["b"]);
  });

  test("a clean-session connect drops the session: the next subscription replays what is still pending", async () => {
    const s = setup([msg("a")]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    s.delivery.sessionDiscarded(THING);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toEqual(["a", "a"]);
  });

  test("after an unsubscribe, what aedes holds is not handed over again", async () => {
    const s = setup([msg("a")]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    s.delivery.sessionUnsubscribed(THING);
    await s.send("b"); // not subscribed: published but not tracked
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toEqual(["a", "b", "b"]);
  });

  test("while aedes resends a resumed session's queue, new messages wait, then go out in order", async () => {
    const s = setup();
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    s.delivery.sessionConnecting(THING);
    await s.send("a"); // resolves at once: the message is pending in the database
    await s.send("b");
    await s.settle();
    expect(s.published).toEqual([]);
    s.delivery.sessionReady(THING);
    await s.settle();
    expect(s.published).toEqual(["a", "b"]);
  });

  test("a broker that refuses the message fails the send, and the message is not taken as handed over", async () => {
    const published: string[] = [];
    let fail = true;
    const delivery = new IngressDelivery({
      log: silentLogger,
      ledger: { pending: async () => [], delivered: async () => {} },
      async publish(_topic, payload) {
        if (fail) throw new Error("broker closed");
        published.push(payload);
      },
    });
    delivery.sessionSubscribed(THING);
    await expect(delivery.send(THING, msg("a"))).rejects.toThrow("broker closed");
    fail = false;
    await delivery.send(THING, msg("a"));
    expect(published).toEqual([wire("a")]);
  });
});

describe("IngressDelivery: a clean session (the old Python distribution)", () => {
  test("each subscription gets what is pending; its PUBACKs, in order, mark what it was sent", async () => {
    const s = setup([msg("a"), msg("b")]);
    s.delivery.sessionConnecting(THING);
    s.delivery.sessionDiscarded(THING);
    s.delivery.sessionReady(THING);
    s.delivery.sessionSubscribed(THING, true);
    await s.settle();
    expect(s.published).toEqual(["a", "b"]);
    // what aedes forwarded to the connection, in order (a pubsub message in between)
    s.delivery.forwardedToClean(THING, TOPIC, wire("a"));
    s.delivery.forwardedToClean(THING, `pubsub/${THING}`, "{}");
    s.delivery.forwardedToClean(THING, TOPIC, Buffer.from(wire("b")));
    s.delivery.cleanAcknowledged(THING);
    s.delivery.cleanAcknowledged(THING);
    await s.settle();
    expect(s.delivered).toEqual(["a"]);
    // the connection ends before the PUBACK of b: b stays pending and the next subscription gets it
    s.delivery.connectionClosed(THING);
    s.delivery.cleanAcknowledged(THING); // a stray ack after the close marks nothing
    s.delivery.sessionDiscarded(THING);
    s.delivery.sessionSubscribed(THING, true);
    await s.settle();
    expect(s.published).toEqual(["a", "b", "b"]);
    expect(s.pending.map((m) => nameOf(m.flmessagespk))).toStrictEqual(["b"]);
  });

  test("a live message to a subscribed clean session is marked delivered by its PUBACK", async () => {
    const s = setup();
    s.delivery.sessionDiscarded(THING);
    s.delivery.sessionSubscribed(THING, true);
    await s.send("live");
    s.delivery.forwardedToClean(THING, TOPIC, wire("live"));
    s.delivery.cleanAcknowledged(THING);
    await s.settle();
    expect(s.delivered).toEqual(["live"]);
  });

  test("a clean subscription does not republish what is in flight on that connection", async () => {
    const s = setup([msg("a")]);
    s.delivery.sessionDiscarded(THING);
    s.delivery.forwardedToClean(THING, TOPIC, wire("a"));
    s.delivery.sessionSubscribed(THING, true);
    await s.settle();
    expect(s.published).toEqual([]);
  });
});
