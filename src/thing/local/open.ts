import type { Logger } from "../../shared/log.ts";
import type { ThingIdentity } from "../identity.ts";
import type { ThingConfig } from "../settings.ts";
import { databaseState, legacyStoreOf, openThingStore } from "../store/open.ts";
import type { ThingAccess } from "./access.ts";
import { withCheckedArguments } from "./arguments.ts";
import { runningServeAccess } from "./client.ts";
import { databaseAccess } from "./in-process.ts";

/**
 * The thing's data for a command or the SDK: through the running serve when there is one, else
 * the database opened here. `identity` is loaded only when something needs it (reading messages
 * does not), and always before collect touches the outbox; pass one already loaded to skip
 * reading the files again. Every call's arguments are checked first, the same way on both paths
 * (arguments.ts: a wrong one is a UsageError, 64). `existing` (reading or changing what is
 * stored): a database not made yet answers as an empty one, and none is made; one missing
 * anywhere but a thing's data directory is a UsageError (64, databaseState). Throws what opening
 * the database throws (74, 75, 78).
 */
export async function openThingAccess(config: ThingConfig, log: Logger, identity?: ThingIdentity, options: { existing?: boolean } = {}): Promise<ThingAccess> {
  const served = await runningServeAccess(config.dataDir);
  if (served) return served;
  // reading or changing what is stored never makes the database (databaseState)
  if (options.existing && databaseState(config.paths.database, { legacy: legacyStoreOf(config) }) === "not yet") return withCheckedArguments(NO_DATABASE_YET);
  // node:crypto and the key files only when a collect needs them (a kept token needs neither: in-process.ts)
  const loadIdentity = async () => (await import("../identity.ts")).loadIdentity(config);
  return withCheckedArguments(databaseAccess(config, identity ?? loadIdentity, openThingStore(config, log), log));
}

/** The answers of a data directory whose database is not made yet: nothing stored, nothing made. */
export const NO_DATABASE_YET: ThingAccess = {
  via: "database",
  served: false,
  listMessages: async () => [],
  ackMessages: async () => [],
  deleteMessages: async () => [],
  collect: () => Promise.reject(new Error("collect makes the database: it never asks for an existing one")),
  listOutbox: async () => [],
  retryOutbox: async (ids) => ({ changed: [], missing: [...ids], sent: [] }),
  resendOutbox: async () => ({ changed: [], missing: [], sent: [] }),
  dropOutbox: async (ids) => ({ changed: [], missing: [...ids], sent: [] }),
  close: () => {},
};
