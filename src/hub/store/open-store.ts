import type { HubDatabase } from "./database-url.ts";
import type { HubStore } from "./hub-store.ts";
import { openPostgresHubSql } from "./postgres-driver.ts";
import { sqlHubStore } from "./sql-hub-store.ts";
import { openSqliteHubSql } from "./sqlite-driver.ts";

/**
 * Opens the hub store on the database `db` names (database-url.ts), migrating it as needed:
 * SQLite (the default, hub.db in the hub home) or PostgreSQL. A bare string is a SQLite file
 * (tests, and callers that know the file). Only `hub init` passes `create`: SQLite then makes the
 * file, PostgreSQL wants a database that holds no hub yet. Throws what the driver throws
 * (sqlite-driver.ts, postgres-driver.ts): ConfigError (78), FlashlexError `unavailable` (69), I/O kinds.
 */
export async function openHubStore(db: HubDatabase | string, options: { create?: boolean } = {}): Promise<HubStore> {
  const target: HubDatabase = typeof db === "string" ? { kind: "sqlite", file: db, display: db } : db;
  const sql = target.kind === "sqlite" ? openSqliteHubSql(target.file, options) : await openPostgresHubSql(target, options);
  return sqlHubStore(sql);
}
