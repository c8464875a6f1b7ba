/**
 * src/hub/home: the hub home directory: its paths (paths.ts) and how to open it (home.ts), its settings,
 * hub.yml (settings.ts), making a new one (init.ts), and the operator's tokens (tokens.ts).
 */
import { type KeyObject, randomBytes, X509Certificate } from "node:crypto";
import { statSync } from "node:fs";
import { join } from "node:path";
import { CryptoError } from "../../crypto/errors.ts";
import { loadPrivateKey, spkiDer } from "../../crypto/keys.ts";
import type { CertifiedKey } from "../../crypto/x509.ts";
import { getent } from "../../shared/accounts.ts";
import { ConfigError, FlashlexError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import type { Logger } from "../../shared/log.ts";
import { fileOnTheWay, pathExists, pathKind } from "../../shared/path-exists.ts";
import { readRegularFile } from "../../shared/regular-file.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { firstUnsearchable } from "../../shared/why-denied.ts";
import { type HubDatabase, parseHubDatabase } from "../store/database-url.ts";
import { hubDatabaseMissing } from "../store/sqlite-driver.ts";
import { type HubPaths, hubPaths } from "./paths.ts";
import { type HubSettings, loadHubSettings, unknownHubKeyNote } from "./settings.ts";

/** An initialised hub home: its paths, validated settings, and the database it uses. */
export interface HubHome {
  paths: HubPaths;
  settings: HubSettings;
  /** hub.db in the home, or the PostgreSQL database of `--db` / hub.yml's `hub.database.url` */
  database: HubDatabase;
}

/** A database chosen for one command (`--db`, `$FLASHLEX_HUB_DB`), over hub.yml's; `where` names it for errors. */
export interface DatabaseOverride {
  value: string;
  where: string;
}

/**
 * Opens the hub home in `dir`: its paths and validated settings. Throws ConfigError (78) when it
 * is not one, hub.yml is wrong, or hub.db is missing (no command but `hub init` makes one: an
 * empty database would be a new hub that refuses the operator's token); warns on `log` (when
 * given) about keys hub.yml has that the hub does not know, as the thing's config does.
 * The database is `override` when given, else hub.yml's `hub.database.url`, else hub.db in the
 * home (a bad URL: ConfigError naming where it came from, without its password).
 */
export function openHubHome(dir: string, log?: Logger, override?: DatabaseOverride): HubHome {
  let paths = hubPaths(dir);
  refuseUnreadableHome(paths);
  if (!pathExists(paths.config)) {
    if (pathKind(paths.dir) === "other") throw new ConfigError(`${paths.dir}: a file, not a hub home (the directory hub init made, holding hub.yml)`);
    const inTheWay = fileOnTheWay(paths.dir);
    if (inTheWay !== undefined) throw new ConfigError(`${paths.dir}: not a hub home: ${inTheWay} is a file, not a directory`);
    // A thing's folder, or the default home when --dir was forgotten: the hub is elsewhere, and
    // "run hub init" alone sent newcomers off to make a second hub.
    const elsewhere = "pass the hub's home with --dir (or set FLASHLEX_HUB_DIR)";
    if (pathExists(join(paths.dir, "config.yml"))) throw new ConfigError(`${paths.dir}: a thing's folder (it holds config.yml), not a hub home; ${elsewhere}`);
    throw new ConfigError(
      `${paths.dir}: not a hub home (no hub.yml); ${elsewhere}, or make a new hub here with \`flashlex hub init --dir ${shellWord(paths.dir)}\``,
    );
  }
  const loaded = loadHubSettings(paths.config);
  const { settings, unknownKeys } = loaded;
  if (settings.sharedDir) paths = hubPaths(dir, settings.sharedDir);
  const database = override
    ? parseHubDatabase(override.value, paths.database, override.where)
    : parseHubDatabase(settings.database?.url, paths.database, `hub.database.url in ${paths.config}`);
  if (database.kind === "sqlite" && !pathExists(paths.database)) throw hubDatabaseMissing(paths.database);
  for (const key of unknownKeys) log?.warn("config.unknown_key", { file: paths.config, key, note: unknownHubKeyNote(key) });
  if (settings.sharedDir && !pathExists(paths.shared)) {
    throw new ConfigError(`hub.sharedDir in ${paths.config}: ${paths.shared} does not exist (mount or create the directory the hubs share)`);
  }
  return { paths, settings, database };
}

/** Where a damaged or missing file of the home comes from again. */
const FROM_BACKUP = "made by hub init; put it back from a backup of the hub home";

/**
 * The hub CA's certificate (PEM text), made by `hub init`. Throws ConfigError (78) naming the
 * file when it is missing or not a regular file holding a certificate; what the file system
 * throws (EACCES) otherwise.
 */
export function readCaCertificate(paths: Pick<HubPaths, "caCert">): string {
  return readCertificateFile(paths.caCert, "CA certificate", `the hub CA's, ${FROM_BACKUP}`);
}

/**
 * The hub CA's certificate and key (PEM text), checked before anything is signed with them:
 * each a regular file holding what it should, and the key the certificate's own (with another
 * key, every certificate and CRL signed would fail to verify against the CA that things and
 * brokers trust). Throws ConfigError (78) naming the file at fault, a missing one included; what
 * the file system throws (EACCES) otherwise.
 */
export function readCa(paths: Pick<HubPaths, "caCert" | "caKey">): CertifiedKey {
  const certPem = readCaCertificate(paths);
  const keyPem = readKeyOf(paths.caKey, "CA private key", paths.caCert, certPem, "what it signed would not verify");
  return { certPem, keyPem };
}

/**
 * The broker's certificate and key (PEM text), which the embedded broker and the HTTPS API
 * serve, checked as readCa checks the CA's: an empty or damaged file would start a hub whose
 * every TLS handshake fails (the TLS library takes an empty key as none). Throws ConfigError (78)
 * naming the file at fault, a missing one included; what the file system throws (EACCES) otherwise.
 */
export function readBrokerTls(paths: Pick<HubPaths, "brokerCert" | "brokerKey">): CertifiedKey {
  return readTlsIdentity(paths.brokerCert, paths.brokerKey, "broker");
}

/** The hub's client certificate and key (PEM text), with which it logs in to an external broker, checked as readBrokerTls checks the broker's. */
export function readHubClientTls(paths: Pick<HubPaths, "clientCert" | "clientKey">): CertifiedKey {
  return readTlsIdentity(paths.clientCert, paths.clientKey, "hub client");
}

function readTlsIdentity(certFile: string, keyFile: string, whose: string): CertifiedKey {
  const certPem = readCertificateFile(certFile, `${whose} certificate`, `the ${whose}'s, ${FROM_BACKUP}`);
  const keyPem = readKeyOf(keyFile, `${whose} private key`, certFile, certPem, "no TLS handshake with it could succeed");
  return { certPem, keyPem };
}

/** A PEM file `hub init` made, as text: a missing one is ConfigError (78) like a damaged one, not the bare ENOENT (74). */
function readHomeFile(file: string, what: string, whose: string): string {
  try {
    return readRegularFile(file, what).toString("utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new ConfigError(`${file}: the ${what} is missing (${whose})`);
    throw err;
  }
}

function readCertificateFile(file: string, what: string, whose: string): string {
  const certPem = readHomeFile(file, what, whose);
  try {
    new X509Certificate(certPem);
  } catch {
    throw new ConfigError(`${file}: not a PEM certificate (${whose})`);
  }
  return certPem;
}

/** The private key in `keyFile`, which must be the key of `certPem` (from `certFile`); `otherwise` says what a wrong one would break. */
function readKeyOf(keyFile: string, what: string, certFile: string, certPem: string, otherwise: string): string {
  const keyPem = readHomeFile(keyFile, what, `the key of ${certFile}, ${FROM_BACKUP}`);
  let key: KeyObject;
  try {
    key = loadPrivateKey(keyPem);
  } catch (err) {
    throw new ConfigError(`${keyFile}: ${err instanceof CryptoError ? err.message : "not a private key"}`);
  }
  if (!spkiDer(new X509Certificate(certPem).publicKey).equals(spkiDer(key))) {
    throw new ConfigError(
      `${keyFile} is not the private key of ${certFile}: ${otherwise}; put back the key hub init made with that certificate (from a backup of the hub home)`,
    );
  }
  return keyPem;
}

/**
 * The secret shared with a RabbitMQ cluster (paths.brokerSecret), made once by
 * `ensureBrokerSecret`. Throws ConfigError (78) when it is missing or empty.
 */
export function readBrokerSecret(paths: HubPaths): string {
  if (!pathExists(paths.brokerSecret)) {
    throw new ConfigError(`${paths.brokerSecret} is missing: run \`flashlex hub rabbitmq-config\` to make it (and the nodes' config that holds it)`);
  }
  const secret = readRegularFile(paths.brokerSecret, "broker secret").toString("utf8").trim();
  if (!/^[A-Za-z0-9_-]{32,}$/.test(secret)) throw new ConfigError(`${paths.brokerSecret}: not a broker secret (32+ base64url characters)`);
  return secret;
}

/** Returns the broker secret, making it first (32 random bytes, base64url, mode 0600) if there is none. */
export function ensureBrokerSecret(paths: HubPaths): string {
  if (!pathExists(paths.brokerSecret)) writeFileAtomicallySync(paths.brokerSecret, `${randomBytes(32).toString("base64url")}\n`, 0o600);
  return readBrokerSecret(paths);
}

/**
 * A home this user may not enter (0700, another user's: the hub's service user, with the
 * documented unit) is a permission problem (77) naming its owner and the user to run as, not a
 * bare "permission denied" on hub.yml.
 */
function refuseUnreadableHome(paths: HubPaths): void {
  try {
    statSync(paths.config);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EACCES") return;
    const blocking = firstUnsearchable(paths.dir) ?? paths.dir;
    if (blocking !== paths.dir) {
      // a directory above the home (another user's home directory, /root) is what keeps this user out
      throw new FlashlexError(`${paths.dir}: permission denied: this user may not enter ${blocking} (${ownerOf(blocking) ?? "another user"}'s)`, "permission");
    }
    const owner = ownerOf(paths.dir);
    throw new FlashlexError(
      `${paths.dir}: permission denied: the hub home is ${owner ?? "another user"}'s; run the command as that user${owner ? ` (${owner === "root" ? "sudo" : `sudo -u ${owner}`} flashlex ...)` : ""}`,
      "permission",
    );
  }
}

/** The name of the user who owns `path` (the system's user database), or undefined when it cannot be looked at. */
function ownerOf(path: string): string | undefined {
  let uid: number;
  try {
    uid = statSync(path).uid;
  } catch {
    return undefined;
  }
  return getent("passwd", String(uid))?.[0] ?? `uid ${uid}`;
}
