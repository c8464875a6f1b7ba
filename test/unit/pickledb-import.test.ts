import { afterAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { importPickleDb } from "../../src/thing/store/pickledb-import.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-pickledb-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An entry as the Python SDK's PersistentCallbackHandler stored it (flashlexiot/backend/callbacks.py). */
const oldEntry = (pk: string, timestamp: number, payload: unknown, extra: Record<string, unknown> = {}) => ({
  pk,
  timestamp,
  datetime: "2019-09-30 13:49:35",
  message: { topic: "pubsub/foobar30", payload, pos: 1, retain: 0, mid: 1, ...extra },
});

function withStore<T>(name: string, fn: (store: MessageStore, legacy: string) => T): T {
  const legacy = join(dir, `${name}.json`);
  const store = MessageStore.open(join(dir, `${name}.db`));
  try {
    return fn(store, legacy);
  } finally {
    store.close();
  }
}

test("a pickleDB store: each entry becomes the message it was (topic, payload, QoS, retain, time), in time order, and the file is renamed aside", () => {
  withStore("pickle", (store, legacy) => {
    const later = oldEntry("bbbbbbbbbbbb", 1569851376.5, { message: "second", sequence: 2 });
    const earlier = oldEntry("aaaaaaaaaaaa", 1569851375.25, { message: "first", sequence: 1 }, { topic: "ingress/x", pos: 0, retain: 1 });
    writeFileSync(legacy, JSON.stringify({ bbbbbbbbbbbb: later, aaaaaaaaaaaa: earlier, odd: { message: { message: "no payload key" } } }));
    const result = importPickleDb(store, legacy, "ingress/ecd13b11-mything");
    expect(result).toEqual({ messages: 3, alreadyImported: false, renamedTo: `${legacy}.imported` });
    expect(existsSync(legacy)).toBe(false);
    const rows = store.listIngress({ state: "all" });
    expect(rows.map((r) => [r.topic, JSON.parse(r.payload as string), r.qos, r.retain, r.received_at, r.packet_id])).toStrictEqual([
      ["ingress/x", { message: "first", sequence: 1 }, 0, 1, 1569851375250, null],
      ["pubsub/foobar30", { message: "second", sequence: 2 }, 1, 0, 1569851376500, null],
      // a shape the SDK never wrote is kept whole, under the ingress topic, at the file's time
      ["ingress/ecd13b11-mything", { message: { message: "no payload key" } }, 1, 0, rows[2]!.received_at, null],
    ]);
    expect(importPickleDb(store, legacy, "ingress/ecd13b11-mything")).toBeUndefined();
  });
});

test("a TinyDB store (the SDK of the guide's time): every document of _default is a message; another table is reported and left in the renamed file", () => {
  withStore("tinydb", (store, legacy) => {
    const tables = {
      _default: { "335": oldEntry("b300d03c", 1553978975.5, { sequence: 151 }), "336": oldEntry("8e048eea", 1553978976.5, { sequence: 152 }) },
      other: { "1": { note: "not a message" } },
    };
    writeFileSync(legacy, JSON.stringify(tables));
    const skipped: string[] = [];
    expect(importPickleDb(store, legacy, "ingress/t", (key) => skipped.push(key))?.messages).toBe(2);
    expect(skipped).toEqual(["other"]);
    expect(store.listIngress({ state: "all" }).map((r) => JSON.parse(r.payload as string))).toStrictEqual([{ sequence: 151 }, { sequence: 152 }]);
    expect(JSON.parse(readFileSync(`${legacy}.imported`, "utf8"))).toEqual(tables);
  });
});

test("a timestamp in milliseconds (an app's own setMessageToStore) is taken as milliseconds; a nonsense one takes the file's time", () => {
  withStore("millis", (store, legacy) => {
    writeFileSync(
      legacy,
      JSON.stringify({ a: oldEntry("a", 1578600000123, { ms: true }), b: oldEntry("b", 1e300, { huge: true }), c: oldEntry("c", -5, { negative: true }) }),
    );
    importPickleDb(store, legacy, "ingress/t");
    const times = Object.fromEntries(store.listIngress({ state: "all" }).map((r) => [Object.keys(JSON.parse(r.payload as string))[0], r.received_at]));
    expect(times.ms).toBe(1578600000123);
    for (const odd of [times.huge!, times.negative!]) expect(Math.abs(odd - Date.now())).toBeLessThan(60_000);
  });
});

test("the same file put back (or imported by two processes at once) is stored once, and the first renamed copy is kept", () => {
  withStore("twice", (store, legacy) => {
    const text = JSON.stringify({ a: oldEntry("a", 1569851375, { n: 1 }), b: oldEntry("b", 1569851376, { n: 2 }) });
    writeFileSync(legacy, text);
    expect(importPickleDb(store, legacy, "ingress/t")?.messages).toBe(2);
    copyFileSync(`${legacy}.imported`, legacy);
    // a second store on the same file: what another process sees once the first has committed
    const other = MessageStore.open(join(dir, "twice.db"));
    try {
      expect(importPickleDb(other, legacy, "ingress/t")).toEqual({ messages: 0, alreadyImported: true, renamedTo: `${legacy}.imported.2` });
    } finally {
      other.close();
    }
    expect(store.listIngress({ state: "all" }).length).toBe(2);
    expect(readFileSync(`${legacy}.imported`, "utf8")).toBe(text);
    // a different file is a different import
    writeFileSync(legacy, JSON.stringify({ c: oldEntry("c", 1569851377, { n: 3 }) }));
    expect(importPickleDb(store, legacy, "ingress/t")).toEqual({ messages: 1, alreadyImported: false, renamedTo: `${legacy}.imported.3` });
  });
});

test("a file that is not a pickleDB object is refused, naming it, and left in place", () => {
  withStore("broken", (store, legacy) => {
    writeFileSync(legacy, "[1,2");
    expect(() => importPickleDb(store, legacy, "t")).toThrow(legacy);
    expect(existsSync(legacy)).toBe(true);
  });
});

test("two processes opening the store at once (serve at boot and a messages list) import the file once", async () => {
  const entries = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, oldEntry(`k${i}`, 1578600000 + i, { i })]));
  for (let round = 0; round < 4; round++) {
    const database = join(dir, `race${round}.db`);
    const legacy = join(dir, `race${round}.json`);
    writeFileSync(legacy, JSON.stringify(entries));
    const runs = [0, 1].map(() =>
      Bun.spawn([process.execPath, join(import.meta.dir, "../support/import-pickledb.ts"), database, legacy], { stdout: "pipe", stderr: "pipe" }),
    );
    const outputs = await Promise.all(
      runs.map(async (p) => ({ code: await p.exited, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() })),
    );
    for (const o of outputs) expect(o).toMatchObject({ code: 0, err: "" });
    const store = MessageStore.open(database);
    try {
      expect(store.listIngress({ state: "all", limit: 10_000 }).length).toBe(2000);
    } finally {
      store.close();
    }
    expect(existsSync(legacy)).toBe(false);
  }
}, 60_000);
