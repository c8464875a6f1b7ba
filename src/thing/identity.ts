/**
 * The thing's identity: its root CA, certificate and private key, read once through one loader
 * that `serve`, `collect`, `bootstrap`, `install-service` and the SDK all use, so that whatever
 * one of them accepts the others accept too, and in the same normalised form (src/crypto/
 * key-files.ts: PEM from other systems, DER, BOMs and CRLFs all end up as canonical PEM).
 *
 * Identity problems are configuration errors found before anything else happens: a missing or
 * unreadable file, a PKCS#12/PKCS#7/encrypted/empty file, a key of a kind FlashLex does not
 * sign with, a certificate that is not the key's, a certificate of another thing, a root CA file
 * that holds no CA (the thing's own certificate). Each is one line naming the file, exit 78
 * (77 when the file exists but this user may not read it).
 */
import { type KeyObject, X509Certificate } from "node:crypto";
import { statSync } from "node:fs";
import { describeCertificate, isCa, readableCertificates, signs } from "../crypto/certificate-info.ts";
import { CryptoError } from "../crypto/errors.ts";
import { certificatePem, KeyFileError, normaliseCertificates, normalisePrivateKey } from "../crypto/key-files.ts";
import { spkiDer, type ThingTokenAlgorithm, tokenAlgorithmFor } from "../crypto/keys.ts";
import { ConfigError, FlashlexError } from "../shared/errors.ts";
import { quoteGiven } from "../shared/log.ts";
import { notThereNote } from "../shared/path-exists.ts";
import { readRegularFile } from "../shared/regular-file.ts";
import { deniedNote } from "../shared/why-denied.ts";
import type { ThingConfig } from "./settings.ts";

/** What the thing proves itself with: the PEMs for mutual TLS and the key that signs its JWTs. */
export interface ThingIdentity {
  thingId: string;
  thingName: string;
  /** every certificate of the root CA file, canonical PEM */
  caPem: string;
  /** the thing's certificate first, then any intermediates from the same file, canonical PEM */
  certPem: string;
  /** the private key as PKCS#8 PEM, whatever format the file had */
  keyPem: string;
  privateKey: KeyObject;
  /** what the key signs thing tokens with: RS256, ES256 or ES384 */
  tokenAlgorithm: ThingTokenAlgorithm;
}

/** The identity files config.yml names under `flashlex.thing.keys`. */
type KeyFileSetting = "rootCA" | "cert" | "privateKey";

/** Where a key file's name comes from, for a refusal: `flashlex.thing.keys.privateKey in /x/config.yml`. */
function keySetting(config: ThingConfig, which: KeyFileSetting): string {
  return `flashlex.thing.keys.${which} in ${config.file}`;
}

/**
 * Reads a key file's bytes; a missing file, a FIFO, a device or one over MAX_PEM_FILE_BYTES is a
 * configuration error (78), an unreadable one a permission error (77). A missing file's message
 * names the setting that names it: the file may be there under its right name, the setting wrong.
 */
function readKeyFile(config: ThingConfig, which: KeyFileSetting, what: string): Buffer {
  const path = config.paths[which];
  try {
    return readRegularFile(path, what);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    // a key file not where the config and -k say: bootstrap's fix, said here too
    const fix =
      code === "ENOENT" ? `; copy the distribution's keys there, pass -k with the directory that has them, or correct ${keySetting(config, which)}` : "";
    const message = `${path}: cannot read the ${what}${notThereNote(err, path)} (${code ?? "error"})${fix}${deniedNote(err, path)}`;
    if (code === "EACCES" || code === "EPERM") throw new FlashlexError(message, "permission");
    throw new ConfigError(message);
  }
}

/**
 * Turns a crypto-layer refusal of a file's contents into a ConfigError naming the file and the
 * setting that names it (a public key where the private key belongs is most often a setting
 * pointed at the wrong one of two files side by side).
 */
