import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { importPickleDb } from "../../src/thing/store/pickledb-import.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-pickledb-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("an old pickleDB store is imported once and renamed aside", () => {
  const legacy = join(dir, "subscription.json");
  writeFileSync(legacy, JSON.stringify({ a: { message: { message: "this is a test message YO!" } }, b: { topic: "ingress/x", message: 2 } }));
  const store = MessageStore.open(join(dir, "subscription.db"));
  try {
    expect(importPickleDb(store, legacy, "ingress/ecd13b11-mything")).toBe(2);
    expect(existsSync(legacy)).toBe(false);
    expect(existsSync(`${legacy}.imported`)).toBe(true);
    const rows = store.listIngress();
    expect(rows.map((r) => r.topic)).toEqual(["ingress/ecd13b11-mything", "ingress/x"]);
    expect(JSON.parse(rows[0]!.payload as string)).toEqual({ message: { message: "this is a test message YO!" } });
    expect(importPickleDb(store, legacy, "ingress/ecd13b11-mything")).toBe(0);
  } finally {
    store.close();
  }
});

test("a file that is not a pickleDB object is refused, naming it, and left in place", () => {
  const legacy = join(dir, "broken.json");
  writeFileSync(legacy, "[1,2");
  const store = MessageStore.open(join(dir, "broken.db"));
  try {
    expect(() => importPickleDb(store, legacy, "t")).toThrow(legacy);
    expect(existsSync(legacy)).toBe(true);
  } finally {
    store.close();
  }
});
