/**
 * `flashlex enroll`: a device becomes a thing with a key it made itself (docs/enrolment.md).
 *
 *  1. The folder is checked first: a folder that already holds a thing is refused before the
 *     token is spent.
 *  2. `GET {hub}/enroll`: the hub's CA and the owner prefix. The CA must have the SHA-256
 *     fingerprint the operator printed with the token (`--ca-fingerprint`), else nothing more
 *     happens (78): no trust on first use. For an https hub this one request trusts no
 *     certificate (it carries nothing secret and its answer is judged by the fingerprint); every
 *     later request trusts that CA and only it.
 *  3. A key pair is made here (RSA-2048 or EC P-256) and kept, 0600, in the folder's staging
 *     place (`.enrol/`) until the enrolment completes, so a retry after the hub or this process
 *     died mid-way sends the same key (the hub then answers with the certificate it already
 *     issued: src/hub/enrolment/enrol.ts); then a CSR (RFC 2986) with CN = owner prefix, dash,
 *     name: the name the hub will give the thing.
 *  4. `POST {hub}/enroll` with the token, the name and the CSR. The answer's CA must be the
 *     pinned one, the certificate must be signed by it, name the thing and carry this key, and
 *     the config must be a valid thing config naming the same thing.
 *  5. The folder is written all or nothing (folder.ts).
 */
import { createPublicKey, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { parse } from "yaml";
import { describeCertificate } from "../../crypto/certificate-info.ts";
import { createCsr } from "../../crypto/csr.ts";
import { generateThingKeyPair, spkiDer, type ThingKeyType } from "../../crypto/keys.ts";
import { TYPED_THING_NAME, TYPED_THING_NAME_RULE } from "../../protocol/ids.ts";
import { PYTHON_MODULE, PYTHON_MODULE_FILE } from "../../protocol/python-module.ts";
import { ThingYamlSchema } from "../../protocol/thing-config.ts";
import { ConfigError, FlashlexError, InputError, UsageError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { type Logger, quoteGiven } from "../../shared/log.ts";
import { notADirectory, pathExists } from "../../shared/path-exists.ts";
import { parseUrlStrictly } from "../../shared/strict-url.ts";
import {
  acquireEnrolLock,
  checkFolderFree,
  firstMissingDirectory,
  forgetPendingKey,
  pendingKeyPair,
  removeEmptyDirectories,
  STAGING_DIR,
  writeThingFolder,
} from "./folder.ts";
import { hubRequest } from "./hub-request.ts";

export interface EnrolOptions {
  /** the hub's API base, `https://hub.example:8080/dev/v1`, as `hub enroll-token create` prints it */
  hubUrl: string;
  token: string;
  /** the typed name; the thing is called `<owner prefix>-<name>` */
  name: string;
  /** SHA-256 of the hub CA's DER, hex, with or without colons */
  caFingerprint: string;
  /** the thing's folder: config.yml and keys/ go here */
  dir: string;
  /** absent: RSA for a new key; a key kept from an earlier attempt is used whatever its type */
  keyType?: ThingKeyType;
  /** per request, ms */
  timeoutMs?: number;
  /**
   * Stops the enrolment while it waits for the hub (Ctrl-C: cli/command.ts `interruptible`), with
   * the signal's reason thrown; once the hub answered, the folder is written whatever it says.
   */
  signal?: AbortSignal;
}

export interface EnrolResult {
  thingId: string;
  thingName: string;
  configPath: string;
  keysDir: string;
  /** Unix ms */
  notAfter: number;
}

/** `AB:CD:...`, `abcd...`, `sha256:...` → 64 upper-case hex digits; UsageError (64) for anything else. */
export function normaliseFingerprint(text: string): string {
  const hex = text
    .trim()
    .replace(/^sha-?256[:=]/i, "")
    .replace(/[:\s]/g, "")
    .toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex))
    throw new UsageError("--ca-fingerprint must be the SHA-256 fingerprint `hub enroll-token create` printed (64 hex digits, colons allowed)");
  return hex;
}