function configError(config: ThingConfig, which: KeyFileSetting, err: unknown): never {
  const path = config.paths[which];
  const named = `; the file is ${keySetting(config, which)}`;
  if (err instanceof KeyFileError) throw new ConfigError(`${err.describe(path)}${named}`);
  if (err instanceof CryptoError) throw new ConfigError(`${path}: ${err.message}${named}`);
  throw err;
}

/**
 * Reads and normalises the three files and checks that the key is of a kind FlashLex signs
 * with. Does not check that key and certificate belong together (`checkKeyMatchesCertificate`):
 * bootstrap reports that as a check of its own. Throws ConfigError (78) or FlashlexError (77).
 */
export function readIdentity(config: ThingConfig): ThingIdentity {
  const keyBytes = readKeyFile(config, "privateKey", "private key");
  let key: { pem: string; key: KeyObject };
  let tokenAlgorithm: ThingTokenAlgorithm;
  try {
    key = normalisePrivateKey(keyBytes);
    tokenAlgorithm = tokenAlgorithmFor(key.key);
  } catch (err) {
    configError(config, "privateKey", err);
  }
  let certificates: Buffer[];
  try {
    certificates = normaliseCertificates(readKeyFile(config, "cert", "thing certificate"), "certificate").der;
  } catch (err) {
    configError(config, "cert", err);
  }
  let caPem: string;
  try {
    caPem = normaliseCertificates(readKeyFile(config, "rootCA", "root CA certificate"), "root CA").pem;
  } catch (err) {
    configError(config, "rootCA", err);
  }
  return {
    thingId: config.yaml.thing.id,
    thingName: config.yaml.thing.name,
    caPem,
    certPem: leafFirst(certificates, key.key).map(certificatePem).join(""),
    keyPem: key.pem,
    privateKey: key.key,
    tokenAlgorithm,
  };
}

/**
 * TLS sends the first certificate of the file as the thing's own and the rest as its chain, so
 * the certificate of this key goes first, wherever the file had it (some tools write the chain
 * root-first). When no certificate is the key's, the order is kept and the match check says so.
 */
function leafFirst(certificates: Buffer[], privateKey: KeyObject): Buffer[] {
  const own = spkiDer(privateKey);
  const index = certificates.findIndex((der) => certificateSpki(der)?.equals(own));
  if (index <= 0) return certificates;
  return [certificates[index]!, ...certificates.slice(0, index), ...certificates.slice(index + 1)];
}

/** The SPKI DER of a certificate's key, or undefined when node cannot read its key. */
function certificateSpki(certificate: Buffer | string): Buffer | undefined {
  try {
    return spkiDer(new X509Certificate(certificate).publicKey);
  } catch {
    return undefined;
  }
}

/** Throws ConfigError naming the certificate file unless its first certificate carries the private key's public half. */
export function checkKeyMatchesCertificate(identity: ThingIdentity, config: ThingConfig): void {
  // X509Certificate reads the first block of the PEM: the thing's own certificate.
  if (!certificateSpki(identity.certPem)?.equals(spkiDer(identity.privateKey))) {
    // a CA's certificate here is the setting pointed at the root CA file beside it
    const [first] = readableCertificates(identity.certPem);
    if (first && isCa(first)) {
      throw new ConfigError(
        `${config.paths.cert}: this file holds a CA certificate, not the thing's (the file is ${keySetting(config, "cert")}); point it at the thing's certificate (<thing name>-certificate.pem in a distribution)`,
      );
    }
    throw new ConfigError(
      `${config.paths.cert}: this certificate was not issued for the private key ${config.paths.privateKey}; use the certificate and key of the same distribution`,
    );
  }
}

/**
 * Throws ConfigError naming the certificate file and the config's key unless the certificate's
 * subject CN is the config's thing name (`flashlex.thing.name`). The hub issues each thing's
 * certificate with its name as CN, and its broker takes the CN as who connects: a certificate
 * of another thing (copied in under this thing's file names) would connect as that other thing,
 * or be refused, and its tokens are refused by the hub (401): nothing would ever be delivered.
 */
