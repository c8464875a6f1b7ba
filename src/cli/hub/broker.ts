import { resolve } from "node:path";
import { UsageError } from "../../shared/errors.ts";
import { isWithin } from "../../shared/files.ts";
import { DNS_NAME, withinDnsLengths } from "../../shared/listen-address.ts";
import { quoteGiven } from "../../shared/log.ts";
import { notADirectory, pathExists } from "../../shared/path-exists.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { type CommandSpec, list, type Options, port, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { printLine } from "../output.ts";
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
    const out = outDirectory(options, hub.home.paths.dir, "Mosquitto");
    const persistence = configPath(text(options.persistence), "--persistence");
    if (persistence) refuseNonDirectory(persistence, "--persistence");
    const { broker } = hub.home.settings;
    const listenPort = port(options.port, "--port") ?? broker.port;
    const plugin = text(options.dynsecPlugin) ?? DEBIAN_DYNSEC_PLUGIN;
    if (/[\r\n\0]/.test(plugin)) throw new UsageError(`--dynsec-plugin must be a path on one line, not ${JSON.stringify(plugin)}`);
    const files = await hub.writeMosquittoFiles({
      dir: out,
      port: listenPort,
      bindAddress: await bindAddress(text(options.bind)),
      persistenceDir: persistence,
      dynsecPlugin: plugin === "none" ? undefined : plugin,
    });
    printLine(`wrote ${files.config}, mosquitto.acl, root-ca-cert.pem, broker-cert.pem, broker-key.pem, crl.pem`);
    printLine(`hub.yml now lists ${files.crl} in broker.crlFiles: hub serve keeps that CRL current`);
    printLine(`hub.yml now points hub serve at ${files.external} (broker.external; --broker embedded overrides it)`);
    if (files.dynsecStateKept)
      printLine(`kept the dynamic-security state in ${files.dynsecDir} (Mosquitto's; the hub re-applies revocations when it connects)`);
    // only a note, after the files are written: a plugin under a directory this user may not enter (mosquitto's) is no failure
    if (files.dynsecDir && !pathExists(plugin, { cannotLook: true }))
      printLine(`note: ${plugin} is not on this machine; install mosquitto there or pass --dynsec-plugin`);
    if (!files.dynsecDir) printLine("note: without the dynamic security plugin a revoked thing stays connected until Mosquitto reloads (SIGHUP)");
    // The steps in their order: Mosquitto drops root before it reads the key, and it cannot take
    // the port while a hub's embedded broker holds it.
    const steps = [
      `sudo chown root:mosquitto ${shellWord(files.brokerKey)}   # Mosquitto reads the key after dropping root`,
      ...(files.persistenceDir ? [`sudo chown -R mosquitto: ${shellWord(files.persistenceDir)}   # where it saves sessions and queued messages`] : []),
      ...(files.dynsecDir ? [`sudo chown -R mosquitto: ${shellWord(files.dynsecDir)}   # it rewrites its dynamic-security state there`] : []),
      `stop a running flashlex hub serve (its embedded broker holds the port), then: mosquitto -c ${shellWord(files.config)}`,
      `flashlex hub serve --dir ${shellWord(hub.home.paths.dir)}   # it logs in to Mosquitto now`,
    ];
    printLine("next:");
    printLine(steps.map((step, i) => `  ${i + 1}. ${step}`).join("\n"));
    if (listenPort !== broker.port)
      printLine(`note: things are told port ${broker.port} (hub.yml broker.port); set it to ${listenPort} before making their distributions`);
    return ExitCode.OK;
  });
}

/** Where Debian's rabbitmq-server package puts the scripts that honour RABBITMQ_CONF_ENV_FILE. */
const RABBIT_BIN = "/usr/lib/rabbitmq/bin";

export const hubRabbitmqConfigCommand: CommandSpec = {
  name: "hub rabbitmq-config",
  description: "Write a RabbitMQ 3.10 cluster's configuration (MQTT over mutual TLS, the hub deciding every permission) and point hub.yml at it",
  options: [
    DIR_OPTION,
    { flags: "--out <dir>", description: "the directory to write (required; RabbitMQ must be able to read it)" },
    { flags: "--nodes <n>", description: "how many nodes (default: 3)" },
    {
      flags: "--host <host>",
      description: "each node's host, repeat or comma-separate (default: 127.0.0.1 for every node: one machine, ports counted up from the given ones)",
    },
    { flags: "--mqtt-port <port>", description: "MQTT over TLS (default: hub.yml broker.port)" },
    { flags: "--management-port <port>", description: "the management API over HTTPS (default: 15671)" },
    { flags: "--dist-port <port>", description: "the nodes' inter-node port, above 20000 (default: 25672)" },
    { flags: "--epmd-port <port>", description: "Erlang's port mapper (default: 4369)" },
    { flags: "--auth-listen <host:port>", description: "where hub serve answers the nodes' permission questions (default: 127.0.0.1:8091)" },
    { flags: "--auth-host <host>", description: "the address the nodes reach that listener at (default: its host)" },
  ],
  bunOnly: true,
  run: (_args, options) => rabbitmqConfig(options),
};