/** The hub's API base URL, without a trailing slash; UsageError (64) unless http(s) and ending in /<env>/v1. */
export function normaliseHubUrl(text: string): string {
  const url = parseUrlStrictly(text);
  if (!url) throw new UsageError(`--hub must be the hub's API URL, such as https://hub.example:8080/dev/v1, not ${quoteGiven(text)}`);
  const path = url.pathname.replace(/\/+$/, "");
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !/^\/[A-Za-z0-9_-]+\/v1$/.test(path) || url.search || url.hash) {
    // the address `hub init --api-url` took (scheme, host and port only): say the URL it likely means
    const bare = (url.protocol === "http:" || url.protocol === "https:") && path === "" && !url.search && !url.hash;
    const meant = bare ? ` (the hub's address alone: its API is likely ${url.origin}/dev/v1)` : "";
    throw new UsageError(
      `--hub must be the hub's API URL as \`hub enroll-token create\` printed it, ending in /<env>/v1 (such as https://hub.example:8080/dev/v1), not ${quoteGiven(text)}${meant}`,
    );
  }
  return `${url.origin}${path}`;
}

const fingerprintOf = (pem: string) => describeCertificate(pem).fingerprint256.replace(/:/g, "");
/** `AB:CD:...`: how the hub prints a fingerprint (`hub enroll-token create`), so both ends read alike. */
const withColons = (hex: string) => hex.match(/../g)!.join(":");

/** What to do after a failure that may have left a thing on the hub without its answer. */
const retryHint = (dir: string) =>
  `the key made for this enrolment is kept in ${dir}/${STAGING_DIR}: run the same \`flashlex enroll\` again (a fresh token works too), and the hub answers with the thing it may already have made`;

/**
 * The test-only fault hook: SIGKILL right after `step` when FLASHLEX_FAULT_KILL_AT_ENROL names
 * it (`answered`: the hub's answer arrived, nothing written yet). Never set outside tests.
 */
function faultHook(step: string): void {
  if (process.env.FLASHLEX_FAULT_KILL_AT_ENROL === step) process.kill(process.pid, "SIGKILL");
}

/**
 * A hub refusal (4xx) is the token's or the request's fault: 65; anything else the hub's: 69. A
 * token the hub will never take again (unknown, expired, revoked, used up: hub/enrolment/tokens.ts
 * whyRefused) says where a new one comes from.
 */
function answerError(status: number, message: string): FlashlexError {
  if (status >= 400 && status < 500) {
    const newToken = /^the enrolment token (is not known|has expired|was revoked|was already used)/.test(message)
      ? "; ask the hub's operator for a new one (flashlex hub enroll-token create)"
      : "";
    return new InputError(`the hub refused the enrolment: ${message}${newToken}`);
  }
  return new FlashlexError(`the hub could not enrol this device (HTTP ${status}: ${message}); try again later`, "unavailable");
}

/**
 * Enrols this device (see the module comment). Throws UsageError (64) for a bad flag,
 * ConflictError (65) for a folder that holds a thing, InputError (65) when the hub refuses
 * the token, the name or the CSR, FlashlexError `unavailable` (69) when the hub cannot be
 * reached or fails, ConfigError (78) when the hub's CA is not the pinned one or its answer does
 * not hold together. Nothing is written unless everything succeeded.
 */
export async function enrolDevice(opts: EnrolOptions, log: Logger): Promise<EnrolResult> {
  const hubUrl = normaliseHubUrl(opts.hubUrl);
  const pinned = normaliseFingerprint(opts.caFingerprint);
  if (!TYPED_THING_NAME.test(opts.name)) throw new UsageError(`--name ${quoteGiven(opts.name)}: a thing name is ${TYPED_THING_NAME_RULE}`);
  if (!opts.token) throw new UsageError("--token is required (the enrolment token `hub enroll-token create` printed)");
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const notDir = notADirectory(opts.dir);
  if (notDir !== undefined) throw new UsageError(`--dir ${opts.dir}: ${notDir}; give the folder the thing will live in`);
  checkFolderFree(opts.dir);
  const made = firstMissingDirectory(opts.dir);
  // One enrolment per folder at a time; the folder checked again once it is ours (the other may have just finished).
  const lock = await acquireEnrolLock(opts.dir);
  try {
    checkFolderFree(opts.dir);
    return await enrolInFolder(opts, log, hubUrl, pinned, timeoutMs);
  } catch (err) {
    // a failed enrolment leaves no empty folder it made (one holding a key kept for the retry
    // stays); the lock's file goes first, or the folder would not be empty
    await lock.release();
    if (made !== undefined) removeEmptyDirectories(opts.dir, made);
    throw err;
  } finally {
    await lock.release();
  }
}

