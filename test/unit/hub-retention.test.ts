/**
 * The hub's message retention (src/hub/messages/retention.ts) on a real SQLite hub store: what a
 * sweep deletes and keeps, that it lets the event loop run between its statements, and how the
 * running sweep logs, fails and stops. The store's query itself is in the store contract
 * (test/integration/hub-store-contract.test.ts, both drivers).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SWEEP_BATCH, startMessageRetention, sweepExpiredMessages } from "../../src/hub/messages/retention.ts";
import type { HubStore, MessageRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { createLogger } from "../../src/shared/log.ts";
import { storedMessages, storeThing } from "../support/hub-messages.ts";

const DAY_MS = 86_400_000;
const NOW = 1_750_000_000_000;
const OLD = Math.floor((NOW - 2 * DAY_MS) / 1000);
const NEW = Math.floor((NOW - DAY_MS / 2) / 1000);
const A = "aaaaaaaa-77d6-4f36-880b-1762a3b07f06";
const B = "bbbbbbbb-77d6-4f36-880b-1762a3b07f06";

let dir: string;
let stores = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-retention-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const message = (id: string, thingId: string, fltimestamp: number, extra: Partial<MessageRecord> = {}): MessageRecord => ({
  flmessagespk: id,
  thingId,
  messagetype: "egress",
  payload: "{}",
  fltimestamp,
  datecreated: "2025-01-01T00:00:00Z",
  ...extra,
});

/** A store with thing A (2.5 batches of old egress, old pending and delivered ingress, new egress) and thing B (three old). */
async function storeWithBacklog(): Promise<HubStore> {
  const store = await openHubStore(join(dir, `hub-${++stores}.db`), { create: true });
  await storeThing(store, A);
  await storeThing(store, B);
  const old = Array.from({ length: SWEEP_BATCH * 2.5 }, (_, i) => ({ message: message(`a-old-${i}`, A, OLD - i) }));
  await store.insertMessages([
    ...old,
    { message: message("a-pending", A, OLD - 10_000, { messagetype: "ingress", delivery: "pending" }) },
    { message: message("a-delivered", A, OLD, { messagetype: "ingress", delivery: "delivered", deliveredAt: NOW - DAY_MS }) },
    { message: message("a-new", A, NEW) },
    ...[1, 2, 3].map((i) => ({ message: message(`b-old-${i}`, B, OLD) })),
  ]);
  return store;
}

describe("sweepExpiredMessages", () => {
  test("deletes every thing's messages stored before now - keepFor, in batches, and keeps pending ingress and newer messages", async () => {
    const store = await storeWithBacklog();
    try {
      // another task of the event loop: it runs between the sweep's statements, or not at all
      let turns = 0;
      let sweeping = true;
      const probe = () => {
        turns++;
        if (sweeping) setImmediate(probe);
      };
      setImmediate(probe);
      const deleted = await sweepExpiredMessages({ store, keepForMs: DAY_MS, now: () => NOW });
      sweeping = false;
      expect(deleted).toBe(SWEEP_BATCH * 2.5 + 1 + 3);
      expect((await storedMessages(store, A)).map((m) => m.flmessagespk)).toStrictEqual(["a-pending", "a-new"]);
      expect(await storedMessages(store, B)).toEqual([]);
      // A: three statements (looking at 1000, 1000 and 502 messages), B: one
      expect(turns).toBeGreaterThanOrEqual(3);
      expect(await sweepExpiredMessages({ store, keepForMs: DAY_MS, now: () => NOW })).toBe(0);
    } finally {
      await store.close();
    }
  });

  test("old pending ingress is looked at SWEEP_BATCH at a time, never all in one statement, and what was stored after it still goes", async () => {
    const store = await openHubStore(join(dir, `hub-${++stores}.db`), { create: true });
    try {
      await storeThing(store, A);
      const pending = Array.from({ length: SWEEP_BATCH * 2.5 }, (_, i) => ({
        message: message(`a-pending-${i}`, A, OLD - 10_000 + i, { messagetype: "ingress", delivery: "pending" }),
      }));
      await store.insertMessages([...pending, ...Array.from({ length: 10 }, (_, i) => ({ message: message(`a-old-${i}`, A, OLD + i) }))]);
      let statements = 0;
      const counting: Pick<HubStore, "thingIds" | "expireMessages"> = {
        thingIds: () => store.thingIds(),
        expireMessages: (...args) => (statements++, store.expireMessages(...args)),
      };
      expect(await sweepExpiredMessages({ store: counting, keepForMs: DAY_MS, now: () => NOW })).toBe(10);
      // 2,510 old messages, 1,000 looked at per statement: three (one statement that skipped every
      // pending row blocked the event loop for as long as the thing had them)
      expect(statements).toBe(3);
      expect((await storedMessages(store, A)).length).toBe(SWEEP_BATCH * 2.5);
    } finally {
      await store.close();
    }
  });

  test("stops after the statement under way when told to", async () => {
    const store = await storeWithBacklog();
    try {
      let statements = 0;
      const counting: Pick<HubStore, "thingIds" | "expireMessages"> = {
        thingIds: () => store.thingIds(),
        expireMessages: (...args) => (statements++, store.expireMessages(...args)),
      };
      // the first statement looks at the oldest SWEEP_BATCH: a-pending, kept, and the oldest egress
      expect(await sweepExpiredMessages({ store: counting, keepForMs: DAY_MS, now: () => NOW, stopping: () => statements >= 1 })).toBe(SWEEP_BATCH - 1);
      expect(statements).toBe(1);
    } finally {
      await store.close();
    }
  });
});

describe("startMessageRetention", () => {
  test("sweeps at once and logs what went; a failing sweep is a WARN and the next one tries again; stop waits for the sweep under way", async () => {
    const store = await storeWithBacklog();
    const lines: string[] = [];
    const log = createLogger({ level: "info", write: (line) => lines.push(line) });
    let failNext = true;
    const flaky: Pick<HubStore, "thingIds" | "expireMessages"> = {
      thingIds: () => store.thingIds(),
      expireMessages: async (...args) => {
        if (failNext) {
          failNext = false;
          throw new Error("database is locked");
        }
        return store.expireMessages(...args);
      },
    };
    const told: number[] = [];
    const stop = startMessageRetention({ store: flaky, keepForMs: DAY_MS, log, now: () => NOW, everyMs: 20, observer: { expired: (n) => told.push(n) } });
    try {
      for (let i = 0; i < 200 && !lines.some((l) => l.includes("hub.messages_expired")); i++) await Bun.sleep(10);
      expect(lines.find((l) => l.includes("hub.message_expiry_failed"))).toContain("database is locked");
      const expired = lines.find((l) => l.includes("hub.messages_expired"));
      expect(expired).toContain(`count=${SWEEP_BATCH * 2.5 + 1 + 3}`);
      expect(expired).toContain(`stored_before=${new Date(NOW - DAY_MS).toISOString()}`);
      expect(told).toEqual([SWEEP_BATCH * 2.5 + 1 + 3]); // the metrics' flashlex_hub_messages_expired_total
    } finally {
      await stop();
    }
    // stopped: nothing more runs against the store, which can now be closed
    const logged = lines.length;
    await Bun.sleep(60);
    expect(lines.length).toBe(logged);
    await store.close();
  });
});
