/**
 * Certificate chains as other CAs make them, for tests: a root, any number of intermediates and
 * a TLS client leaf, each with the validity window a test asks for. Made with @peculiar/x509 on
 * WebCrypto (the library src/crypto issues with), EC P-256 keys by default because they are
 * generated in microseconds, RSA-2048 on request.
 */
import "reflect-metadata";
import { createPrivateKey, randomBytes, type webcrypto as wc } from "node:crypto";
import * as x509 from "@peculiar/x509";

const webcrypto = globalThis.crypto;
x509.cryptoProvider.set(webcrypto);

export type TestKeyType = "ec" | "rsa";

export interface Issued {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
  keyType: TestKeyType;
  certPem: string;
  /** PKCS#8 PEM */
  keyPem: string;
}

interface Validity {
  notBefore?: Date;
  notAfter?: Date;
}

const DAY = 86_400_000;

function algorithms(keyType: TestKeyType) {
  return keyType === "ec"
    ? { gen: { name: "ECDSA", namedCurve: "P-256" } as wc.EcKeyGenParams, sign: { name: "ECDSA", hash: "SHA-256" } as wc.EcdsaParams }
    : {
        gen: { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" } as wc.RsaHashedKeyGenParams,
        sign: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as wc.Algorithm,
      };
}

async function keyPair(keyType: TestKeyType): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(algorithms(keyType).gen, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function pkcs8(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }) as string;
}

function serial(): string {
  const bytes = randomBytes(12);
  bytes[0] = bytes[0]! & 0x7f || 1;
  return bytes.toString("hex");
}

function window(v: Validity): { notBefore: Date; notAfter: Date } {
  return { notBefore: v.notBefore ?? new Date(Date.now() - DAY), notAfter: v.notAfter ?? new Date(Date.now() + 365 * DAY) };
}

async function finish(cert: x509.X509Certificate, keys: CryptoKeyPair, keyType: TestKeyType): Promise<Issued> {
  return { cert, keys, keyType, certPem: `${cert.toString("pem").replace(/\r\n/g, "\n")}\n`, keyPem: await pkcs8(keys.privateKey) };
}

/** A self-signed root CA. */
export async function makeRoot(commonName: string, opts: Validity & { keyType?: TestKeyType } = {}): Promise<Issued> {
  const keyType = opts.keyType ?? "ec";
  const keys = await keyPair(keyType);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: [{ CN: [commonName] }],
      ...window(opts),
      keys,
      signingAlgorithm: algorithms(keyType).sign,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return finish(cert, keys, keyType);
}

async function issue(issuer: Issued, commonName: string, keyType: TestKeyType, validity: Validity, extensions: x509.Extension[]): Promise<Issued> {
  const keys = await keyPair(keyType);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serial(),
      subject: [{ CN: [commonName] }],
      issuer: issuer.cert.subjectName,
      ...window(validity),
      publicKey: keys.publicKey,
      signingKey: issuer.keys.privateKey,
      signingAlgorithm: algorithms(issuer.keyType).sign,
      extensions: [
        ...extensions,
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
        await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return finish(cert, keys, keyType);
}

/** An intermediate CA signed by `issuer`. */
export function makeIntermediate(issuer: Issued, commonName: string, opts: Validity & { keyType?: TestKeyType } = {}): Promise<Issued> {
  return issue(issuer, commonName, opts.keyType ?? "ec", opts, [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  ]);
}

/** A TLS client certificate (CN = `commonName`) signed by `issuer`; `serverOnly` gives it serverAuth instead of clientAuth. */
export function makeLeaf(issuer: Issued, commonName: string, opts: Validity & { keyType?: TestKeyType; serverOnly?: boolean } = {}): Promise<Issued> {
  const keyType = opts.keyType ?? "ec";
  const usage = keyType === "rsa" ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature;
  return issue(issuer, commonName, keyType, opts, [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(usage, true),
    new x509.ExtendedKeyUsageExtension([opts.serverOnly ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
  ]);
}