/** enrolDevice's work once the folder is this process's alone. */
async function enrolInFolder(opts: EnrolOptions, log: Logger, hubUrl: string, pinned: string, timeoutMs: number): Promise<EnrolResult> {
  const { signal } = opts;
  const info = await hubRequest(`${hubUrl}/enroll`, { method: "GET", trust: { kind: "none-yet" }, timeoutMs, signal });
  if (info.status === 404) throw new ConfigError(`${hubUrl}/enroll: no such route; check --hub (the hub's API URL as \`hub enroll-token create\` printed it)`);
  if (info.status !== 200) throw answerError(info.status, info.message);
  const { caCertificate, ownerPrefix } = (info.result ?? {}) as { caCertificate?: unknown; ownerPrefix?: unknown };
  if (typeof caCertificate !== "string" || typeof ownerPrefix !== "string" || !/^[0-9a-f]{8}$/.test(ownerPrefix)) {
    throw new ConfigError(`${hubUrl}/enroll did not answer as a FlashLex hub does (no CA and owner prefix); check --hub`);
  }
  let actual: string;
  try {
    actual = fingerprintOf(caCertificate);
  } catch {
    throw new ConfigError(`${hubUrl}/enroll answered with a CA that is not a certificate; check --hub`);
  }
  if (actual !== pinned) {
    // The fingerprint it did get is not printed: it would invite a copy into --ca-fingerprint,
    // and the one to trust is read on the hub itself.
    throw new ConfigError(
      `the hub's CA is not the pinned one (${withColons(pinned)}): this is not the hub the token came from, or someone is in between; nothing was sent. Compare --ca-fingerprint with what \`flashlex hub enroll-token create\` printed on the hub`,
    );
  }
  log.debug("enrol.ca_pinned", { hub: hubUrl, fingerprint: actual });

  const thingName = `${ownerPrefix}-${opts.name}`;
  const keys = await pendingKeyPair(opts.dir, { name: opts.name, keyType: opts.keyType }, generateThingKeyPair);
  if (!keys.made) log.info("enrol.key_reused", { dir: opts.dir, why: "an earlier enrolment in this folder did not complete" });
  const csr = await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: thingName });
  let answer: Awaited<ReturnType<typeof hubRequest>>;
  try {
    answer = await hubRequest(`${hubUrl}/enroll`, {
      method: "POST",
      body: { token: opts.token, name: opts.name, csr },
      trust: { kind: "pinned-ca", caPem: caCertificate },
      timeoutMs,
      signal,
    });
  } catch (err) {
    // Stopped while the hub had the request: it may have enrolled the thing, so the key stays for the retry.
    if (signal?.aborted) throw err;
    // The hub may have enrolled the thing before the answer was lost: the retry sends the same key.
    if (err instanceof FlashlexError && err.kind === "unavailable") {
      throw new FlashlexError(`${err.message}; ${retryHint(opts.dir)}`, "unavailable", { cause: err });
    }
    // refused before the hub took anything (TLS, the answer's form): a key made for this attempt goes
    if (keys.made) forgetPendingKey(opts.dir);
    throw err;
  }
  if (answer.status >= 500) throw new FlashlexError(`${answerError(answer.status, answer.message).message}; ${retryHint(opts.dir)}`, "unavailable");
  if (answer.status !== 201 && answer.status !== 200) {
    // The hub refused this attempt (token, name, CSR) and made nothing: a key made for it goes, so
    // the folder is free for another name. One kept from an earlier attempt stays (the hub may hold it).
    if (keys.made) forgetPendingKey(opts.dir);
    throw answerError(answer.status, answer.message);
  }
  faultHook("answered");
  // From here on nothing waits: the hub enrolled the thing, and the folder is written whole even
  // if a signal came meanwhile (stopping now would only leave the retry to do it).

  const result = (answer.result ?? {}) as { id?: unknown; name?: unknown; certificate?: unknown; caCertificate?: unknown; config?: unknown };
  const certPem = checkAnswer(result, { caPem: caCertificate, pinned, thingName, publicKeyDer: spkiDer(createPublicKey(keys.publicKeyPem)) });
  const config = ThingYamlSchema.safeParse(parse(String(result.config)));
  if (!config.success || config.data.flashlex.thing.name !== thingName || config.data.flashlex.thing.id !== result.id) {
    throw new ConfigError(
      "the hub's answer holds no valid config.yml for this thing; nothing was written (the thing exists on the hub: revoke it there and enrol again)",
    );
  }
  const names = config.data.flashlex.thing.keys;
  const files: Record<string, { content: string; mode: number }> = {
    [names.rootCA]: { content: caCertificate, mode: 0o644 },
    [names.cert]: { content: certPem, mode: 0o644 },
    [names.privateKey]: { content: keys.privateKeyPem, mode: 0o600 },
  };
  if (names.publicKey) files[names.publicKey] = { content: keys.publicKeyPem, mode: 0o644 };
  writeThingFolder(opts.dir, String(result.config), files);
  writePythonModule(opts.dir, log);
  return {
    thingId: String(result.id),
    thingName,
    configPath: `${opts.dir}/config.yml`,
    keysDir: `${opts.dir}/keys`,
    notAfter: describeCertificate(certPem).notAfter.getTime(),
  };
}

