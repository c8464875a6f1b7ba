/**
 * A failing hub database is classified the same way on every path: StoreFailure (what the
 * collect route and the MQTT egress wrap their store calls in) carries the kind of what the
 * driver threw, and a store call that gets no answer fails as `unavailable` (postgres-driver.ts).
 */
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { parseHubDatabase } from "../../src/hub/store/database-url.ts";
import { fromStore, isThingNameTaken, StoreFailure } from "../../src/hub/store/hub-store.ts";
import { postgresError, withDeadline } from "../../src/hub/store/postgres-driver.ts";
import { type ErrorKind, FlashlexError } from "../../src/shared/errors.ts";
import { toFlashlexError } from "../../src/shared/foreign-errors.ts";

const db = parseHubDatabase("postgres://flashlex:secret-pw@127.0.0.1:5432/hub", "hub.db", "--db");
if (db.kind !== "postgres") throw new Error("not postgres");

/** What bun:sqlite throws for `sql` on `sqlite`; the test fails when the statement succeeds. */
function sqliteFailure(sqlite: Database, sql: string): unknown {
  try {
    sqlite.run(sql);
  } catch (err) {
    return err;
  }
  throw new Error(`no failure: ${sql}`);
}

describe("store failures", () => {
  test("StoreFailure keeps the driver's kind: a stopped PostgreSQL is `unavailable`, not `bug`", async () => {
    const down = new FlashlexError("PostgreSQL at 127.0.0.1:5432: connection refused", "unavailable");
    const err = await fromStore(() => Promise.reject(down)).catch((e) => e);
    expect(err).toBeInstanceOf(StoreFailure);
    expect(err).toBeInstanceOf(FlashlexError);
    expect((err as FlashlexError).kind).toBe("unavailable");
    expect(new StoreFailure(new Error("something odd")).kind).toBe("bug");
  });

  test("a store call that never answers fails as `unavailable` at its deadline, naming the server, not the password", async () => {
    const err = await withDeadline(new Promise(() => {}), db, "a statement", 20).catch((e) => e);
    expect(err).toBeInstanceOf(FlashlexError);
    expect((err as FlashlexError).kind).toBe("unavailable");
    expect((err as Error).message).toContain("127.0.0.1:5432");
    expect((err as Error).message).not.toContain("secret-pw");
    expect(await withDeadline(Promise.resolve(7), db, "a statement", 1_000)).toBe(7);
  });

  test("the server's own refusals get a kind by their SQLSTATE, not `bug`; a statement's own fault still passes through", () => {
    // what Bun's SQL client throws for a server error: the SQLSTATE in errno
    const serverError = (errno: string, message: string) => Object.assign(new Error(message), { code: "ERR_POSTGRES_SERVER_ERROR", errno });
    const cases: [string, string, ErrorKind | undefined][] = [
      ["25006", "cannot execute INSERT in a read-only transaction", "read-only"],
      ["53100", "could not extend file: No space left on device", "full"],
      ["40P01", "deadlock detected", "try-later"],
      ["40001", "could not serialize access due to concurrent update", "try-later"],
      ["55P03", "could not obtain lock on row", "try-later"],
      ["57014", "canceling statement due to statement timeout", "try-later"],
      ["XX001", "invalid page in block 7", "damaged"],
      ["58030", "could not read block 7", "io"],
      ["P0001", "no messages today", "io"],
      ["42501", "permission denied for table messages", "permission"],
      ["57P01", "terminating connection due to administrator command", "unavailable"],
      ["23505", "duplicate key value violates unique constraint", undefined],
      ["42P01", 'relation "things" does not exist', "config"],
      ["25P03", "terminating connection due to idle-in-transaction timeout", "try-later"],
      ["23514", 'new row for relation "things" violates check constraint "small"', "io"],
      ["42601", 'syntax error at or near "SELEC"', undefined],
      ["22012", "division by zero", undefined],
    ];
    for (const [errno, message, kind] of cases) {
      const raw = serverError(errno, message);
      const made = postgresError(raw, db);
      if (kind === undefined) {
        expect(made, errno).toBe(raw);
        continue;
      }
      expect(made, errno).toBeInstanceOf(FlashlexError);
      expect((made as FlashlexError).kind, errno).toBe(kind);
      expect((made as Error).message, errno).toContain(`${message}`);
      expect((made as Error).message, errno).toContain("127.0.0.1:5432");
      expect((made as Error).message, errno).not.toContain("secret-pw");
      expect(new StoreFailure(made).kind, errno).toBe(kind);
    }
  });

  test("an error raised inside a routine of the database (a trigger or function its administrator added) is its refusal (io), whatever code it chose", () => {
    const raised = Object.assign(new Error("refused by admin"), {
      code: "ERR_POSTGRES_SERVER_ERROR",
      errno: "U0001",
      where: "PL/pgSQL function r() line 1 at RAISE",
    });
    const made = postgresError(raised, db) as FlashlexError;
    expect(made.kind).toBe("io");
    expect(made.message).toBe(
      "PostgreSQL at 127.0.0.1:5432 (postgres://flashlex@127.0.0.1:5432/hub): the database refused the statement (PL/pgSQL function r() line 1 at RAISE): refused by admin (U0001)",
    );
    // the same code from the hub's own statement (no routine) is still the hub's to answer for
    expect(postgresError(Object.assign(new Error("division by zero"), { errno: "22012" }), db)).toBeInstanceOf(Error);
    expect(postgresError(Object.assign(new Error("division by zero"), { errno: "22012", where: 'SQL function "f" statement 1' }), db)).toBeInstanceOf(
      FlashlexError,
    );
    // a value the hub's own statement bound: its fault, not the database's refusal
    const bound = Object.assign(new Error('invalid input syntax for type bigint: "abc"'), { errno: "22P02", where: "unnamed portal parameter $1 = '...'" });
    expect(postgresError(bound, db)).toBe(bound);
  });

  test("isThingNameTaken: by the driver's code and the things.name constraint, through wrappers, never by words in the message", () => {
    const sqlite = new Database(":memory:");
    sqlite.exec(
      "CREATE TABLE things (name TEXT UNIQUE); CREATE TABLE audit (day TEXT PRIMARY KEY); INSERT INTO things VALUES ('a'); INSERT INTO audit VALUES ('d')",
    );
    const failure = (sql: string) => sqliteFailure(sqlite, sql);
    const taken = failure("INSERT INTO things VALUES ('a')");
    expect(isThingNameTaken(taken)).toBe(true);
    expect(isThingNameTaken(new StoreFailure(taken))).toBe(true);
    // another table's key (a trigger someone added that writes an audit row per thing): not a name taken
    expect(isThingNameTaken(failure("INSERT INTO audit VALUES ('d')"))).toBe(false);
    const pgUnique = (extra: object) =>
      Object.assign(new Error("duplicate key value violates unique constraint"), { code: "ERR_POSTGRES_SERVER_ERROR", errno: "23505", ...extra });
    expect(isThingNameTaken(pgUnique({ constraint: "things_name_key" }))).toBe(true);
    expect(isThingNameTaken(pgUnique({ constraint: "things_pkey" }))).toBe(false);
    expect(isThingNameTaken(pgUnique({ constraint: "audit_pkey", where: "SQL statement ...\nPL/pgSQL function audit() line 3 at SQL statement" }))).toBe(false);
    expect(isThingNameTaken(postgresError(pgUnique({ constraint: "things_name_key", where: "PL/pgSQL function copy() line 2 at SQL statement" }), db))).toBe(
      false,
    );
    // a lock timeout on a database whose name says "unique": not a name taken
    const unique = parseHubDatabase("postgres://flashlex@127.0.0.1:5432/unique_hub", "hub.db", "--db");
    if (unique.kind !== "postgres") throw new Error("not postgres");
    const timeout = postgresError(Object.assign(new Error("canceling statement due to lock timeout"), { errno: "55P03" }), unique);
    expect((timeout as Error).message).toContain("unique_hub");
    expect(isThingNameTaken(timeout)).toBe(false);
    expect(isThingNameTaken(new Error("UNIQUE constraint failed: things.name, says the trigger"))).toBe(false);
    expect(isThingNameTaken(undefined)).toBe(false);
  });

  test("SQLite: a trigger's RAISE(ABORT) is the database's refusal (io), other constraint failures stay the hub's bug", () => {
    const sqlite = new Database(":memory:");
    sqlite.exec("CREATE TABLE t (x INTEGER NOT NULL); CREATE TRIGGER no BEFORE INSERT ON t WHEN new.x = 7 BEGIN SELECT RAISE(ABORT, 'no sevens'); END");
    const failure = (sql: string) => toFlashlexError(sqliteFailure(sqlite, sql));
    expect([failure("INSERT INTO t VALUES (7)").kind, failure("INSERT INTO t VALUES (7)").message]).toEqual([
      "io",
      "a trigger in the database refused the statement: no sevens (SQLITE_CONSTRAINT_TRIGGER)",
    ]);
    expect(failure("INSERT INTO t VALUES (NULL)").kind).toBe("bug");
  });
});
