/**
 * Thing keys. Old FlashLex distributions shipped PKCS#1 RSA private keys (`BEGIN RSA PRIVATE
 * KEY`); OpenSSL 3 and our CA write PKCS#8; people who make their own EC key with `openssl
 * ecparam -genkey` have SEC1 (`BEGIN EC PRIVATE KEY`). All of them load, and all end up as node
 * KeyObjects, which jose and node:crypto accept directly, so nothing downstream cares which
 * format it was.
 *
 * A thing key is RSA (2048 bits or more, RS256 tokens) or EC P-256 (ES256) or P-384 (ES384):
 * `tokenAlgorithmFor` is the one place that decides, for the thing that signs and the hub that
 * verifies alike, so the algorithm always follows from the key and never from a token header.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from "node:crypto";
import { quoteGiven } from "../shared/log.ts";
import { CryptoError } from "./errors.ts";

/** Every `-----BEGIN X-----…-----END X-----` block, with its label. */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

interface PemBlock {
  label: string;
  text: string;
}

/** The PEM blocks (RFC 7468) in `pem`, in order, each its label and whole text; none for a non-string. */
export function pemBlocks(pem: string): PemBlock[] {
  if (typeof pem !== "string") return [];
  return [...pem.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1] ?? "", text: m[0] }));
}

/** Describes what was found instead, by label only: labels are not secret, contents are. */
function found(blocks: PemBlock[]): string {
  if (blocks.length === 0) return "no PEM block found";
  return `found ${blocks.map((b) => `"${b.label}"`).join(", ")}`;
}

/** Said whenever a key is refused for its kind, so the user learns what would work. */
export const SUPPORTED_KEYS = "FlashLex uses RSA keys of 2048 bits or more, EC P-256 or EC P-384 keys";

const PRIVATE_LABELS = new Set(["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"]);
const PUBLIC_LABELS = new Set(["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"]);

/**
 * Loads a PKCS#1, SEC1 or PKCS#8 private key. The first private-key block wins, so a file holding a
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
    throw new CryptoError(`not a PKCS#1, SEC1 or PKCS#8 private key (${found(blocks)})`);
  }
  if (/Proc-Type: 4,ENCRYPTED/.test(block.text)) {
    throw new CryptoError("the private key is encrypted; FlashLex needs an unencrypted key");
  }
  try {
    return createPrivateKey({ key: block.text, format: "pem" });
  } catch {
    // The underlying message is dropped on purpose: this module promises one line, no material.
    throw new CryptoError(`the "${block.label}" block could not be parsed (a damaged key, or one of a type FlashLex cannot use; ${SUPPORTED_KEYS})`);
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
 * Key generation off the event loop (node's thread pool; Bun's likewise): an RSA-2048 key takes
 * 50-150 ms, which the synchronous call took from every request and MQTT packet of `hub serve`
 * (measured: the longest event-loop stall while creating things went from 153 ms to 3 ms).
 * `generate` starts it and calls `done`. The callback form rather than util.promisify: node:util
 * costs every command that loads this module about a millisecond of start.
 */
function pemKeyPair(
  generate: (done: (err: Error | null, publicKeyPem: string, privateKeyPem: string) => void) => void,
): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  return new Promise((resolve, reject) => generate((err, publicKeyPem, privateKeyPem) => (err ? reject(err) : resolve({ privateKeyPem, publicKeyPem }))));
}

/**
 * A new RSA-2048 thing key pair. The private key is PKCS#1 because that is what FlashLex
 * distributions always shipped and what old tools next to the agent expect; the public key is
 * SPKI, which every consumer reads. Made off the event loop.
 */
export function generateRsaKeyPair(): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  return pemKeyPair((done) =>
    generateKeyPair(
      "rsa",
      {
        modulusLength: 2048,
        publicExponent: 0x10001,
        publicKeyEncoding: { type: "spki", format: "pem" },
        privateKeyEncoding: { type: "pkcs1", format: "pem" },
      },
      done,
    ),
  );
}

