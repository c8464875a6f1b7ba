import type { HubSettings } from "../../hub/home/settings.ts";
import { FlashlexError } from "../../shared/errors.ts";
import { formatListenAddress } from "../../shared/listen-address.ts";
import { escapeUnsafe } from "../../shared/log.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { type CommandSpec, interruptible, list, type Options, port, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { writeSecretToStdout } from "../output.ts";
import { DB_OPTION, DIR_OPTION, databaseOverride, hubDir, hubHome, JSON_OPTION } from "./common.ts";

export const hubInitCommand: CommandSpec = {
  name: "hub init",
  description: "Create a hub home: CA, broker certificate, hub.yml, database and the operator access token",
  options: [
    DIR_OPTION,
    DB_OPTION,
    {
      flags: "--name <name>",
      description: "DNS name or IP address for the broker certificate; repeat or comma-separate (default: localhost, 127.0.0.1, the hostname)",
      repeatable: true,
    },
    { flags: "--api-url <url>", description: "the API URL things use (default: http://127.0.0.1:8080; https:// makes the hub serve TLS)" },
    { flags: "--broker-host <host>", description: "the broker host things connect to (default: the first --name, else localhost)" },
    { flags: "--broker-port <port>", description: "the broker port (default: 8883)" },
    {
      flags: "--broker-listen <address>",
      description: "the address the broker listens on (default: 0.0.0.0, every interface; 127.0.0.1 keeps it on this machine)",
    },
    { flags: "--metrics-listen <host:port|off>", description: "where the Prometheus metrics listen (default: 127.0.0.1:9464), or off" },
    { flags: "--env <env>", description: "the API's {env} path segment (default: dev)" },
    JSON_OPTION,
  ],
  bunOnly: true,
  // SIGINT/SIGTERM stop it between steps; the half-made home (it holds a CA key) is removed.
  run: (_args, options) => interruptible("hub init", "nothing was created (the half-made home was removed)", (signal) => hubInit(options, signal)),
};

async function hubInit(options: Options, signal: AbortSignal): Promise<number> {
  const { dir, home, token } = await namingTheDefault(options, async () => {
    const dir = hubHome(options);
    const { initHub } = await import("../../hub/home/init.ts");
    const made = await initHub({
      signal,
      dir,
      names: list(options.name),
      apiUrl: text(options.apiUrl),
      brokerHost: text(options.brokerHost),
      brokerPort: port(options.brokerPort, "--broker-port"),
      brokerListenHost: text(options.brokerListen),
      metricsListen: ["off", "false"].includes(text(options.metricsListen)?.toLowerCase() ?? "") ? false : text(options.metricsListen),
      env: text(options.env),
      database: databaseOverride(options),
    });
    return { dir, ...made };
  });
  // One checked write: the token exists nowhere else, and console.log would drop a failed write.
  writeSecretToStdout(
    initReport(dir, home.settings, token, options),
    "the operator access token",
    `the hub was created in ${dir}, but nobody has its token: make one with \`flashlex hub token rotate --dir ${shellWord(dir)}\``,
  );
  return ExitCode.OK;
}

/**
 * `make()`, whose refusals name the home first (`DIR: ...`): without --dir that home is the
 * default, which the user never typed, so the refusal says where it came from.
 */
async function namingTheDefault<T>(options: Options, make: () => Promise<T>): Promise<T> {
  try {
    return await make();
  } catch (err) {
    const dir = text(options.dir) === undefined ? hubDir(options) : undefined;
    if (dir === undefined || !(err instanceof FlashlexError) || !err.message.startsWith(`${dir}:`)) throw err;
    const from = process.env.FLASHLEX_HUB_DIR ? "$FLASHLEX_HUB_DIR" : "~/.flashlex-hub";
    throw new FlashlexError(`${dir} (the default hub home, ${from}, as no --dir was given)${err.message.slice(dir.length)}`, err.kind, { cause: err });
  }
}

/**
 * What `hub init`'s note says is missing for things on other machines, as hub.yml settings (the
 * hub exists by then: init's flags would need a new home): the broker's names when no --name was
 * given, the API's address when --api-url was not given or names this machine's loopback (and its
 * listen address, which a loopback URL kept on loopback); none when things elsewhere can reach both.
 */
function initNote(settings: HubSettings, options: Options): string[] {
  const url = new URL(settings.api.publicUrl);
  const loopbackApi = url.hostname === "localhost" || url.hostname === "[::1]" || url.hostname.startsWith("127.");
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const listenOnLoopback = settings.api.host === "127.0.0.1" || settings.api.host === "::1";
  const missing = [
    list(options.name).length === 0 ? "broker.host and broker.names (hub serve issues the broker certificate for them at its start)" : "",
    loopbackApi ? `api.publicUrl (${url.protocol}//HOST:${port})${listenOnLoopback ? " and api.host (0.0.0.0)" : ""}` : "",
  ].filter(Boolean);
  return missing.length ? [`note: things on other machines need an address they can reach: put it (HOST) in hub.yml ${missing.join("; ")}`] : [];
}

/** What `hub init` prints: the token and the next steps, or with --json one line holding the token. */
function initReport(dir: string, s: HubSettings, token: string, options: Options): string {
  if (options.json) {
    const report = { dir, ownerId: s.ownerId, env: s.env, apiUrl: s.api.publicUrl, broker: `${s.broker.host}:${s.broker.port}`, names: s.broker.names, token };
    return `${JSON.stringify(report)}\n`;
  }
  const apiHost = s.api.host.includes(":") ? `[${s.api.host}]` : s.api.host;
  const at = shellWord(dir);
  const lines = [
    `hub created in ${escapeUnsafe(dir)}`,
    `owner id:   ${s.ownerId} (thing names start with ${s.ownerId.slice(0, 8)}-)`,
    `api:        ${s.api.publicUrl}/${s.env}/v1 (listening on ${apiHost}:${s.api.port})`,
    `broker:     ${formatListenAddress({ host: s.broker.host, port: s.broker.port })} (certificate for ${s.broker.names.join(", ")}; listening on ${formatListenAddress({ host: s.broker.listenHost, port: s.broker.listenPort ?? s.broker.port })}${["0.0.0.0", "::"].includes(s.broker.listenHost) ? ", every interface: --broker-listen, or hub.broker.listenHost in hub.yml, narrows it" : ""})`,
    "",
    "operator access token (shown once; the hub keeps only its hash; `flashlex hub token rotate` makes a new one):",
    token,
    "",
    ...initNote(s, options),
    `next: flashlex hub serve --dir ${at}; then a thing: flashlex hub enroll-token create --dir ${at} (the device enrols itself, as README.md does)`,
    `      or flashlex hub thing create NAME --dir ${at} (a zip with its keys to copy to the device)`,
  ];
  return `${lines.join("\n")}\n`;
}
