/**
 * `hub init`: a new hub home, made whole or not at all.
 */
import { randomUUID } from "node:crypto";
import { accessSync, chmodSync, constants, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { stringify } from "yaml";
import { generateRsaKeyPair } from "../../crypto/keys.ts";
import { createCertificateAuthority, issueServerCertificate, issueThingCertificate } from "../../crypto/x509.ts";
import { DEFAULT_PAYLOAD_LIMIT_BYTES } from "../../protocol/limits.ts";
import { fsyncDirectory } from "../../shared/durable-files.ts";
import { ConfigError, FlashlexError, UsageError } from "../../shared/errors.ts";
import { checkpoint, createFile, escapeRegExp, removeLeftovers } from "../../shared/files.ts";
import { DNS_NAME, withinDnsLengths } from "../../shared/listen-address.ts";
import { quoteGiven } from "../../shared/log.ts";
import { danglingTarget, pathExists, pathKind, tooLongPath } from "../../shared/path-exists.ts";
import { parseUrlStrictly } from "../../shared/strict-url.ts";
import { type HubDatabase, parseHubDatabase, urlHoldsPassword } from "../store/database-url.ts";
import { type HubIdentity, sameHubIdentity } from "../store/hub-store.ts";
import { openHubStore } from "../store/open-store.ts";
import { makeUpdateKey } from "../updates/update-key.ts";
import type { DatabaseOverride, HubHome } from "./home.ts";
import { homeIdentity } from "./identity.ts";
import { HUB_CLIENT_NAME, hubPaths } from "./paths.ts";
import { brokerNameProblem, type HubSettings, HubYamlSchema } from "./settings.ts";
import { hashToken, newAccessToken } from "./tokens.ts";

export interface InitHubOptions {
  dir: string;
  /** DNS names and IP addresses for the broker certificate; default localhost, 127.0.0.1, hostname */
  names?: string[];
  /** the API URL things use; default http://127.0.0.1:8080 */
  apiUrl?: string;
  /** the broker host things use; default the first of `names`, else localhost */
  brokerHost?: string;
  brokerPort?: number;
  /** the address the broker listens on (broker.listenHost); default 0.0.0.0, every interface */
  brokerListenHost?: string;
  /** where the metrics listen (metrics.listen: HOST:PORT, or false for none); default DEFAULT_METRICS_LISTEN */
  metricsListen?: string | false;
  env?: string;
  /** the owner id; default a new UUID */
  ownerId?: string;
  now?: () => number;
  /** stops the init between steps when aborted (SIGINT, SIGTERM): nothing is left, the reason is thrown */
  signal?: AbortSignal;
  /** `--db`: a PostgreSQL URL (recorded in hub.yml as `hub.database.url`) or `sqlite` (default) */
  database?: DatabaseOverride;
}

export interface InitHubResult {
  home: HubHome;
  /** the operator API token, shown to the operator once; only its hash is stored */
  token: string;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

/** The `hub init` flag each hub.yml setting it writes comes from, to name in a refusal. */
const INIT_FLAG_OF: Record<string, string> = {
  api: "--api-url",
  "broker.port": "--broker-port",
  "broker.listenHost": "--broker-listen",
  metrics: "--metrics-listen",
  "broker.names": "--name",
  env: "--env",
};

/**
 * Creates a hub home. It is built in a sibling temporary directory, `.<name>.init-<pid>`, and
 * renamed into place at the end, so a failure half way (a bad name, a full disk) or an abort of
 * `options.signal` leaves nothing a later `init` or `serve` would trip over; such directories
 * left by killed inits (their process gone) are removed first: they hold a CA key. An empty
 * --dir that cannot be replaced (a mount point, a parent this user may not write in) is built
 * inside instead, in `.init-<pid>`, and its files moved up (`buildsInside`).
 */
export async function initHub(options: InitHubOptions): Promise<InitHubResult> {
  const given = resolve(options.dir);
  const target = homeTarget(given);
  // Checked before anything is made: a bad URL is refused (78) without a half-made home.
  const database = parseHubDatabase(options.database?.value, join(target, "hub.db"), options.database?.where ?? "--db");
  if (pathKind(target) === "other") throw new ConfigError(`${target}: not a directory; refusing to replace it (choose another --dir)`);
  // what a killed init built inside this directory (its process gone): it holds a CA key
  if (pathKind(target) === "directory") removeLeftovers(target, INSIDE_STAGING);
  if (pathExists(target) && readdirSync(target).length > 0) {
    const what = pathExists(join(target, "hub.yml")) ? "a hub already exists there" : "the directory is not empty";
    throw new ConfigError(`${target}: ${what}; refusing to overwrite it (choose another --dir)`);
  }
  const inside = buildsInside(given, target);
  const settings = initialSettings(options);
  if (database.kind === "postgres") settings.database = { url: database.url };
  mkdirSync(dirname(target), { recursive: true });
  const staging = inside ? join(target, `.init-${process.pid}`) : join(dirname(target), `.${basename(target)}.init-${process.pid}`);
  if (!inside) removeLeftovers(dirname(target), new RegExp(`^\\.${escapeRegExp(basename(target))}\\.init-(\\d+)$`));
  rmSync(staging, { recursive: true, force: true }); // an earlier process with this pid
  const { signal } = options;
  signal?.throwIfAborted();
  mkdirSync(staging, { mode: 0o700 });
  try {
    const paths = hubPaths(staging);
    mkdirSync(paths.dists, { mode: 0o700 });
    const ca = await createCertificateAuthority({ commonName: `FlashLex hub CA ${settings.ownerId.slice(0, 8)}` });
    createFile(paths.caKey, ca.keyPem, 0o600);
    createFile(paths.caCert, ca.certPem, 0o644);
    await checkpoint(signal);

    const names = settings.broker.names;
    const server = await issueServerCertificate(ca, {
      commonName: settings.broker.host,
      dnsNames: names.filter((n) => !isIP(n)),
      ipAddresses: names.filter((n) => isIP(n)),
    });
    createFile(paths.brokerKey, server.keyPem, 0o600);
    createFile(paths.brokerCert, server.certPem, 0o644);
    await checkpoint(signal);

    const client = await generateRsaKeyPair();
    createFile(paths.clientKey, client.privateKeyPem, 0o600);
    createFile(paths.clientCert, await issueThingCertificate(ca, { thingName: HUB_CLIENT_NAME, publicKeyPem: client.publicKeyPem }), 0o644);

    // The key that signs releases (docs/updates.md); its public half goes into every distribution
    // (and into hub.db, at the first distribution: update-key.ts).
    makeUpdateKey(paths.dir);
    // A PostgreSQL URL may carry a password: then hub.yml is the owner's alone (the home is 0700 anyway).
    createFile(paths.config, renderHubYaml(settings), database.kind === "postgres" && urlHoldsPassword(database.url) ? 0o600 : 0o644);
    await checkpoint(signal);

    const token = newAccessToken();
    const identity = homeIdentity({ paths, settings });
    await recordInDatabase(database.kind === "sqlite" ? paths.database : database, identity, hashToken(token), (options.now ?? Date.now)());
    try {
      await checkpoint(signal);
      if (inside) moveIntoPlace(staging, target);
      // rename(2) replaces an empty directory, so an empty --dir made by the operator is fine.
      else renameSync(staging, target);
    } catch (err) {
      // hub.db goes with the staging directory; a PostgreSQL database outlives it, and would
      // stay claimed by a home that does not exist, refusing the next init (given back, it is an
      // unfinished init's, which the next one takes over: postgres-driver.ts).
      if (database.kind === "postgres") await forgetInDatabase(database, identity, hashToken(token)).catch(() => {});
      throw err;
    }
    chmodSync(target, 0o700);
    // named as the operator gave it (through a link, the same home)
    const finalPaths = hubPaths(given);
    return {
      home: {
        paths: finalPaths,
        settings,
        database: database.kind === "sqlite" ? { ...database, file: finalPaths.database, display: finalPaths.database } : database,
      },
      token,
    };
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}

/** What the staging name adds to the home's (`.`, `.init-`, a pid of up to 7 digits), in bytes. */
const STAGING_EXTRA_BYTES = 1 + 6 + 7;

/**
 * Where the home named `given` (absolute) is made: `given` itself, or, when it is a symbolic
 * link to a directory, that directory (the home is renamed into place, and rename(2) would
 * refuse to put a directory over the link itself: ENOTDIR, 74, naming the staging directory).
 * Throws ConfigError (78) naming `given` when it, or a directory on the way to it, cannot hold
 * a home: a link to nothing (rename would fail the same way), a file where a directory of
 * the path should be (mkdir failed with a raw EEXIST, 74), or a name no file system takes (its
 * parents were made, then left). What is at `given` otherwise (a
 * file, a directory that is not empty) is initHub's to judge. Throws the errno error of a path
 * it cannot look at (pathKind: EACCES 77, ELOOP 74).
 */
function homeTarget(given: string): string {
  // the home is built beside it as `.<name>.init-<pid>` (STAGING_EXTRA_BYTES more)
  const tooLong = tooLongPath(given, STAGING_EXTRA_BYTES);
  if (tooLong !== undefined) throw new ConfigError(`${given}: ${tooLong}; choose another --dir`);
  const link = danglingTarget(given);
  if (link !== undefined)
    throw new ConfigError(`${given}: a symbolic link to ${link}, which does not exist; make that directory first, or choose another --dir`);
  if (pathKind(given) === "directory") return lstatSync(given).isSymbolicLink() ? realpathSync(given) : given;
  for (let up = dirname(given); ; up = dirname(up)) {
    const kind = pathKind(up);
    if (kind === "directory") return given;
    if (kind === "other") throw new ConfigError(`${given}: ${up} is a file, not a directory; choose another --dir`);
    const upLink = danglingTarget(up);
    if (upLink !== undefined) throw new ConfigError(`${given}: ${up} is a symbolic link to ${upLink}, which does not exist; choose another --dir`);
    if (dirname(up) === up) return given;
  }
}

/** S_ISVTX (inode(7)): only a file's owner may rename or remove it in such a directory. */
const STICKY_BIT = 0o1000;

/** The staging directory an init builds inside --dir (`buildsInside`); group 1 is its pid. */
const INSIDE_STAGING = /^\.init-(\d+)$/;

/**
 * Whether the home for `target` (--dir `given`) is built inside it rather than beside it. Beside,
 * in a staging directory renamed into place at the end, is the rule: nothing half-made is ever
 * at `target`. That rename needs a parent this user may write in, and over an empty directory
 * one that is no mount point (EBUSY) and, in a sticky directory such as /tmp, one this user owns
 * (EPERM); an administrator's pre-made, empty /var/lib/flashlex-hub owned by the hub's user meets
 * none of them. Such an empty directory, when this user owns it, is built inside instead
 * (`moveIntoPlace`). Throws, before anything is made, FlashlexError `permission` (77) naming
 * --dir when neither can work: a new --dir in a parent this user may not write in, an empty one
 * it may not write in either, or another user's (the home could not be made 0700). Before, each failed after the CA was made, naming the staging directory (75 "try
 * again" for the mount point).
 */
function buildsInside(given: string, target: string): boolean {
  const parent = dirname(target);
  if (pathKind(target) !== "directory") {
    if (pathKind(parent) === "directory" && !writable(parent)) {
      throw new FlashlexError(`${given}: hub init makes the home in ${parent}, which this user may not write in; choose another --dir`, "permission");
    }
    // a parent to make first: in a directory this user may write in (it was a bare EACCES naming that directory alone)
    let existing = parent;
    while (pathKind(existing) === "none" && dirname(existing) !== existing) existing = dirname(existing);
    if (existing !== parent && pathKind(existing) === "directory" && !writable(existing)) {
      throw new FlashlexError(
        `${given}: hub init makes the home in ${parent}, which does not exist, and this user may not make it (it may not write in ${existing}); choose another --dir`,
        "permission",
      );
    }
    return false; // a new directory, made with its parents (mkdir names what fails)
  }
  const uid = process.getuid?.();
  const besideWorks =
    !isMountPoint(target) && writable(parent) && !(uid !== undefined && uid !== 0 && statSync(parent).mode & STICKY_BIT && statSync(target).uid !== uid);
  if (besideWorks) return false;
  const owned = uid === undefined || uid === 0 || statSync(target).uid === uid;
  if (owned && writable(target)) return true;
  if (!writable(target)) throw new FlashlexError(`${given}: this user may not write in it, nor beside it in ${parent}; choose another --dir`, "permission");
  // the home must be 0700: in another user's directory others could replace its files
  throw new FlashlexError(
    `${given}: another user's directory, which hub init can neither replace nor keep its home in (it could not make it 0700); give --dir a new directory inside it, such as ${join(given, "hub")}`,
    "permission",
  );
}

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Moves what `staging` (inside `target`) holds into `target`, hub.yml last (what makes a
 * directory a hub home), syncs the directory, and removes `staging`. Each move is a rename
 * within one directory; a process killed between two leaves no hub.yml (`serve` refuses the
 * directory: not a hub home) and files the next init names as "not empty", to remove.
 */
function moveIntoPlace(staging: string, target: string): void {
  const names = readdirSync(staging).sort((a, b) => Number(a === "hub.yml") - Number(b === "hub.yml"));
  for (const name of names) renameSync(join(staging, name), join(target, name));
  fsyncDirectory(target);
  rmSync(staging, { recursive: true, force: true });
}

/**
 * Whether `dir` is a mount point: its device differs from its parent's, or /proc/self/mountinfo
 * lists it (a bind mount within one file system keeps the device).
 */
function isMountPoint(dir: string): boolean {
  const parent = dirname(dir);
  if (parent === dir || statSync(dir).dev !== statSync(parent).dev) return true;
  let mountinfo: string;
  try {
    mountinfo = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return false; // no /proc: the device comparison above is all there is
  }
  const real = realpathSync(dir);
  // the fifth field is the mount point, with space, tab, newline and backslash as octal escapes
  return mountinfo
    .split("\n")
    .some((line) => line.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))) === real);
}