/** What `hub thing create --key-type` offers. */
export type ThingKeyType = "rsa" | "ec";
export const THING_KEY_TYPES: readonly ThingKeyType[] = ["rsa", "ec"];
/** The JWS algorithm (RFC 7518 §3.1) a thing key signs its tokens with. */
export type ThingTokenAlgorithm = "RS256" | "ES256" | "ES384";
/** Below this, OpenSSL 3 at Debian's default security level refuses the key in TLS anyway. */
export const MIN_RSA_BITS = 2048;

/** node names the NIST curves by their OpenSSL names; WebCrypto and JOSE by P-256/P-384. */
const CURVE_ALGORITHMS: Record<string, ThingTokenAlgorithm> = { prime256v1: "ES256", "P-256": "ES256", secp384r1: "ES384", "P-384": "ES384" };

/** "an Ed25519 key", "an RSA key of 1024 bits": what a key is, without any of its material. */
export function describeKeyKind(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  if (type === "rsa" || type === "rsa-pss") return `an ${type === "rsa" ? "RSA" : "RSA-PSS"} key of ${details?.modulusLength ?? "unknown"} bits`;
  if (type === "ec") return `an EC key on curve ${details?.namedCurve ?? "unknown"}`;
  if (type === "ed25519" || type === "ed448") return `an ${type === "ed25519" ? "Ed25519" : "Ed448"} key`;
  if (type === "dsa") return "a DSA key";
  return `a ${type ?? "secret"} key`;
}

/**
 * The token algorithm for a thing key (private or public half): RSA >= 2048 bits → RS256, EC
 * P-256 → ES256, EC P-384 → ES384. Anything else throws CryptoError saying what the key is
 * and what FlashLex takes. Both `signThingToken` and `verifyThingToken` call this, so a hub
 * verifies exactly the algorithm its registered key implies (no algorithm confusion).
 */
export function tokenAlgorithmFor(key: KeyObject): ThingTokenAlgorithm {
  const type = key.asymmetricKeyType;
  if (type === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits >= MIN_RSA_BITS) return "RS256";
  }
  if (type === "ec") {
    const alg = CURVE_ALGORITHMS[key.asymmetricKeyDetails?.namedCurve ?? ""];
    if (alg) return alg;
  }
  throw new CryptoError(`${describeKeyKind(key)} is not supported: ${SUPPORTED_KEYS}`);
}

/** "rsa" or "ec" for a supported thing key; throws CryptoError like `tokenAlgorithmFor`. */
export function thingKeyTypeOf(key: KeyObject): ThingKeyType {
  return tokenAlgorithmFor(key) === "RS256" ? "rsa" : "ec";
}

/**
 * A new thing key pair of `type`: RSA-2048 with a PKCS#1 private key (what FlashLex
 * distributions always shipped), or EC P-256 with a PKCS#8 private key (the format every TLS
 * stack and JWT library reads; SEC1 would only matter to tools older than EC support itself).
 * The public key is SPKI, which every consumer reads. Made off the event loop.
 */
export async function generateThingKeyPair(type: ThingKeyType): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  if (type === "rsa") return generateRsaKeyPair();
  if (type !== "ec") throw new CryptoError(`unknown key type ${quoteGiven(type)}; use rsa or ec`);
  return pemKeyPair((done) =>
    generateKeyPair(
      "ec",
      { namedCurve: "prime256v1", publicKeyEncoding: { type: "spki", format: "pem" }, privateKeyEncoding: { type: "pkcs8", format: "pem" } },
      done,
    ),
  );
}

/** SPKI DER of a key; for a private key, of its public half. */
export function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  if (pub.type !== "public") throw new CryptoError("expected an asymmetric key, got a secret key");
  return pub.export({ type: "spki", format: "der" });
}
