/**
 * Writes a RabbitMQ 3.10 cluster's files for `flashlex hub rabbitmq-config` (rabbitmq-config.ts
 * renders them) and points hub.yml at the cluster (`hub.broker.rabbitmq`).
 *
 * Layout of `dir` (outside the 0700 hub home, so RabbitMQ's user can read it):
 *
 *   ca-cert.pem broker-cert.pem broker-key.pem   the hub CA and the broker's certificate and key
 *   enabled_plugins                               shared by every node
 *   advanced.config                               the MQTT listener's TLS and CRL check, every node
 *   crl/<hash>.r0                                 the hub's CRL, named by the CA's subject hash;
 *                                                 listed in hub.yml broker.crlFiles, so the hub
 *                                                 keeps it current (things/revocation.ts)
 *   nodeN/rabbitmq.conf                           node N's settings (holds the broker secret: 0640)
 *   nodeN/rabbitmq-env.conf                       node N's name, ports and directories
 *   nodeN/.erlang.cookie                          the cluster's one Erlang cookie (0400); nodeN is
 *                                                 the node's HOME, where Erlang looks for it
 *   nodeN/data/                                   the node's data, logs and pid (default)
 *
 * One machine (every host the same): ports are the given ones plus the node's index, so three
 * nodes fit side by side. Distinct hosts: the same ports on each.
 */

