import { openSqlDatabase } from "../../src/shared/sqlite/open.ts";
import { runCase, storeContract } from "./store-contract.ts";

/**
 * Entry for the Node run of the store contract: bundled by scripts/bundle-node.ts, where open.ts
 * becomes the wasm driver, then run by `node`; prints one JSON line for the Bun test to judge.
 */
const probe = openSqlDatabase(":memory:");
const driver = probe.driver;
probe.close();
const results = storeContract.map((c) => runCase(openSqlDatabase, c));
process.stdout.write(
  `${JSON.stringify({ driver, runtime: `node ${process.version}`, bun: typeof (globalThis as { Bun?: unknown }).Bun !== "undefined", results })}\n`,
);
