/**
 * The ingress handler's exactly-once rules, against a real SQLite file: what counts as a
 * redelivery (acknowledged again, not stored) and what is a new message.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IPublishPacket } from "mqtt";
import { ingressMessageId, ingressWirePayload } from "../../src/protocol/ingress.ts";
import { silentLogger } from "../../src/shared/log.ts";
import { createIngressHandler } from "../../src/thing/ingress/handler.ts";
import { loadThingConfig } from "../../src/thing/settings.ts";
import { MessageStore, SEEN_ID_MIN_KEEP_MS } from "../../src/thing/store/message-store.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-ingress-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const packet = (messageId: number, payload: string, opts: { dup?: boolean; retain?: boolean } = {}): IPublishPacket => ({
  cmd: "publish",
  topic: "ingress/ecd13b11-mything",
  payload: Buffer.from(payload),
  qos: 1,
  dup: opts.dup ?? false,
  retain: opts.retain ?? false,
  messageId,
});

/** config.yml's broker, as the session tells the handler */
const BROKER = "broker.example:8883";

let n = 0;
/** Runs `fn` with a fresh handler and store (closed afterwards, whatever `fn` does). */
async function withSetup(fn: (s: ReturnType<typeof setup>) => Promise<void>): Promise<void> {
  const s = setup();
  try {
    await fn(s);
  } finally {
    s.store.close();
  }
}

function setup() {
  const config = loadThingConfig({ config: join(import.meta.dir, "../fixtures/guide-config.yml"), data: dir });
  const store = MessageStore.open(join(dir, `ingress-${n++}.db`));
  const handler = createIngressHandler({ config, store, log: silentLogger });
  const stored = () => store.listIngress({ state: "all" }).map((m) => [m.packet_id, m.payload]);
  return { store, handler, stored };
}

describe("messages from a FlashLex hub (they carry the hub's id)", () => {
  const id1 = "6f1c1d4e-0000-4000-8000-000000000001";
  const id2 = "6f1c1d4e-0000-4000-8000-000000000002";
  const hubMessage = (id: string, message: unknown) => ingressWirePayload(JSON.stringify({ message }), id);

  test("the wire payload keeps the guide's wrapper and adds the id", () => {
    expect(JSON.parse(hubMessage(id1, { on: true }))).toEqual({ message: { on: true }, flmessagespk: id1 });
    expect(ingressMessageId(hubMessage(id1, "x"))).toBe(id1);
    expect(ingressMessageId('{"message":"x","flmessagespk":"not-a-uuid"}')).toBeUndefined();
    expect(ingressMessageId('["flmessagespk"]')).toBeUndefined();
    expect(ingressMessageId("plain text")).toBeUndefined();
  });

  test("an id is stored once, whatever packet id, DUP flag or session it comes with", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(7, hubMessage(id1, { on: true })));
      await handler.handle(packet(900, hubMessage(id1, { on: true }))); // aedes: resent, new id, no DUP
      handler.connectionStarted(false, BROKER); // even after the broker lost the session (a hub replay)
      await handler.handle(packet(7, hubMessage(id1, { on: true })));
      await handler.handle(packet(8, hubMessage(id2, { on: true }))); // same content, other id: new
      expect(stored().map(([, payload]) => JSON.parse(String(payload)).flmessagespk)).toStrictEqual([id1, id2]);
    }));

  test("an id is remembered after retention deleted the acknowledged message", async () =>
    withSetup(async ({ store, handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(7, hubMessage(id1, "x")));
      store.ackIngress([1], Date.now());
      store.expire(Date.now() + 3600_000, 60);
      expect(stored()).toEqual([]);
      await handler.handle(packet(7, hubMessage(id1, "x")));
      expect(stored()).toEqual([]);
      store.expire(Date.now() + SEEN_ID_MIN_KEEP_MS + 3600_000, 60); // a week later the id is forgotten
      await handler.handle(packet(7, hubMessage(id1, "x")));
      expect(stored()).toHaveLength(1);
    }));

  test("the id of a message still stored is never forgotten: kept unacknowledged for weeks, or with the clock stepped forward (the hub's replay was stored twice)", async () =>
    withSetup(async ({ store, handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(7, hubMessage(id1, "kept")));
      // nine days on (a hub away that long, or NTP stepping a Pi's clock): retention runs, the message waits unacknowledged
      store.expire(Date.now() + 9 * 86_400_000, 60);
      await handler.handle(packet(8, hubMessage(id1, "kept")));
      expect(stored()).toHaveLength(1);
      // acknowledged and deleted by retention: remembered for a week after that, as before
      store.ackIngress([1], Date.now());
      store.expire(Date.now() + 3600_000, 60);
      expect(stored()).toEqual([]);
      await handler.handle(packet(9, hubMessage(id1, "kept")));
      expect(stored()).toEqual([]);
    }));
});

