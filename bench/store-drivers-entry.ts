import { rmSync } from "node:fs";
import { openWasmSqlite } from "../src/shared/sqlite/wasm-sqlite.ts";
import { MessageStore } from "../src/thing/store/message-store.ts";

/**
 * One measurement run for bench/store-drivers.ts, in its own process so start-up is counted:
 * `ENTRY FILE ROWS full|normal [wasm]`. Under Bun it uses bun:sqlite unless told `wasm`; in the
 * Node bundle open.ts already is the wasm driver. Prints one JSON line.
 */
const loadedMs = performance.now(); // since process start: runtime, bundle and wasm compile
const [file, rowsArg = "5000", sync = "full", driver] = process.argv.slice(2);
if (!file) throw new Error("usage: ENTRY FILE [ROWS] [full|normal] [wasm]");
const rows = Number(rowsArg);
const options = driver === "wasm" ? { open: openWasmSqlite } : {};
rmSync(file, { force: true });

let t = performance.now();
let store = MessageStore.open(file, options);
const openFreshMs = performance.now() - t;
if (sync === "normal") store.db.exec("PRAGMA synchronous = NORMAL");

const payload = new TextEncoder().encode(JSON.stringify({ temperature: 21.5, humidity: 40, device: "pi-42", seq: 0 }));
const insertAll = () => {
  const started = performance.now();
  for (let i = 0; i < rows; i++) {
    // one commit each, as ingress does before every PUBACK
    store.insertIngress({ topic: "ingress/bench", payload, qos: 1, retain: false, receivedAt: Date.now() });
  }
  return performance.now() - started;
};
const insertMs = insertAll();
// the same again in the same process: a long-running serve sees this rate once the JIT has warmed up
const warmMs = insertAll();
store.close();

t = performance.now();
store = MessageStore.open(file, options);
const reopenMs = performance.now() - t;
const count = store.countIngress().total / 2;
store.close();

console.log(
  JSON.stringify({
    driver: store.db.driver,
    loadedMs,
    openFreshMs,
    insertMs,
    rowsPerSec: rows / (insertMs / 1000),
    warmRowsPerSec: rows / (warmMs / 1000),
    reopenMs,
    count,
  }),
);
