import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FlashlexError } from "../../src/shared/errors.ts";
import type { OpenSqlDatabase, SqlDatabase } from "../../src/shared/sqlite/driver.ts";
import { applyPragmas, migrate, schemaAfter } from "../../src/shared/sqlite/migrate.ts";
import {
  downgradeThingDatabase,
  EXPIRE_ACKED_INGRESS,
  MessageStore,
  THING_DOWN_MIGRATIONS,
  THING_MIGRATIONS,
  THING_SCHEMA,
} from "../../src/thing/store/message-store.ts";

/**
 * The SQLite driver contract, free of any test framework: test/unit/store-contract.test.ts runs
 * it in Bun against each driver, and bundled under Node 20 against the wasm driver (where
 * bun:test does not exist). Each case asserts, then returns what it observed in a form that does
 * not depend on the driver, so the test can also demand that every driver observed the same.
 */
export interface ContractContext {
  open: OpenSqlDatabase;
  /** a fresh, empty directory for this case */
  dir: string;
}

export interface ContractCase {
  name: string;
  run(ctx: ContractContext): unknown;
}

export interface ContractResult {
  name: string;
  ok: boolean;
  error?: string;
  /** the observation, through `encodeObservation` */
  seen?: string;
}

const te = new TextEncoder();
const bytes = (...values: number[]) => new Uint8Array(values);
const sqlite3Cli = (file: string, sql: string) => execFileSync("sqlite3", [file, sql], { encoding: "utf8" }).trim();

function withDb<T>(ctx: ContractContext, fn: (db: SqlDatabase, file: string) => T, name = "c.db"): T {
  const file = join(ctx.dir, name);
  const db = ctx.open(file);
  try {
    return fn(db, file);
  } finally {
    db.close();
  }
}

