/**
 * src/thing/bootstrap: the self-test, one check after another (checks.ts); the certificate
 * chain is judged by a real TLS handshake on loopback (handshake-check.ts).
 */
import { randomUUID } from "node:crypto";
import { lookup } from "node:dns/promises";
import { closeSync, fsyncSync, openSync, readdirSync, rmSync, statSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { type CertificateInfo, describeCertificate } from "../../crypto/certificate-info.ts";
import { signThingToken } from "../../crypto/jwt.ts";
import { pemBlocks } from "../../crypto/keys.ts";
import { newMessageId } from "../../protocol/ids.ts";
import { buildTestMessage } from "../../protocol/test-message.ts";
import { TEST_TOPIC } from "../../protocol/topics.ts";
import { actingAsOwnerChown } from "../../shared/act-as-owner.ts";
import { FlashlexError } from "../../shared/errors.ts";
import type { FileLock } from "../../shared/file-lock.ts";
import { removeLeftovers } from "../../shared/files.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { describeError, type Logger, quoteGiven, silentLogger } from "../../shared/log.ts";
import { accountName } from "../../shared/passwd.ts";
import { fileOnTheWay, pathExists } from "../../shared/path-exists.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { collectUrl } from "../egress/collect-url.ts";
import { deliverHttp, UNAUTHORIZED_FIX } from "../egress/delivery.ts";
import { CLOCK_FIX_HINT, describeOffset, HubClock } from "../egress/hub-clock.ts";
import { checkCertificateNamesThing, checkKeyMatchesCertificate, keyFileTooOpen, readIdentity, type ThingIdentity } from "../identity.ts";
import { createIngressHandler } from "../ingress/handler.ts";
import { probeServe, SERVE_PROBE_MS } from "../local/client.ts";
import { connectFailureHint } from "../mqtt/connect-failure.ts";
import { ThingSession } from "../mqtt/session.ts";
import type { ConfigLocation, ThingConfig } from "../settings.ts";
import { loadThingConfig, unknownConfigKeyNote } from "../settings.ts";
import type { MessageStore } from "../store/message-store.ts";
import { openThingStore, WRITE_PROBE } from "../store/open.ts";
import { type HandshakeVerdict, verifyByHandshake } from "./handshake-check.ts";

export type CheckStatus = "pass" | "fail" | "skip";

export interface CheckResult {
  name: string;
  status: CheckStatus;
  /** what was found (a path, a mode, a status code) */
  detail?: string;
  /** one sentence that says how to fix a failure */
  fix?: string;
}

export interface BootstrapReport {
  ok: boolean;
  thing?: { id: string; name: string };
  checks: CheckResult[];
}

/** Raised by a check: `detail` says what was found, `fix` what to do. */
class CheckFailed extends Error {
  constructor(
    readonly detail: string,
    readonly fix: string,
  ) {
    super(detail);
  }
}

function fail(detail: string, fix: string): never {
  throw new CheckFailed(detail, fix);
}

/**
 * A failed loopback handshake in one sentence and one fix. `code` is OpenSSL's verify error
 * name (X509_V_ERR_* without the prefix), kept in the detail as the TLS stack's own words.
 */
export function explainChainRefusal(code: string, identity: ThingIdentity, config: ThingConfig, now: Date): { detail: string; fix: string } {
  const { cert, rootCA } = config.paths;
  const clockFix = "Set the clock (enable NTP: sudo timedatectl set-ntp true); if the clock is right, download the thing's distribution again from the hub.";
  switch (code) {
    case "CERT_HAS_EXPIRED": {
      const expired = certificatesOf(identity, config).find((c) => c.info.notAfter.getTime() < now.getTime());
      const what = expired
        ? `${expired.info.subjectCN} in ${expired.file} expired on ${expired.info.notAfter.toISOString()}`
        : `a certificate in ${cert} or ${rootCA} has expired`;
      return { detail: `${what} (${code})`, fix: clockFix };
    }
    case "CERT_NOT_YET_VALID": {
      const early = certificatesOf(identity, config).find((c) => c.info.notBefore.getTime() > now.getTime());
      const what = early
        ? `${early.info.subjectCN} in ${early.file} is not valid until ${early.info.notBefore.toISOString()}`
        : `a certificate in ${cert} or ${rootCA} is not valid yet`;
      return { detail: `${what} (${code})`, fix: clockFix };
    }
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "CERT_SIGNATURE_FAILURE":
      return {
        detail: `${cert} does not chain to a CA in ${rootCA} (${code})`,
        fix: `Use the root CA file that came with the certificate; if an intermediate CA issued the certificate, append the intermediate's PEM to ${cert}, after the thing's own certificate.`,
      };
    case "INVALID_PURPOSE":
      return {
        detail: `${cert} may not be used as a TLS client certificate (${code}: its extended key usage lacks clientAuth)`,
        fix: "Use the thing certificate the hub issued, not a server certificate.",
      };
    default:
      return { detail: `the TLS handshake refuses ${cert} with ${rootCA} (${code})`, fix: "Use the key files from the thing's distribution zip, unchanged." };
  }
}

/** Every certificate the handshake looked at, the chain first, with the file it came from. */
function certificatesOf(identity: ThingIdentity, config: ThingConfig): { file: string; info: CertificateInfo }[] {
  const from = (pem: string, file: string) =>
    pemBlocks(pem).flatMap((b) => {
      try {
        return [{ file, info: describeCertificate(b.text) }];
      } catch {
        return []; // one the TLS stack read but the describer cannot: it just goes unnamed
      }
    });
  return [...from(identity.certPem, config.paths.cert), ...from(identity.caPem, config.paths.rootCA)];
}

/** The `flashlex.thing.keys` setting that names `path` (one of config.paths). */
function keySettingOf(config: ThingConfig, path: string): string {
  const which = (["rootCA", "cert", "privateKey", "publicKey"] as const).find((key) => config.paths[key] === path);
  return `flashlex.thing.keys.${which ?? "?"}`;
}

/** The fix for a key file refused for what it holds: the setting that named it, pointed at the right one of the files there. */
function keyFileFix(message: string, keysDir: string): string {
  const setting = /; the file is (flashlex\.thing\.keys\.\w+) in /.exec(message)?.[1];
  if (!setting) return "Use the key files from the thing's distribution zip, unchanged.";
  return `Point ${setting} at the right file${pemFilesIn(keysDir)}, or use the key files from the thing's distribution, unchanged.`;
}

/** How many PEM file names a fix lists before it counts the rest. */
const PEM_NAMES_SHOWN = 8;

/**
 * " (DIR holds a.pem, b.pem)": the PEM files there, so a setting can be pointed at one, at most
 * PEM_NAMES_SHOWN of them, a name of other than plain letters quoted as quoteGiven shows it (the
 * directory's names are not ours: escapes go in escaped); "" when none or it cannot be listed.
 */
function pemFilesIn(dir: string): string {
  try {
    const pems = readdirSync(dir)
      .filter((name) => name.endsWith(".pem"))
      .sort();
    if (!pems.length) return "";
    const shown = pems.slice(0, PEM_NAMES_SHOWN).map((name) => (/^[\w.@+-]+$/.test(name) ? name : quoteGiven(name)));
    const more = pems.length > PEM_NAMES_SHOWN ? ` and ${pems.length - PEM_NAMES_SHOWN} more` : "";
    return ` (${dir} holds ${shown.join(", ")}${more})`;
  } catch {
    return "";
  }
}

/** The earliest date a clock could plausibly show: before this it was never set. */
const EARLIEST_PLAUSIBLE = Date.UTC(2024, 0, 1);
const ROUND_TRIP_TIMEOUT_MS = 10_000;

/** What to check when the broker connection ends while a check waits on it. */
const CONNECTION_CLOSED_FIX =
  "The broker went away or closed the session: check the hub is running, and that no other device or process uses this thing's identity (a copied distribution, a running serve); then run bootstrap again.";

/**
 * The fix for a file this user may not read: give the thing's folder to the user flashlex runs
 * as (the service's user, the folder's owner), named. Started by root, bootstrap already runs as
 * that user (shared/act-as-owner.ts): "run it as that user" would send it round in a circle.
 */
function permissionFix(folder?: string): string {
  const chown = actingAsOwnerChown();
  if (chown) return `Started by root, bootstrap runs as the folder's user, as serve does: give it the folder (${chown}), then run bootstrap again.`;
  const user = chownUser();
  return `Make the files readable by ${user}, the user flashlex runs as here (sudo chown -R ${user}: ${folder ? shellWord(folder) : "the thing's folder"}), then run bootstrap again.`;
}

/** What a failure's message says when the file system refused this user. */
const PERMISSION_DENIED = /EACCES|EPERM|permission denied/;

/**
 * The fix for key files this user may not read in `keysDir`: inside the thing's `folder`, the
 * folder's (permissionFix); outside it (-k elsewhere), a chown of the folder changes nothing,
 * so the keys directory is what to change, or -k.
 */
function keysPermissionFix(keysDir: string, folder: string): string {
  if (`${resolve(keysDir)}/`.startsWith(`${resolve(folder)}/`)) return permissionFix(folder);
  const own = join(folder, "keys");
  const which = pathExists(own) ? `-k ${shellWord(own)}, the thing's own` : "the keys from the thing's distribution zip";
  return `Pass -k with a keys directory ${runningUser()} may read (${which}), or give it that directory (sudo chown -R ${chownUser()}: ${shellWord(keysDir)}), then run bootstrap again.`;
}

/** The user this process runs as, by name (`uid N` when /etc/passwd has none). */
function runningUser(): string {
  const uid = process.geteuid?.() ?? 0;
  return accountName(uid) ?? `uid ${uid}`;
}

/** The user this process runs as, as `chown` takes it: its name, or its uid when /etc/passwd has none. */
function chownUser(): string {
  const uid = process.geteuid?.() ?? 0;
  return accountName(uid) ?? String(uid);
}

/** writeProbe's files, with the writer's pid: removed once it is gone. */
const PROBE_NAME = new RegExp(`^\\.${WRITE_PROBE}\\.(\\d+)-[0-9a-f]{8}\\.tmp$`);

/** What to do with a damaged database `file`. */
const damagedFix = (file: string) =>
  `Stop serve, move ${file} aside (flashlex starts a new one; \`sqlite3 ${file} .recover\` reads what can still be read of it) or restore a backup, then run bootstrap again.`;

/** What to do about a data directory `dir` that cannot be written, for the failure `error` (a permission one names what to give whom). */
function dataDirectoryFix(dir: string, error: FlashlexError): string {
  if (error.kind === "permission") {
    return `Give ${runningUser()}, the user flashlex runs as here, what the line above names (sudo chown or chmod), or pass -d with a directory that user may write.`;
  }
  return `Create ${dir} and make it writable by this user (a full file system needs space freed), or pass -d with a writable directory; one that went read-only (an SD card failing: \`dmesg\`) needs fsck and a remount, or a new card.`;
}

/**
 * Writes, syncs and removes a file in `dir`: writable means a write got through. access(W_OK)
 * passes on an ext4 that went read-only after an error (its emergency read-only sets no mount
 * flag), where every commit fails. One a killed bootstrap left (its pid gone) is removed first,
 * and the data directory check (store/open.ts) counts the name as a thing's. Throws what the
 * write throws.
 */
function writeProbe(dir: string): void {
  removeLeftovers(dir, PROBE_NAME);
  const file = join(dir, `.${WRITE_PROBE}.${process.pid}-${Buffer.from(crypto.getRandomValues(new Uint8Array(4))).toString("hex")}.tmp`);
  const fd = openSync(file, "wx", 0o600);
  try {
    writeSync(fd, "probe");
    fsyncSync(fd);
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}

/** The fix for a config that did not load, by what went wrong with it; `folder` is the thing's (the config's directory). */
function configFix(message: string, folder: string): string {
  if (PERMISSION_DENIED.test(message)) return permissionFix(folder);
  if (/cannot read|not a (regular )?file|too large|not a thing's config\.yml/.test(message))
    return "Give the thing's config.yml with -c, or run bootstrap in the folder that holds it.";
  if (/invalid YAML|not UTF-8/.test(message)) return "Fix the YAML at the line and column named above (spaces, not tabs; a colon after each key).";
  if (/the file is empty/.test(message)) return "Put back the thing's config.yml from its distribution zip (or flashlex enroll again).";
  return "Correct the key named above in the configuration file.";
}

/**
 * bootstrap: the self-test. Checks run in order; one whose prerequisites failed is skipped,
 * so the first failure is the one to fix. Nothing here retries: a check either works now or
 * says why not. A failing check goes into the report (`ok` false), it is not thrown.
 */
export async function runBootstrapChecks(location: ConfigLocation, log: Logger = silentLogger, origin?: string): Promise<BootstrapReport> {
  const checks: CheckResult[] = [];
  let config: ThingConfig | undefined;
  let identity: ThingIdentity | undefined;
  let session: ThingSession | undefined;
  let store: MessageStore | undefined;
  let mqttReady = false;

  /** `prerequisite`: false skips the check after an earlier failure; a text skips it, saying why. */
  const check = async (name: string, prerequisite: boolean | string, run: () => Promise<string | undefined> | string | undefined) => {
    if (prerequisite !== true) return void checks.push({ name, status: "skip", detail: prerequisite || "an earlier check failed" });
    try {
      const detail = await run();
      checks.push({ name, status: "pass", ...(detail ? { detail } : {}) });
      return true;
    } catch (err) {
      if (err instanceof CheckFailed) checks.push({ name, status: "fail", detail: err.detail, fix: err.fix });
      else checks.push({ name, status: "fail", detail: describeError(err), fix: "See the detail; run again with FLASHLEX_LOG_LEVEL=debug for more." });
      return false;
    }
  };

  const configOk = await check("config valid", true, () => {
    try {
      config = loadThingConfig(location, origin);
    } catch (err) {
      fail((err as Error).message, configFix((err as Error).message, dirname(resolve(location.config))));
    }
    const where = `${config!.file} (${config!.origin})`;
    // each with the note serve's warning gives it: a misspelt key is named with the one it likely meant
    const unknown = config!.unknownKeys.map((key) => `${key} (${unknownConfigKeyNote(key)})`);
    return unknown.length ? `${where}; unknown keys: ${unknown.join(", ")}` : where;
  });

  const filesOk = await check("key files present", Boolean(configOk), () => {
    const paths = config!.paths;
    const wanted = [paths.rootCA, paths.cert, paths.privateKey, ...(paths.publicKey ? [paths.publicKey] : [])];
    let missing: string[] = [];
    try {
      missing = wanted.filter((p) => !pathExists(p));
    } catch (err) {
      const message = toFlashlexError(err).message; // a keys directory this user may not search: not "missing"
      fail(message, PERMISSION_DENIED.test(message) ? keysPermissionFix(config!.keysDir, dirname(config!.file)) : configFix(message, dirname(config!.file)));
    }
    const inTheWay = missing.length ? fileOnTheWay(missing[0]!) : undefined;
    if (inTheWay !== undefined) fail(`${config!.keysDir}: ${inTheWay} is a file, not a directory`, "Pass -k with the directory that has the keys.");
    if (missing.length) {
      fail(
        `missing: ${missing.map((path) => `${path} (${keySettingOf(config!, path)})`).join(", ")}`,
        `Copy the distribution's keys into ${config!.keysDir}, pass -k with the directory that has them, or correct those settings in ${config!.file}${pemFilesIn(config!.keysDir)}.`,
      );
    }
    try {
      identity = readIdentity(config!);
    } catch (err) {
      // The message names the file and, for a convertible format, the openssl command.
      const message = (err as Error).message;
      fail(
        message,
        PERMISSION_DENIED.test(message)
          ? keysPermissionFix(config!.keysDir, dirname(config!.file))
          : /convert it with:/.test(message)
            ? "Convert the file with the command above, or use the key files from the thing's distribution zip."
            : keyFileFix(message, config!.keysDir),
      );
    }
    return `${config!.keysDir} (${identity!.tokenAlgorithm} key)`;
  });

  await check("private key readable by its owner only (0600)", Boolean(filesOk), () => {
    const path = config!.paths.privateKey;
    const open = keyFileTooOpen(path);
    if (open) fail(`${path} has mode ${open}`, `Run: chmod 600 ${path}`);
    return `0${(statSync(path).mode & 0o777).toString(8).padStart(3, "0")}`;
  });

  const matchOk = await check("certificate matches the private key", Boolean(filesOk), () => {
    try {
      checkKeyMatchesCertificate(identity!, config!);
    } catch (err) {
      fail((err as Error).message, "Use the certificate and the key from the same distribution.");
    }
  });

  const chainOk = await check("certificate chain accepted by a TLS handshake against the root CA", Boolean(matchOk), async () => {
    let verdict: HandshakeVerdict;
    try {
      verdict = await verifyByHandshake(identity!);
    } catch (err) {
      fail(`the loopback TLS handshake failed: ${describeError(err)}`, "Use the key files from the thing's distribution zip, unchanged.");
    }
    if (!verdict.authorized) {
      const { detail, fix } = explainChainRefusal(verdict.code, identity!, config!, new Date());
      fail(detail, fix);
    }
    const leaf = describeCertificate(identity!.certPem);
    try {
      checkCertificateNamesThing(identity!, config!);
    } catch (err) {
      fail((err as Error).message, "Use the config and keys of the same thing (the distribution zip the hub made for it).");
    }
    const chain = pemBlocks(identity!.certPem).length;
    return `valid until ${leaf.notAfter.toISOString()}${chain > 1 ? ` (with ${chain - 1} intermediate${chain > 2 ? "s" : ""})` : ""}`;
  });

  await check("clock plausible", true, () => {
    const now = Date.now();
    if (now < EARLIEST_PLAUSIBLE) fail(`the clock says ${new Date(now).toISOString()}`, "Set the clock: enable NTP with `sudo timedatectl set-ntp true`.");
    if (identity) {
      const info = describeCertificate(identity.certPem);
      if (now < info.notBefore.getTime()) {
        fail(
          `the clock says ${new Date(now).toISOString()}, before the certificate was issued`,
          "Set the clock: enable NTP with `sudo timedatectl set-ntp true`.",
        );
      }
    }
    return new Date(now).toISOString();
  });

  // A running serve holds the database (the armv7 build's driver, one process per file) and the
  // thing's one MQTT session: the checks ask it instead (below).
  // One that holds the directory but did not answer (stopped, or busy) is running all the same:
  // opening the database, or a session as the thing, would go behind its back (as for the commands).
  // A data directory this user may not search: no serve can be asked, and the database check says why.
  const { status: serve, silent: silentServe } = configOk
    ? await probeServe(config!.dataDir).catch(() => ({ status: undefined, silent: false }))
    : { silent: false };
  const storeOk = await check("data directory writable and the database opens", Boolean(configOk), () => {
    if (silentServe) {
      fail(
        `a flashlex serve holds ${config!.dataDir} but did not answer within ${SERVE_PROBE_MS / 1000} s (stopped, or busy); bootstrap neither opens its database nor connects as the thing behind its back`,
        "Let it go on (`kill -CONT` its process if it was stopped: `systemctl status flashlex` shows it) and run bootstrap again, or stop it first (sudo systemctl stop flashlex, or Ctrl-C where it runs).",
      );
    }
    if (serve) {
      try {
        writeProbe(config!.dataDir);
      } catch (err) {
        const error = toFlashlexError(err, config!.dataDir);
        fail(error.message, dataDirectoryFix(config!.dataDir, error));
      }
      return `${config!.paths.database} (open in the running flashlex serve)`;
    }
    try {
      store = openThingStore(config!, log);
      writeProbe(config!.dataDir);
    } catch (err) {
      const inTheWay = fileOnTheWay(`${config!.dataDir}/`);
      if (inTheWay !== undefined)
        fail(
          inTheWay === config!.dataDir ? `${inTheWay}: a file, not a directory` : `${config!.dataDir}: ${inTheWay} is a file, not a directory`,
          "Pass -d with the data directory serve uses (data/ beside the config by default).",
        );
      // storage errors name their file already; a file system error names its path
      const error = toFlashlexError(err);
      const reason = error.message;
      fail(
        reason.startsWith(config!.dataDir) ? reason : `${config!.paths.database}: ${reason}`,
        error.kind === "damaged" ? damagedFix(config!.paths.database) : dataDirectoryFix(config!.dataDir, error),
      );
    }
    return `${config!.paths.database} (${store!.db.driver})`;
  });

  const resolvedOk = await check("broker endpoint resolves", Boolean(configOk), async () => {
    const host = config!.yaml.thing.endpoint;
    try {
      const { address } = await lookup(host);
      return `${host} → ${address}`;
    } catch (err) {
      return fail(`${host}: ${describeError(err)}`, `Check flashlex.thing.endpoint in ${config!.file} and the device's network and DNS.`);
    }
  });

  // bootstrap cannot open a second MQTT session, but serve's own connection proves the same,
  // and the checks that need the session are skipped.
  const viaServe = serve?.connected ? "flashlex serve runs on this data directory and holds the thing's one MQTT session" : undefined;
  const canConnect = Boolean(chainOk && resolvedOk && storeOk);
  const nonce = randomUUID();
  let sessionLock: FileLock | undefined;
  let sessionEnded: Promise<string> = new Promise(() => {});
  let echoed: () => void = () => {};
  const echo = new Promise<void>((resolve) => (echoed = resolve));

  const connectOk = await check("mutual-TLS connect", canConnect, async () => {
    const thing = config!.yaml.thing;
    if (viaServe) return `${thing.endpoint}:${thing.mqtt.port}: connected, through the running flashlex serve`;
    if (serve)
      fail(
        "flashlex serve runs on this data directory and is not connected to the broker",
        "Its log says why (journalctl -u flashlex, when it runs as the service); to have bootstrap try the connection itself, stop it first (sudo systemctl stop flashlex, or Ctrl-C where it runs): both would use the thing's one MQTT session.",
      );
    // A serve for this thing with another data directory (which the probe above cannot see), or
    // a collect --via mqtt: taking their session over, bootstrap acknowledged messages on their
    // way to serve and stored them in its own -d's database.
    const { acquireSessionLock } = await import("../local/serve-lock.ts");
    sessionLock = await acquireSessionLock(config!.paths.privateKey, () => new FlashlexError(`${thing.name}: the MQTT session is held`, "try-later")).catch(
      (err) => {
        if (!(err instanceof FlashlexError) || err.kind !== "try-later") throw err;
        return fail(
          "another flashlex process on this machine is connected as this thing (a serve with another data directory, or a collect --via mqtt)",
          "Run bootstrap with that serve's data directory (-d), where it checks through serve, or stop it first (sudo systemctl stop flashlex): both would use the thing's one MQTT session.",
        );
      },
    );
    const handler = createIngressHandler({ config: config!, store: store!, log });
    session = new ThingSession({
      config: config!,
      identity: identity!,
      log,
      subscriptions: [thing.mqtt.ingress.topic],
      reconnect: false,
      ingress: {
        connectionStarted: (sessionPresent, broker) => handler.connectionStarted(sessionPresent, broker),
        async handle(packet) {
          // The hub's echo of our test message proves ingress; anything else is a real message.
          if (packet.payload.toString().includes(nonce)) return echoed();
          await handler.handle(packet);
        },
      },
    });
    // From now on the connection may end under us (the broker stops, another client takes the
    // thing's client id): the checks that wait on it hear why at once, instead of waiting out a
    // timer, and the process never runs out of work with a check unsettled.
    sessionEnded = new Promise<string>((resolve) => session!.once("fatal", (err: Error) => resolve(err.message)));
    try {
      await session.waitConnected(Math.min(config!.timeouts.connectMs, 15_000));
    } catch (err) {
      fail(
        `${thing.endpoint}:${thing.mqtt.port}: ${describeError(err)}`,
        connectFailureHint(err, config!) ?? "Check the endpoint and port, that the broker is up and trusts this root CA, and that the thing is not revoked.",
      );
    }
    mqttReady = true;
    return `${thing.endpoint}:${thing.mqtt.port} as ${identity!.thingName}, subscribed to ${thing.mqtt.ingress.topic}`;
  });

  const publishOk = await check(`publish the test message to ${TEST_TOPIC}`, viaServe ?? Boolean(connectOk), async () => {
    // the token names the thing to a hub behind an external broker, which cannot see who published
    const token = await signThingToken({ thingId: identity!.thingId, privateKey: identity!.privateKey });
    const fields = { thingId: identity!.thingId, thingName: identity!.thingName, message: config!.yaml.app.message, sequence: 0, nonce };
    const body = buildTestMessage({ ...fields, token });
    // The broker may go before its PUBACK (a hub killed right after it took the message): MQTT.js
    // keeps an unacknowledged QoS 1 message for a reconnect bootstrap never makes, so only the
    // operation timeout (minutes) would end the wait. The end of the connection ends it at once.
    const publishing = session!.publish(TEST_TOPIC, body, 1);
    publishing.catch(() => {}); // what it says once the connection ended is told by `closed`
    const closed = sessionEnded.then((reason) => ({ ended: reason }));
    let outcome: { ended: string } | undefined;
    try {
      outcome = await Promise.race([publishing.then(() => undefined), closed]);
    } catch (err) {
      fail(describeError(err), `The broker must allow this thing to publish to ${TEST_TOPIC}.`);
    }
    if (outcome) fail(`the connection closed before the broker acknowledged it (${outcome.ended})`, CONNECTION_CLOSED_FIX);
    return `${JSON.stringify(fields)} and the thing's token`; // a bearer token is never printed
  });

  await check("ingress round trip", viaServe ?? Boolean(publishOk), async () => {
    // Not unref'd: while the round trip is awaited, this timer is what keeps the process alive.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<{ ended: "timeout" }>((r) => (timer = setTimeout(() => r({ ended: "timeout" }), ROUND_TRIP_TIMEOUT_MS)));
    const closed = sessionEnded.then((reason) => ({ ended: reason }));
    const outcome = await Promise.race([echo.then(() => undefined), timeout, closed]);
    clearTimeout(timer);
    const topic = config!.yaml.thing.mqtt.ingress.topic;
    if (outcome?.ended === "timeout") {
      fail(
        `no echo on ${topic} within ${ROUND_TRIP_TIMEOUT_MS / 1000} s`,
        "The hub echoes a bootstrap's test message to the thing's ingress topic: check the hub is running and serves this thing (flashlex.thing.id and name as the hub made them).",
      );
    }
    if (outcome) {
      fail(`the connection closed before the echo came on ${topic} (${outcome.ended})`, CONNECTION_CLOSED_FIX);
    }
    return `received on ${topic}`;
  });

  await check("egress through the collect API", Boolean(chainOk), async () => {
    // As collect and serve deliver: a device clock the hub's answers show to be off is corrected
    // (tokens signed with the hub's time), so the check passes and says so, with the fix.
    const clock = new HubClock(log);
    const outcome = await deliverHttp(
      { message_id: newMessageId(), body: JSON.stringify({ foo: "bar" }) },
      { config: config!, identity: identity!, timeoutMs: 15_000, clock },
    );
    if (outcome.kind !== "sent") {
      fail(
        `${collectUrl(config!)}: ${outcome.error}`,
        outcome.status === 401
          ? UNAUTHORIZED_FIX
          : "Check flashlex.app.api.endpoint and env in the config, that the hub's API is reachable, and that it knows this thing.",
      );
    }
    const skew = clock.offsetMs
      ? `; WARN: the device clock is ${describeOffset(-clock.offsetMs)} the hub's, so tokens were signed with the hub's time (serve and collect do the same); fix: ${CLOCK_FIX_HINT}`
      : "";
    return `HTTP ${outcome.status ?? ""}${skew}`;
  });

  if (mqttReady) await session?.stop();
  else session?.client.end(true);
  await sessionLock?.release();
  store?.close();
  return {
    // a skip follows a failure, or is one a running serve makes (its session is proven otherwise)
    ok: !checks.some((c) => c.status === "fail"),
    // the config names the thing: said even when its key files were refused
    thing: config ? { id: config.yaml.thing.id, name: config.yaml.thing.name } : undefined,
    checks,
  };
}
