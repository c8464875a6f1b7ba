/**
 * The thing's settings: its config.yml (the guide's format, schema in src/protocol/
 * thing-config.ts) loaded and validated, with every path made absolute.
 */
import { dirname, join, resolve } from "node:path";
import type * as ThingConfigSchema from "../protocol/thing-config.ts";
import type { ThingYaml } from "../protocol/thing-config.ts";
import { ConfigError } from "../shared/errors.ts";
import { pathExists } from "../shared/path-exists.ts";
import { loadYamlFile, thisBuild, unknownKeyNote, unknownKeys, validate } from "../shared/yaml.ts";
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
  // a keys/ this user may not look into: the key beside the config (the guide's layout) first, else keys/ (below), whose read says why
  if (pathExists(join(keysDir, privateKeyName), { cannotLook: false })) return keysDir;
  if (pathExists(join(configDir, privateKeyName))) return configDir;
  return pathExists(keysDir) ? keysDir : configDir;
}

/**
 * In the data directory: the config as serve last read it (validated, with the text it came
 * from; src/shared/yaml.ts `loadYamlFile`). Only serve writes it; every command reads it.
 */
export const CONFIG_CACHE_NAME = "config.parsed.json";

/** The warning's note for a key of config.yml its schema does not know (shared/yaml.ts unknownKeyNote): "ignored", with the key it was likely meant to be. */
export function unknownConfigKeyNote(key: string): string {
  return unknownKeyNote(configSchema(), key);
}

/**
 * The config's schema (zod), loaded on first use: a load that the cache serves never needs it.
 * `require` of a bundled module is the bundler's own lazy loader, on Bun and in the Node build.
 */
function configSchema(): typeof ThingConfigSchema.ThingYamlSchema {
  return (require("../protocol/thing-config.ts") as typeof ThingConfigSchema).ThingYamlSchema;
}

/** A document with the hub's top-level `hub:` and no `flashlex:`: hub.yml, not a thing's config. */
function isHubSettings(raw: unknown): boolean {
  return typeof raw === "object" && raw !== null && !Array.isArray(raw) && "hub" in raw && !("flashlex" in raw);
}

/**
 * Loads and validates the config (ConfigError, 78, naming the file and the key path), with every
 * path made absolute: the data directory defaults to `data/` beside the config, the keys
 * directory to `defaultKeysDir`. `origin` says why this file (see `locateConfig`). With
 * `keepParsed` (serve) what was read is kept in the data directory for the next load
 * (CONFIG_CACHE_NAME); `madeBy` names the cache's maker (default: this build; a source run keeps
 * none, as its code may change under the same name).
 */
export function loadThingConfig(location: ConfigLocation, origin = "given with -c", options: { keepParsed?: boolean; madeBy?: string } = {}): ThingConfig {
  const file = resolve(location.config);
  const dataDir = dataDirFor(file, location.data);
  const madeBy = options.madeBy ?? thisBuild();
  const cache = madeBy ? { file: join(dataDir, CONFIG_CACHE_NAME), madeBy, update: options.keepParsed ?? false } : undefined;
  const { yaml, unknown } = loadYamlFile(
    file,
    (raw) => {
      // the hub's settings given for the thing's: "flashlex: missing" and "correct the key" sent
      // the owner into the wrong file
      if (isHubSettings(raw))
        throw new ConfigError(`${file}: this is a hub's settings (hub.yml), not a thing's config.yml: give the thing's config (-c) instead`);
      const schema = configSchema();
      return { yaml: validate(schema, raw, file).flashlex, unknown: unknownKeys(schema, raw) };
    },
    cache,
  );
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
    unknownKeys: unknown,
  };
}

/**
 * The Python SDK kept a pickleDB JSON file; its name in old configs (`subscription.json`)
 * names our SQLite file with the same stem, so an old config needs no edit.
 */
export function databaseFileName(subscriptionData: string): string {
  return subscriptionData.endsWith(".json") ? `${subscriptionData.slice(0, -".json".length)}.db` : subscriptionData;
}
