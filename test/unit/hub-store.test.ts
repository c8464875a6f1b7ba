/**
 * The hub database's ingress delivery state: the migration that adds it, and its two queries.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HubStore, MessageRecord, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { HUB_READABLE_FROM, SQLITE_MIGRATIONS } from "../../src/hub/store/migrations.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import type { HubSql } from "../../src/hub/store/sql.ts";
import { sqliteHubSql } from "../../src/hub/store/sqlite-driver.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { createLogger } from "../../src/shared/log.ts";
import { applyPragmas, migrate } from "../../src/shared/sqlite/migrate.ts";
import { openSqlDatabase } from "../../src/shared/sqlite/open.ts";
import { storedMessages, storeThing } from "../support/hub-messages.ts";

const THING = "349c5942-77d6-4f36-880b-1762a3b07f06";
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-store-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const message = (id: string, type: "egress" | "ingress", ts: number, extra: Partial<MessageRecord> = {}): MessageRecord => ({
  flmessagespk: id,
  thingId: THING,
  messagetype: type,
  payload: `{"id":"${id}"}`,
  fltimestamp: ts,
  datecreated: "2024-01-01T00:00:00Z",
  ...extra,
});

async function freshStore(name: string): Promise<HubStore> {
  return await openHubStore(join(dir, name), { create: true });
}

describe("hub-store: a database a newer hub migrated (a rollback)", () => {
  /** What a hub binary whose newest step is `steps` makes of `file`: its schema version, or what it threw. */
  const openAs = (file: string, steps: number): number | Error => {
    const db = openSqlDatabase(file);
    try {
      applyPragmas(db);
      return migrate(db, SQLITE_MIGRATIONS.slice(0, steps), file);
    } catch (err) {
      return err as Error;
    } finally {
      db.close();
    }
  };
  const said = (file: string) => {
    const db = openSqlDatabase(file);
    try {
      return db.all<{ version: number; readable_from: number }>("SELECT version, readable_from FROM schema_compat");
    } finally {
      db.close();
    }
  };

  test("a hub as old as HUB_READABLE_FROM uses it as it is; an older one is refused (78) naming the version it needs (verify pass 26, F1: every older hub was refused)", async () => {
    const file = join(dir, "rolled-back.db");
    await (await openHubStore(file, { create: true })).close();
    expect(said(file)).toStrictEqual([{ version: SQLITE_MIGRATIONS.length, readable_from: HUB_READABLE_FROM }]);
    expect(HUB_READABLE_FROM).toBeLessThan(SQLITE_MIGRATIONS.length); // the last step only added a table
    expect(openAs(file, HUB_READABLE_FROM)).toBe(SQLITE_MIGRATIONS.length);
    const older = openAs(file, HUB_READABLE_FROM - 1);
    expect(older).toBeInstanceOf(FlashlexError);
    expect((older as FlashlexError).kind).toBe("config");
    expect((older as Error).message).toContain(
      `schema version ${SQLITE_MIGRATIONS.length} is newer than this flashlex knows (${HUB_READABLE_FROM - 1}), and the flashlex that migrated it lets only those that know schema version ${HUB_READABLE_FROM} or later use it`,
    );
    // the rolled-back hub wrote nothing of its own: the newer one finds its database as it left it
    expect(said(file)).toStrictEqual([{ version: SQLITE_MIGRATIONS.length, readable_from: HUB_READABLE_FROM }]);
  });

  test("a database a hub of the same schema marked readable by itself only is marked down to HUB_READABLE_FROM at the next open, once", async () => {
    const file = join(dir, "marked-high.db");
    const db = openSqlDatabase(file);
    applyPragmas(db);
    migrate(db, SQLITE_MIGRATIONS, file); // as the hub before HUB_READABLE_FROM left it: readable by its own version only
    db.close();
    expect(said(file)).toStrictEqual([{ version: SQLITE_MIGRATIONS.length, readable_from: SQLITE_MIGRATIONS.length }]);
    expect(openAs(file, HUB_READABLE_FROM)).toBeInstanceOf(FlashlexError);
    await (await openHubStore(file)).close();
    expect(said(file)).toStrictEqual([{ version: SQLITE_MIGRATIONS.length, readable_from: HUB_READABLE_FROM }]);
    expect(openAs(file, HUB_READABLE_FROM)).toBe(SQLITE_MIGRATIONS.length);
  });
});

describe("hub-store: a migration is said", () => {
  test("an older database migrated is one WARN naming the versions and the way back; a new or current one says nothing (new-user pass 25, F6)", async () => {
    const lines: string[] = [];
    const log = createLogger({ level: "info", write: (line) => lines.push(line) });
    const file = join(dir, "older.db");
    const db = openSqlDatabase(file);
    applyPragmas(db);
    migrate(db, SQLITE_MIGRATIONS.slice(0, 7), file);
    db.close();
    await (await openHubStore(file, { log })).close();
    await (await openHubStore(file, { log })).close();
    await (await openHubStore(join(dir, "new-said.db"), { create: true, log })).close();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`WARN +hub\\.database_migrated database=\\S+older\\.db from=7 to=${SQLITE_MIGRATIONS.length} readableFrom=${HUB_READABLE_FROM} note=`),
    );
    expect(lines[0]).toContain("restore the backup made before the upgrade");
  });
});