describe("messages without an id (published by anything else)", () => {
  test("a resumed session's resend matches the rows stored before it, with or without DUP", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(7, '{"on":true}'));
      await handler.handle(packet(8, '{"on":false}'));
      handler.connectionStarted(true, BROKER); // the broker kept the session: 7 and 8 may come again
      await handler.handle(packet(8, '{"on":false}')); // no DUP (aedes): still recognised
      await handler.handle(packet(7, '{"on":true}', { dup: true }));
      await handler.handle(packet(8, '{"on":"other"}')); // same packet id, other payload: a new message
      await handler.handle(packet(9, '{"on":true}')); // same payload, new packet id: new
      await handler.handle(packet(9, '{"on":true}')); // within this connection, no DUP: a new message
      expect(stored()).toEqual([
        [7, '{"on":true}'],
        [8, '{"on":false}'],
        [8, '{"on":"other"}'],
        [9, '{"on":true}'],
        [9, '{"on":true}'],
      ]);
    }));

  test("past the broker's resends, a packet id that came round again is a new message (ids are 16 bits; a command repeats its payload)", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "ON"));
      await handler.handle(packet(2, "ON"));
      handler.connectionStarted(true, BROKER);
      await handler.handle(packet(2, "ON")); // the resend of what was in flight comes first: skipped
      await handler.handle(packet(3, "ON")); // new: the resends are over
      await handler.handle(packet(1, "ON")); // 65,535 messages later, packet id 1 again: new
      await handler.handle(packet(2, "ON"));
      expect(stored()).toEqual([
        [1, "ON"],
        [2, "ON"],
        [3, "ON"],
        [1, "ON"],
        [2, "ON"],
      ]);
    }));

  test("a broker restored from an older save resends what it had in flight (DUP) and then what it had queued (no DUP): both were stored, neither is stored again (attack round 13, F2)", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      for (const id of [4, 5, 6]) await handler.handle(packet(id, `m${id}`));
      handler.connectionStarted(true, BROKER);
      await handler.handle(packet(4, "m4", { dup: true }));
      await handler.handle(packet(5, "m5", { dup: true }));
      await handler.handle(packet(6, "m6")); // queued at the save: sent again without DUP
      await handler.handle(packet(7, "m7"));
      expect(stored()).toEqual([
        [4, "m4"],
        [5, "m5"],
        [6, "m6"],
        [7, "m7"],
      ]);
    }));

  test("rows stored before the broker began a new session are never taken for its resends: it counts packet ids from 1 again (attack round 13, F1)", async () =>
    withSetup(async ({ store, handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      for (const id of [1, 2, 3]) await handler.handle(packet(id, "ON"));
      handler.connectionStarted(false, BROKER); // the broker lost the session (restarted without persistence)
      for (const id of [1, 2]) await handler.handle(packet(id, "ON"));
      handler.connectionStarted(true, BROKER); // serve restarted: the broker resumes its new session
      await handler.handle(packet(3, "ON")); // new: row 3 of the old session is no resend of it
      await handler.handle(packet(4, "ON", { dup: true })); // a resend of one never stored here, DUP set: matches nothing older
      expect(stored()).toEqual([
        [1, "ON"],
        [2, "ON"],
        [3, "ON"],
        [1, "ON"],
        [2, "ON"],
        [3, "ON"],
        [4, "ON"],
      ]);
      // the boundary is in the database, for serve's next start (a restart resumes the session)
      expect(store.sessionBeganAfter()).toBe(3);
    }));

  test("a new hub message ends the resends for messages without an id too (attack round 14, F2: a mixed stream kept the window open)", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "ON"));
      await handler.handle(packet(2, "ON"));
      handler.connectionStarted(true, BROKER);
      const fromHub = ingressWirePayload(JSON.stringify({ message: { go: 1 } }), "01a24de3-b755-70f9-916f-03c59afd7fe1");
      await handler.handle(packet(3, fromHub)); // new: the broker's resends are over
      await handler.handle(packet(1, "ON")); // packet id 1 again, 65,535 later: new
      expect(stored().map(([id]) => id)).toStrictEqual([1, 2, 3, 1]);
    }));

  test("where the broker's new session began is recorded before its first message is, also when the first write failed (attack round 14, F6)", async () =>
    withSetup(async ({ store, handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "ON"));
      const record = store.markSessionBegan.bind(store);
      store.markSessionBegan = () => {
        store.markSessionBegan = record;
        throw new Error("database is locked"); // another process held it for longer than the busy timeout
      };
      handler.connectionStarted(false, BROKER); // the broker began a new session after row 1
      await handler.handle(packet(1, "ON"));
      expect(store.sessionBeganAfter()).toBe(1);
      handler.connectionStarted(true, BROKER);
      await handler.handle(packet(2, "ON")); // the old session's row 1 is no resend of this session's
      expect(stored().length).toBe(3);
    }));

  test("a boundary whose write failed is written when the session resumes before any message came", async () =>
    withSetup(async ({ store, handler }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "ON"));
      const record = store.markSessionBegan.bind(store);
      store.markSessionBegan = () => {
        store.markSessionBegan = record;
        throw new Error("database is locked");
      };
      handler.connectionStarted(false, BROKER); // not written
      handler.connectionStarted(true, BROKER); // the connection dropped at once; the broker kept the new session
      expect(store.sessionBeganAfter()).toBe(1);
    }));

  test("rows stored from another broker are no resends of this one's (config.yml pointed elsewhere and back: round 15, F4)", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "ON"));
      handler.connectionStarted(false, "other.example:8883");
      await handler.handle(packet(5, "ON"));
      await handler.handle(packet(6, "ON"));
      handler.connectionStarted(true, BROKER); // back: the first broker kept its session
      await handler.handle(packet(5, "ON")); // its own numbering: not the other broker's row 5
      await handler.handle(packet(6, "ON"));
      expect(stored().map(([id]) => id)).toStrictEqual([1, 5, 6, 5, 6]);
    }));

  test("a fresh session (the broker lost it) starts over: a reused packet id is a new message", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(true, BROKER);
      await handler.handle(packet(1, "on"));
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "on"));
      expect(stored()).toEqual([
        [1, "on"],
        [1, "on"],
      ]);
    }));

  test("with DUP set, the newest rows of this connection count too", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(3, "a"));
      await handler.handle(packet(3, "a", { dup: true }));
      expect(stored()).toEqual([[3, "a"]]);
    }));

  test("the retained message sent again at a subscription is stored once also when it first came live, or other messages of its topic came since (attack round 14 F7, round 15 F8)", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "mode=eco")); // published with RETAIN while subscribed: delivered with RETAIN 0
      await handler.handle(packet(2, "reading=3"));
      handler.connectionStarted(true, BROKER); // serve subscribes on every connection: the broker sends its retained message
      await handler.handle(packet(3, "mode=eco", { retain: true }));
      await handler.handle(packet(4, "mode=boost", { retain: true })); // another value: new
      expect(stored()).toEqual([
        [1, "mode=eco"],
        [2, "reading=3"],
        [4, "mode=boost"],
      ]);
    }));

  test("a retained message sent again at a new subscription is stored once; a new retained value is stored", async () =>
    withSetup(async ({ handler, stored }) => {
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "mode=eco", { retain: true }));
      handler.connectionStarted(false, BROKER);
      await handler.handle(packet(1, "mode=eco", { retain: true }));
      await handler.handle(packet(2, "mode=boost", { retain: true }));
      expect(stored()).toEqual([
        [1, "mode=eco"],
        [2, "mode=boost"],
      ]);
    }));
});
