import { ConfigError } from "../../shared/errors.ts";
import type { HubDatabase } from "./database-url.ts";
import type { HubSql } from "./sql.ts";

/**
 * What the Node (armv7) build has instead of postgres-driver.ts (scripts/bundle-node.ts swaps it
 * in): Node has no Bun SQL client, so a PostgreSQL database is refused in so many words
 * (ConfigError, 78) rather than failing on a missing module.
 */
export async function openPostgresHubSql(db: Extract<HubDatabase, { kind: "postgres" }>, _options: { create?: boolean } = {}): Promise<HubSql> {
  throw new ConfigError(
    `${db.display}: this flashlex build (armv7, on Node) has no PostgreSQL client; run the hub on SQLite here (--db sqlite), or run it on an arm64 or x64 build for PostgreSQL`,
  );
}
