/**
 * A damaged or foreign message database is refused with a one-line error naming the file and
 * the exit code documented for its kind, and it is left exactly as it was: byte-identical, no
 * -wal/-shm/-journal (or wasm lock directory) left that was not there. Both SQLite drivers.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exitCodeOf } from "../../src/cli/exit-codes.ts";
import { toFlashlexError } from "../../src/shared/foreign-errors.ts";
import { openBunSqlite } from "../../src/shared/sqlite/bun-sqlite.ts";
import type { OpenSqlDatabase } from "../../src/shared/sqlite/driver.ts";
import { openWasmSqlite } from "../../src/shared/sqlite/wasm-sqlite.ts";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { DAMAGE_KINDS, GOOD_ROW_COUNT } from "../support/damaged-databases.ts";
import { tally } from "../support/tally.ts";

const root = mkdtempSync(join(tmpdir(), "flashlex-refusals-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const drivers: Record<string, OpenSqlDatabase> = { "bun:sqlite": openBunSqlite, "node-sqlite3-wasm": openWasmSqlite };

for (const [driver, open] of Object.entries(drivers)) {
  describe(`a damaged or foreign database, ${driver}`, () => {
    DAMAGE_KINDS.forEach((kind, i) => {
      test(`${kind.name}: ${kind.exitCode === 0 ? "opens (SQLite's recovery)" : `exit ${kind.exitCode}`}, file untouched`, () => {
        const dir = join(root, `${driver.replace(/\W/g, "")}-${i}`);
        mkdirSync(dir);
        const file = join(dir, "subscription.db");
        kind.make(file);
        const before = readFileSync(file);
        const filesBefore = readdirSync(dir).sort();
        let outcome = 0;
        let message = "";
        try {
          const store = MessageStore.open(file, { open });
          try {
            expect(store.listIngress({ state: "all" }).length).toBe(GOOD_ROW_COUNT);
          } finally {
            store.close();
          }
        } catch (err) {
          const error = toFlashlexError(err);
          outcome = exitCodeOf(error);
          message = error.message;
        }
        tally("badInputs");
        expect({ outcome, message: outcome ? message : "" }).toEqual({ outcome: kind.exitCode, message: expect.stringMatching(kind.says) });
        if (kind.exitCode !== 0) {
          expect(message).toStartWith(`${file}: `);
          expect(message).not.toContain("\n");
          expect(readFileSync(file).equals(before)).toBe(true);
          expect(readdirSync(dir).sort()).toEqual(filesBefore);
        } else {
          // recovery discards the garbage WAL; the main file is not written
          expect(readFileSync(file).equals(before)).toBe(true);
          expect(readdirSync(dir).sort()).toEqual(["subscription.db"]);
        }
      });
    });
  });
}
