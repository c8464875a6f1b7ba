import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { UNACKED_REWARN_MS, UNACKED_WARNING, unackedWatch } from "../../src/thing/store/unacked-watch.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-unacked-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the backlog warning: at once over the threshold, then hourly with the exact count; the sweep never counts the whole backlog otherwise", () => {
  const store = MessageStore.open(join(dir, "m.db"));
  try {
    const add = (n: number) =>
      store.insertIngressBatch(
        Array.from({ length: n }, (_, i) => ({ topic: "t", payload: new Uint8Array([i & 0xff]), qos: 1, retain: false, receivedAt: i })),
      );
    const counts: number[] = [];
    const counted = store.countUnacked.bind(store);
    store.countUnacked = (atMost = -1) => (counts.push(atMost), counted(atMost));
    const warnAt = unackedWatch(store);
    const minute = 60_000;
    add(UNACKED_WARNING - 1);
    expect(warnAt(0)).toBeUndefined();
    add(1 + 500);
    expect(warnAt(minute)).toBe(UNACKED_WARNING + 500);
    add(100);
    // every sweep of the next hour: no warning, and no full count
    for (let t = 2 * minute; t < minute + UNACKED_REWARN_MS; t += minute) expect(warnAt(t)).toBeUndefined();
    expect(warnAt(minute + UNACKED_REWARN_MS)).toBe(UNACKED_WARNING + 600);
    expect(counts.filter((atMost) => atMost === -1)).toHaveLength(2);
    expect(counts.filter((atMost) => atMost !== -1 && atMost !== UNACKED_WARNING)).toEqual([]);
    // the application catches up: the next backlog is a new episode, told at once
    store.ackIngress(
      store.listIngress({ limit: 20_000 }).map((m) => m.id),
      1,
    );
    expect(warnAt(minute + UNACKED_REWARN_MS + minute)).toBeUndefined();
    add(UNACKED_WARNING);
    expect(warnAt(minute + UNACKED_REWARN_MS + 2 * minute)).toBe(UNACKED_WARNING);
  } finally {
    store.close();
  }
});
