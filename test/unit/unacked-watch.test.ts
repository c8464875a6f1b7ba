import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { UNACKED_REWARN_MS, UNACKED_WARNING, UNACKED_WARNING_OVER, unackedWatch } from "../../src/thing/store/unacked-watch.ts";

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
    // acknowledged in batches around the threshold: the same backlog, not a warning every other minute
    let t = minute + UNACKED_REWARN_MS;
    const ackOldest = (n: number) =>
      store.ackIngress(
        store.listIngress({ limit: n }).map((m) => m.id),
        1,
      );
    const warned: number[] = [];
    for (let i = 0; i < 30; i++) {
      t += minute;
      if (i % 2) add(1000);
      else ackOldest(1000);
      const said = warnAt(t);
      if (said !== undefined) warned.push(said);
    }
    expect(warned).toEqual([]);
    // the application catches up (below half the threshold): the next backlog is told at once
    ackOldest(20_000);
    t += minute;
    expect(warnAt(t)).toBeUndefined();
    add(UNACKED_WARNING);
    t += minute;
    expect(warnAt(t)).toBe(UNACKED_WARNING);
    // a clock set back an hour: the hour starts again from the new time, it does not hold the warning off
    expect(warnAt(t - UNACKED_REWARN_MS)).toBe(UNACKED_WARNING);
    expect(warnAt(t - UNACKED_REWARN_MS + minute)).toBeUndefined();
    expect(UNACKED_WARNING_OVER).toBe(UNACKED_WARNING / 2);
  } finally {
    store.close();
  }
});