/**
 * Claims the database for the new hub (its identity: identity.ts) and stores the operator
 * token's hash. Throws ConfigError (78) when another hub has claimed it (a database already in
 * use is refused when opened; this is another init on it at the same moment): a hub home that
 * shares another's database would mix two owners' things, and every later command would refuse it.
 */
async function recordInDatabase(database: HubDatabase | string, identity: HubIdentity, tokenHash: string, now: number): Promise<void> {
  const store = await openHubStore(database, { create: true });
  try {
    // The database is this hub's from now on: another home pointed at it is refused (identity.ts).
    const recorded = await store.claimForNewHub(identity, tokenHash, now);
    if (!sameHubIdentity(recorded, identity)) {
      const where = typeof database === "string" ? database : database.display;
      throw new ConfigError(
        `${where}: this database belongs to another hub (owner ${recorded.ownerId}, CA ${recorded.caFingerprint}); hub init needs one no hub uses: give --db a new database (createdb), or use that hub's home`,
      );
    }
  } finally {
    await store.close();
  }
}

/** Undoes recordInDatabase for an init that failed after it: the token goes, the claim is given back. */
async function forgetInDatabase(database: HubDatabase, identity: HubIdentity, tokenHash: string): Promise<void> {
  const store = await openHubStore(database);
  try {
    await store.releaseNewHubClaim(identity, tokenHash);
  } finally {
    await store.close();
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
    const problem = brokerNameProblem(name);
    if (problem) throw new UsageError(`--name: ${problem}: ${quoteGiven(name)}`);
  }
  const brokerHost = o.brokerHost ?? userNames[0] ?? "localhost";
  // Refusals of the broker host name the flag it came from: --broker-host, else the first --name.
  const brokerHostFlag =
    o.brokerHost !== undefined ? "--broker-host" : userNames[0] !== undefined ? "--name (its first, the broker host things are told)" : "--broker-host";
  // It is the broker certificate's common name, which RFC 5280 (ub-common-name) bounds at 64.
  if (brokerHost.length > 64) {
    throw new UsageError(
      `${brokerHostFlag}: ${quoteGiven(brokerHost)} is longer than 64 characters, which a certificate's common name cannot hold; give a shorter name first, or --broker-host`,
    );
  }
  // Things verify the broker's name: the host they are told must be in the certificate.
  if (!names.some((n) => n.toLowerCase() === brokerHost.toLowerCase())) names.unshift(brokerHost);
  // a path segment every thing's config.yml and every request carries (5,000 letters were taken);
  // here, not in hub.yml's schema, so a hub made before the rule keeps starting
  if (o.env !== undefined && o.env.length > 64) throw new UsageError(`--env: at most 64 characters, not ${quoteGiven(o.env)}`);
  const listen = o.brokerListenHost;
  // digits and dots that are no address (0, 1.2.3, 999.1.1.1) resolve to something else or
  // nothing; off or none is not a way to turn the broker off (verify pass 32, F8)
  const numeric = listen !== undefined && /^[\d.]+$/.test(listen);
  if (listen !== undefined && isIP(listen) === 0 && (numeric || !DNS_NAME.test(listen) || ["off", "none", "false"].includes(listen.toLowerCase()))) {
    throw new UsageError(`--broker-listen must be an IP address (0.0.0.0, 127.0.0.1, ::) or a host name of this machine, not ${quoteGiven(listen)}`);
  }
  const publicUrl = o.apiUrl ?? "http://127.0.0.1:8080";
  const url = parseUrlStrictly(publicUrl);
  if (url?.protocol !== "http:" && url?.protocol !== "https:")
    throw new UsageError(`--api-url must be an http:// or https:// URL, not ${quoteGiven(publicUrl)}`);
  // a host no resolver takes (5,000 characters went into every config.yml)
  if (!withinDnsLengths(url.hostname)) {
    throw new UsageError(`--api-url: its host is longer than a DNS name may be (253 characters, 63 between dots): ${quoteGiven(url.hostname)}`);
  }
  // it is written into every thing's config.yml
  if (url.username || url.password) throw new UsageError("--api-url must not hold a user name or password: every thing's config.yml gets it");
  // The API is served at /<env>/v1 of this origin: a path was put in front of it (http://h/dev/v1
  // became http://h/dev/v1/dev/v1), and `enroll` refused the --hub line enroll-token create printed.
  if (url.pathname !== "/" || url.search || url.hash) {
    throw new UsageError(
      `--api-url is where things reach the hub: scheme, host and port only (the API is served at /<env>/v1 under it), such as ${url.origin}, not ${quoteGiven(publicUrl)}`,
    );
  }
  // The port things use is the one to listen on: without one in the URL that is its scheme's
  // (the URL parser drops :443 and :80 as said). 8080 here left every thing pointed at a port
  // nothing listened on. Behind a proxy, hub.yml's api.port and api.tls say otherwise.
  const apiPort = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
  const brokerPort = o.brokerPort ?? 8883;
  if (apiPort === brokerPort) {
    throw new UsageError(`the API's port (--api-url) and the broker's (--broker-port, 8883 unless given) are both ${apiPort}: give each its own`);
  }
  const https = url.protocol === "https:";
  const candidate = {
    hub: {
      ownerId: o.ownerId ?? randomUUID(),
      env: o.env ?? "dev",
      api: {
        // A loopback public URL means things run on this machine: do not listen further out
        // (on IPv6's loopback when the URL names it: things will connect there).
        host: url.hostname === "[::1]" ? "::1" : LOOPBACK.has(url.hostname) ? "127.0.0.1" : "0.0.0.0",
        port: apiPort,
        // as the URL parser spells it: an IDN host in punycode (hub.yml's plain-YAML rule refused
        // http://bücher.example, saying it held spaces, quotes or '#'), the scheme and host lower case
        publicUrl: url.origin,
        tls: https,
        payloadLimitBytes: DEFAULT_PAYLOAD_LIMIT_BYTES,
      },
      broker: {
        host: brokerHost,
        port: brokerPort,
        listenHost: o.brokerListenHost ?? "0.0.0.0",
        names: [...new Set(names)],
      },
      metrics: o.metricsListen === undefined ? {} : { listen: o.metricsListen },
    },
  };
  const parsed = HubYamlSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.slice(1).join(".");
    const flag = where === "broker.host" ? brokerHostFlag : (INIT_FLAG_OF[where] ?? INIT_FLAG_OF[where.split(".")[0]!]);
    throw new UsageError(`hub init: ${flag ? `${flag} (${where})` : where}: ${issue.message}`);
  }
  return parsed.data.hub;
}

/** hub.yml's text for `settings` under `hub:`, after three comment lines saying what the addresses mean. */
export function renderHubYaml(settings: HubSettings): string {
  // An empty metrics (the schema's default) is left out rather than written as `metrics: {}`, a
  // value an operator would have to replace to add `listen:` under it. Absent and empty mean the
  // same: 127.0.0.1:9464, a busy port there a warning (docs/metrics.md).
  const { metrics, ...rest } = settings;
  const doc: { hub: Omit<HubSettings, "metrics"> & Partial<HubSettings> } = { hub: Object.keys(metrics).length ? settings : rest };
  return [
    "# FlashLex hub settings, written by `flashlex hub init`. Restart `flashlex hub serve` after an edit.",
    "# api.host/port and broker.listenHost/listenPort are where the hub listens; api.publicUrl and",
    "# broker.host/port are what new distributions tell things to use. Every message is kept unless",
    "# messages.keepFor (such as 365d) says how long: older ones are deleted (docs/hub.md, Retention).",
    stringify(doc),
  ].join("\n");
}
