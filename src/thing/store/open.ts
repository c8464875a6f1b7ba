import { join } from "node:path";
import type { Logger } from "../../shared/log.ts";
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
