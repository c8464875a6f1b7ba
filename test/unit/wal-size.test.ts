/**
 * The WAL is cut back after a burst (new-user pass 26, F5): it kept the size of its largest
 * burst for good, room an SD card shared with logs needs for the next one.
 */
import { expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { scratchDir } from "../support/scratch.ts";

test("a burst of 24 MB through the WAL leaves it at most 4 MiB once a checkpoint has emptied it", () => {
  const file = join(scratchDir("flashlex-wal-size-"), "messages.db");
  const store = MessageStore.open(file);
  try {
    const payload = new Uint8Array(8192).fill(7);
    store.db.transaction(() => {
      for (let i = 0; i < 3000; i++) store.insertIngress({ topic: "t", payload, qos: 1, retain: false, receivedAt: i });
    });
    const burst = statSync(`${file}-wal`).size;
    expect(burst).toBeGreaterThan(20 * 1024 * 1024);
    // the commit after the automatic checkpoint starts the WAL over: that is when it is cut back
    for (let i = 0; i < 3; i++) store.insertIngress({ topic: "t", payload: new Uint8Array(10), qos: 1, retain: false, receivedAt: 5000 + i });
    expect(statSync(`${file}-wal`).size).toBeLessThanOrEqual(4 * 1024 * 1024 + 8192);
  } finally {
    store.close();
  }
});
