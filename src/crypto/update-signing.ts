/**
 * The release signature: Ed25519 (RFC 8032, "pure" Ed25519, no prehash) over the exact bytes of
 * a release manifest, with node:crypto (`sign(null, ...)` / `verify(null, ...)`: Ed25519 takes no
 * digest name). Nothing here is hand-rolled.
 *
 * The public key travels as text in config.yml and on the hub's routes: the 32 raw key bytes of
 * RFC 8032 §5.1.5 in base64 with an `ed25519:` prefix (`ed25519:3Ck2...=`, 52 characters), short
 * enough to read out and compare, and unambiguous about the algorithm. The private key is kept
 * as PKCS#8 PEM (what `openssl pkey` reads).
 *
 * Pure: bytes and PEM in, bytes and text out; failures are CryptoError without key material.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { CryptoError } from "./errors.ts";

const PREFIX = "ed25519:";

export interface UpdateKeyPair {
  /** PKCS#8 PEM; the hub home keeps it 0600 */
  privateKeyPem: string;
  /** `ed25519:<base64 of the 32 raw bytes>` */
  publicKey: string;
}

/** A new Ed25519 key pair for signing releases. */
export function generateUpdateKeyPair(): UpdateKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicKey: encodeUpdatePublicKey(publicKey) };
}

/** `ed25519:<base64>` for an Ed25519 public (or private: its public half) KeyObject. */
export function encodeUpdatePublicKey(key: KeyObject): string {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== "ed25519") throw new CryptoError(`the update key must be Ed25519, not ${pub.asymmetricKeyType}`);
  const jwk = pub.export({ format: "jwk" }) as { x?: string };
  return PREFIX + Buffer.from(jwk.x ?? "", "base64url").toString("base64");
}

/**
 * The KeyObject for `ed25519:<base64>`. Throws CryptoError when the text is not that form or not
 * 32 bytes (the caller names the file and key the text came from).
 */
export function decodeUpdatePublicKey(text: string): KeyObject {
  const trimmed = text.trim();
  if (!trimmed.startsWith(PREFIX)) throw new CryptoError(`an update public key starts with ${PREFIX}`);
  const b64 = trimmed.slice(PREFIX.length);
  const raw = Buffer.from(b64, "base64");
  if (raw.length !== 32 || raw.toString("base64") !== b64) throw new CryptoError("an update public key is 32 bytes in base64 after ed25519:");
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
}

/** The private key in `pem` (PKCS#8), which must be Ed25519. Throws CryptoError otherwise. */
export function loadUpdatePrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new CryptoError("the release signing key is not a PEM private key");
  }
  if (key.asymmetricKeyType !== "ed25519") throw new CryptoError(`the release signing key must be Ed25519, not ${key.asymmetricKeyType}`);
  return key;
}

/** The Ed25519 signature (64 bytes) of `bytes`, in base64. */
export function signRelease(bytes: Uint8Array, privateKey: KeyObject): string {
  return sign(null, bytes, privateKey).toString("base64");
}

/**
 * Whether `signatureB64` is a valid Ed25519 signature of exactly `bytes` by `publicKey`. Never
 * throws for a malformed signature: that is simply not valid. Non-canonical base64 is refused, so
 * a signature has one spelling.
 */
export function verifyRelease(bytes: Uint8Array, signatureB64: string, publicKey: KeyObject): boolean {
  const signature = Buffer.from(signatureB64.trim(), "base64");
  if (signature.length !== 64 || signature.toString("base64") !== signatureB64.trim()) return false;
  try {
    return verify(null, bytes, publicKey, signature);
  } catch {
    return false;
  }
}
