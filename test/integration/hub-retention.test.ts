/**
 * hub.yml `hub.messages.keepFor` with the compiled binary: `hub serve` deletes the messages stored
 * before it (rows written into the real hub.db, backdated, before the hub starts), keeps ingress
 * its thing has not acknowledged and what is newer, and says so in its log; a value below a day is
 * refused at start (78) naming the key and the file.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-hub-retention-"));
let fixture: HubFixture;
let thing: HubThing;

beforeAll(async () => {
  fixture = await makeHubFixture(work);
  thing = await fixture.createThing("keeper");
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Writes messages into hub.db as the hub stores them, `ageDays` old. */
function storeBackdated(rows: { id: string; type: "egress" | "ingress"; ageDays: number; delivery?: "pending" | "delivered" }[]): void {
  const db = new Database(join(fixture.dir, "hub.db"));
  try {
    const insert = db.query(
      "INSERT INTO messages (flmessagespk, thing_id, messagetype, payload, fltimestamp, datecreated, delivery) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    for (const row of rows) {
      const at = Date.now() - row.ageDays * 86_400_000;
      insert.run(
        row.id,
        thing.id,
        row.type,
        JSON.stringify({ message: row.id }),
        Math.floor(at / 1000),
        new Date(at).toISOString(),
        row.type === "ingress" ? row.delivery! : null,
      );
    }
  } finally {
    db.close();
  }
}

describe("hub message retention (hub.yml messages.keepFor)", () => {
  test("a value below a day, a number without a unit, a bare `messages:` or one without keepFor is refused at start: 78, one line naming the key and hub.yml and what to write", async () => {
    // the key path set, its value, the key the error names, and what it says was found there (new-user pass 23, F10)
    const cases: [string[], unknown, string, string][] = [
      [["messages"], { keepFor: "12h" }, "messages.keepFor", ' (it is "12h")'],
      [["messages", "keepFor"], 365, "messages.keepFor", " (it is 365)"],
      [["messages"], null, "messages", ""],
      [["messages"], { keepfor: "30d" }, "messages.keepFor", ""], // misspelt: without keepFor every message would be kept
    ];
    for (const [path, value, named, found] of cases) {
      fixture.configure([[path, value]]);
      const result = await run(["hub", "serve", "--dir", fixture.dir], { timeoutMs: 30_000 });
      expect(result.code).toBe(78);
      const lines = result.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`${join(fixture.dir, "hub.yml")}: hub.${named}: `);
      expect(lines[0]).toContain("a duration from 1d to 36500d, such as 365d");
      if (found) expect(lines[0]).toContain(`such as 365d${found}`);
    }
  });

  test("hub serve deletes what is older than keepFor, keeps pending ingress and newer messages, and logs the count", async () => {
    fixture.configure([[["messages"], { keepFor: "30d" }]]);
    storeBackdated([
      { id: "11111111-0000-4000-8000-000000000001", type: "egress", ageDays: 400 },
      { id: "11111111-0000-4000-8000-000000000002", type: "egress", ageDays: 31 },
      { id: "11111111-0000-4000-8000-000000000003", type: "ingress", ageDays: 40, delivery: "delivered" },
      { id: "11111111-0000-4000-8000-000000000004", type: "ingress", ageDays: 90, delivery: "pending" },
      { id: "11111111-0000-4000-8000-000000000005", type: "egress", ageDays: 29 },
      { id: "11111111-0000-4000-8000-000000000006", type: "ingress", ageDays: 1, delivery: "delivered" },
    ]);
    const hub = await fixture.serve();
    try {
      expect(await hub.waitFor(/hub\.started .*messages_kept_for=30d/, 30_000)).toBeTruthy();
      await hub.waitFor(/hub\.messages_expired count=3 stored_before=\d{4}-/, 30_000);
      expect((await fixture.egress(thing.id)).map((m) => m.flmessagespk)).toStrictEqual(["11111111-0000-4000-8000-000000000005"]);
      expect((await fixture.ingress(thing.id)).map((m) => m.flmessagespk)).toStrictEqual([
        "11111111-0000-4000-8000-000000000004",
        "11111111-0000-4000-8000-000000000006",
      ]);
    } finally {
      expect(await hub.stop()).toBe(0);
    }
  }, 60_000);
});
