import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { isIP } from "node:net";
import { basename, dirname, join, resolve } from "node:path";
import { randomUUID } from "node:crypto";
import { stringify } from "yaml";
import { generateRsaKeyPair } from "../../crypto/keys.ts";
import { createCertificateAuthority, issueServerCertificate, issueThingCertificate, type CertifiedKey } from "../../crypto/x509.ts";
import { ConfigError, UsageError } from "../../shared/errors.ts";
import { DEFAULT_PAYLOAD_LIMIT_BYTES } from "../../protocol/limits.ts";
import { HUB_CLIENT_NAME } from "../broker/broker.ts";
import { DNS_NAME, HubYamlSchema, loadHubSettings, type HubSettings, type HubYaml } from "./settings.ts";
import { openHubStore } from "../store/hub-store.ts";
import { hashToken, newAccessToken } from "./tokens.ts";

/**
 * The hub's home directory (mode 0700). Everything the hub knows lives here, so backing up the
 * hub is copying this directory (stop `hub serve` first, or use `sqlite3 .backup` for hub.db).
 *
 *   hub.yml                      settings (see hub-config.ts)
 *   hub.db                       things, messages, token hashes (SQLite, WAL)
 *   ca-cert.pem / ca-key.pem     the certificate authority; the key (0600) never leaves the hub
 *   broker-cert.pem / -key.pem   the broker's TLS server certificate (also the API's, with tls)
 *   hub-client-cert.pem / -key   the hub's own client certificate (CN flashlex-hub), used to
 *                                log in to an external broker
 *   dists/<thing id>.zip         each thing's distribution (0600): it holds the thing's private
 *                                key, kept so the distribution can be downloaded again
 */
export interface HubPaths {
  dir: string;
  config: string;
  database: string;
  caCert: string;
  caKey: string;
  brokerCert: string;
  brokerKey: string;
  clientCert: string;
  clientKey: string;
  dists: string;
}

export function hubPaths(dir: string): HubPaths {
  const d = resolve(dir);
  return {
    dir: d,
    config: join(d, "hub.yml"),
    database: join(d, "hub.db"),
    caCert: join(d, "ca-cert.pem"),
    caKey: join(d, "ca-key.pem"),
    brokerCert: join(d, "broker-cert.pem"),
    brokerKey: join(d, "broker-key.pem"),
    clientCert: join(d, "hub-client-cert.pem"),
    clientKey: join(d, "hub-client-key.pem"),
    dists: join(d, "dists"),
  };
}

/** `--dir`, else `$FLASHLEX_HUB_DIR`, else `~/.flashlex-hub`. */
export function defaultHubDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.FLASHLEX_HUB_DIR || join(homedir(), ".flashlex-hub");
}

export function distributionPath(paths: HubPaths, thingId: string): string {
  return join(paths.dists, `${thingId}.zip`);
}

/** An initialised hub home: its paths and validated settings. */
export interface HubHome {
  paths: HubPaths;
  settings: HubSettings;
}

export function openHubHome(dir: string): HubHome {
  const paths = hubPaths(dir);
  if (!existsSync(paths.config)) {
    throw new ConfigError(`${paths.dir}: not a hub home (no hub.yml); run \`flashlex hub init --dir ${paths.dir}\` first`);
  }
  return { paths, settings: loadHubSettings(paths.config) };
}

export function readCa(paths: HubPaths): CertifiedKey {
  return { certPem: readFileSync(paths.caCert, "utf8"), keyPem: readFileSync(paths.caKey, "utf8") };
}

export interface InitHubOptions {
  dir: string;
  /** DNS names and IP addresses for the broker certificate; default localhost, 127.0.0.1, hostname */
  names?: string[];
  /** the API URL things use; default http://127.0.0.1:8080 */
  apiUrl?: string;
  /** the broker host things use; default the first of `names`, else localhost */
  brokerHost?: string;
  brokerPort?: number;
  env?: string;
  /** the owner id; default a new UUID */
  ownerId?: string;
  now?: () => number;
}

