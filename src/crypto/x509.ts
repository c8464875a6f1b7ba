/**
 * The hub's small CA: a self-signed root, one TLS server certificate for the broker/hub, and
 * client certificates for things. Issuing uses @peculiar/x509 on WebCrypto because Bun's
 * node:crypto can parse and verify certificates but cannot issue them, and @peculiar/x509 works
 * inside a `bun build --compile` binary (node-forge is avoided). Reading a certificate is
 * certificate-info.ts's (node:crypto's X509Certificate), signature checks too.
 *
 * The CA and server keys are RSA-2048. EC P-256 would be quicker to generate, but RSA-2048
 * generation costs tens of milliseconds here, and an RSA chain is what old FlashLex things (Python
 * SDK, older OpenSSL builds) were built and tested against, so compatibility wins. Thing keys
 * may be RSA or EC P-256/P-384 (`issueThingCertificate`).
 */
import { createPrivateKey, type KeyObject, randomBytes, type webcrypto as wc } from "node:crypto";
import { isIP } from "node:net";
import type * as X509 from "@peculiar/x509";
import { quoteGiven } from "../shared/log.ts";
import { thingIdUri } from "./certificate-info.ts";
import { CryptoError } from "./errors.ts";
import { loadPrivateKey, loadPublicKey, pemBlocks, spkiDer, tokenAlgorithmFor } from "./keys.ts";
import { x509 } from "./peculiar.ts";

// Bun and Node both have a global WebCrypto; passing it explicitly as well (below) means we do not
// depend on whatever another module may have set as the library's default provider.
const webcrypto = globalThis.crypto;
x509.cryptoProvider.set(webcrypto);

export interface CertifiedKey {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
}

interface ValidityOpts {
  days?: number;
  /** Explicit start of validity (tests use it to make not-yet-valid and expired certificates). */
  notBefore?: Date;
}

const DAY_MS = 86_400_000;
/**
 * Without an explicit notBefore, a certificate starts in the past so that a clock behind the
 * issuer's can already use it: a thing's (an hour: the broker checks it by the hub's own clock),
 * and the CA and the server certificate the things check by theirs (CLOCK_BEHIND_MS).
 */
const BACKDATE_MS = 3_600_000;
/**
 * How far the CA and server certificates start before they are issued, at most (a twentieth of
 * a short lifetime): a Pi has no clock of its own, and until NTP syncs it runs from the time it
 * last saved (fake-hwclock), days behind after days switched off. Its TLS refused a hub made, or
 * a broker certificate renewed, less than that ago ("certificate is not yet valid"): no ingress,
 * though tokens already go by the hub's time (new-user pass 25, F13).
 */
const CLOCK_BEHIND_MS = 7 * 86_400_000;
/** X.520 upper bound for a commonName; longer names make certificates other tools reject. */
const MAX_CN_LENGTH = 64;

// tsconfig has no DOM lib, so the WebCrypto parameter types come from node:crypto.
type SigningAlgorithm = wc.Algorithm | wc.EcdsaParams;

const RSA_GEN: wc.RsaHashedKeyGenParams = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256",
};

/**
 * The dates of a certificate `days` long (default `defaultDays`): notBefore is `opts.notBefore`,
 * else now less `backdateMs` (at most a twentieth of the lifetime). The days count from notBefore
 * (so a server certificate of 825 days, the most TLS clients take, is 825 days with its
 * backdating), or with `daysFromNow` from now (a CA: its backdating must not shorten the life
 * ahead of it, nor leave the leaves it signs in its first week outliving it; verify pass 31, F10).
 */
function validity(opts: ValidityOpts, defaultDays: number, backdateMs = BACKDATE_MS, daysFromNow = false): { notBefore: Date; notAfter: Date } {
  const days = opts.days ?? defaultDays;
  if (!Number.isFinite(days) || days <= 0) throw new CryptoError(`certificate lifetime must be a positive number of days, got ${days}`);
  if (opts.notBefore !== undefined && Number.isNaN(opts.notBefore.getTime())) throw new CryptoError("notBefore is not a valid date");
  const now = Date.now();
  const notBefore = opts.notBefore ?? new Date(now - Math.min(backdateMs, (days * DAY_MS) / 20));
  const from = daysFromNow && opts.notBefore === undefined ? now : notBefore.getTime();
  return { notBefore, notAfter: new Date(from + days * DAY_MS) };
}

