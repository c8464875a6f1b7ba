/**
 * The thing's settings: its config.yml (the guide's format, schema in src/protocol/
 * thing-config.ts) loaded and validated, with every path made absolute.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { type ThingYaml, ThingYamlSchema } from "../protocol/thing-config.ts";
import { parseYamlFile, unknownKeys, validate } from "../shared/yaml.ts";
import { dataDirFor } from "./config-location.ts";

/** A validated thing configuration with every path made absolute. */
export interface ThingConfig {
  file: string;
  /** why this file: "given with -c", "found in the current directory", "found beside the flashlex binary" */
  origin: string;
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
  /** default: `defaultKeysDir` */
  keys?: string;
}

/**
 * Where the key files are when -k is not given. The hub's distribution puts them in `keys/`
 * beside the config; the guide's layout kept them beside the config itself. `keys/` wins when
 * it holds the private key named in the config, or when the config's directory does not.
 */
export function defaultKeysDir(configDir: string, privateKeyName: string): string {
  const keysDir = join(configDir, "keys");
  if (existsSync(join(keysDir, privateKeyName))) return keysDir;
  if (existsSync(join(configDir, privateKeyName))) return configDir;
  return existsSync(keysDir) ? keysDir : configDir;
}

/**
 * In the data directory: the config as serve last parsed it, with its text (src/shared/yaml.ts,
 * the parse cache). Only serve writes it; every command reads it.
 */
export const CONFIG_CACHE_NAME = "config.parsed.json";

/**
 * Loads and validates the config (ConfigError, 78, naming the file and the key path), with every
 * path made absolute: the data directory defaults to `data/` beside the config, the keys
 * directory to `defaultKeysDir`. `origin` says why this file (see `locateConfig`). With
 * `keepParsed` (serve) the parse is kept in the data directory for the next load (CONFIG_CACHE_NAME).
 */
export function loadThingConfig(location: ConfigLocation, origin = "given with -c", options: { keepParsed?: boolean } = {}): ThingConfig {
  const file = resolve(location.config);
  const dataDir = dataDirFor(file, location.data);
  const raw = parseYamlFile(file, { file: join(dataDir, CONFIG_CACHE_NAME), update: options.keepParsed ?? false });
  const yaml = validate(ThingYamlSchema, raw, file).flashlex;
  const keys = yaml.thing.keys;
  const keysDir = resolve(location.keys ?? defaultKeysDir(dirname(file), keys.privateKey));
  return {
    file,
    origin,
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
