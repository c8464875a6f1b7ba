import { openBunSqlite } from "./bun-sqlite.ts";
import type { OpenSqlDatabase } from "./driver.ts";

/**
 * The driver this build uses. The Node (armv7) build replaces this module at bundle time with
 * one that returns the WebAssembly driver, so nothing else knows which SQLite it runs on.
 */
export const openSqlDatabase: OpenSqlDatabase = openBunSqlite;