/** The certificate of an enrolment answer, once it proved to be this key's, this thing's and the pinned CA's; ConfigError (78) otherwise. */
function checkAnswer(
  result: { id?: unknown; certificate?: unknown; caCertificate?: unknown },
  expected: { caPem: string; pinned: string; thingName: string; publicKeyDer: Buffer },
): string {
  const broken = (why: string) =>
    new ConfigError(`the hub's answer does not hold together (${why}); nothing was written (the thing exists on the hub: revoke it there and enrol again)`);
  if (typeof result.certificate !== "string" || typeof result.caCertificate !== "string" || typeof result.id !== "string") throw broken("fields missing");
  if (fingerprintOf(result.caCertificate) !== expected.pinned) throw broken("its CA is not the pinned one");
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(result.certificate);
  } catch {
    throw broken("the certificate cannot be read");
  }
  if (!cert.verify(new X509Certificate(expected.caPem).publicKey)) throw broken("the certificate is not signed by the hub's CA");
  if (describeCertificate(result.certificate).subjectCN !== expected.thingName) throw broken(`the certificate does not name ${expected.thingName}`);
  if (!spkiDer(cert.publicKey).equals(expected.publicKeyDer)) throw broken("the certificate is not for the key made here");
  return result.certificate;
}

/**
 * flashlex.py beside config.yml, as a distribution zip has it (the README's Python path works for
 * an enrolled thing too). Written after the folder is complete and outside its all-or-nothing:
 * the thing is enrolled either way, so a failure is one WARN saying where to get the module. A
 * flashlex.py already there (the owner's own copy) is left as it is.
 */
function writePythonModule(dir: string, log: Logger): void {
  const file = join(dir, PYTHON_MODULE_FILE);
  if (pathExists(file, { cannotLook: true })) return; // one it may not look at (a link into a closed directory) is left as well
  try {
    writeFileAtomicallySync(file, PYTHON_MODULE, 0o644);
  } catch (err) {
    log.warn("enrol.python_module_not_written", { file, error: toFlashlexError(err).message, note: "copy flashlex.py from any distribution zip" });
  }
}
