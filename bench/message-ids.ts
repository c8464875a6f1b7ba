/**
 * Message ids, random (UUIDv4, `crypto.randomUUID`) against time-ordered (UUIDv7, the
 * project's `newMessageId`), on the hub's `messages` table as its migrations make it, with the
 * statements the hub runs (sql-hub-store.ts), bun:sqlite at `synchronous=FULL`:
 *
 * - a fan-out: 5,000 copies to 5,000 things in one commit (POST /publish);
 * - their delivered marks, 60 to a commit at `synchronous=NORMAL` (ingress-delivery.ts);
 * - 100 commits of 15 copies to different things (POST /things/{id}/publish, 32 in flight).
 *
 * Each run makes a new database, optionally holding `--prefill` older messages with ids of the
 * same kind (a hub some days into a busy fleet's life), then times `--rounds` rounds; runs
 * alternate v4 and v7. Prints each run's totals in ms. Not a test, not part of `npm run bench`.
 *
 * `bun bench/message-ids.ts [--prefill 1000000] [--rounds 4] [--runs 4] [--dir DIR]`
 */
import { Database } from "bun:sqlite";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SQLITE_MIGRATIONS } from "../src/hub/store/migrations.ts";
import { newMessageId } from "../src/protocol/ids.ts";

const { values } = parseArgs({
  options: {
    prefill: { type: "string", default: "0" },
    rounds: { type: "string", default: "4" },
    runs: { type: "string", default: "4" },
    dir: { type: "string", default: tmpdir() },
  },
});
const [prefill, rounds, runs] = [Number(values.prefill), Number(values.rounds), Number(values.runs)];
const THINGS = 5_000;
const work = mkdtempSync(join(values.dir, "flashlex-message-ids-"));

const INSERT = `INSERT INTO messages (flmessagespk, thing_id, messagetype, payload, fltimestamp, datecreated, delivery, delivered_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (flmessagespk) DO NOTHING`;
const MARK = "UPDATE messages SET delivery = 'delivered', delivered_at = ? WHERE flmessagespk = ? AND delivery = 'pending'";

/** One run's totals (ms) with ids from `newId`. */
function run(kind: string, newId: () => string): { fanOut: number; marks: number; small: number } {
  const file = join(work, `${kind}.db`);
  const db = new Database(file);
  try {
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL");
    for (const migration of SQLITE_MIGRATIONS) db.exec(migration);
    const things = Array.from({ length: THINGS }, () => randomUUID());
    const insert = db.query(INSERT);
    const mark = db.query(MARK);
    const now = Math.floor(Date.now() / 1000);
    for (let i = 0; i < prefill; i += 10_000) {
      db.transaction(() => {
        for (let j = i; j < Math.min(prefill, i + 10_000); j++)
          insert.run(newId(), things[j % THINGS]!, "egress", '{"t":21.5}', now - 86_400, "2026-12-01T00:00:00Z", null);
      })();
    }
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const totals = { fanOut: 0, marks: 0, small: 0 };
    const timed = (key: keyof typeof totals, fn: () => void) => {
      const started = performance.now();
      fn();
      totals[key] += performance.now() - started;
    };
    for (let r = 0; r < rounds; r++) {
      const ids = things.map(() => newId());
      timed("fanOut", () =>
        db
          .transaction(() => {
            for (const [i, id] of ids.entries()) insert.run(id, things[i]!, "ingress", '{"message":{"go":1}}', now, "2026-12-06T00:00:00Z", "pending");
          })
          .immediate(),
      );
      timed("marks", () => {
        for (let i = 0; i < ids.length; i += 60) {
          db.exec("PRAGMA synchronous = NORMAL");
          db.transaction(() => {
            for (const id of ids.slice(i, i + 60)) mark.run(Date.now(), id);
          }).immediate();
          db.exec("PRAGMA synchronous = FULL");
        }
      });
      timed("small", () => {
        for (let c = 0; c < 100; c++) {
          db.transaction(() => {
            for (let j = 0; j < 15; j++)
              insert.run(newId(), things[((c * 15 + j) * 7919) % THINGS]!, "ingress", '{"message":{"go":1}}', now, "2026-12-06T00:00:00Z", "pending");
          }).immediate();
        }
      });
    }
    return totals;
  } finally {
    db.close();
    for (const suffix of ["", "-wal", "-shm"]) rmSync(file + suffix, { force: true });
  }
}

try {
  console.log(`${rounds} rounds per run on a table of ${prefill} messages; ms per run: fan-out commits, delivered marks, 100 commits of 15`);
  for (let i = 0; i < runs; i++) {
    for (const [kind, newId] of [
      ["v4", () => randomUUID()],
      ["v7", newMessageId],
    ] as const) {
      const t = run(kind, newId);
      console.log(`${kind}: ${t.fanOut.toFixed(0)}  ${t.marks.toFixed(0)}  ${t.small.toFixed(0)}`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
