import type { Logger } from "../../shared/log.ts";
import type { HubDatabase } from "./database-url.ts";
import type { HubStore } from "./hub-store.ts";
import { HUB_READABLE_FROM } from "./migrations.ts";
import { openPostgresHubSql } from "./postgres-driver.ts";
import type { HubOpenOptions } from "./sql.ts";
import { sqlHubStore } from "./sql-hub-store.ts";
import { openSqliteHubSql } from "./sqlite-driver.ts";

/**
 * Opens the hub store on the database `db` names (database-url.ts), migrating it as needed:
 * SQLite (the default, hub.db in the hub home) or PostgreSQL. A bare string is a SQLite file
 * (tests, and callers that know the file). Only `hub init` passes `create`: SQLite then makes the
 * file, PostgreSQL wants a database that holds no hub yet. Throws what the driver throws
 * (sqlite-driver.ts, postgres-driver.ts): ConfigError (78), FlashlexError `unavailable` (69), I/O kinds.
 * With `log`, a migration of an older database is one WARN, `hub.database_migrated`.
 */
export async function openHubStore(db: HubDatabase | string, options: { create?: boolean; log?: Logger } = {}): Promise<HubStore> {
  const target: HubDatabase = typeof db === "string" ? { kind: "sqlite", file: db, display: db } : db;
  const { log } = options;
  const opening: HubOpenOptions = {
    create: options.create,
    // once per upgrade, whichever command opened the database first (a listing too): the way back is now a backup
    migrated: log
      ? (from, to) =>
          log.warn("hub.database_migrated", {
            database: target.display,
            from,
            to,
            readableFrom: HUB_READABLE_FROM,
            note: `a flashlex hub that knows only a schema older than ${HUB_READABLE_FROM} cannot open it now; to go back to one, restore the backup made before the upgrade`,
          })
      : undefined,
  };
  const sql = target.kind === "sqlite" ? openSqliteHubSql(target.file, opening) : await openPostgresHubSql(target, opening);
  return sqlHubStore(sql);
}