describe("hub-store: ingress delivery", () => {
  test("a database from before delivery tracking: its ingress becomes 'unknown' (never resent), egress has none", async () => {
    const file = join(dir, "v1.db");
    const db = openSqlDatabase(file);
    applyPragmas(db);
    migrate(db, SQLITE_MIGRATIONS.slice(0, 1), file);
    for (const [id, type] of [
      ["old-in", "ingress"],
      ["old-out", "egress"],
    ] as const) {
      db.run("INSERT INTO messages (flmessagespk, thing_id, messagetype, payload, fltimestamp, datecreated) VALUES (?, ?, ?, '1', 1, 'x')", [id, THING, type]);
    }
    db.close();

    const store = await openHubStore(file);
    const rows = await storedMessages(store, THING, {});
    expect(rows.map((m) => [m.flmessagespk, m.delivery, m.deliveredAt])).toStrictEqual([
      ["old-in", "unknown", null],
      ["old-out", null, null],
    ]);
    expect(await store.pendingIngress(THING)).toEqual([]);
    await store.close();
    // the version moved forward once; opening again does not migrate again
    const again = await openHubStore(file);
    expect((await storedMessages(again, THING, {})).length).toBe(2);
    await again.close();
  });

  test("pending ingress comes back oldest first; markDelivered moves it to delivered once", async () => {
    const store = await freshStore("pending.db");
    await storeThing(store, THING);
    await store.insertMessage(message("b", "ingress", 20, { delivery: "pending" }));
    await store.insertMessage(message("a", "ingress", 10, { delivery: "pending" }));
    await store.insertMessage(message("c", "ingress", 20, { delivery: "pending" }));
    await store.insertMessage(message("x", "ingress", 5)); // no delivery given: unknown
    await store.insertMessage(message("e", "egress", 1, { delivery: "pending" })); // egress never has one
    expect((await store.pendingIngress(THING)).map((m) => m.flmessagespk)).toStrictEqual(["a", "b", "c"]);

    expect(await store.markDelivered([{ flmessagespk: "b", at: 1_700_000_000_000 }])).toEqual([true]);
    // already delivered: the first time stays; unknown is not pending
    expect(
      await store.markDelivered([
        { flmessagespk: "b", at: 1_700_000_999_000 },
        { flmessagespk: "x", at: 1 },
        { flmessagespk: "nope", at: 1 },
      ]),
    ).toEqual([false, false, false]);

    expect((await store.pendingIngress(THING)).map((m) => m.flmessagespk)).toStrictEqual(["a", "c"]);
    const byId = Object.fromEntries((await storedMessages(store, THING, {})).map((m) => [m.flmessagespk, [m.delivery, m.deliveredAt]]));
    expect(byId).toEqual({
      e: [null, null],
      x: ["unknown", null],
      a: ["pending", null],
      b: ["delivered", 1_700_000_000_000],
      c: ["pending", null],
    });
    await store.close();
  });
});

describe("hub-store: commits that need no fsync", () => {
  test("a transaction with durable: false runs at synchronous=NORMAL and leaves the connection at FULL, also when it throws", async () => {
    const file = join(dir, "lazy.db");
    const db = openSqlDatabase(file);
    applyPragmas(db);
    migrate(db, SQLITE_MIGRATIONS, file);
    const sql = sqliteHubSql(db);
    const level = async (via: Pick<HubSql, "get">) => (await via.get<{ synchronous: number }>("PRAGMA synchronous"))!.synchronous;
    expect(await level(sql)).toBe(2); // FULL
    expect(await sql.transaction((tx) => level(tx), { durable: false })).toBe(1); // NORMAL
    expect(await level(sql)).toBe(2);
    expect(await sql.transaction((tx) => level(tx))).toBe(2);
    await expect(sql.transaction(() => Promise.reject(new Error("no")), { durable: false })).rejects.toThrow("no");
    expect(await level(sql)).toBe(2);
    await sql.close();
  });
});

describe("hub-store: a thing the database did not store", () => {
  test("a trigger that skips the row (RAISE(IGNORE)) makes insertThing fail as io, not report a thing that is not there", async () => {
    const file = join(dir, "skipped.db");
    const store = await freshStore("skipped.db");
    const raw = openSqlDatabase(file);
    raw.exec("CREATE TRIGGER skip BEFORE INSERT ON things BEGIN SELECT RAISE(IGNORE); END");
    raw.close();
    const thing: ThingRecord = await storeThing(await freshStore("template.db"), THING);
    const err = await store.insertThing(thing).catch((e) => e);
    expect(err).toBeInstanceOf(FlashlexError);
    expect([err.kind, err.message]).toEqual(["io", `the database did not store the thing ${thing.name} (a trigger in it skipped the row)`]);
    expect(await store.getThing(THING)).toBeUndefined();
    await store.close();
  });
});