import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { subjectNameHash } from "../../crypto/name-hash.ts";
import { ConfigError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { formatListenAddress } from "../../shared/listen-address.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { ensureBrokerSecret, type HubHome, readBrokerTls, readCaCertificate } from "../home/home.ts";
import { addCrlFile, setBrokerSettings } from "../home/settings.ts";
import {
  nodesShareOneHost,
  type RabbitClusterOptions,
  type RabbitNode,
  renderEnabledPlugins,
  renderRabbitAdvancedConfig,
  renderRabbitConf,
  renderRabbitEnv,
} from "./rabbitmq-config.ts";

export interface RabbitFilesOptions {
  dir: string;
  /** one per node; the same host N times = N nodes on one machine */
  hosts: string[];
  mqttPort: number;
  managementPort: number;
  /** Erlang distribution port (inter-node) */
  distPort: number;
  epmdPort: number;
  /** where the hub's auth listener binds */
  authListen: { host: string; port: number };
  /** the address the nodes reach that listener at; default authListen.host */
  authHost?: string;
  /** a data directory per node instead of nodeN/data (`%n` is replaced by the node number) */
  dataDir?: string;
}

export interface RabbitNodeFiles {
  name: string;
  home: string;
  envFile: string;
  mqttUrl: string;
  managementUrl: string;
}

/** An operator chowns these to RabbitMQ's user (`chown -R rabbitmq:`); a run again keeps that. */
const KEEP_OWNER = { keepOwner: true };

/** The cookie all nodes share: kept if a node already has one (rewriting it would split a running cluster). */
function clusterCookie(dir: string, count: number): string {
  for (let i = 1; i <= count; i++) {
    const file = join(dir, `node${i}`, ".erlang.cookie");
    if (pathExists(file)) return readFileSync(file, "utf8").trim();
  }
  return randomBytes(24).toString("hex").toUpperCase();
}

/**
 * Writes the files (see above) and points hub.yml at the cluster; returns the nodes and the CRL
 * file, which the caller must write before the nodes start (without it every client is refused).
 * Every file is rendered before the first is written, so a value a file refuses (ConfigError,
 * 78) leaves nothing half-written.
 */
export function writeRabbitFiles(home: HubHome, opts: RabbitFilesOptions): { nodes: RabbitNodeFiles[]; crlFile: string } {
  if (opts.hosts.length < 1) throw new ConfigError("rabbitmq: at least one node");
  const local = nodesShareOneHost(opts.hosts);
  const file = (name: string) => join(opts.dir, name);
  const crlDir = file("crl");
  const crlFile = join(crlDir, `${subjectNameHash(readCaCertificate(home.paths))}.r0`);
  const offset = (i: number) => (local ? i : 0);
  const nodes: RabbitNode[] = opts.hosts.map((host, i) => ({
    // Short names for names without a dot (localhost, a bare hostname); long ones otherwise.
    name: `flashlex${i + 1}@${host}`,
    bindAddress: isIP(host) ? host : local ? "127.0.0.1" : "0.0.0.0",
    mqttPort: opts.mqttPort + offset(i),
    managementPort: opts.managementPort + offset(i),
    distPort: opts.distPort + offset(i),
    amqpPort: opts.distPort - 20000 + offset(i),
    dataDir: opts.dataDir ? opts.dataDir.replaceAll("%n", String(i + 1)) : file(`node${i + 1}/data`),
  }));
  const secret = ensureBrokerSecret(home.paths);
  const authHost = opts.authHost ?? opts.authListen.host;
  const cluster: RabbitClusterOptions = {
    nodes,
    caFile: file("ca-cert.pem"),
    certFile: file("broker-cert.pem"),
    keyFile: file("broker-key.pem"),
    pluginsFile: file("enabled_plugins"),
    crlDir,
    authBaseUrl: `http://${formatListenAddress({ host: authHost, port: opts.authListen.port })}/${secret}`,
    epmdPort: opts.epmdPort,
  };
  const longNames = nodes.some((n) => n.name.split("@")[1]!.includes("."));
  const nodeFiles = nodes.map((node, i) => {
    const nodeHome = file(`node${i + 1}`);
    const conf = join(nodeHome, "rabbitmq.conf");
    const host = opts.hosts[i]!;
    return {
      node,
      nodeHome,
      conf,
      confText: renderRabbitConf(cluster, i),
      envFile: join(nodeHome, "rabbitmq-env.conf"),
      envText: renderRabbitEnv(cluster, i, conf, file("advanced.config")) + (longNames ? "USE_LONGNAME=true\n" : ""),
      mqttUrl: `mqtts://${formatListenAddress({ host, port: node.mqttPort })}`,
      managementUrl: `https://${formatListenAddress({ host, port: node.managementPort })}`,
    };
  });
  const advancedConfig = renderRabbitAdvancedConfig(cluster);

  mkdirSync(opts.dir, { recursive: true, mode: 0o755 });
  writeFileAtomicallySync(file("ca-cert.pem"), readCaCertificate(home.paths), 0o644, KEEP_OWNER);
  // checked as hub serve checks them: an empty key would make a broker that refuses every handshake
  const broker = readBrokerTls(home.paths);
  writeFileAtomicallySync(file("broker-cert.pem"), broker.certPem, 0o644, KEEP_OWNER);
  writeFileAtomicallySync(file("broker-key.pem"), broker.keyPem, 0o640, KEEP_OWNER);
  writeFileAtomicallySync(file("enabled_plugins"), renderEnabledPlugins(), 0o644, KEEP_OWNER);
  mkdirSync(crlDir, { recursive: true, mode: 0o755 });
  writeFileAtomicallySync(file("advanced.config"), advancedConfig, 0o644, KEEP_OWNER);
  const cookie = clusterCookie(opts.dir, nodes.length);
  for (const n of nodeFiles) {
    mkdirSync(n.nodeHome, { recursive: true, mode: 0o755 });
    mkdirSync(n.node.dataDir, { recursive: true, mode: 0o750 });
    writeFileAtomicallySync(n.conf, n.confText, 0o640, KEEP_OWNER);
    writeFileAtomicallySync(n.envFile, n.envText, 0o644, KEEP_OWNER);
    const cookieFile = join(n.nodeHome, ".erlang.cookie");
    if (!pathExists(cookieFile)) writeFileAtomicallySync(cookieFile, cookie, 0o400);
  }
  const written = nodeFiles.map((n) => ({ name: n.node.name, home: n.nodeHome, envFile: n.envFile, mqttUrl: n.mqttUrl, managementUrl: n.managementUrl }));
  setBrokerSettings(home.paths.config, {
    rabbitmq: { urls: written.map((n) => n.mqttUrl), management: written.map((n) => n.managementUrl), authListen: opts.authListen },
  });
  addCrlFile(home.paths.config, crlFile);
  return { nodes: written, crlFile };
}
