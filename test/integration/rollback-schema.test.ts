/**
 * A rollback hands the previous binary a database it opens (new-user pass 25, F1). A flashlex from
 * before schema_compat (1 Dec 2026) compares the tables and columns exactly and refuses a newer
 * schema with 78, which the unit does not restart: a trial that failed for any reason left the
 * device stopped. Here a thing's database is planted at schema 3 as such a binary leaves it, an
 * update is pending, and the compiled binary on trial migrates it (noting schema 3) and is then
 * rolled back both ways:
 *
 *   1. by itself (serve's updater: the release's binary says another version): serve exits 3 and,
 *      its database closed, takes the file back to schema 3;
 *   2. by the update guard at the third start (a binary that cannot stay up), which runs the binary
 *      on trial's `restore-schema` before it puts the previous binary back; the migration was a
 *      `messages list`, not serve.
 *
 * Both end with the file exactly what migrations 1..3 make, and its rows kept. Between the restore
 * and the binary's swap, a command of the binary on trial does not migrate the file again.
 */
import { Database } from "bun:sqlite";
import { beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { applyPragmas, migrate } from "../../src/shared/sqlite/migrate.ts";
import { openSqlDatabase } from "../../src/shared/sqlite/open.ts";
import { THING_MIGRATIONS } from "../../src/thing/store/message-store.ts";
import { writeGuard } from "../../src/thing/update/guard.ts";
import { markerPaths, readRolledBack, writePending } from "../../src/thing/update/marker.ts";
import { binaryPath, run, start } from "../support/binary.ts";
import { type HubFixture, makeHubFixture } from "../support/hub-fixture.ts";
import { scratchDir } from "../support/scratch.ts";

const OLD_SCHEMA = 3;
const PREVIOUS = "#!/bin/sh\n# the previous binary\nexit 0\n";
let hub: HubFixture;

beforeAll(async () => {
  hub = await makeHubFixture(scratchDir("flashlex-rollback-schema-"));
}, 60_000);

/** Tables, indexes and columns (schema_compat aside: a binary from before it has none), and the version. */
function shape(file: string) {
  const db = new Database(file, { readonly: true });
  try {
    const objects = db
      .query("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite%' AND tbl_name != 'schema_compat' ORDER BY type, name")
      .all() as { type: string; name: string }[];
    const columns = db
      .query(
        "SELECT t.name AS t, c.name AS c FROM sqlite_schema AS t, pragma_table_info(t.name) AS c WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite%' AND t.name != 'schema_compat' ORDER BY t.name, c.cid",
      )
      .all() as { t: string; c: string }[];
    const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
    return { version, objects: objects.map((o) => `${o.type} ${o.name}`), columns: columns.map((c) => `${c.t}.${c.c}`) };
  } finally {
    db.close();
  }
}

function rowCounts(file: string) {
  const db = new Database(file, { readonly: true });
  try {
    const count = (table: string) => (db.query(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { ingress: count("ingress_messages"), outbox: count("outbox") };
  } finally {
    db.close();
  }
}

/** What migrations 1..OLD_SCHEMA make, in a file of its own. */
function oldShape(dir: string) {
  const file = join(dir, "reference.db");
  const db = openSqlDatabase(file);
  applyPragmas(db);
  migrate(db, THING_MIGRATIONS.slice(0, OLD_SCHEMA), file);
  db.close();
  return shape(file);
}

/**
 * A thing whose database is at OLD_SCHEMA as a binary from before schema_compat leaves it (one
 * message in, one queued out), its binary the compiled one, and an update to `version` pending.
 */
async function thingOnTrial(name: string, version: string) {
  const thing = await hub.createThing(name);
  const database = join(thing.dataDir, "subscription.db");
  mkdirSync(thing.dataDir, { recursive: true });
  const db = openSqlDatabase(database);
  applyPragmas(db);
  migrate(db, THING_MIGRATIONS.slice(0, OLD_SCHEMA), database);
  db.exec("DROP TABLE schema_compat");
  db.run("INSERT INTO ingress_messages (topic, payload, qos, received_at) VALUES ('t', x'6b657074', 1, 1000)");
  db.run("INSERT INTO outbox (message_id, body, via, created_at, next_attempt_at) VALUES ('o1', '{}', 'http', 1000, 1000)");
  db.close();
  const binary = join(thing.root, "flashlex");
  copyFileSync(binaryPath(), binary);
  chmodSync(binary, 0o755);
  const previous = join(thing.root, "flashlex.previous");
  writeFileSync(previous, PREVIOUS, { mode: 0o755 });
  const sha256 = new Bun.CryptoHasher("sha256").update(readFileSync(binary)).digest("hex");
  writePending(thing.dataDir, { version, from: "0.9.0", binary, previous, sha256 });
  return { thing, database, binary };
}

describe("a rollback takes the database back to the schema the previous binary knew (new-user pass 25, F1)", () => {
  test("serve on trial migrates (noting schema 3), rolls itself back, and once its database is closed takes the file back to 3, rows kept", async () => {
    const { thing, database, binary } = await thingOnTrial("schema-serve", "9.9.9-mislabeled");
    const expected = oldShape(thing.root);
    const served = await run(["serve", ...thing.flags], { command: [binary], timeoutMs: 60_000 });
    expect(served.code).toBe(3);
    expect(served.stderr).toContain("update.rolling_back");
    expect(served.stderr).toMatch(/WARN {2}update\.schema_restored .*from=5 to=3/);
    expect(shape(database)).toEqual(expected);
    expect(rowCounts(database)).toEqual({ ingress: 1, outbox: 1 });
    expect(existsSync(markerPaths(thing.dataDir).trialSchema)).toBe(false);
    expect(readFileSync(binary, "utf8")).toBe(PREVIOUS);
    expect(readRolledBack(thing.dataDir)?.reason).toContain("mislabeled");
  }, 90_000);

  test("a serve on trial that stops without rolling back (a plain SIGTERM) leaves the migrated file and the note, though a rolled-back note of an earlier update is still unreported (verify pass 31, F3)", async () => {
    const version = (await run(["version"])).stdout.match(/\d+\.\d+\.\d+\S*/)![0];
    const { thing, database, binary } = await thingOnTrial("schema-stop", version);
    writeFileSync(
      markerPaths(thing.dataDir).rolledBack,
      "FLASHLEX_UPDATE_VERSION='0.8.0'\nFLASHLEX_UPDATE_FROM='0.7.0'\nFLASHLEX_UPDATE_BINARY='/x'\nFLASHLEX_UPDATE_PREVIOUS='/y'\n",
    );
    const serve = start(["serve", ...thing.flags], { command: [binary] });
    await serve.waitFor(/update\.trial /, 30_000);
    expect(await serve.stop()).toBe(0);
    expect(serve.output()).not.toContain("update.schema_restored");
    expect(shape(database).version).toBe(THING_MIGRATIONS.length);
    expect(JSON.parse(readFileSync(markerPaths(thing.dataDir).trialSchema, "utf8")).version).toBe(OLD_SCHEMA);
  }, 90_000);

  test("the guard's third start has the binary on trial take the file back (restore-schema) before the previous binary is put back", async () => {
    const { thing, database, binary } = await thingOnTrial("schema-guard", "2.0.0-test");
    const expected = oldShape(thing.root);
    // the first command of the new binary to open the database migrates it, and notes what it was
    const listed = await run(["messages", "list", ...thing.flags], { command: [binary] });
    expect(listed.code).toBe(0);
    // and says so, once: the way back is the rollback's (new-user pass 25, F6)
    expect(listed.stderr).toMatch(/WARN +store\.migrated database=\S+subscription\.db from=3 to=5 readableFrom=4 note=/);
    expect(shape(database).version).toBe(THING_MIGRATIONS.length);
    expect(JSON.parse(readFileSync(markerPaths(thing.dataDir).trialSchema, "utf8"))).toEqual({ version: OLD_SCHEMA, database });
    writeGuard(thing.dataDir);
    writeFileSync(markerPaths(thing.dataDir).starts, "2\n");
    const guarded = Bun.spawnSync(["/bin/sh", markerPaths(thing.dataDir).guard], { stderr: "pipe", timeout: 60_000 });
    expect(guarded.exitCode).toBe(0);
    const said = guarded.stderr.toString();
    expect(said).toContain(`${database}: schema version 5 taken back to 3`);
    expect(said).toContain("the previous binary is back");
    expect(shape(database)).toEqual(expected);
    expect(rowCounts(database)).toEqual({ ingress: 1, outbox: 1 });
    expect(existsSync(markerPaths(thing.dataDir).trialSchema)).toBe(false);
    expect(readFileSync(binary, "utf8")).toBe(PREVIOUS);
  }, 90_000);

  test("between the restore and the swap, an application's command of the binary on trial does not migrate the file again: 75 (verify pass 31, F7)", async () => {
    const { thing, database, binary } = await thingOnTrial("schema-window", "2.0.0-test");
    const expected = oldShape(thing.root);
    expect((await run(["messages", "list", ...thing.flags], { command: [binary] })).code).toBe(0);
    const restored = await run(["restore-schema", "-d", thing.dataDir], { command: [binary] });
    expect(restored.stdout).toContain("schema version 5 taken back to 3");
    const again = await run(["messages", "list", ...thing.flags], { command: [binary] });
    expect(again.code).toBe(75);
    expect(again.stderr).toContain("the update on trial is being rolled back and its schema was taken back");
    expect(shape(database)).toEqual(expected);
    writeGuard(thing.dataDir);
    writeFileSync(markerPaths(thing.dataDir).starts, "2\n");
    const guarded = Bun.spawnSync(["/bin/sh", markerPaths(thing.dataDir).guard], { stderr: "pipe", timeout: 60_000 });
    expect(guarded.stderr.toString()).toContain(`${database}: already at schema version 3`);
    expect(readFileSync(binary, "utf8")).toBe(PREVIOUS);
    expect(shape(database)).toEqual(expected);
    expect(existsSync(markerPaths(thing.dataDir).trialSchema)).toBe(false);
  }, 90_000);
});