function withStore<T>(ctx: ContractContext, fn: (store: MessageStore) => T): T {
  const store = MessageStore.open(join(ctx.dir, "data", "messages.db"), { open: ctx.open });
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

export const storeContract: ContractCase[] = [
  {
    name: "exec runs several statements; run reports changes and lastInsertRowid",
    run: (ctx) =>
      withDb(ctx, (db) => {
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b');");
        const insert = db.run("INSERT INTO t (v) VALUES (?)", ["c"]);
        assert.deepEqual(insert, { changes: 1, lastInsertRowid: 3 });
        const update = db.run("UPDATE t SET v = v || ?", ["!"]);
        assert.equal(update.changes, 3);
        const none = db.run("DELETE FROM t WHERE id > ?", [99]);
        assert.equal(none.changes, 0);
        return { insert, update, none };
      }),
  },
  {
    name: "all and get return plain row objects; get answers undefined for no row",
    run: (ctx) =>
      withDb(ctx, (db) => {
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
        for (const v of ["x", "y", "z"]) db.run("INSERT INTO t (v) VALUES (?)", [v]);
        const all = db.all("SELECT id, v FROM t WHERE id >= ? ORDER BY id", [2]);
        assert.deepEqual(all, [
          { id: 2, v: "y" },
          { id: 3, v: "z" },
        ]);
        assert.deepEqual(db.get("SELECT v FROM t WHERE id = ?", [1]), { v: "x" });
        assert.equal(db.get("SELECT v FROM t WHERE id = ?", [42]), undefined);
        assert.deepEqual(db.all("SELECT v FROM t WHERE 0"), []);
        assert.deepEqual(db.get("SELECT count(*) AS n, NULL AS none FROM t"), { n: 3, none: null });
        return all;
      }),
  },
  {
    name: "binds and returns every SqlValue type unchanged",
    run: (ctx) =>
      withDb(ctx, (db) => {
        db.exec("CREATE TABLE v (k TEXT PRIMARY KEY, x)");
        const big = 2n ** 62n + 7n;
        const values: [string, unknown][] = [
          ["text", "h\u00e9llo \u4e16\u754c \u{1f600}"],
          ["empty text", ""],
          ["int", 42],
          ["negative", -7],
          ["max safe", Number.MAX_SAFE_INTEGER],
          ["real", 1.5],
          ["null", null],
          ["blob", bytes(0, 1, 2, 0xff, 0)],
          ["empty blob", new Uint8Array(0)],
          ["small bigint", 5n],
          ["big bigint", big],
          ["min int64", -(2n ** 63n)],
        ];
        for (const [k, x] of values) db.run("INSERT INTO v (k, x) VALUES (?, ?)", [k, x as never]);
        const rows = db.all<{ k: string; x: unknown; t: string; exact: string }>("SELECT k, x, typeof(x) AS t, CAST(x AS TEXT) AS exact FROM v ORDER BY rowid");
        const byKey = Object.fromEntries(rows.map((r) => [r.k, r]));
        for (const [k, x] of values) {
          const row = byKey[k]!;
          // a bigint that fits a number comes back as a number; beyond 2^53 it stays a bigint
          const expected = typeof x === "bigint" && x >= Number.MIN_SAFE_INTEGER && x <= Number.MAX_SAFE_INTEGER ? Number(x) : x;
          assert.deepEqual(row.x, expected, k);
          if (x instanceof Uint8Array) assert.ok(row.x instanceof Uint8Array, `${k} is a Uint8Array`);
        }
        assert.equal(byKey["big bigint"]!.exact, big.toString());
        assert.equal(byKey["empty blob"]!.t, "blob");
        // a number beyond 2^53 is not an exact integer in JS: both drivers store it as REAL
        db.run("INSERT INTO v (k, x) VALUES (?, ?)", ["2^60 as number", 2 ** 60]);
        assert.equal(db.get<{ t: string }>("SELECT typeof(x) AS t FROM v WHERE k = ?", ["2^60 as number"])!.t, "real");
        const large = new Uint8Array(1 << 20).map((_, i) => i % 251);
        db.run("INSERT INTO v (k, x) VALUES (?, ?)", ["1 MiB", large]);
        assert.deepEqual(db.get<{ x: Uint8Array }>("SELECT x FROM v WHERE k = ?", ["1 MiB"])!.x, large);
        return rows.map((r) => ({ k: r.k, x: r.x, t: r.t }));
      }),
  },
  {
    name: "a string containing NUL is stored whole or refused, never cut short",
    run: (ctx) =>
      withDb(ctx, (db) => {
        db.exec("CREATE TABLE v (x)");
        try {
          db.run("INSERT INTO v (x) VALUES (?)", ["a\u0000b"]);
        } catch (err) {
          assert.ok(err instanceof RangeError, String(err));
          return "never cut";
        }
        assert.equal(db.get<{ x: string }>("SELECT x FROM v")!.x, "a\u0000b");
        return "never cut";
      }),
  },
  {
    name: "transaction commits and returns the function's value",
    run: (ctx) =>
      withDb(ctx, (db) => {
        db.exec("CREATE TABLE t (v)");
        const result = db.transaction(() => {
          db.run("INSERT INTO t VALUES (1)");
          db.run("INSERT INTO t VALUES (2)");
          return "done";
        });
        assert.equal(result, "done");
        assert.equal(db.get<{ n: number }>("SELECT count(*) AS n FROM t")!.n, 2);
        db.run("INSERT INTO t VALUES (3)"); // autocommit again after the transaction
        return db.all("SELECT v FROM t ORDER BY v");
      }),
  },
  {
    name: "transaction rolls back and rethrows when the function throws",
    run: (ctx) =>
      withDb(ctx, (db) => {
        db.exec("CREATE TABLE t (v UNIQUE)");
        db.run("INSERT INTO t VALUES (0)");
        assert.throws(
          () =>
            db.transaction(() => {
              db.run("INSERT INTO t VALUES (1)");
              throw new Error("boom");
            }),
          /boom/,
        );
        // an SQL error inside rolls back too
        assert.throws(() =>
          db.transaction(() => {
            db.run("INSERT INTO t VALUES (2)");
            db.run("INSERT INTO t VALUES (0)");
          }),
        );
        db.transaction(() => db.run("INSERT INTO t VALUES (3)"));
        return db.all("SELECT v FROM t ORDER BY v");
      }),
  },
  {
    name: "a nested transaction that throws undoes only itself",
    run: (ctx) =>
      withDb(ctx, (db) => {
        db.exec("CREATE TABLE t (v)");
        db.transaction(() => {
          db.run("INSERT INTO t VALUES (1)");
          assert.throws(() =>
            db.transaction(() => {
              db.run("INSERT INTO t VALUES (2)");
              throw new Error("inner");
            }),
          );
          db.transaction(() => db.run("INSERT INTO t VALUES (3)"));
        });
        const rows = db.all("SELECT v FROM t ORDER BY v");
        assert.deepEqual(rows, [{ v: 1 }, { v: 3 }]);
        return rows;
      }),
  },
  {
    name: "migrate turns on WAL and synchronous=FULL",
    run: (ctx) =>
      withDb(ctx, (db, file) => {
        applyPragmas(db);
        migrate(db, [], file);
        const seen = {
          journal: db.get<{ journal_mode: string }>("PRAGMA journal_mode")!.journal_mode,
          synchronous: db.get<{ synchronous: number }>("PRAGMA synchronous")!.synchronous,
        };
        assert.deepEqual(seen, { journal: "wal", synchronous: 2 });
        return seen;
      }),
  },
  {
    name: "the file is real SQLite: sqlite3 reports integrity ok after close, and reopening keeps the data",
    run: (ctx) => {
      const file = join(ctx.dir, "real.db");
      let db = ctx.open(file);
      applyPragmas(db);
      migrate(db, [], file);
      db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
      db.transaction(() => {
        for (let i = 0; i < 100; i++) db.run("INSERT INTO t (v) VALUES (?)", [te.encode(`row ${i}`)]);
      });
      db.close();
      db.close(); // a second close is harmless
      const cli = sqlite3Cli(file, "PRAGMA integrity_check; PRAGMA journal_mode; SELECT count(*) FROM t; SELECT hex(v) FROM t WHERE id = 100;");
      assert.deepEqual(cli.split("\n"), ["ok", "wal", "100", Buffer.from("row 99").toString("hex").toUpperCase()]);
      db = ctx.open(file);
      try {
        applyPragmas(db);
        assert.equal(db.get<{ n: number }>("SELECT count(*) AS n FROM t")!.n, 100);
        return { cli: cli.split("\n"), reopened: db.get("SELECT id, v FROM t WHERE id = 1") };
      } finally {
        db.close();
      }
    },
  },
  {
    name: "migrate applies the steps left in one transaction: a step that fails leaves the version it had and none of the steps",
    run: (ctx) =>
      withDb(ctx, (db, file) => {
        applyPragmas(db);
        const first = THING_MIGRATIONS.slice(0, 1);
        assert.equal(migrate(db, first, file), 1);
        // two rows the last step cannot take (it passes on the empty schema migrate checks the steps on)
        for (let n = 0; n < 2; n++) db.run("INSERT INTO ingress_messages (topic, payload, qos, received_at) VALUES ('t', x'00', 1, 1)");
        const tables = () =>
          db.all<{ name: string }>("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'extra%' ORDER BY name").map((t) => t.name);
        const failing = "CREATE TABLE extra_b (x UNIQUE); INSERT INTO extra_b SELECT qos FROM ingress_messages";
        assert.throws(() => migrate(db, [...first, "CREATE TABLE extra_a (x)", failing], file), /UNIQUE/);
        const afterFailure = { version: db.get<{ user_version: number }>("PRAGMA user_version")!.user_version, tables: tables() };
        assert.deepEqual(afterFailure, { version: 1, tables: [] });
        assert.equal(migrate(db, [...first, "CREATE TABLE extra_a (x)", "CREATE TABLE extra_b (x)"], file), 3);
        return { afterFailure, tables: tables() };
      }),
  },
  {
    name: "migrate applies THING_MIGRATIONS once and refuses a newer user_version",
    run: (ctx) =>
      withDb(ctx, (db, file) => {
        applyPragmas(db);
        assert.equal(migrate(db, THING_MIGRATIONS, file), THING_MIGRATIONS.length);
        assert.equal(migrate(db, THING_MIGRATIONS, file), THING_MIGRATIONS.length); // nothing left to do
        assert.equal(migrate(db, THING_MIGRATIONS, file, { current: THING_SCHEMA }), THING_MIGRATIONS.length); // checked against the written-out schema
        // the written-out schema is what the migrations make, so it cannot drift from them
        assert.deepEqual(schemaAfter(THING_MIGRATIONS), THING_SCHEMA);
        const version = db.get<{ user_version: number }>("PRAGMA user_version")!.user_version;
        const tables = db.all<{ name: string }>("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name");
        assert.equal(version, THING_MIGRATIONS.length);
        db.exec(`PRAGMA user_version = ${THING_MIGRATIONS.length + 1}`);
        assert.throws(() => migrate(db, THING_MIGRATIONS, "messages.db"), /newer than this flashlex knows/);
        return { version, tables: tables.map((t) => t.name) };
      }),
  },
  {
    name: "migrate opens a newer schema that names this version readable, and refuses one that does not",
    run: (ctx) => {
      const v1 = ["CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);"];
      const v2 = [...v1, "ALTER TABLE a ADD COLUMN w TEXT;"];
      const v3 = [...v2, "CREATE TABLE b (id INTEGER PRIMARY KEY);"];
      const v4 = [...v3, "ALTER TABLE a RENAME COLUMN v TO value;"];
      const open = (name: string, migrations: string[], readableFrom?: number) =>
        withDb(ctx, (db, file) => (applyPragmas(db), migrate(db, migrations, file, { readableFrom })), name);
      const refusal = (name: string, migrations: string[]) => {
        try {
          open(name, migrations);
          return "opened";
        } catch (err) {
          return (err as Error).message.replace(ctx.dir, "DIR");
        }
      };
      // a release whose last migration only added columns and a table, rolled back to the one before
      const widened = [open("w.db", v3, 2), open("w.db", v2), open("w.db", v3)];
      withDb(ctx, (db) => db.run("INSERT INTO a (v) VALUES ('written by the older one')"), "w.db");
      // the same schema made by a flashlex that did not say so, and a later rename on top
      open("strict.db", v3);
      open("renamed.db", v3, 2);
      open("renamed.db", v4, 4);
      // and one last migrated by a flashlex from before the compatibility row
      open("unsaid.db", v3, 2);
      withDb(ctx, (db) => db.exec("DROP TABLE schema_compat"), "unsaid.db");
      const refused = [refusal("strict.db", v2), refusal("renamed.db", v2), refusal("renamed.db", v3), refusal("unsaid.db", v2)];
      assert.match(
        refused[0]!,
        /schema version 3 is newer than this flashlex knows \(2\), and the flashlex that migrated it lets only those that know schema version 3 or later use it/,
      );
      assert.match(
        refused[3]!,
        /schema version 3 is newer than this flashlex knows \(2\); run a flashlex that knows it, or put the database back as it was before the upgrade/,
      );
      assert.match(
        refused[1]!,
        /schema version 4 is newer than this flashlex knows \(2\), and the flashlex that migrated it lets only those that know schema version 4 or later use it/,
      );
      assert.equal(refused[2], refused[1]!.replace("knows (2)", "knows (3)"));
      assert.throws(() => open("bad.db", v2, 3), /readableFrom 3 is not a schema version from 1 to 2/);
      // a row that says readable over a table whose columns are not this version's (renamed by
      // hand, or by a release that should have raised readableFrom): refused, not failing later
      open("lying.db", v4, 2);
      const lying = refusal("lying.db", v3);
      assert.match(lying, /table a has columns \(id, value, w\), not those of schema version 3 \(id, v, w\) followed by new ones/);
      return { widened, refused, lying };
    },
  },
  {
    name: "migrate takes a schema_compat or user_version changed by hand as saying nothing, or refuses it (78), never failing inside (70)",
    run: (ctx) => {
      const v2 = ["CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);", "CREATE TABLE b (id INTEGER PRIMARY KEY);"];
      const v3 = [...v2, "ALTER TABLE a ADD COLUMN w TEXT;"];
      const open = (name: string, migrations: string[], readableFrom?: number) =>
        withDb(ctx, (db, file) => (applyPragmas(db), migrate(db, migrations, file, { readableFrom })), name);
      const outcome = (name: string, migrations: string[]) => {
        try {
          return open(name, migrations);
        } catch (err) {
          assert.equal((err as FlashlexError).kind, "config", (err as Error).message);
          return (err as Error).message.replace(ctx.dir, "DIR");
        }
      };
      const tampered = (name: string, sql: string) => {
        open(name, v3, 2);
        withDb(ctx, (db) => db.exec(sql), name);
        return name;
      };
      // attack round 26, F1 and F10: other columns (it failed with "no such column", 70), several rows, NULL, 0, a fraction
      const said = {
        columns: outcome(tampered("cols.db", "DROP TABLE schema_compat; CREATE TABLE schema_compat (version, x)"), v2),
        twoRows: outcome(tampered("rows.db", "INSERT INTO schema_compat VALUES (3, 1)"), v2),
        nul: outcome(
          tampered("null.db", "DROP TABLE schema_compat; CREATE TABLE schema_compat (version, readable_from); INSERT INTO schema_compat VALUES (3, NULL)"),
          v2,
        ),
        zero: outcome(tampered("zero.db", "UPDATE schema_compat SET readable_from = 0"), v2),
        fraction: outcome(tampered("fraction.db", "UPDATE schema_compat SET readable_from = 1.5"), v2),
        // and at its own version: used, and a binary of that schema makes the table anew when it migrates next
        ownColumns: outcome("cols.db", v3),
      };
      for (const key of ["columns", "twoRows", "nul", "zero", "fraction"] as const) {
        assert.match(String(said[key]), /schema version 3 is newer than this flashlex knows \(2\); run a flashlex that knows it/, key);
      }
      assert.equal(said.ownColumns, 3);
      // attack round 26, F11: user_version below 0, or lowered past a step already made (it failed inside, 70)
      open("minus.db", v3);
      withDb(ctx, (db) => db.exec("PRAGMA user_version = -1"), "minus.db");
      const tableAdded = [...v2, "CREATE TABLE c (id INTEGER PRIMARY KEY);"];
      open("lowered.db", tableAdded);
      withDb(ctx, (db) => db.exec("PRAGMA user_version = 2"), "lowered.db");
      const refused = { minus: outcome("minus.db", v3), lowered: outcome("lowered.db", tableAdded) };
      assert.match(String(refused.minus), /schema version -1 is no FlashLex schema: not a FlashLex database, or changed by hand/);
      assert.match(
        String(refused.lowered),
        /schema step 3 failed on it \(.*table c already exists.*\): it is not what schema version 2 makes: not a FlashLex database, or changed by hand/,
      );
      return { said, refused };
    },
  },
  {
    name: "MessageStore works on a database a later release widened (a column, a table), as after a rollback",
    run: (ctx) => {
      const file = join(ctx.dir, "data", "messages.db");
      MessageStore.open(file, { open: ctx.open }).close();
      const later = [
        ...THING_MIGRATIONS,
        `ALTER TABLE ingress_messages ADD COLUMN later_note TEXT;
         ALTER TABLE outbox ADD COLUMN later_priority INTEGER NOT NULL DEFAULT 0;
         CREATE TABLE later_table (k TEXT PRIMARY KEY);`,
      ];
      withDb(ctx, (db) => (applyPragmas(db), migrate(db, later, file, { readableFrom: THING_MIGRATIONS.length })), "data/messages.db");
      const store = MessageStore.open(file, { open: ctx.open });
      try {
        const id = store.insertIngress({ topic: "t", payload: te.encode("x"), qos: 1, retain: false, receivedAt: 1000, packetId: 7, messageId: "m1" });
        assert.equal(store.insertIngress({ topic: "t", payload: te.encode("x"), qos: 1, retain: false, receivedAt: 1001, messageId: "m1" }), undefined);
        const listed = store.listIngress().map((m) => [m.id, m.topic, m.acked_at]);
        assert.deepEqual(store.ackIngress([id!], 2000), [id]);
        store.enqueue({ messageId: "o1", body: "{}", via: "http", thingId: "thing-1", now: 1000 });
        const due = store.due(1000, 10).map((e) => e.message_id);
        store.markSent("o1", 1100, { status: 200, body: "ok" });
        store.setSessionState("k", "v");
        const expired = store.expire(10_000_000, 60);
        return { listed, due, sent: store.getOutbox("o1")?.state, state: store.sessionState("k"), expired, counts: store.countIngress() };
      } finally {
        store.close();
      }
    },
  },
  {
    name: "MessageStore keeps UTF-8 payloads as TEXT and others as BLOB",
    run: (ctx) =>
      withStore(ctx, (store) => {
        const add = (payload: Uint8Array, topic = "ingress/t") => store.insertIngress({ topic, payload, qos: 1, retain: false, receivedAt: 1000 });
        const json = add(te.encode('{"temp":21.5,"unit":"\u00b0C","note":"\u{1f321}"}'));
        const binary = add(bytes(0xff, 0xfe, 0x00, 0x80));
        const withNul = add(bytes(0x41, 0x00, 0x42)); // valid UTF-8, but stored as BLOB
        const empty = add(new Uint8Array(0));
        const withBom = add(bytes(0xef, 0xbb, 0xbf, 0x41)); // kept: decoding it dropped the byte order mark
        const got = [json, binary, withNul, empty, withBom].map((id) => store.getIngress(id)!);
        assert.equal(got[0]!.payload, '{"temp":21.5,"unit":"\u00b0C","note":"\u{1f321}"}');
        assert.deepEqual(got[1]!.payload, bytes(0xff, 0xfe, 0x00, 0x80));
        assert.deepEqual(got[2]!.payload, bytes(0x41, 0x00, 0x42));
        assert.equal(got[3]!.payload, "");
        assert.equal(got[4]!.payload, "\ufeffA");
        assert.deepEqual(
          store.db.all("SELECT typeof(payload) AS t, hex(payload) AS hex FROM ingress_messages ORDER BY id").map((r) => `${r.t} ${r.hex}`),
          ["text 7B2274656D70223A32312E352C22756E6974223A22C2B043222C226E6F7465223A22F09F8CA1227D", "blob FFFE0080", "blob 410042", "text ", "text EFBBBF41"],
        );
        // a broker's resend of it is recognised (a stored payload without its BOM was not, and was stored twice)
        const resend = { topic: "ingress/t", payload: bytes(0xef, 0xbb, 0xbf, 0x41), qos: 1, retain: false, receivedAt: 2000, packetId: 5 };
        store.insertIngress(resend);
        assert.equal(store.isPacketRedelivery(resend, store.redeliveryRange(store.lastIngressId())), true);
        return got;
      }),
  },
  {
    name: "MessageStore isPacketRedelivery answers the same with and without the range's packet index",
    run: (ctx) =>
      withStore(ctx, (store) => {
        const add = (packetId: number, payload: string, topic = "ingress/t") =>
          store.insertIngress({ topic, payload: te.encode(payload), qos: 1, retain: false, receivedAt: 1000, packetId });
        add(1, "old");
        add(7, "a");
        add(7, "b");
        add(8, "c", "ingress/other");
        add(9, "d");
        const range = store.redeliveryRange(store.lastIngressId(), 3);
        const indexed = store.withPacketIndex(range);
        const asked = [
          [7, "a"], // outside the window of 3 rows
          [7, "b"],
          [8, "c"], // same packet id and payload, another topic
          [9, "d"],
          [9, "e"], // same packet id, other bytes
          [1, "old"],
          [42, "d"],
        ] as const;
        const answers = asked.map(([packetId, payload]) => {
          const message = { topic: "ingress/t", payload: te.encode(payload), qos: 1, retain: false, receivedAt: 2000, packetId };
          return [store.isPacketRedelivery(message, range), store.isPacketRedelivery(message, indexed)];
        });
        assert.deepEqual(answers, [
          [false, false],
          [true, true],
          [false, false],
          [true, true],
          [false, false],
          [false, false],
          [false, false],
        ]);
        return answers;
      }),
  },
  {
    name: "MessageStore listIngress filters by state, afterId, topic, since and limit",
    run: (ctx) =>
      withStore(ctx, (store) => {
        const ids = [1, 2, 3, 4, 5].map((i) =>
          store.insertIngress({
            topic: i % 2 ? "ingress/odd" : "ingress/even",
            payload: te.encode(`m${i}`),
            qos: i % 2,
            retain: i === 5,
            receivedAt: i * 1000,
          }),
        );
        assert.deepEqual(ids, [1, 2, 3, 4, 5]);
        store.ackIngress([2, 3], 9000);
        const idsOf = (q: Parameters<MessageStore["listIngress"]>[0]) => store.listIngress(q).map((m) => m.id);
        const seen = {
          unacked: idsOf({}),
          acked: idsOf({ state: "acked" }),
          all: idsOf({ state: "all" }),
          afterId: idsOf({ state: "all", afterId: 3 }),
          topic: idsOf({ state: "all", topic: "ingress/odd" }),
          since: idsOf({ since: 4000 }),
          limit: idsOf({ state: "all", limit: 2 }),
          combined: idsOf({ state: "all", topic: "ingress/odd", afterId: 1, limit: 1 }),
          first: store.listIngress({ limit: 1 })[0],
          count: store.countIngress(),
        };
        assert.deepEqual(seen.unacked, [1, 4, 5]);
        assert.deepEqual(seen.acked, [2, 3]);
        assert.deepEqual(seen.all, [1, 2, 3, 4, 5]);
        assert.deepEqual(seen.afterId, [4, 5]);
        assert.deepEqual(seen.topic, [1, 3, 5]);
        assert.deepEqual(seen.since, [4, 5]);
        assert.deepEqual(seen.limit, [1, 2]);
        assert.deepEqual(seen.combined, [3]);
        assert.deepEqual(seen.first, { id: 1, topic: "ingress/odd", payload: "m1", qos: 1, retain: 0, received_at: 1000, acked_at: null, packet_id: null });
        assert.deepEqual(seen.count, { unacked: 3, total: 5 });
        return seen;
      }),
  },
  {
    name: "MessageStore ack keeps the first time and delete reports what existed",
    run: (ctx) =>
      withStore(ctx, (store) => {
        for (let i = 0; i < 3; i++) store.insertIngress({ topic: "ingress/t", payload: te.encode("x"), qos: 1, retain: false, receivedAt: 1 });
        const acked = store.ackIngress([1, 2, 99], 500);
        const again = store.ackIngress([1], 600);
        const deleted = store.deleteIngress([2, 3, 99]);
        const deletedAgain = store.deleteIngress([2]);
        const seen = { acked, again, ackedAt: store.getIngress(1)!.acked_at, deleted, deletedAgain, count: store.countIngress() };
        assert.deepEqual(seen, { acked: [1, 2], again: [1], ackedAt: 500, deleted: [2, 3], deletedAgain: [], count: { unacked: 0, total: 1 } });
        return seen;
      }),
  },
  {
    name: "MessageStore expire drops only old acknowledged ingress and old sent outbox entries; rejected ones wait for the owner; expireSeconds 0 or below keeps them all",
    run: (ctx) =>
      withStore(ctx, (store) => {
        const day = 86_400_000;
        const now = 100 * day;
        const add = (receivedAt: number) => store.insertIngress({ topic: "ingress/t", payload: te.encode("x"), qos: 1, retain: false, receivedAt });
        const oldAcked = add(now - 10 * day);
        const oldUnacked = add(now - 10 * day);
        const newAcked = add(now - day / 2);
        store.ackIngress([oldAcked, newAcked], now - day / 4);
        store.enqueue({ messageId: "old-sent", body: "{}", via: "http", thingId: "thing-1", now: now - 10 * day });
        store.enqueue({ messageId: "old-rejected", body: "{}", via: "http", thingId: "thing-1", now: now - 10 * day });
        store.enqueue({ messageId: "old-pending", body: "{}", via: "mqtt", thingId: "thing-1", now: now - 10 * day });
        store.enqueue({ messageId: "new-sent", body: "{}", via: "http", thingId: "thing-1", now: now - day / 2 });
        store.markSent("old-sent", now - 9 * day);
        store.markRejected("old-rejected", "400 Bad Request", { status: 400, body: "no" });
        store.markSent("new-sent", now - day / 4);
        // 0 or below: the Python SDK's "expire nothing"
        for (const keep of [0, -1]) assert.deepEqual(store.expire(now, keep), { ingress: 0, outbox: 0 });
        const expired = store.expire(now, 86_400);
        const seen = {
          expired,
          ingress: store.listIngress({ state: "all" }).map((m) => m.id),
          outbox: store.listOutbox().map((e) => e.message_id),
        };
        assert.deepEqual(seen, { expired: { ingress: 1, outbox: 1 }, ingress: [oldUnacked, newAcked], outbox: ["old-pending", "old-rejected", "new-sent"] });
        return seen;
      }),
  },
  {
    name: "MessageStore retention reads only what it deletes, and the unacked count stops where it is told",
    run: (ctx) =>
      withStore(ctx, (store) => {
        for (let i = 0; i < 5; i++) store.insertIngress({ topic: "ingress/t", payload: te.encode("x"), qos: 1, retain: false, receivedAt: i });
        store.ackIngress([1], 10);
        // A sweep that scans the table costs every minute in proportion to the backlog.
        const plan = store.db.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${EXPIRE_ACKED_INGRESS}`, [0]).map((r) => r.detail);
        const seen = {
          usesAckedIndex: plan.some((d) => d.includes("ingress_messages_acked")),
          scansTable: plan.some((d) => /^SCAN ingress_messages\b/.test(d)),
          unacked: [store.countUnacked(), store.countUnacked(2), store.countUnacked(10)],
        };
        assert.deepEqual(seen, { usesAckedIndex: true, scansTable: false, unacked: [4, 2, 4] }, plan.join(" | "));
        return seen;
      }),
  },
  {
    name: "MessageStore outbox: enqueue, due, markSent, markRetry, markRejected, wake",
    run: (ctx) =>
      withStore(ctx, (store) => {
        store.enqueue({ messageId: "a", body: '{"n":1}', via: "http", thingId: "thing-1", now: 100 });
        store.enqueue({ messageId: "b", body: '{"n":2}', via: "mqtt", thingId: "thing-1", now: 200 });
        store.enqueue({ messageId: "c", body: '{"n":3}', via: "http", thingId: "thing-1", now: 300, notBefore: 5000 });
        assert.throws(() => store.enqueue({ messageId: "a", body: "{}", via: "http", thingId: "thing-1", now: 400 }), /UNIQUE|constraint/i);
        const ids = (entries: { message_id: string }[]) => entries.map((e) => e.message_id);
        const seen: Record<string, unknown> = {
          dueAt1000: ids(store.due(1000, 10)),
          dueHttp: ids(store.due(1000, 10, "http")),
          dueLimit: ids(store.due(1000, 1)),
          dueAt5000: ids(store.due(5000, 10)),
          pending: store.countPending(),
        };
        store.markSent("a", 1100, { status: 201, body: '{"status":"ok"}' });
        store.markRetry("b", "ECONNREFUSED", 2000);
        seen.afterRetry = ids(store.due(1500, 10));
        seen.retryDue = ids(store.due(2000, 10));
        store.markRetry("b", "503 Service Unavailable", 3000);
        store.markRejected("c", "400 Bad Request", { status: 400, body: "bad" });
        store.wake("b", 2500);
        seen.woken = ids(store.due(2500, 10));
        seen.entries = store.listOutbox();
        seen.sent = ids(store.listOutbox("sent"));
        seen.pendingAfter = store.countPending();
        assert.deepEqual(seen.dueAt1000, ["a", "b"]);
        assert.deepEqual(seen.dueHttp, ["a"]);
        assert.deepEqual(seen.dueLimit, ["a"]);
        assert.deepEqual(seen.dueAt5000, ["a", "b", "c"]);
        assert.deepEqual(seen.afterRetry, []);
        assert.deepEqual(seen.retryDue, ["b"]);
        assert.deepEqual(seen.woken, ["b"]);
        assert.deepEqual(seen.sent, ["a"]);
        assert.equal(seen.pendingAfter, 1);
        assert.deepEqual(store.getOutbox("a"), {
          message_id: "a",
          body: '{"n":1}',
          via: "http",
          state: "sent",
          created_at: 100,
          attempts: 1,
          next_attempt_at: 100,
          last_error: null,
          sent_at: 1100,
          response_status: 201,
          response_body: '{"status":"ok"}',
          thing_id: "thing-1",
        });
        assert.deepEqual(store.getOutbox("b"), {
          message_id: "b",
          body: '{"n":2}',
          via: "mqtt",
          state: "pending",
          created_at: 200,
          attempts: 2,
          next_attempt_at: 2500,
          last_error: "503 Service Unavailable",
          sent_at: null,
          response_status: null,
          response_body: null,
          thing_id: "thing-1",
        });
        assert.deepEqual(store.getOutbox("c"), {
          message_id: "c",
          body: '{"n":3}',
          via: "http",
          state: "rejected",
          created_at: 300,
          attempts: 1,
          next_attempt_at: 5000,
          last_error: "400 Bad Request",
          sent_at: null,
          response_status: 400,
          response_body: "bad",
          thing_id: "thing-1",
        });
        assert.equal(store.getOutbox("nope"), undefined);
        return seen;
      }),
  },
  {
    name: "MessageStore outbox retry and drop: rejected and pending become due now, sent is left alone, unknown ids are reported",
    run: (ctx) =>
      withStore(ctx, (store) => {
        for (const [id, at] of [
          ["r", 100],
          ["p", 200],
          ["s", 300],
        ] as const)
          store.enqueue({ messageId: id, body: "{}", via: "http", thingId: "thing-1", now: at });
        store.markRejected("r", "the API answered 413 Payload Too Large", { status: 413, body: "too large" });
        store.markRetry("p", "ECONNREFUSED", 90_000);
        store.markSent("s", 400);
        const seen = {
          rejected: store.countRejected(),
          retried: store.retryOutbox(["r", "p", "s", "nope"], 5000, "thing-1"),
          r: store.getOutbox("r"),
          due: store.due(5000, 10).map((e) => e.message_id),
          dropped: store.dropOutbox(["s", "nope", "s"]),
          left: store.listOutbox().map((e) => [e.message_id, e.state]),
          rejectedAfter: store.countRejected(),
        };
        assert.deepEqual(seen.retried, { changed: ["r", "p"], missing: ["nope"], sent: ["s"] });
        assert.deepEqual(seen.r, {
          message_id: "r",
          body: "{}",
          via: "http",
          state: "pending",
          created_at: 100,
          attempts: 1,
          next_attempt_at: 5000,
          last_error: "the API answered 413 Payload Too Large",
          sent_at: null,
          response_status: 413,
          response_body: "too large",
          thing_id: "thing-1",
        });
        assert.deepEqual(seen.due, ["r", "p"]);
        assert.deepEqual(seen.dropped, { changed: ["s"], missing: ["nope", "s"], sent: [] });
        assert.deepEqual(seen.left, [
          ["r", "pending"],
          ["p", "pending"],
        ]);
        assert.equal(seen.rejected, 1);
        assert.equal(seen.rejectedAfter, 0);
        return seen;
      }),
  },
  {
    name: "MessageStore due: an entry scheduled beyond any backoff (a clock that went back) is due now",
    run: (ctx) =>
      withStore(ctx, (store) => {
        const now = 1_000_000_000;
        store.enqueue({ messageId: "backoff", body: "{}", via: "http", thingId: "thing-1", now, notBefore: now + 300_000 });
        store.enqueue({ messageId: "lease", body: "{}", via: "http", thingId: "thing-1", now, notBefore: now + 60_000 });
        store.enqueue({ messageId: "day-ahead", body: "{}", via: "http", thingId: "thing-1", now, notBefore: now + 86_400_000 });
        const seen = { due: store.due(now, 10).map((e) => e.message_id), dueMqtt: store.due(now, 10, "mqtt").length };
        assert.deepEqual(seen, { due: ["day-ahead"], dueMqtt: 0 });
        return seen;
      }),
  },
  {
    name: "MessageStore outbox by thing id: the pending rows another thing id queued, a page of ids at a time, set aside in one transaction; this thing's and NULL ones stay; a retry makes one this thing's",
    run: (ctx) =>
      withStore(ctx, (store) => {
        store.enqueue({ messageId: "old-b", body: "{}", via: "mqtt", thingId: "old", now: 20 });
        store.enqueue({ messageId: "old-a", body: "{}", via: "http", thingId: "old", now: 10 });
        store.enqueue({ messageId: "mine", body: "{}", via: "http", thingId: "new", now: 30 });
        store.db.run("INSERT INTO outbox (message_id, body, via, created_at, next_attempt_at) VALUES ('legacy', '{}', 'http', 40, 40)");
        store.enqueue({ messageId: "old-sent", body: "{}", via: "http", thingId: "old", now: 5 });
        store.markSent("old-sent", 6);
        const others = store.pendingOfOtherThings("new", 10).map((e) => [e.message_id, e.thing_id]);
        const firstPage = store.pendingOfOtherThings("new", 1).map((e) => e.message_id);
        store.markAllUnsendable(others.map(([id]) => ({ messageId: id!, error: `set aside ${id}` })));
        // the owner asks for one: it goes as this thing
        const retried = store.retryOutbox(["old-b"], 50, "new");
        const seen = { others, firstPage, retried, outbox: store.listOutbox().map((e) => [e.message_id, e.state, e.last_error, e.thing_id]) };
        assert.deepEqual(seen.firstPage, ["old-a"]);
        assert.deepEqual(seen.retried, { changed: ["old-b"], missing: [], sent: [] });
        assert.deepEqual(seen.others, [
          ["old-a", "old"],
          ["old-b", "old"],
        ]);
        assert.deepEqual(seen.outbox, [
          ["old-sent", "sent", null, "old"],
          ["old-a", "rejected", "set aside old-a", "old"],
          ["old-b", "pending", "set aside old-b", "new"],
          ["mine", "pending", null, "new"],
          ["legacy", "pending", null, null],
        ]);
        return seen;
      }),
  },
  {
    name: "MessageStore reads rows other programs wrote with odd types without failing the others",
    run: (ctx) =>
      withStore(ctx, (store) => {
        store.insertIngress({ topic: "ingress/t", payload: te.encode('{"good":1}'), qos: 1, retain: false, receivedAt: 1 });
        // SQLite keeps the type a writer gave: a number payload, a blob topic, a NULL outbox id
        store.db.run("INSERT INTO ingress_messages (topic, payload, qos, retain, received_at) VALUES (?, ?, 1, 0, 2)", [bytes(0x74, 0x2f, 0x62), 42]);
        store.db.run("INSERT INTO outbox (message_id, body, via, created_at, next_attempt_at) VALUES (NULL, ?, 'http', 3, 3)", ["{}"]);
        store.db.run("INSERT INTO outbox (message_id, body, via, created_at, next_attempt_at) VALUES ('blob', ?, 'mqtt', 4, 4)", [bytes(0xff, 0xfe)]);
        const ingress = store.listIngress().map((m) => [m.topic, m.payload]);
        store.markUnsendable(null, "the stored message id is not 1-200 visible ASCII characters");
        store.markUnsendable("blob", "the stored body is not UTF-8 text");
        const seen = {
          ingress,
          one: store.getIngress(2)!.payload,
          outbox: store.listOutbox().map((e) => [e.message_id, e.state, e.last_error, e.attempts]),
          due: store.due(10, 10).length,
        };
        assert.deepEqual(seen.ingress, [
          ["ingress/t", '{"good":1}'],
          ["t/b", "42"],
        ]);
        assert.equal(seen.one, "42");
        assert.deepEqual(seen.outbox, [
          [null, "rejected", "the stored message id is not 1-200 visible ASCII characters", 1],
          ["blob", "rejected", "the stored body is not UTF-8 text", 1],
        ]);
        assert.equal(seen.due, 0);
        return seen;
      }),
  },
  {
    name: "MessageStore reopens its file with the messages in it",
    run: (ctx) => {
      const file = join(ctx.dir, "data", "messages.db");
      let store = MessageStore.open(file, { open: ctx.open });
      store.insertIngress({ topic: "ingress/t", payload: bytes(0xc0, 0xff, 0), qos: 1, retain: false, receivedAt: 7 });
      store.enqueue({ messageId: "m", body: "{}", via: "http", thingId: "thing-1", now: 8 });
      store.close();
      store = MessageStore.open(file, { open: ctx.open });
      try {
        const seen = { ingress: store.listIngress(), pending: store.countPending(), journal: store.db.get("PRAGMA journal_mode") };
        assert.deepEqual(
          seen.ingress.map((m) => m.payload),
          [bytes(0xc0, 0xff, 0)],
        );
        assert.equal(seen.pending, 1);
        return seen;
      } finally {
        store.close();
      }
    },
  },
  {
    name: "downgradeThingDatabase takes the file back to each older schema exactly as its migrations make it, rows kept, and migrate brings it up again",
    run: (ctx) => {
      const latest = THING_MIGRATIONS.length;
      assert.equal(THING_DOWN_MIGRATIONS.length, latest, "every migration needs its entry in THING_DOWN_MIGRATIONS");
      // what an older binary compares (the columns) and what its next migrations must not find made (every object)
      const shape = (db: SqlDatabase) => ({
        version: db.get<{ user_version: number }>("PRAGMA user_version")!.user_version,
        objects: db
          .all<{ type: string; name: string; tbl_name: string }>(
            "SELECT type, name, tbl_name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND tbl_name != 'schema_compat' ORDER BY type, name",
          )
          .map((o) => `${o.type} ${o.name} on ${o.tbl_name}`),
        columns: db
          .all<{ t: string; c: string }>(
            "SELECT t.name AS t, c.name AS c FROM sqlite_schema AS t, pragma_table_info(t.name) AS c WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND t.name != 'schema_compat' ORDER BY t.name, c.cid",
          )
          .map((r) => `${r.t}.${r.c}`),
      });
      const seen: unknown[] = [];
      for (let to = 1; to < latest; to++) {
        const expected = withDb(ctx, (db, file) => (applyPragmas(db), migrate(db, THING_MIGRATIONS.slice(0, to), file), shape(db)), `fresh-${to}.db`);
        const file = join(ctx.dir, `down-${to}`, "messages.db");
        const store = MessageStore.open(file, { open: ctx.open });
        store.insertIngress({ topic: "t", payload: te.encode("kept"), qos: 1, retain: false, receivedAt: 1000, packetId: 7, messageId: "m1" });
        store.enqueue({ messageId: "o1", body: "{}", via: "http", thingId: "thing-1", now: 1000 });
        store.close();
        assert.equal(downgradeThingDatabase(file, to, { open: ctx.open }), latest);
        const after = withDb(
          ctx,
          (db) => ({
            ...shape(db),
            rows: db.all("SELECT topic, payload FROM ingress_messages").length,
            outbox: db.all("SELECT message_id FROM outbox").length,
          }),
          `down-${to}/messages.db`,
        );
        assert.deepEqual({ ...after, rows: undefined, outbox: undefined }, { ...expected, rows: undefined, outbox: undefined });
        assert.deepEqual([after.rows, after.outbox], [1, 1]);
        assert.equal(downgradeThingDatabase(file, to, { open: ctx.open }), to); // already there: nothing done
        // the next update migrates it again, finding nothing of what it makes already there
        assert.equal(
          withDb(ctx, (db, f) => (applyPragmas(db), migrate(db, THING_MIGRATIONS, f)), `down-${to}/messages.db`),
          latest,
        );
        seen.push(after);
      }
      const newer = join(ctx.dir, "newer", "messages.db");
      MessageStore.open(newer, { open: ctx.open }).close();
      withDb(ctx, (db) => db.exec(`PRAGMA user_version = ${latest + 1}`), "newer/messages.db");
      assert.throws(() => downgradeThingDatabase(newer, 1, { open: ctx.open }), /newer than this flashlex knows .*cannot take it back to 1/);
      assert.throws(() => downgradeThingDatabase(newer, 0, { open: ctx.open }), /cannot go back to schema version 0: this flashlex knows versions 1 to/);
      return seen;
    },
  },
  {
    name: "migrate tells beforeMigrating the version it migrates from, inside its transaction: a throw leaves the file as it was; a new or current file tells nothing",
    run: (ctx) =>
      withDb(ctx, (db, file) => {
        applyPragmas(db);
        const told: number[] = [];
        migrate(db, THING_MIGRATIONS, file, { beforeMigrating: (from) => void told.push(from) }); // new: nothing to go back to
        withDb(ctx, (old, f) => (applyPragmas(old), migrate(old, THING_MIGRATIONS.slice(0, 2), f)), "old.db");
        withDb(
          ctx,
          (old, f) => {
            assert.throws(
              () =>
                migrate(old, THING_MIGRATIONS, f, {
                  beforeMigrating: () => {
                    throw new Error("cannot note it");
                  },
                }),
              /cannot note it/,
            );
            assert.equal(old.get<{ user_version: number }>("PRAGMA user_version")!.user_version, 2);
            migrate(old, THING_MIGRATIONS, f, { beforeMigrating: (from) => void told.push(from) });
            migrate(old, THING_MIGRATIONS, f, { beforeMigrating: (from) => void told.push(from) }); // current
          },
          "old.db",
        );
        assert.deepEqual(told, [2]);
        return told;
      }),
  },
];

/** JSON that keeps what JSON loses (bigint, bytes), so observations from two runtimes compare exactly. */
export function encodeObservation(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return { bigint: v.toString() };
    if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString("hex") };
    return v;
  });
}

export function runCase(open: OpenSqlDatabase, c: ContractCase): ContractResult {
  const dir = mkdtempSync(join(tmpdir(), "flashlex-contract-"));
  try {
    return { name: c.name, ok: true, seen: encodeObservation(c.run({ open, dir })) };
  } catch (err) {
    return { name: c.name, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
