import { type Stats, statSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { danglingTarget, isNotThere } from "../../shared/path-exists.ts";
import type { ThingConfig } from "../settings.ts";
import { MessageStore } from "./message-store.ts";
import { importPickleDb, PickleDbUnreadable } from "./pickledb-import.ts";

/**
 * Opens the thing's message database, taking in an old Python SDK store the first time. An old
 * store that cannot be read does not stop the agent: it is left untouched (nothing in it is
 * lost) and every start says so, at ERROR, until the owner fixes or moves it.
 */
export function openThingStore(config: ThingConfig, log: Logger): MessageStore {
  const store = MessageStore.open(config.paths.database);
  const legacy = join(config.dataDir, config.yaml.app.db.subscriptionData);
  try {
    const result = importPickleDb(store, legacy, config.yaml.thing.mqtt.ingress.topic, (key, reason) =>
      log.warn("store.pickledb_entry_skipped", { file: legacy, key, reason, note: "kept in the renamed file" }),
    );
    if (result?.alreadyImported)
      log.warn("store.pickledb_already_imported", { file: legacy, renamedTo: result.renamedTo, note: "its messages were stored before: not again" });
    else if (result) log.info("store.imported_pickledb", { file: legacy, messages: result.messages, renamedTo: result.renamedTo });
  } catch (err) {
    // Only "not readable" is survivable: after a failed commit or rename, importing again
    // at the next start could store the messages twice, so those stop the start as before.
    if (!(err instanceof PickleDbUnreadable)) {
      store.close();
      throw err;
    }
    log.error("store.pickledb_unreadable", { file: legacy, error: err.message, note: "left untouched; the agent runs without it" });
  }
  return store;
}

/**
 * For the commands that read or change what is stored (`messages`, `outbox`, the SDKs' calls but
 * collect): a database that is not there is a wrong -d, never one to make. Opening it made an
 * empty database in any directory (`-d /tmp`), answered "no messages", and through a link to
 * nothing made the link's target. A file of no bytes is not one yet either (SQLite would make
 * it one). Throws UsageError (64) naming the file and `flag`; what cannot be looked at is left
 * to the open.
 */
export function requireDatabase(file: string, flag = "-d"): void {
  const advice = `serve makes it when it first runs; pass the data directory serve uses (${flag})`;
  const target = danglingTarget(file);
  if (target !== undefined) throw new UsageError(`${file}: a symbolic link to ${target}, which does not exist; ${advice}`);
  let stats: Stats | undefined;
  try {
    stats = statSync(file);
  } catch (err) {
    if (!isNotThere(err)) return;
  }
  if (stats === undefined) throw new UsageError(`${file}: no message database here; ${advice}`);
  if (stats.isFile() && stats.size === 0) throw new UsageError(`${file}: an empty file, not a message database; ${advice}`);
}
