import type { OpenSqlDatabase } from "./driver.ts";
import { openWasmSqlite } from "./wasm-sqlite.ts";

/**
 * Stands in for open.ts in the Node (armv7) bundle (scripts/bundle-node.ts swaps it in), so the
 * bundle never imports `bun:sqlite`. Same export, other driver.
 */
export const openSqlDatabase: OpenSqlDatabase = openWasmSqlite;
