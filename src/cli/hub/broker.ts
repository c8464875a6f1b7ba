import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { UsageError } from "../../shared/errors.ts";
import { type CommandSpec, type Options, port, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { DB_OPTION, DIR_OPTION, openedHubToWrite } from "./common.ts";

// The path only (no import of the broker code: command files load use cases inside run).
const DEBIAN_DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

export const hubMosquittoConfigCommand: CommandSpec = {
  name: "hub mosquitto-config",
  description: "Write a Mosquitto configuration, ACL, certificates and CRL for running the hub against an external broker",
  options: [
    DIR_OPTION,
    DB_OPTION,
    { flags: "--out <dir>", description: "the directory to write (required; Mosquitto must be able to read it)" },
    { flags: "--port <port>", description: "the listener port (default: hub.yml broker.port)" },
    { flags: "--bind <address>", description: "the listener address (default: 0.0.0.0)" },
    { flags: "--persistence <dir>", description: "enable Mosquitto persistence in this directory" },
    {
      flags: "--dynsec-plugin <path>",
      description: `the dynamic security plugin, which revokes without a restart (default: Debian's ${DEBIAN_DYNSEC_PLUGIN}; none: CRL and SIGHUP only)`,
    },
  ],
  bunOnly: true,
  run: (_args, options) => mosquittoConfig(options),
};

function mosquittoConfig(options: Options): Promise<number> {
  return openedHubToWrite("hub mosquitto-config", options, async (hub) => {
    const out = text(options.out);
    if (!out) throw new UsageError("--out DIR is required (Mosquitto must be able to read it: not inside the 0700 hub home)");
    const persistence = text(options.persistence);
    const { broker } = hub.home.settings;
    const listenPort = port(options.port, "--port") ?? broker.port;
    const plugin = text(options.dynsecPlugin) ?? DEBIAN_DYNSEC_PLUGIN;
    const files = await hub.writeMosquittoFiles({
      dir: resolve(out),
      port: listenPort,
      bindAddress: text(options.bind) ?? "0.0.0.0",
      persistenceDir: persistence ? resolve(persistence) : undefined,
      dynsecPlugin: plugin === "none" ? undefined : plugin,
    });
    console.log(`wrote ${files.config}, mosquitto.acl, root-ca-cert.pem, broker-cert.pem, broker-key.pem, crl.pem`);
    console.log(`the broker key must be readable by Mosquitto's user: sudo chown root:mosquitto ${files.brokerKey}`);
    if (files.dynsecDir) {
      if (files.dynsecStateKept)
        console.log(`kept the dynamic-security state in ${files.dynsecDir} (Mosquitto's; the hub re-applies revocations when it connects)`);
      console.log(`Mosquitto rewrites its dynamic-security state: sudo chown -R mosquitto: ${files.dynsecDir}`);
      if (!existsSync(plugin)) console.log(`note: ${plugin} is not on this machine; install mosquitto there or pass --dynsec-plugin`);
    } else {
      console.log("note: without the dynamic security plugin a revoked thing stays connected until Mosquitto reloads (SIGHUP)");
    }
    // The hub connects where this Mosquitto listens (--port), whatever hub.yml tells things.
    console.log(`run: mosquitto -c ${files.config}   then: flashlex hub serve --broker mqtts://${broker.host}:${listenPort}`);
    if (listenPort !== broker.port)
      console.log(`note: things are told port ${broker.port} (hub.yml broker.port); set it to ${listenPort} before making their distributions`);
    return ExitCode.OK;
  });
}