export function checkCertificateNamesThing(identity: ThingIdentity, config: ThingConfig): void {
  let cn: string | undefined;
  try {
    cn = describeCertificate(identity.certPem).subjectCN;
  } catch {
    cn = undefined; // a certificate the describer cannot read: the TLS stack decides about it
  }
  if (cn !== undefined && cn !== identity.thingName) {
    throw new ConfigError(
      `${config.paths.cert}: the certificate is for ${quoteGiven(cn)}, the config names ${quoteGiven(identity.thingName)} (flashlex.thing.name in ${config.file}); use the config and keys of the same thing`,
    );
  }
}

/**
 * Throws ConfigError naming the root CA file when it holds no CA at all: no certificate that is a
 * CA (basicConstraints CA:TRUE) or self-signed (an old v1 root). The thing checks the broker's
 * certificate with this file, and a leaf (most often the thing's own certificate, the other
 * *-cert*.pem beside it) vouches for no broker: every handshake would fail, and serve retried for
 * ever. A file whose certificates node cannot read is left to the TLS handshake.
 */
export function checkRootCAHoldsCA(identity: ThingIdentity, config: ThingConfig): void {
  const roots = readableCertificates(identity.caPem);
  if (roots.length === 0 || roots.some(isCa)) return;
  const [leaf] = readableCertificates(identity.certPem);
  const what = leaf && roots.some((root) => root.raw.equals(leaf.raw)) ? "the thing's own certificate" : "no CA certificate";
  throw new ConfigError(
    `${config.paths.rootCA}: this file holds ${what}, so no broker's certificate can be checked with it (${keySetting(config, "rootCA")}); use the root CA file that came with the thing's certificate (root-ca-cert.pem in a distribution)`,
  );
}

/**
 * Why the thing's certificate does not chain to the root CA file, in one sentence with the fix;
 * undefined when it does: signed by a certificate of the file, directly or through intermediates
 * that follow it in its own file (RFC 5280 §6.1, names and signatures only; dates and key usages
 * are the handshake's, as a board's clock may be unset at boot). Not a refusal: the file checks
 * the broker, and a broker whose certificate another CA issued may be trusted by it while the
 * hub's broker checks the thing against the hub's CA. Bootstrap judges the chain by a real
 * handshake; serve warns at start (identity.root_ca_not_issuer).
 */
export function rootCaMismatch(identity: ThingIdentity, config: ThingConfig): string | undefined {
  const [leaf, ...intermediates] = readableCertificates(identity.certPem);
  const roots = readableCertificates(identity.caPem);
  if (!leaf || roots.length === 0) return undefined;
  let subject = leaf;
  const unused = [...intermediates];
  for (;;) {
    const current = subject;
    if (roots.some((root) => signs(root, current))) return undefined;
    const next = unused.findIndex((issuer) => signs(issuer, current));
    if (next < 0) break;
    subject = unused.splice(next, 1)[0]!;
  }
  const { cert, rootCA } = config.paths;
  return `no CA in ${rootCA} (flashlex.thing.keys.rootCA) issued ${cert}: a broker that trusts only the hub's CA refuses it if this is another hub's CA file, and one that gets no intermediate with it refuses it too; use the root CA file that came with the certificate (root-ca-cert.pem in a distribution), or append the intermediate CA's PEM to ${cert} after the thing's own certificate`;
}

/**
 * The one identity check, before anything is connected, queued or written: the files load, the
 * key is RSA >= 2048 / EC P-256 / EC P-384, the certificate is the key's, it names this thing
 * (its CN is flashlex.thing.name), and the root CA file holds a CA. Throws ConfigError (78) or,
 * for a file this user may not read, FlashlexError (77); the message names the file.
 */
export function loadIdentity(config: ThingConfig): ThingIdentity {
  const identity = readIdentity(config);
  checkKeyMatchesCertificate(identity, config);
  checkCertificateNamesThing(identity, config);
  checkRootCAHoldsCA(identity, config);
  return identity;
}

/** The private key file's mode as "0640" when group or others may read or write it; undefined when it is 0600 or stricter. */
export function keyFileTooOpen(path: string): string | undefined {
  const mode = statSync(path).mode & 0o777;
  return mode & 0o077 ? `0${mode.toString(8)}` : undefined;
}
