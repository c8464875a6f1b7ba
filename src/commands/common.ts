import { loadThingConfig, type ThingConfig } from "../thing/settings.ts";
import { UsageError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";

/** The flags every thing command shares, with the guide's meanings. */
export interface ThingFlags {
  config?: string;
  data?: string;
  keys?: string;
}

export const THING_FLAG_HELP = {
  config: "the YAML configuration file (required)",
  data: "the directory for the message database (default: data/ beside the config)",
  keys: "the directory holding the key files named in the config (default: the config's directory)",
} as const;

/** Loads the config named by the flags, warning once about keys it does not know. */
export function loadConfigFromFlags(flags: ThingFlags, log: Logger): ThingConfig {
  if (!flags.config) throw new UsageError("-c/--config is required");
  const config = loadThingConfig({ config: flags.config, data: flags.data, keys: flags.keys });
  for (const key of config.unknownKeys) log.warn("config.unknown_key", { file: config.file, key, note: "ignored" });
  if (config.yaml.thing.mqtt.useWebsocket) {
    log.warn("config.websocket_ignored", { file: config.file, note: "MQTT over WebSocket is not supported; using MQTT over TLS" });
  }
  return config;
}

/** Resolves on SIGTERM or SIGINT (systemd stop, Ctrl-C). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off("SIGTERM", on);
      process.off("SIGINT", on);
      resolve(signal);
    };
    process.on("SIGTERM", on);
    process.on("SIGINT", on);
  });
}
