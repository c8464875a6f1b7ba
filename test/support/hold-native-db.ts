import { openBunSqlite } from "../../src/shared/sqlite/bun-sqlite.ts";

/** Holds a database open with bun:sqlite (native SQLite, WAL) until killed: the other side of hold-wasm-db.ts. */
const db = openBunSqlite(process.argv[2]!);
db.exec("PRAGMA journal_mode = WAL");
db.exec("CREATE TABLE IF NOT EXISTS held (v)");
db.run("INSERT INTO held VALUES (?)", ["native"]);
process.stdout.write("ready\n");
setInterval(() => db.get("SELECT 1"), 60_000);