/** 16 random bytes, first byte 0x01..0x7f: positive in DER, never padded, never zero (RFC 5280 4.1.2.2). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f || 0x01;
  return bytes.toString("hex");
}

function commonName(cn: string, what: string): X509.JsonName {
  if (typeof cn !== "string" || cn.length === 0) throw new CryptoError(`${what} must not be empty`);
  if (cn.length > MAX_CN_LENGTH) throw new CryptoError(`${what} is longer than ${MAX_CN_LENGTH} characters`);
  // JSON form, not "CN=..." text: a name with a comma or "=" must not be parsed as several attributes.
  return [{ CN: [cn] }];
}

function toPem(cert: X509.X509Certificate): string {
  const pem = cert.toString("pem").replace(/\r\n/g, "\n");
  return pem.endsWith("\n") ? pem : `${pem}\n`;
}

async function generateRsa(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(RSA_GEN, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  // node re-encodes to the canonical 64-column PEM every tool reads.
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }) as string;
}

/** The CA's signing key as a WebCrypto key plus the matching signature algorithm. RSA or EC P-256/384. */
async function caSigner(keyPem: string): Promise<{ key: CryptoKey; algorithm: SigningAlgorithm }> {
  const key: KeyObject = loadPrivateKey(keyPem);
  const der = key.export({ type: "pkcs8", format: "der" });
  if (key.asymmetricKeyType === "rsa") {
    const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    return { key: await webcrypto.subtle.importKey("pkcs8", der, alg, false, ["sign"]), algorithm: alg };
  }
  if (key.asymmetricKeyType === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === "prime256v1" || curve === "P-256" ? "P-256" : curve === "secp384r1" || curve === "P-384" ? "P-384" : undefined;
    if (namedCurve) {
      const signer = await webcrypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve }, false, ["sign"]);
      return { key: signer, algorithm: { name: "ECDSA", hash: namedCurve === "P-384" ? "SHA-384" : "SHA-256" } as wc.EcdsaParams };
    }
  }
  throw new CryptoError(`the CA key type is not supported (${key.asymmetricKeyType ?? "unknown"}); use RSA or EC P-256`);
}

function parseCa(ca: CertifiedKey): X509.X509Certificate {
  const cert = parsePeculiar(ca.certPem);
  if (!cert) throw new CryptoError("the CA certificate could not be parsed");
  return cert;
}

function parsePeculiar(pem: string): X509.X509Certificate | undefined {
  const block = pemBlocks(pem).find((b) => b.label === "CERTIFICATE");
  if (!block) return undefined;
  try {
    return new x509.X509Certificate(block.text);
  } catch {
    return undefined;
  }
}

/** The last CA `loadedCa` parsed: the hub signs every certificate with one CA. */
let lastCa: { certPem: string; keyPem: string; loaded: Promise<{ caCert: X509.X509Certificate; signer: Awaited<ReturnType<typeof caSigner>> }> } | undefined;

/**
 * The CA's certificate, parsed, and its key, imported for signing: done again only when the CA's
 * PEM text changes. Parsing and importing were a third of an issuance, time the hub's event loop
 * spent on nothing else. Throws CryptoError as parseCa and caSigner do.
 */
function loadedCa(ca: CertifiedKey): Promise<{ caCert: X509.X509Certificate; signer: Awaited<ReturnType<typeof caSigner>> }> {
  if (lastCa?.certPem !== ca.certPem || lastCa.keyPem !== ca.keyPem) {
    const loaded = (async () => ({ caCert: parseCa(ca), signer: await caSigner(ca.keyPem) }))();
    lastCa = { certPem: ca.certPem, keyPem: ca.keyPem, loaded };
    loaded.catch(() => (lastCa = undefined));
  }
  return lastCa!.loaded;
}

/** AKI copied from the CA's own SKI so they match even for a CA made by another tool. */
async function authorityKeyId(caCert: X509.X509Certificate): Promise<X509.AuthorityKeyIdentifierExtension> {
  const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return new x509.AuthorityKeyIdentifierExtension(ski.keyId);
  return x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey, false, webcrypto);
}

/**
 * Issues a leaf certificate signed by `ca` for an SPKI public key. It ends no later than the
 * CA: a leaf can never be used past its CA (RFC 5280 §6.1.3 checks each certificate of the
 * path), so a later notAfter would only make the expiry it shows (`hub thing list`) a lie.
 */
