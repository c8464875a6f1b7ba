/**
 * The thing's settings: its config.yml (the guide's format, schema in src/protocol/
 * thing-config.ts) loaded and validated, with every path made absolute.
 */
import { dirname, join, resolve } from "node:path";
import { ThingYamlSchema, type ThingYaml } from "../protocol/thing-config.ts";
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
    unknownKeys: unknownKeys(ThingYamlSchema, raw),
  };
}

/**
 * The Python SDK kept a pickleDB JSON file; its name in old configs (`subscription.json`)
 * names our SQLite file with the same stem, so an old config needs no edit.
 */
export function databaseFileName(subscriptionData: string): string {
  return subscriptionData.endsWith(".json") ? subscriptionData.slice(0, -".json".length) + ".db" : subscriptionData;
}
