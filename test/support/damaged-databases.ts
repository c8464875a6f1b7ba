/**
 * Ten ways a message database file goes wrong on a real device, each made for real on disk,
 * and the outcome FlashLex documents for each (README, "Exit codes"). Shared by the unit test
 * (both SQLite drivers, in process) and the integration test (the compiled binary).
 *
 * Every refusal leaves the file byte-identical and adds no -wal, -shm or -journal file.
 */
import { Database } from "bun:sqlite";
import { readFileSync, writeFileSync } from "node:fs";
import { MessageStore, THING_MIGRATIONS } from "../../src/thing/store/message-store.ts";

export interface DamageKind {
  name: string;
  /** writes the damaged file at `file` (its directory exists) */
  make(file: string): void;
  /** the exit code and a phrase of the one-line message; `0` means it opens (SQLite's own recovery) */
  exitCode: 0 | 74 | 78;
  says: RegExp;
}

const GOOD_ROWS = 300;

/** A healthy FlashLex database with `GOOD_ROWS` ingress messages, checkpointed into the main file. */
export function writeGoodDatabase(file: string): void {
  const store = MessageStore.open(file);
  const payload = new TextEncoder().encode("x".repeat(500));
  store.db.transaction(() => {
    for (let i = 0; i < GOOD_ROWS; i++) store.insertIngress({ topic: "ingress/t", payload, qos: 1, retain: false, receivedAt: i });
  });
  store.close();
}

function rewrite(file: string, edit: (bytes: Buffer) => Buffer): void {
  writeFileSync(file, edit(readFileSync(file)));
}

function foreignDatabase(file: string, opts: { wal?: boolean; userVersion?: number } = {}): void {
  const db = new Database(file);
  if (opts.wal) db.run("PRAGMA journal_mode = WAL");
  if (opts.userVersion) db.run(`PRAGMA user_version = ${opts.userVersion}`);
  db.run("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT NOT NULL, taken_at INTEGER)");
  db.run("INSERT INTO photos (path, taken_at) VALUES ('/home/pi/a.jpg', 1), ('/home/pi/b.jpg', 2)");
  db.close();
}

export const DAMAGE_KINDS: DamageKind[] = [
  {
    name: "truncated to half its size",
    make: (f) => (writeGoodDatabase(f), rewrite(f, (b) => b.subarray(0, Math.floor(b.length / 2)))),
    exitCode: 74,
    says: /damaged.*SQLITE_CORRUPT/,
  },
  {
    name: "its 100-byte header zeroed",
    make: (f) => (writeGoodDatabase(f), rewrite(f, (b) => b.fill(0, 0, 100))),
    exitCode: 74,
    says: /not a SQLite database.*SQLITE_NOTADB/,
  },
  {
    name: "random bytes",
    make: (f) => writeFileSync(f, Buffer.from(Array.from({ length: 16_384 }, (_, i) => (Math.imul(i + 1, 2654435761) >>> 11) & 0xff))),
    exitCode: 74,
    says: /not a SQLite database.*SQLITE_NOTADB/,
  },
  {
    name: "a text file (a YAML config saved under the database's name)",
    make: (f) => writeFileSync(f, readFileSync(new URL("../fixtures/guide-config.yml", import.meta.url))),
    exitCode: 74,
    says: /not a SQLite database.*SQLITE_NOTADB/,
  },
  {
    name: "empty but not zero bytes (4 KiB of zeros, as a crashed preallocation leaves)",
    make: (f) => writeFileSync(f, Buffer.alloc(4096)),
    exitCode: 74,
    says: /not a SQLite database.*SQLITE_NOTADB/,
  },
  {
    name: "a valid SQLite database of another application (other tables)",
    make: (f) => foreignDatabase(f),
    exitCode: 78,
    says: /not a FlashLex database \(it holds other tables: photos\)/,
  },
  {
    name: "a schema newer than this binary (user_version 99)",
    make: (f) => {
      writeGoodDatabase(f);
      const db = new Database(f);
      db.run("PRAGMA user_version = 99");
      db.close();
    },
    exitCode: 78,
    says: /schema version 99 is newer than this flashlex knows.*put the database back as it was before the upgrade/,
  },
  {
    name: "the current schema version with a table changed by hand (a column added)",
    make: (f) => {
      writeGoodDatabase(f);
      const db = new Database(f);
      db.run("ALTER TABLE session_state ADD COLUMN note TEXT");
      db.close();
    },
    exitCode: 78,
    says: new RegExp(
      `table session_state has columns \\(key, value, note\\), not those of schema version ${THING_MIGRATIONS.length} \\(key, value\\).*changed by hand`,
    ),
  },
  {
    name: "a damaged page in the middle",
    make: (f) => (
      writeGoodDatabase(f),
      rewrite(f, (b) => {
        const pageSize = b.readUInt16BE(16);
        const page = Math.floor(b.length / pageSize / 2);
        return b.fill(0xa5, page * pageSize, (page + 1) * pageSize);
      })
    ),
    exitCode: 74,
    says: /damaged.*SQLITE_CORRUPT/,
  },
  {
    // What a power cut mid-write leaves; SQLite ignores a WAL whose header and checksums do not
    // match (its crash recovery), so the database opens as of its last checkpoint.
    name: "a WAL file full of garbage beside a good database",
    make: (f) => (writeGoodDatabase(f), writeFileSync(`${f}-wal`, Buffer.alloc(10_000, 0x5a))),
    exitCode: 0,
    says: /^$/,
  },
  {
    name: "an ingress table with the wrong columns at the current schema version",
    make: (f) => {
      const db = new Database(f);
      db.run("CREATE TABLE ingress_messages (id INTEGER PRIMARY KEY, body TEXT)");
      db.run("CREATE TABLE outbox (message_id TEXT PRIMARY KEY)");
      db.run(`PRAGMA user_version = ${THING_MIGRATIONS.length}`);
      db.close();
    },
    exitCode: 78,
    says: new RegExp(`table ingress_messages has columns \\(id, body\\), not those of schema version ${THING_MIGRATIONS.length}`),
  },
];

export const GOOD_ROW_COUNT = GOOD_ROWS;
