/**
 * IngressDelivery's rules without a broker: what is handed to aedes when, and what a PUBACK marks.
 * The broker is a list of publishes; the ledger is the database's pending list.
 */
import { describe, expect, test } from "bun:test";
import { silentLogger } from "../../src/log.ts";
import { IngressDelivery, type PendingIngress } from "../../src/hub/ingress-delivery.ts";

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
        delivered.push(id);
        pending.splice(pending.findIndex((m) => m.flmessagespk === id), 1);
      },
    },
    async publish(topic, payload) {
      expect(topic).toBe(TOPIC);
      published.push(payload);
    },
  });
  /** what the API does: store as pending, then send */
  const send = (id: string) => {
    const message = { flmessagespk: id, payload: `{"message":"${id}"}` };
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
      return () => ((gate = undefined), release());
    },
  };
}

const msg = (id: string): PendingIngress => ({ flmessagespk: id, payload: `{"message":"${id}"}` });

describe("IngressDelivery", () => {
  test("the first subscription after a start replays what is pending, oldest first; later ones do not", async () => {
    const s = setup([msg("a"), msg("b")]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toEqual(['{"message":"a"}', '{"message":"b"}']);
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
    expect(s.published).toEqual(['{"message":"a"}', '{"message":"b"}']);
  });

  test("a message sent before any subscription is published (live subscribers) and replayed at the subscription", async () => {
    const s = setup();
    await s.send("a");
    expect(s.published).toEqual(['{"message":"a"}']);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toEqual(['{"message":"a"}', '{"message":"a"}']);
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
    expect(s.published).toEqual(['{"message":"old"}', '{"message":"new"}']);
  });

  test("a PUBACK marks the oldest handed-over message with that payload delivered", async () => {
    const s = setup([msg("a"), msg("b"), { flmessagespk: "a2", payload: '{"message":"a"}' }]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    s.delivery.acknowledged(THING, '{"message":"a"}');
    s.delivery.acknowledged(THING, '{"message":"unknown"}'); // e.g. the bootstrap echo: not ours
    s.delivery.acknowledged(THING, '{"message":"a"}');
    s.delivery.acknowledged(THING, '{"message":"a"}'); // a third PUBACK for the same bytes has nothing left
    await s.settle();
    expect(s.delivered).toEqual(["a", "a2"]);
    expect(s.pending.map((m) => m.flmessagespk)).toEqual(["b"]);
  });

  test("a PUBACK for a message never handed over in this process marks nothing", async () => {
    const s = setup();
    await s.send("a"); // no session: published, not tracked
    s.delivery.acknowledged(THING, '{"message":"a"}');
    await s.settle();
    expect(s.delivered).toEqual([]);
  });

  test("a clean-session connect drops the session: the next subscription replays what is still pending", async () => {
    const s = setup([msg("a")]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    s.delivery.sessionDiscarded(THING);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toEqual(['{"message":"a"}', '{"message":"a"}']);
  });

  test("after an unsubscribe, what aedes holds is not handed over again", async () => {
    const s = setup([msg("a")]);
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    s.delivery.sessionUnsubscribed(THING);
    await s.send("b"); // not subscribed: published but not tracked
    s.delivery.sessionSubscribed(THING);
    await s.settle();
    expect(s.published).toEqual(['{"message":"a"}', '{"message":"b"}', '{"message":"b"}']);
  });

  test("a broker that refuses the message fails the send, and the message is not taken as handed over", async () => {
    const failures: string[] = [];
    let fail = true;
    const delivery = new IngressDelivery({
      log: silentLogger,
      ledger: { pending: async () => [], delivered: async () => {} },
      async publish(_topic, payload) {
        if (fail) throw new Error("broker closed");
        failures.push(payload);
      },
    });
    delivery.sessionSubscribed(THING);
    await expect(delivery.send(THING, msg("a"))).rejects.toThrow("broker closed");
    fail = false;
    await delivery.send(THING, msg("a"));
    expect(failures).toEqual(['{"message":"a"}']);
  });
});
