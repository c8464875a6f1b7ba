import { join } from "node:path";
import type { ThingConfig } from "../config/load.ts";
import type { Logger } from "../log.ts";
import { MessageStore } from "../store/message-store.ts";
import { importPickleDb } from "../store/pickledb-import.ts";
import type { SessionMemory } from "./session.ts";

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

/** The MQTT session's memory (what the broker's session holds), kept in the message database. */
export function sessionMemory(store: MessageStore): SessionMemory {
  return { get: (key) => store.sessionState(key), set: (key, value) => store.setSessionState(key, value) };
}