function hostPort(value: string | undefined, flag: string): { host: string; port: number } | undefined {
  if (value === undefined) return undefined;
  const m = /^(.+):(\d{1,5})$/.exec(value);
  const portNumber = m ? port(m[2], flag) : undefined;
  if (!m || !portNumber) throw new UsageError(`${flag} must be HOST:PORT, not ${quoteGiven(value)}`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, "$1"), port: portNumber };
}

function rabbitmqConfig(options: Options): Promise<number> {
  return openedHubToWrite("hub rabbitmq-config", options, async (hub) => {
    const out = outDirectory(options, hub.home.paths.dir, "RabbitMQ");
    const countText = text(options.nodes) ?? "3";
    if (!/^\d+$/.test(countText) || Number(countText) < 1 || Number(countText) > 9) throw new UsageError(`--nodes must be 1-9, not ${quoteGiven(countText)}`);
    const count = Number(countText);
    const given = list(options.host);
    if (given.length > 1 && given.length !== count) throw new UsageError(`--host: give one host, or one per node (${count}), not ${given.length}`);
    const hosts = Array.from({ length: count }, (_, i) => given[given.length > 1 ? i : 0] ?? "127.0.0.1");
    // rabbitmq-env.conf is read by a shell and quotes nothing: paths and names go in as they are
    const { ENV_PLAIN, nodesShareOneHost } = await import("../../hub/broker/rabbitmq-config.ts");
    if (!ENV_PLAIN.test(out))
      throw new UsageError(`--out ${JSON.stringify(out)}: RabbitMQ's env file is read by a shell; use a path of letters, digits and _@%+=:,./- only`);
    const authHost = text(options.authHost);
    for (const host of hosts) {
      if (!ENV_PLAIN.test(host) || !(await isHostOrAddress(host))) throw new UsageError(`--host must be a host name or an IP address, not ${quoteGiven(host)}`);
    }
    // only into a URL the nodes call: `_` may be in it (a Docker service name), a host no resolver takes may not
    if (authHost !== undefined && (!ENV_PLAIN.test(authHost) || !withinDnsLengths(authHost))) {
      throw new UsageError(`--auth-host must be a host name or an IP address the nodes reach the hub at, not ${quoteGiven(authHost)}`);
    }
    const authListen = hostPort(text(options.authListen), "--auth-listen") ?? { host: "127.0.0.1", port: 8091 };
    const local = nodesShareOneHost(hosts);
    if (!authHost && !local && /^(0\.0\.0\.0|::|0:0:0:0:0:0:0:0)$/.test(authListen.host)) {
      throw new UsageError(
        `--auth-listen ${authListen.host} is every interface of this machine, not an address the nodes can reach it at: give --auth-host with one`,
      );
    }
    const ports = {
      mqttPort: port(options.mqttPort, "--mqtt-port") ?? hub.home.settings.broker.port,
      managementPort: port(options.managementPort, "--management-port") ?? 15671,
      distPort: distributionPort(port(options.distPort, "--dist-port")),
    };
    // Nodes on one host count their ports up from the given ones: the last node's must exist too.
    const flags = { mqttPort: "--mqtt-port", managementPort: "--management-port", distPort: "--dist-port" } as const;
    for (const [key, value] of Object.entries(ports) as [keyof typeof ports, number][]) {
      const last = value + (local ? count - 1 : 0);
      if (last > 65535) throw new UsageError(`${flags[key]} ${value} with ${count} nodes on one host gives node ${count} port ${last}, above 65535`);
    }
    const { nodes, crlFile } = await hub.writeRabbitFiles({
      dir: out,
      hosts,
      ...ports,
      epmdPort: port(options.epmdPort, "--epmd-port") ?? 4369,
      authListen,
      authHost,
    });
    printLine(
      `wrote ${resolve(out)}: enabled_plugins, advanced.config, certificates, the CRL (${crlFile}), and node1..node${count} (rabbitmq.conf, rabbitmq-env.conf, .erlang.cookie)`,
    );
    printLine("hub serve keeps the CRL current (hub.yml broker.crlFiles); nodes on other hosts need the crl/ directory shared or copied: see docs/scaling.md");
    printLine(`hub.yml now points at the cluster (hub.broker.rabbitmq); the nodes ask hub serve at ${authListen.host}:${authListen.port}`);
    printLine(
      "rabbitmq.conf holds the broker secret and the key must be readable by RabbitMQ's user: chown -R rabbitmq: the directory (or run the nodes as its owner)",
    );
    const first = nodes[0]!;
    for (const node of nodes) {
      printLine(
        `${local ? "" : `on ${node.name.split("@")[1]}: `}HOME=${node.home} RABBITMQ_CONF_ENV_FILE=${node.envFile} ${RABBIT_BIN}/rabbitmq-server -detached   # ${node.name}, ${node.mqttUrl}`,
      );
      // One at a time: a node booting while another still boots can miss the MQTT client-id
      // tracker (RabbitMQ 3.10), and then answers every thing CONNACK 3.
      if (node !== nodes[nodes.length - 1]) {
        printLine(
          `wait: ${local ? "" : `on ${node.name.split("@")[1]}: `}HOME=${node.home} RABBITMQ_CONF_ENV_FILE=${node.envFile} ${RABBIT_BIN}/rabbitmqctl await_startup   # ${node.name} up before the next starts (docs/scaling.md)`,
        );
      }
    }
    // The check the docs give: any node answers for the whole cluster once it has formed.
    printLine(
      `check: ${local ? "" : `on ${first.name.split("@")[1]}: `}HOME=${first.home} RABBITMQ_CONF_ENV_FILE=${first.envFile} ${RABBIT_BIN}/rabbitmqctl cluster_status   # ${count} running nodes once formed`,
    );
    printLine(
      `then: flashlex hub serve --dir ${shellWord(hub.home.paths.dir)}   (things connect to ${nodes[0]!.mqttUrl}, or a load balancer in front of every node)`,
    );
    return ExitCode.OK;
  });
}