export interface InitHubResult {
  home: HubHome;
  /** the operator API token, shown to the operator once; only its hash is stored */
  token: string;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

/**
 * Creates a hub home. It is built in a sibling temporary directory and renamed into place at
 * the end, so a failure half way (a bad name, a full disk) leaves nothing a later `init` or
 * `serve` would trip over.
 */
export async function initHub(options: InitHubOptions): Promise<InitHubResult> {
  const target = resolve(options.dir);
  if (existsSync(target) && readdirSync(target).length > 0) {
    const what = existsSync(join(target, "hub.yml")) ? "a hub already exists there" : "the directory is not empty";
    throw new ConfigError(`${target}: ${what}; refusing to overwrite it (choose another --dir)`);
  }
  const settings = initialSettings(options);
  mkdirSync(dirname(target), { recursive: true });
  const staging = join(dirname(target), `.${basename(target)}.init-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o700 });
  try {
    const paths = hubPaths(staging);
    mkdirSync(paths.dists, { mode: 0o700 });
    const ca = await createCertificateAuthority({ commonName: `FlashLex hub CA ${settings.ownerId.slice(0, 8)}` });
    writeSecret(paths.caKey, ca.keyPem);
    writePublic(paths.caCert, ca.certPem);

    const names = settings.broker.names;
    const server = await issueServerCertificate(ca, {
      commonName: settings.broker.host,
      dnsNames: names.filter((n) => !isIP(n)),
      ipAddresses: names.filter((n) => isIP(n)),
    });
    writeSecret(paths.brokerKey, server.keyPem);
    writePublic(paths.brokerCert, server.certPem);

    const client = generateRsaKeyPair();
    writeSecret(paths.clientKey, client.privateKeyPem);
    writePublic(paths.clientCert, await issueThingCertificate(ca, { thingName: HUB_CLIENT_NAME, publicKeyPem: client.publicKeyPem }));

    writePublic(paths.config, renderHubYaml(settings));

    const token = newAccessToken();
    const store = openHubStore(paths.database);
    try {
      await store.addToken(hashToken(token), "operator", (options.now ?? Date.now)(), null);
    } finally {
      await store.close();
    }
    // rename(2) replaces an empty directory, so an empty --dir made by the operator is fine.
    renameSync(staging, target);
    chmodSync(target, 0o700);
    return { home: { paths: hubPaths(target), settings }, token };
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}

function initialSettings(o: InitHubOptions): HubSettings {
  const userNames = (o.names ?? []).map((n) => n.trim()).filter(Boolean);
  // The machine's hostname joins the defaults only when it is a valid DNS name (containers and
  // some boards have odd ones), since a bad SAN would make the whole certificate fail.
  const host = hostname();
  const defaults = ["localhost", "127.0.0.1", ...(DNS_NAME.test(host) ? [host] : [])];
  const names = userNames.length > 0 ? userNames : defaults;
  for (const name of names) {
    if (!isIP(name) && !DNS_NAME.test(name)) throw new UsageError(`--name: not a DNS name or IP address: ${JSON.stringify(name)}`);
  }
  const brokerHost = o.brokerHost ?? userNames[0] ?? "localhost";
  // Things verify the broker's name: the host they are told must be in the certificate.
  if (!names.some((n) => n.toLowerCase() === brokerHost.toLowerCase())) names.unshift(brokerHost);
  const publicUrl = o.apiUrl ?? "http://127.0.0.1:8080";
  let url: URL;
  try {
    url = new URL(publicUrl);
  } catch {
    throw new UsageError(`--api-url: not a URL: ${publicUrl}`);
  }
  const https = url.protocol === "https:";
  const candidate = {
    hub: {
      ownerId: o.ownerId ?? randomUUID(),
      env: o.env ?? "dev",
      api: {
        // A loopback public URL means things run on this machine: do not listen further out.
        host: LOOPBACK.has(url.hostname) ? "127.0.0.1" : "0.0.0.0",
        port: url.port ? Number(url.port) : 8080,
        publicUrl: publicUrl.replace(/\/+$/, ""),
        tls: https,
        payloadLimitBytes: DEFAULT_PAYLOAD_LIMIT_BYTES,
      },
      broker: {
        host: brokerHost,
        port: o.brokerPort ?? 8883,
        listenHost: "0.0.0.0",
        names: [...new Set(names)],
      },
    },
  };
  const parsed = HubYamlSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UsageError(`hub init: ${issue.path.slice(1).join(".")}: ${issue.message}`);
  }
  return parsed.data.hub;
}

export function renderHubYaml(settings: HubSettings): string {
  const doc: HubYaml = { hub: settings };
  return [
    "# FlashLex hub settings, written by `flashlex hub init`. Restart `flashlex hub serve` after an edit.",
    "# api.host/port and broker.listenHost/listenPort are where the hub listens; api.publicUrl and",
    "# broker.host/port are what new distributions tell things to use.",
    stringify(doc),
  ].join("\n");
}

/** Owner-only file, created exclusively: a secret is never written over something else. */
export function writeSecret(file: string, data: string | Uint8Array): void {
  writeFileSync(file, data, { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600); // the umask cannot widen 0600, but an odd filesystem might ignore mode
}

function writePublic(file: string, data: string): void {
  writeFileSync(file, data, { mode: 0o644, flag: "wx" });
}
