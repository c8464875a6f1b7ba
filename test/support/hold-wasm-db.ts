import { openWasmSqlite } from "../../src/shared/sqlite/wasm-sqlite.ts";

/** Holds a database open with the wasm driver until killed: the live lock holder in store-contract.test.ts. */
const db = openWasmSqlite(process.argv[2]!);
db.exec("CREATE TABLE IF NOT EXISTS held (v)");
process.stdout.write("ready\n");
setInterval(() => db.get("SELECT 1"), 60_000);