/**
 * `--dist-port` (default 25672). RabbitMQ derives a node's inter-node port as its AMQP port +
 * 20000 (and wants an AMQP port even with no AMQP listener), so the port must be above 20000;
 * UsageError (64) otherwise.
 */
function distributionPort(given: number | undefined): number {
  if (given === undefined) return 25672;
  if (given <= 20000) throw new UsageError(`--dist-port must be above 20000, not ${given}: RabbitMQ takes a node's inter-node port as its AMQP port + 20000`);
  return given;
}

/**
 * `--out`, absolute: required, a directory or nothing yet, and outside the hub home `home` (0700,
 * with the hub's private keys: the broker's user could read neither, and the printed `chown`
 * would hand it the home's own key). UsageError (64) naming the flag otherwise.
 */
function outDirectory(options: Options, home: string, broker: string): string {
  const out = configPath(text(options.out), "--out");
  if (!out) throw new UsageError(`--out DIR is required (${broker} must be able to read it: not inside the 0700 hub home)`);
  refuseNonDirectory(out, "--out");
  if (isWithin(out, home)) {
    throw new UsageError(
      `--out ${out} is inside the hub home ${home}: ${broker}'s user must read it, and the home is 0700 and holds the hub's keys; give a directory outside it`,
    );
  }
  return out;
}

/**
 * UsageError (64) naming `flag` when `dir` is a file, or under one: checked before anything is
 * written (mosquitto-config left an empty --out behind when --persistence went through a file).
 */
function refuseNonDirectory(dir: string, flag: string): void {
  const why = notADirectory(dir);
  if (why !== undefined) throw new UsageError(`${flag} ${dir}: ${why}`);
}

/**
 * A directory path for a broker's config (Mosquitto's, RabbitMQ's), absolute; undefined when not given. A line break or
 * NUL would end a config line early (and could start another directive): UsageError (64) naming
 * the flag, before anything is written.
 */
function configPath(value: string | undefined, flag: string): string | undefined {
  if (value === undefined) return undefined;
  if (/[\r\n\0]/.test(value)) throw new UsageError(`${flag} must be a path on one line, not ${quoteGiven(value)}`);
  return resolve(value);
}

/** `--bind`: an IP address or a host name Mosquitto can listen on (default 0.0.0.0); UsageError (64) otherwise. */
async function bindAddress(value: string | undefined): Promise<string> {
  if (value === undefined) return "0.0.0.0";
  if (await isHostOrAddress(value)) return value;
  throw new UsageError(`--bind must be an IP address or a host name, not ${quoteGiven(value)}`);
}

/** Whether `value` is an IP address or a DNS host name (shared/listen-address.ts DNS_NAME). */
async function isHostOrAddress(value: string): Promise<boolean> {
  // loaded here, not at start: every command's start-up would pay for node:net
  const { isIP } = await import("node:net");
  return isIP(value) !== 0 || DNS_NAME.test(value);
}
