/** What the thing commands share: the -c/-d/-k flags, the config they name, the thing's data. */
import { UsageError } from "../../shared/errors.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import type { ThingAccess } from "../../thing/local/access.ts";
import { openThingAccess } from "../../thing/local/open.ts";
import { loadThingConfig, type ThingConfig } from "../../thing/settings.ts";
import type { OptionSpec } from "../command.ts";

/** The flags every thing command shares, with the guide's meanings. */
export interface ThingFlags {
  config?: string;
  data?: string;
  keys?: string;
}

export const THING_OPTIONS: OptionSpec[] = [
  { flags: "-c, --config <file>", description: "the YAML configuration file (required)" },
  { flags: "-d, --data <dir>", description: "the directory for the message database (default: data/ beside the config)" },
  { flags: "-k, --keys <dir>", description: "the directory holding the key files named in the config (default: the config's directory)" },
];

/** Loads the config named by the flags, warning once about keys it does not know. Throws UsageError without -c, ConfigError for a bad config. */
export function loadConfigFromFlags(flags: ThingFlags, log: Logger): ThingConfig {
  if (!flags.config) throw new UsageError("-c/--config is required");
  const config = loadThingConfig({ config: flags.config, data: flags.data, keys: flags.keys });
  for (const key of config.unknownKeys) log.warn("config.unknown_key", { file: config.file, key, note: "ignored" });
  if (config.yaml.thing.mqtt.useWebsocket) {
    log.warn("config.websocket_ignored", { file: config.file, note: "MQTT over WebSocket is not supported; using MQTT over TLS" });
  }
  return config;
}

/** The thing's data for `messages` and `outbox`: through the running serve, else the database (src/thing/local/open.ts). */
export function openAccessFromFlags(flags: ThingFlags): Promise<ThingAccess> {
  const log = createLogger();
  return openThingAccess(loadConfigFromFlags(flags, log), log);
}
