import { describe, expect, test } from "bun:test";
import { IdleTrim } from "../../src/shared/idle-trim.ts";

describe("IdleTrim", () => {
  test("one collection once the work has been quiet for quietMs, none while it goes on, none without work", async () => {
    let collections = 0;
    let releases = 0;
    const trim = new IdleTrim({ quietMs: 60, release: () => releases++, collect: () => collections++ });
    trim.start();
    try {
      await Bun.sleep(200);
      expect(collections).toBe(0); // no work yet: nothing owed
      const until = performance.now() + 250;
      while (performance.now() < until) {
        trim.worked();
        await Bun.sleep(10);
      }
      expect(collections).toBe(0); // never quiet for 60 ms
      await Bun.sleep(250);
      expect(collections).toBe(1);
      await Bun.sleep(200);
      expect(collections).toBe(1); // owed once per burst
      trim.worked();
      await Bun.sleep(250);
      expect(collections).toBe(2);
      expect(releases).toBe(2); // before each collection
    } finally {
      trim.stop();
    }
  });

  test("with neither a collection (Node) nor anything to release, start does nothing", () => {
    const trim = new IdleTrim({ quietMs: 10, collect: undefined });
    trim.start();
    trim.worked();
    trim.stop();
  });

  test("under Bun the default collection is a full GC, then shrink (JavaScriptCore's compiled code and spare heap)", async () => {
    const calls: string[] = [];
    const { gc, shrink } = Bun;
    Object.assign(Bun, { gc: (force?: boolean) => calls.push(`gc(${force})`), shrink: () => calls.push("shrink") });
    const trim = new IdleTrim({ quietMs: 20 });
    try {
      trim.start();
      trim.worked();
      await Bun.sleep(150);
      expect(calls).toEqual(["gc(true)", "shrink"]);
    } finally {
      trim.stop();
      Object.assign(Bun, { gc, shrink });
    }
  });
});
