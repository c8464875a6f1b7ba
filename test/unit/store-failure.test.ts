/**
 * A failing hub database is classified the same way on every path: StoreFailure (what the
 * collect route and the MQTT egress wrap their store calls in) carries the kind of what the
 * driver threw, and a store call that gets no answer fails as `unavailable` (postgres-driver.ts).
 */
import { describe, expect, test } from "bun:test";
import { parseHubDatabase } from "../../src/hub/store/database-url.ts";
import { fromStore, StoreFailure } from "../../src/hub/store/hub-store.ts";
import { withDeadline } from "../../src/hub/store/postgres-driver.ts";
import { FlashlexError } from "../../src/shared/errors.ts";

const db = parseHubDatabase("postgres://flashlex:secret-pw@127.0.0.1:5432/hub", "hub.db", "--db");
if (db.kind !== "postgres") throw new Error("not postgres");

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
});
