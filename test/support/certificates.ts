/**
 * Checks tests make on keys and certificates that FlashLex itself never needs (the hub trusts
 * what it issued; a thing's chain is judged by a real TLS handshake, src/thing/bootstrap/handshake-check.ts).
 */
import { createHash, type KeyObject, X509Certificate } from "node:crypto";
import { type CertificateInfo, describeCertificate } from "../../src/crypto/certificate-info.ts";
import { CryptoError } from "../../src/crypto/errors.ts";
import { loadPublicKey, pemBlocks, spkiDer } from "../../src/crypto/keys.ts";

/** True when the certificate carries this private key's public half (compared as SPKI DER). */
export function keyMatchesCertificate(privateKey: KeyObject, certPem: string): boolean {
  const cert = pemBlocks(certPem).find((b) => b.label === "CERTIFICATE");
  if (!cert) throw new CryptoError("not a certificate");
  return spkiDer(privateKey).equals(spkiDer(loadPublicKey(cert.text)));
}

/** sha256 hex of the SPKI DER: the same value for a private key and its public key. */
export function publicKeyFingerprint(key: KeyObject): string {
  return createHash("sha256").update(spkiDer(key)).digest("hex");
}

export type CertificateCheck = { ok: true; info: CertificateInfo } | { ok: false; reason: string; info?: CertificateInfo };

/**
 * Checks that a certificate was signed directly by one CA certificate (the first of `caPem`) and
 * is valid at `now`. No chains. Returns a one-sentence reason instead of throwing; a CA file
 * that is not a certificate throws CryptoError.
 */
export function checkCertificate(certPem: string, caPem: string, now: Date): CertificateCheck {
  const ca = parse(caPem);
  if (!ca) throw new CryptoError("the root CA file is not a certificate");
  const cert = parse(certPem);
  if (!cert) return { ok: false, reason: "not a certificate" };
  const described = cert.info;
  if (!ca.node.ca) return { ok: false, reason: "the root CA file is not a CA certificate", info: described };
  let signed = false;
  try {
    signed = cert.node.verify(ca.node.publicKey) && cert.node.checkIssued(ca.node);
  } catch {
    signed = false;
  }
  if (!signed) return { ok: false, reason: "not signed by the root CA", info: described };
  const t = now.getTime();
  if (t < described.notBefore.getTime()) return { ok: false, reason: `not valid until ${isoSeconds(described.notBefore)}`, info: described };
  if (t > described.notAfter.getTime()) return { ok: false, reason: `expired on ${isoSeconds(described.notAfter)}`, info: described };
  if (t > ca.info.notAfter.getTime()) return { ok: false, reason: `the root CA expired on ${isoSeconds(ca.info.notAfter)}`, info: described };
  if (t < ca.info.notBefore.getTime()) return { ok: false, reason: `the root CA is not valid until ${isoSeconds(ca.info.notBefore)}`, info: described };
  return { ok: true, info: described };
}

function parse(pem: string): { info: CertificateInfo; node: X509Certificate } | undefined {
  const block = pemBlocks(pem).find((b) => b.label === "CERTIFICATE");
  if (!block) return undefined;
  try {
    return { info: describeCertificate(block.text), node: new X509Certificate(block.text) };
  } catch {
    return undefined;
  }
}

function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}
