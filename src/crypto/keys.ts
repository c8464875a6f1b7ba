/**
 * RSA key handling. Old FlashLex distributions shipped PKCS#1 private keys (`BEGIN RSA PRIVATE
 * KEY`); OpenSSL 3 and our CA write PKCS#8. Both must load, and both end up as node KeyObjects,
 * which jose and node:crypto accept directly, so nothing downstream cares which format it was.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { CryptoError } from "./errors.ts";

/** Every `-----BEGIN X-----…-----END X-----` block, with its label. */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

interface PemBlock {
  label: string;
  text: string;
}

export function pemBlocks(pem: string): PemBlock[] {
  if (typeof pem !== "string") return [];
  return [...pem.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1] ?? "", text: m[0] }));
}

/** Describes what was found instead, by label only: labels are not secret, contents are. */
function found(blocks: PemBlock[]): string {
  if (blocks.length === 0) return "no PEM block found";
  return `found ${blocks.map((b) => `"${b.label}"`).join(", ")}`;
}

const PRIVATE_LABELS = new Set(["RSA PRIVATE KEY", "PRIVATE KEY"]);
const PUBLIC_LABELS = new Set(["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"]);

/**
 * Loads a PKCS#1 or PKCS#8 private key. The first private-key block wins, so a file holding a
 * certificate and its key also works. Encrypted keys are refused: the agent runs unattended
 * and has nobody to ask for a passphrase.
 */
export function loadPrivateKey(pem: string): KeyObject {
  const blocks = pemBlocks(pem);
  const block = blocks.find((b) => PRIVATE_LABELS.has(b.label));
  if (!block) {
    if (blocks.some((b) => b.label === "ENCRYPTED PRIVATE KEY" || /Proc-Type: 4,ENCRYPTED/.test(b.text))) {
      throw new CryptoError("the private key is encrypted; FlashLex needs an unencrypted key");
    }
    throw new CryptoError(`not a PKCS#1 or PKCS#8 private key (${found(blocks)})`);
  }
  if (/Proc-Type: 4,ENCRYPTED/.test(block.text)) {
    throw new CryptoError("the private key is encrypted; FlashLex needs an unencrypted key");
  }
  try {
    return createPrivateKey({ key: block.text, format: "pem" });
  } catch {
    // The underlying message is dropped on purpose: this module promises one line, no material.
    throw new CryptoError(`the "${block.label}" block could not be parsed (damaged or truncated key)`);
  }
}

/**
 * Loads a public key from an SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) block, or takes
 * it out of a certificate. A private key is refused: it would work, but a private key sitting
 * where a public one belongs is a mistake worth hearing about.
 */
export function loadPublicKey(pem: string): KeyObject {
  const blocks = pemBlocks(pem);
  const block = blocks.find((b) => PUBLIC_LABELS.has(b.label));
  if (!block) throw new CryptoError(`not a public key or certificate (${found(blocks)})`);
  try {
    return createPublicKey({ key: block.text, format: "pem" });
  } catch {
    throw new CryptoError(`the "${block.label}" block could not be parsed (damaged or truncated)`);
  }
}

/**
 * A new RSA-2048 thing key pair. The private key is PKCS#1 because that is what FlashLex
 * distributions always shipped and what old tools next to the agent expect; the public key is
 * SPKI, which every consumer reads.
 */
export function generateRsaKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/** SPKI DER of a key; for a private key, of its public half. */
export function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  if (pub.type !== "public") throw new CryptoError("expected an asymmetric key, got a secret key");
  return pub.export({ type: "spki", format: "der" });
}

/** True when the certificate carries this private key's public half (compared as SPKI DER). */
export function keyMatchesCertificate(privateKey: KeyObject, certPem: string): boolean {
  const cert = pemBlocks(certPem).find((b) => b.label === "CERTIFICATE");
  if (!cert) throw new CryptoError("not a certificate");
  const certKey = loadPublicKey(cert.text);
  return spkiDer(privateKey).equals(spkiDer(certKey));
}

/** sha256 hex of the SPKI DER: the same value for a private key and its public key. */
export function publicKeyFingerprint(key: KeyObject): string {
  return createHash("sha256").update(spkiDer(key)).digest("hex");
}
