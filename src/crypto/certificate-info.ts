/**
 * Reading a certificate: the facts people ask for (names, serial, validity, fingerprint), with
 * node:crypto's X509Certificate only. Issuing is x509.ts's job (@peculiar/x509); reading is kept
 * apart so the thing's commands (collect, serve, bootstrap) check their certificate without
 * loading the issuing library (about 10 ms of start-up in the compiled binary).
 */
import { X509Certificate } from "node:crypto";
import { CryptoError } from "./errors.ts";
import { pemBlocks } from "./keys.ts";

export interface CertificateInfo {
  subjectCN: string;
  issuerCN: string;
  /** Upper-case hex without separators, as `openssl x509 -serial` prints it. */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the DER, upper-case hex pairs joined by ":", as `openssl x509 -fingerprint -sha256`. */
  fingerprint256: string;
  /**
   * The thing id a thing certificate names in its SAN (`thingIdUri`); undefined in any other
   * certificate, and in a thing's certificate issued before hubs wrote it (2026-12-08).
   */
  thingId?: string;
}

/** How a thing certificate names its thing's id, as a URI in its subjectAltName: the name alone is not the thing (a thing deleted and made again under its name is another). */
const THING_ID_URN = "urn:flashlex:thing:";

/** The SAN URI naming thing `thingId` (`urn:flashlex:thing:<id>`). */
export function thingIdUri(thingId: string): string {
  return `${THING_ID_URN}${thingId}`;
}

/** The facts about a certificate; the first certificate of a bundle is described. Throws CryptoError when there is none. */
export function describeCertificate(certPem: string): CertificateInfo {
  const block = pemBlocks(certPem).find((b) => b.label === "CERTIFICATE");
  let cert: X509Certificate;
  try {
    if (!block) throw new Error("no CERTIFICATE block");
    cert = new X509Certificate(block.text);
  } catch {
    throw new CryptoError("not a certificate");
  }
  return {
    subjectCN: commonName(cert.subject),
    issuerCN: commonName(cert.issuer),
    serialNumber: cert.serialNumber.toUpperCase(),
    // validFrom is OpenSSL's text ("Dec  1 00:54:15 2026 GMT"), which Date reads in JSC and V8
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
    thingId: thingIdOf(cert.subjectAltName),
  };
}

/** The thing id in X509Certificate's subjectAltName text (`URI:urn:flashlex:thing:<id>, DNS:...`). */
function thingIdOf(subjectAltName: string | undefined): string | undefined {
  for (const entry of subjectAltName?.split(", ") ?? []) {
    if (entry.startsWith(`URI:${THING_ID_URN}`)) return entry.slice(`URI:${THING_ID_URN}`.length);
  }
  return undefined;
}

/**
 * The public key of `certPem` as SPKI PEM (the form the hub stores a thing's key in), when the
 * certificate's signature verifies with `issuerCertPem`'s key; undefined when it does not (or
 * either is not a certificate). The signature only: validity and names are the caller's to judge.
 */
export function publicKeyIssuedBy(certPem: string, issuerCertPem: string): string | undefined {
  try {
    const cert = new X509Certificate(certPem);
    if (!cert.verify(new X509Certificate(issuerCertPem).publicKey)) return undefined;
    return cert.publicKey.export({ type: "spki", format: "pem" }) as string;
  } catch {
    return undefined;
  }
}

/**
 * The CN of a distinguished name as X509Certificate prints it: one `TYPE=value` per line, the
 * value escaped as RFC 4514 has it (`\,` `\+` `\"`, a leading `\ `, `\0A` for a byte). Gives ""
 * when there is no CN. One loss: Bun prints a backslash in a value without escaping it, so a CN
 * holding one reads back without it (no thing name can hold one; the hub's names are
 * `[0-9a-f]{8}-[A-Za-z0-9_-]+`).
 */
export function commonName(distinguishedName: string): string {
  const line = distinguishedName.split("\n").find((l) => l.startsWith("CN="));
  return line === undefined ? "" : unescapeValue(line.slice(3));
}

function unescapeValue(escaped: string): string {
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < escaped.length; i++) {
    const char = escaped[i]!;
    const hex = char === "\\" ? escaped.slice(i + 1, i + 3) : "";
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (char === "\\" && i + 1 < escaped.length) {
      bytes.push(...encoder.encode(escaped[++i]!));
    } else {
      bytes.push(...encoder.encode(char));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Whether a CA certificate in `caPem` (a root CA file) signed `certPem` directly. */
export function issuedByCaIn(certPem: string, caPem: string): boolean {
  const [cert] = readableCertificates(certPem);
  return cert !== undefined && readableCertificates(caPem).some((ca) => signs(ca, cert));
}

/** Whether a certificate can vouch for others: a CA (basicConstraints CA:TRUE), or a self-signed root without extensions. */
export function isCa(certificate: X509Certificate): boolean {
  return certificate.ca || signs(certificate, certificate);
}

/** Every certificate of a PEM text that node can read, in order; the others are left out. */
export function readableCertificates(pem: string): X509Certificate[] {
  return pemBlocks(pem).flatMap((block) => {
    try {
      return [new X509Certificate(block.text)];
    } catch {
      return [];
    }
  });
}

/** Whether `issuer` issued `subject` (RFC 5280 §6.1 names and signature only, no dates): its name is the subject's issuer and its key verifies the signature. */
export function signs(issuer: X509Certificate, subject: X509Certificate): boolean {
  try {
    return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
  } catch {
    return false;
  }
}
