/**
 * The thing's settings: its config.yml (the guide's format, schema in src/protocol/
 * thing-config.ts) loaded and validated, with every path made absolute.
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { type ThingYaml, ThingYamlSchema } from "../protocol/thing-config.ts";
import { UsageError } from "../shared/errors.ts";
import { parseYamlFile, unknownKeys, validate } from "../shared/yaml.ts";

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

/** The config file's name where the thing commands look for it without -c. */
export const CONFIG_FILE_NAME = "config.yml";

/** Which config a thing command uses, and why (for its log, its errors and its --help). */
export interface ConfigChoice {
  file: string;
  origin: string;
}

/**
 * The config a thing command uses: the one given with -c; else `config.yml` in the current
 * directory (`./flashlex serve` run in the thing's folder); else `config.yml` beside the binary
 * (the binary copied into the thing's folder, as systemd runs it from anywhere). Throws a
 * UsageError (64) saying where it looked, and naming the one `<folder>/config.yml` below the
 * current directory when there is exactly one (the unzipped distribution, one level down).
 */
export function locateConfig(given: string | undefined, places: { cwd: string; binaryDir: string }): ConfigChoice {
  if (given) return { file: resolve(places.cwd, given), origin: "given with -c" };
  const here = join(places.cwd, CONFIG_FILE_NAME);
  if (existsSync(here)) return { file: here, origin: "found in the current directory" };
  const beside = join(places.binaryDir, CONFIG_FILE_NAME);
  if (existsSync(beside)) return { file: beside, origin: "found beside the flashlex binary" };
  const below = configsOneLevelDown(places.cwd);
  const hint = below.length === 1 ? `; found ${below[0]}: cd ${dirname(below[0]!)}, or pass -c ${below[0]}` : "";
  throw new UsageError(
    `no ${CONFIG_FILE_NAME} in the current directory (${places.cwd}) or beside the flashlex binary (${places.binaryDir}): pass -c FILE${hint}`,
  );
}

/** `<folder>/config.yml` paths one level below `dir`, relative to it (an unreadable dir: none). */
function configsOneLevelDown(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && existsSync(join(dir, entry.name, CONFIG_FILE_NAME)))
      .map((entry) => relative(dir, join(dir, entry.name, CONFIG_FILE_NAME)));
  } catch {
    return [];
  }
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
 * Loads and validates the config (ConfigError, 78, naming the file and the key path), with every
 * path made absolute: the data directory defaults to `data/` beside the config, the keys
 * directory to `defaultKeysDir`. `origin` says why this file (see `locateConfig`).
 */
export function loadThingConfig(location: ConfigLocation, origin = "given with -c"): ThingConfig {
  const file = resolve(location.config);
  const raw = parseYamlFile(file);
  const yaml = validate(ThingYamlSchema, raw, file).flashlex;
  const dataDir = resolve(location.data ?? join(dirname(file), "data"));
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
