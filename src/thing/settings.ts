/**
 * The thing's settings: its config.yml (the guide's format, schema in src/protocol/
 * thing-config.ts) loaded and validated, with every path made absolute.
 */
import { dirname, join, resolve } from "node:path";
import { type ThingYaml, ThingYamlSchema } from "../protocol/thing-config.ts";
import { parseYamlFile, unknownKeys, validate } from "../shared/yaml.ts";

/** A validated thing configuration with every path made absolute. */
export interface ThingConfig {
  file: string;
  dataDir: string;
  keysDir: string;
  yaml: ThingYaml["flashlex"];
  paths: {
    rootCA: string;
    cert: string;
    privateKey: string;
    publicKey: string | undefined;
    database: string;
  };
  /**
   * The `mqtt` block's timeouts in milliseconds, converted once (the file has seconds, as the
   * Python SDK had; 0 or a fraction would make every attempt fail at once, so at least 1 s).
   */
  timeouts: {
    /** connectDisconnectTimeout: a connect, and the DISCONNECT on stop */
    connectMs: number;
    /** mqttOperationTimeout: the broker's PUBACK or SUBACK */
    operationMs: number;
  };
  /** `flashlex.a.b` paths present in the file that the schema does not know */
  unknownKeys: string[];
}

export interface ConfigLocation {
  config: string;
  /** default: `data/` beside the config file */
  data?: string;
  /** default: the config file's directory */
  keys?: string;
}

export function loadThingConfig(location: ConfigLocation): ThingConfig {
  const file = resolve(location.config);
  const raw = parseYamlFile(file);
  const yaml = validate(ThingYamlSchema, raw, file).flashlex;
  const dataDir = resolve(location.data ?? join(dirname(file), "data"));
  const keysDir = resolve(location.keys ?? dirname(file));
  const keys = yaml.thing.keys;
  return {
    file,
    dataDir,
    keysDir,
    yaml,
    paths: {
      rootCA: resolve(keysDir, keys.rootCA),
      cert: resolve(keysDir, keys.cert),
      privateKey: resolve(keysDir, keys.privateKey),
      publicKey: keys.publicKey ? resolve(keysDir, keys.publicKey) : undefined,
      database: join(dataDir, databaseFileName(yaml.app.db.subscriptionData)),
    },
    timeouts: {
      connectMs: Math.max(yaml.thing.mqtt.connectDisconnectTimeout, 1) * 1000,
      operationMs: Math.max(yaml.thing.mqtt.mqttOperationTimeout, 1) * 1000,
    },
    unknownKeys: unknownKeys(ThingYamlSchema, raw),
  };
}

/**
 * The Python SDK kept a pickleDB JSON file; its name in old configs (`subscription.json`)
 * names our SQLite file with the same stem, so an old config needs no edit.
 */
export function databaseFileName(subscriptionData: string): string {
  return subscriptionData.endsWith(".json") ? `${subscriptionData.slice(0, -".json".length)}.db` : subscriptionData;
}