async function issueLeaf(
  ca: CertifiedKey,
  subject: X509.JsonName,
  spki: Uint8Array,
  validityDates: { notBefore: Date; notAfter: Date },
  extensions: X509.Extension[],
): Promise<string> {
  const { caCert, signer } = await loadedCa(ca);
  const { notBefore } = validityDates;
  const notAfter = new Date(Math.min(validityDates.notAfter.getTime(), caCert.notAfter.getTime()));
  // an expired CA signs nothing: within a leaf's backdating it signed certificates already over (verify pass 32, F7)
  if (caCert.notAfter.getTime() <= Date.now() || notAfter <= notBefore) {
    throw new CryptoError(`the CA's validity (to ${caCert.notAfter.toISOString()}) leaves this certificate no time: the CA has expired`);
  }
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject,
      issuer: caCert.subjectName,
      notBefore,
      notAfter,
      publicKey: spki,
      signingKey: signer.key,
      signingAlgorithm: signer.algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        ...extensions,
        await x509.SubjectKeyIdentifierExtension.create(spki, false, webcrypto),
        await authorityKeyId(caCert),
      ],
    },
    webcrypto,
  );
  return toPem(cert);
}

/** A new self-signed root CA (RSA-2048, SHA-256). */
export async function createCertificateAuthority(opts: { commonName: string; days?: number; notBefore?: Date }): Promise<CertifiedKey> {
  const name = commonName(opts.commonName, "the CA common name");
  const dates = validity(opts, 3650, CLOCK_BEHIND_MS, true);
  const keys = await generateRsa();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name,
      ...dates,
      keys,
      signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as SigningAlgorithm,
      extensions: [
        // Critical CA:true with no path length: the hub signs leaves directly, but an operator
        // may later add an intermediate.
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return { certPem: toPem(cert), keyPem: await pkcs8Pem(keys.privateKey) };
}

/**
 * A TLS server certificate for the broker and the hub's HTTPS side, with a fresh RSA-2048 key, or
 * for `keyPem` (a renewal that keeps the key, so a client pinning the public key still matches).
 * TLS clients match names against the SAN only (the CN is ignored), so when no names are given
 * the common name itself goes into the SAN, as an IP address or a DNS name. Lifetime `days`
 * (default 825). Throws CryptoError for a bad name, lifetime or key.
 */
export async function issueServerCertificate(
  ca: CertifiedKey,
  opts: { commonName: string; dnsNames?: string[]; ipAddresses?: string[]; days?: number; notBefore?: Date; keyPem?: string },
): Promise<CertifiedKey> {
  const subject = commonName(opts.commonName, "the server common name");
  const dnsNames = [...(opts.dnsNames ?? [])];
  const ipAddresses = [...(opts.ipAddresses ?? [])];
  if (dnsNames.length === 0 && ipAddresses.length === 0) {
    (isIP(opts.commonName) ? ipAddresses : dnsNames).push(opts.commonName);
  }
  for (const ip of ipAddresses) if (!isIP(ip)) throw new CryptoError(`not an IP address: ${quoteGiven(ip)}`);
  for (const dns of dnsNames) {
    if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(dns)) {
      throw new CryptoError(`not a DNS name: ${quoteGiven(dns)}`);
    }
  }
  const dates = validity(opts, 825, CLOCK_BEHIND_MS); // 825 days: the longest server lifetime Apple/CA-B rules accept
  const keys = opts.keyPem === undefined ? await generateRsa() : undefined;
  const spki = keys ? new Uint8Array(await webcrypto.subtle.exportKey("spki", keys.publicKey)) : new Uint8Array(spkiDer(loadPrivateKey(opts.keyPem!)));
  const certPem = await issueLeaf(ca, subject, spki, dates, [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension([
      ...dnsNames.map((value) => ({ type: "dns" as const, value })),
      ...ipAddresses.map((value) => ({ type: "ip" as const, value })),
    ]),
  ]);
  return { certPem, keyPem: keys ? await pkcs8Pem(keys.privateKey) : opts.keyPem! };
}

/**
 * A TLS client certificate (CN = thing name; with `thingId`, the id as a SAN URI, thingIdUri) for
 * a thing's existing public key: RSA of 2048 bits or more, or EC P-256/P-384 (`tokenAlgorithmFor`
 * decides; anything else throws CryptoError). The thing keeps its private key; only the public
 * half ever reaches the CA.
 */
export async function issueThingCertificate(
  ca: CertifiedKey,
  opts: { thingName: string; thingId?: string; publicKeyPem: string; days?: number; notBefore?: Date },
): Promise<string> {
  const subject = commonName(opts.thingName, "the thing name");
  const key = loadPublicKey(opts.publicKeyPem);
  const algorithm = tokenAlgorithmFor(key);
  const dates = validity(opts, 3650);
  // keyEncipherment is an RSA-only use (RFC 5480 §3 lists what an EC key may do).
  const usages = algorithm === "RS256" ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature;
  return issueLeaf(ca, subject, new Uint8Array(spkiDer(key)), dates, [
    new x509.KeyUsagesExtension(usages, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ...(opts.thingId ? [new x509.SubjectAlternativeNameExtension([{ type: "url" as const, value: thingIdUri(opts.thingId) }])] : []),
  ]);
}
