import { join } from "node:path";
import type { ThingConfig } from "../config/load.ts";
import type { Logger } from "../log.ts";
import { MessageStore } from "../store/message-store.ts";
import { importPickleDb } from "../store/pickledb-import.ts";

/** Opens the thing's message database, taking in an old Python SDK store the first time. */
export function openThingStore(config: ThingConfig, log: Logger): MessageStore {
  const store = MessageStore.open(config.paths.database);
  try {
    const legacy = join(config.dataDir, config.yaml.app.db.subscriptionData);
    const imported = importPickleDb(store, legacy, config.yaml.thing.mqtt.ingress.topic);
    if (imported) log.info("store.imported_pickledb", { file: legacy, messages: imported, renamedTo: `${legacy}.imported` });
  } catch (err) {
    store.close();
    throw err;
  }
  return store;
}
