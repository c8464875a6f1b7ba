/**
 * A certificate revocation list (RFC 5280 §5) signed by the hub CA, for an external broker
 * (Mosquitto's `crlfile`; the embedded broker asks the hub database instead). Where the files go
 * and when they are rewritten is the hub's business (src/hub/things/revocation.ts); Mosquitto
 * re-reads them on SIGHUP (2.0: listeners__reload_all_certificates reloads the CRL too), and
 * connections already open are not re-checked.
 *
 * Careful: with a crlfile, OpenSSL checks the CRL on every handshake, and an expired CRL
 * (past nextUpdate) makes every client fail (measured with Mosquitto 2.0.11). This module's
 * default validity is long (10 years); the hub passes its own (src/hub/things/crl-renewal.ts:
 * a year, re-signed daily while it runs).
 */
import { createPrivateKey, type webcrypto as wc } from "node:crypto";
import type * as X509 from "@peculiar/x509";
import { CryptoError } from "./errors.ts";
import { x509 } from "./peculiar.ts";

export interface CrlOptions {
  /** when the CRL is issued; default now */
  now?: Date;
  /** validity in days (nextUpdate - thisUpdate), fractions allowed (tests); default 3650 */
  days?: number;
}

/** "0A:1b:2C" / "0x0a1b2c" / "0a1b2c" → "0a1b2c" (even length). Rejects anything that is not hex. */
export function normalizeSerial(serial: string): string {
  let hex = serial.trim().replace(/^0x/i, "").replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex)) throw new CryptoError(`not a hexadecimal serial number: ${serial}`);
  if (hex.length % 2) hex = `0${hex}`;
  return hex;
}

/**
 * One revoked certificate: its serial (hex), and optionally when it was revoked (default: the
 * CRL's thisUpdate) and why (RFC 5280 §5.3.1 reasonCode; absent means unspecified, which §5.3.1
 * says to express by leaving the extension out).
 */
export interface CrlEntry {
  serial: string;
  revokedAt?: Date;
  reason?: "keyCompromise" | "superseded" | "cessationOfOperation";
}

/** reasonCode values (RFC 5280 §5.3.1) of the reasons above. */
const REASON_CODES = { keyCompromise: 1, superseded: 4, cessationOfOperation: 5 } as const;

/**
 * Signs a CRL listing `revoked` (hex serials, or entries with a date and a reason) with the CA
 * key; returns PEM (`BEGIN X509 CRL`). A serial listed twice is listed once (the first entry).
 */
export async function createCrl(ca: { certPem: string; keyPem: string }, revoked: (string | CrlEntry)[], options: CrlOptions = {}): Promise<string> {
  const crypto = globalThis.crypto;
  const caCert = new x509.X509Certificate(ca.certPem);
  const { signingAlgorithm, importAlgorithm } = algorithmsFor(ca.keyPem);
  const pkcs8 = createPrivateKey(ca.keyPem).export({ type: "pkcs8", format: "der" });
  const signingKey = await crypto.subtle.importKey("pkcs8", pkcs8, importAlgorithm, false, ["sign"]);

  const thisUpdate = options.now ?? new Date();
  const nextUpdate = new Date(thisUpdate.getTime() + (options.days ?? 3650) * 86_400_000);
  const extensions: X509.Extension[] = [
    // cRLNumber (RFC 5280 5.2.3): must increase with each CRL; seconds since the epoch do.
    new x509.Extension("2.5.29.20", false, derInteger(Math.floor(thisUpdate.getTime() / 1000))),
  ];
  const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) extensions.push(new x509.AuthorityKeyIdentifierExtension(ski.keyId));

  const unique = new Map<string, CrlEntry>();
  for (const item of revoked) {
    const entry = typeof item === "string" ? { serial: item } : item;
    const serial = normalizeSerial(entry.serial);
    if (!unique.has(serial)) unique.set(serial, { ...entry, serial });
  }
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: caCert.subjectName,
      thisUpdate,
      nextUpdate,
      signingAlgorithm,
      signingKey,
      extensions,
      entries: [...unique.values()].map((e) => ({
        serialNumber: e.serial,
        revocationDate: e.revokedAt ?? thisUpdate,
        ...(e.reason ? { reason: REASON_CODES[e.reason] as number as X509.X509CrlReason } : {}),
      })),
    },
    crypto,
  );
  // @peculiar/x509 labels its PEM "CRL"; OpenSSL (and so Mosquitto) only reads "X509 CRL".
  return toPem(new Uint8Array(crl.rawData), "X509 CRL");
}

function toPem(der: Uint8Array, label: string): string {
  const lines =
    Buffer.from(der)
      .toString("base64")
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

// tsconfig has no DOM lib: the WebCrypto parameter types come from node:crypto.
function algorithmsFor(keyPem: string): {
  signingAlgorithm: wc.Algorithm | wc.EcdsaParams;
  importAlgorithm: wc.RsaHashedImportParams | wc.EcKeyImportParams;
} {
  const key = createPrivateKey(keyPem);
  if (key.asymmetricKeyType === "rsa") {
    const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    return { signingAlgorithm: alg, importAlgorithm: alg };
  }
  if (key.asymmetricKeyType === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === "prime256v1" ? "P-256" : curve === "secp384r1" ? "P-384" : curve === "secp521r1" ? "P-521" : undefined;
    if (namedCurve) {
      const hash = namedCurve === "P-256" ? "SHA-256" : namedCurve === "P-384" ? "SHA-384" : "SHA-512";
      return { signingAlgorithm: { name: "ECDSA", hash }, importAlgorithm: { name: "ECDSA", namedCurve } };
    }
  }
  throw new CryptoError(`CA key type not supported for signing a CRL: ${key.asymmetricKeyType}`);
}

/** DER INTEGER of a non-negative safe integer. */
function derInteger(value: number): Uint8Array {
  const bytes: number[] = [];
  let v = BigInt(value);
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return Uint8Array.from([0x02, bytes.length, ...bytes]);
}
