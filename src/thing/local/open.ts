import type { Logger } from "../../shared/log.ts";
import type { ThingIdentity } from "../identity.ts";
import { loadIdentity } from "../identity.ts";
import type { ThingConfig } from "../settings.ts";
import { openThingStore, requireDatabase } from "../store/open.ts";
import type { ThingAccess } from "./access.ts";
import { withCheckedArguments } from "./arguments.ts";
import { runningServeAccess } from "./client.ts";
import { databaseAccess } from "./in-process.ts";

/**
 * The thing's data for a command or the SDK: through the running serve when there is one, else
 * the database opened here. `identity` is loaded only when something needs it (reading messages
 * does not), and always before collect touches the outbox; pass one already loaded to skip
 * reading the files again. Every call's arguments are checked first, the same way on both paths
 * (arguments.ts: a wrong one is a UsageError, 64). `existing`: only a database that is there
 * (requireDatabase: UsageError, 64). Throws what opening the database throws (74, 75, 78).
 */
export async function openThingAccess(config: ThingConfig, log: Logger, identity?: ThingIdentity, options: { existing?: boolean } = {}): Promise<ThingAccess> {
  const served = await runningServeAccess(config.dataDir);
  if (served) return served;
  // reading or changing what is stored: a database that is not there is a wrong -d, not one to make
  if (options.existing) requireDatabase(config.paths.database);
  return withCheckedArguments(databaseAccess(config, identity ?? (() => loadIdentity(config)), openThingStore(config, log), log));
}
