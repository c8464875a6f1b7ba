/**
 * src/crypto: key loading, the CA, certificate checks and thing tokens. Fast and offline; the
 * only external program is `openssl`, used as an independent judge of the certificates we issue.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  generateKeyPairSync,
  type KeyObject,
  randomUUID,
  X509Certificate,
} from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { SignJWT } from "jose";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { CryptoError, TokenError } from "../../src/crypto/errors.ts";
import { signThingToken, TOKEN_LIFETIME_SECONDS, verifyThingToken } from "../../src/crypto/jwt.ts";
import { generateRsaKeyPair, loadPrivateKey, loadPublicKey, spkiDer, tokenAlgorithmFor } from "../../src/crypto/keys.ts";
import { createCertificateAuthority, issueServerCertificate, issueThingCertificate } from "../../src/crypto/x509.ts";
import { checkCertificate, keyMatchesCertificate, publicKeyFingerprint } from "../support/certificates.ts";
import { makeTestPki, type OtherCa, type TestPki } from "../support/pki.ts";

const DAY = 86_400_000;
let dir: string;
let pki: TestPki;
let other: OtherCa;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-crypto-"));
  pki = await makeTestPki(dir, { thingName: "unit-thing" });
  other = await pki.otherCa();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function openssl(...args: string[]): { ok: boolean; out: string } {
  const r = Bun.spawnSync(["openssl", ...args], { stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, out: r.stdout.toString() + r.stderr.toString() };
}

/** Runs `fn`, expecting a CryptoError; returns it. */
function cryptoErrorOf(fn: () => unknown): CryptoError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CryptoError);
    return err as CryptoError;
  }
  throw new Error("expected a CryptoError");
}

describe("keys", () => {
  test("a PKCS#1 private key loads (what distributions shipped)", () => {
    expect(pki.thing.privateKeyPem).toStartWith("-----BEGIN RSA PRIVATE KEY-----");
    const key = loadPrivateKey(pki.thing.privateKeyPem);
    expect(key.type).toBe("private");
    expect(key.asymmetricKeyType).toBe("rsa");
  });

  test("a PKCS#8 private key loads and is the same key", () => {
    const pkcs8 = createPrivateKey(pki.thing.privateKeyPem).export({ type: "pkcs8", format: "pem" }) as string;
    expect(pkcs8).toStartWith("-----BEGIN PRIVATE KEY-----");
    expect(publicKeyFingerprint(loadPrivateKey(pkcs8))).toBe(publicKeyFingerprint(loadPrivateKey(pki.thing.privateKeyPem)));
  });

  test("an `openssl genrsa -traditional` key loads", () => {
    const r = openssl("genrsa", "-traditional", "2048");
    expect(r.out).toContain("-----BEGIN RSA PRIVATE KEY-----");
    expect(loadPrivateKey(r.out).asymmetricKeyType).toBe("rsa");
  });

  test("a key inside a bundle with a certificate is found", () => {
    expect(loadPrivateKey(pki.thing.certPem + pki.thing.privateKeyPem).type).toBe("private");
  });

  test("garbage gives a CryptoError that does not echo the input", () => {
    const secret = "SUPERSECRETMATERIAL";
    for (const input of [
      `hello ${secret}`,
      `-----BEGIN RSA PRIVATE KEY-----\n${secret}${"A".repeat(60)}\n-----END RSA PRIVATE KEY-----\n`,
      `-----BEGIN PRIVATE KEY-----\nMIIB${secret}\n-----END PRIVATE KEY-----\n`,
      "",
    ]) {
      const err = cryptoErrorOf(() => loadPrivateKey(input));
      expect(err.message).not.toContain(secret);
      expect(err.message).not.toContain("\n");
    }
    // A truncated real key: the message must not quote any of it either.
    const truncated = pki.thing.privateKeyPem.split("\n");
    const damaged = [...truncated.slice(0, 5), ...truncated.slice(-2)].join("\n");
    const err = cryptoErrorOf(() => loadPrivateKey(damaged));
    expect(err.message).not.toContain(truncated[2]!.slice(0, 20));
  });

  test("a public key, certificate or encrypted key is not a private key", () => {
    expect(cryptoErrorOf(() => loadPrivateKey(pki.thing.publicKeyPem)).message).toContain('"PUBLIC KEY"');
    expect(cryptoErrorOf(() => loadPrivateKey(pki.thing.certPem)).message).toContain('"CERTIFICATE"');
    const encrypted = createPrivateKey(pki.thing.privateKeyPem).export({
      type: "pkcs8",
      format: "pem",
      cipher: "aes-256-cbc",
      passphrase: "pw",
    }) as string;
    expect(cryptoErrorOf(() => loadPrivateKey(encrypted)).message).toContain("encrypted");
  });

  test("public keys load from SPKI, PKCS#1 and certificates; private keys are refused", () => {
    const fp = publicKeyFingerprint(loadPrivateKey(pki.thing.privateKeyPem));
    const pkcs1Public = createPublicKey(pki.thing.publicKeyPem).export({ type: "pkcs1", format: "pem" }) as string;
    expect(pkcs1Public).toStartWith("-----BEGIN RSA PUBLIC KEY-----");
    for (const pem of [pki.thing.publicKeyPem, pkcs1Public, pki.thing.certPem]) {
      expect(publicKeyFingerprint(loadPublicKey(pem))).toBe(fp);
    }
    cryptoErrorOf(() => loadPublicKey(pki.thing.privateKeyPem));
    cryptoErrorOf(() => loadPublicKey("nothing here"));
  });

  test("generateRsaKeyPair: 2048-bit PKCS#1 private, SPKI public, a matching pair", async () => {
    const { privateKeyPem, publicKeyPem } = await generateRsaKeyPair();
    expect(privateKeyPem).toStartWith("-----BEGIN RSA PRIVATE KEY-----");
    expect(publicKeyPem).toStartWith("-----BEGIN PUBLIC KEY-----");
    const key = loadPrivateKey(privateKeyPem);
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(publicKeyFingerprint(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(publicKeyFingerprint(key)).toBe(publicKeyFingerprint(loadPublicKey(publicKeyPem)));
  });

  test("keyMatchesCertificate: match and mismatch", () => {
    const thingKey = loadPrivateKey(pki.thing.privateKeyPem);
    expect(keyMatchesCertificate(thingKey, pki.thing.certPem)).toBe(true);
    expect(keyMatchesCertificate(loadPrivateKey(pki.broker.keyPem), pki.broker.certPem)).toBe(true);
    expect(keyMatchesCertificate(thingKey, pki.broker.certPem)).toBe(false);
    expect(keyMatchesCertificate(thingKey, other.thing.certPem)).toBe(false);
    cryptoErrorOf(() => keyMatchesCertificate(thingKey, pki.thing.publicKeyPem));
  });
});

describe("certificates", () => {
  test("the test PKI files are where the agent expects them, with the right modes", () => {
    const mode = (p: string) => statSync(p).mode & 0o777;
    expect(pki.thing.certPath).toBe(join(dir, "unit-thing-certificate.pem"));
    expect(pki.thing.privateKeyPath).toBe(join(dir, "unit-thing-keypair-private.pem"));
    expect(mode(pki.thing.privateKeyPath)).toBe(0o600);
    expect(mode(pki.caKeyPath)).toBe(0o600);
    expect(mode(pki.brokerKeyPath)).toBe(0o644);
    expect(mode(pki.caCertPath)).toBe(0o644);
    expect(mode(pki.thing.publicKeyPath)).toBe(0o644);
  });

  test("the CA is a critical CA:TRUE with keyCertSign and a subject key id", () => {
    const text = openssl("x509", "-in", pki.caCertPath, "-noout", "-text").out;
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toContain("Subject Key Identifier");
    expect(loadPrivateKey(pki.ca.keyPem).asymmetricKeyType).toBe("rsa");
    expect(pki.ca.keyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
  });

  test("describeCertificate of a thing certificate", () => {
    const info = describeCertificate(pki.thing.certPem);
    expect(info.subjectCN).toBe("unit-thing");
    expect(info.issuerCN).toBe("FlashLex Test Root CA");
    expect(info.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/); // 16 bytes, positive
    expect(info.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const days = (info.notAfter.getTime() - Date.now()) / DAY;
    expect(days).toBeGreaterThan(3649);
    expect(days).toBeLessThan(3651);
    expect(info.notBefore.getTime()).toBeLessThan(Date.now());
    expect(() => describeCertificate("junk")).toThrow(CryptoError);
  });

  test("a name with a comma and '=' stays one common name; escaped characters read back as they were", async () => {
    const cn = "thing, O=Evil";
    const cert = await issueThingCertificate(pki.ca, { thingName: cn, publicKeyPem: pki.thing.publicKeyPem });
    expect(describeCertificate(cert).subjectCN).toBe(cn);
    expect(new X509Certificate(cert).subject).not.toContain("O=Evil\n");
    // not a backslash: Bun's X509Certificate prints it unescaped, so it cannot be told from an escape
    for (const name of ["a\nb", "x+y", "ü ß", 'q"q', " lead", "t#1;<>"]) {
      const other = await issueThingCertificate(pki.ca, { thingName: name, publicKeyPem: pki.thing.publicKeyPem });
      expect(describeCertificate(other).subjectCN).toBe(name);
    }
  });

  test("checkCertificate: a certificate from this CA is ok", () => {
    const r = checkCertificate(pki.thing.certPem, pki.ca.certPem, new Date());
    expect(r.ok).toBe(true);
    expect(r.info?.subjectCN).toBe("unit-thing");
  });

  test("checkCertificate: another CA's certificate is refused, even with the same CA name", () => {
    expect(describeCertificate(other.ca.certPem).subjectCN).toBe(describeCertificate(pki.ca.certPem).subjectCN);
    const r = checkCertificate(other.thing.certPem, pki.ca.certPem, new Date());
    expect(r).toMatchObject({ ok: false, reason: "not signed by the root CA" });
    expect(r.info?.subjectCN).toBe("stranger");
  });

  test("checkCertificate: expired and not-yet-valid certificates are refused", async () => {
    const now = new Date();
    const expired = await issueThingCertificate(pki.ca, {
      thingName: "old",
      publicKeyPem: pki.thing.publicKeyPem,
      notBefore: new Date(now.getTime() - 10 * DAY),
      days: 1,
    });
    const r1 = checkCertificate(expired, pki.ca.certPem, now);
    expect(r1.ok).toBe(false);
    if (!r1.ok) expect(r1.reason).toMatch(/^expired on \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const future = await issueThingCertificate(pki.ca, {
      thingName: "future",
      publicKeyPem: pki.thing.publicKeyPem,
      notBefore: new Date(now.getTime() + 2 * DAY),
    });
    const r2 = checkCertificate(future, pki.ca.certPem, now);
    expect(r2.ok).toBe(false);
    if (!r2.ok) expect(r2.reason).toStartWith(`not valid until ${new Date(now.getTime() + 2 * DAY).toISOString().slice(0, 10)}`);
    // The same certificate is fine once its time has come.
    expect(checkCertificate(future, pki.ca.certPem, new Date(now.getTime() + 3 * DAY)).ok).toBe(true);
  });

  test("checkCertificate: junk is 'not a certificate'; a junk CA throws", () => {
    expect(checkCertificate("junk", pki.ca.certPem, new Date())).toEqual({ ok: false, reason: "not a certificate" });
    expect(checkCertificate(pki.thing.publicKeyPem, pki.ca.certPem, new Date())).toMatchObject({ ok: false });
    expect(() => checkCertificate(pki.thing.certPem, "junk", new Date())).toThrow(CryptoError);
    const r = checkCertificate(pki.thing.certPem, other.thing.certPem, new Date());
    expect(r).toMatchObject({ ok: false, reason: "the root CA file is not a CA certificate" });
  });

  test("openssl accepts the broker certificate as a TLS server for 127.0.0.1 and localhost", () => {
    const v = openssl("verify", "-CAfile", pki.caCertPath, "-purpose", "sslserver", pki.brokerCertPath);
    expect(v.out).toContain(": OK");
    expect(openssl("verify", "-CAfile", pki.caCertPath, "-verify_ip", "127.0.0.1", pki.brokerCertPath).ok).toBe(true);
    expect(openssl("verify", "-CAfile", pki.caCertPath, "-verify_hostname", "localhost", pki.brokerCertPath).ok).toBe(true);
    const san = openssl("x509", "-in", pki.brokerCertPath, "-noout", "-ext", "subjectAltName,extendedKeyUsage").out;
    expect(san).toContain("IP Address:127.0.0.1");
    expect(san).toContain("DNS:localhost");
    expect(san).toContain("TLS Web Server Authentication");
    const cert = new X509Certificate(pki.broker.certPem);
    expect(cert.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(cert.checkHost("localhost")).toBe("localhost");
    expect(pki.broker.keyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
  });

  test("openssl accepts thing certificates as TLS clients, and refuses another CA's", () => {
    expect(openssl("verify", "-CAfile", pki.caCertPath, "-purpose", "sslclient", pki.thing.certPath).ok).toBe(true);
    expect(openssl("x509", "-in", pki.thing.certPath, "-noout", "-ext", "extendedKeyUsage").out).toContain("TLS Web Client Authentication");
    expect(openssl("verify", "-CAfile", pki.caCertPath, other.thing.certPath).ok).toBe(false);
  });

  test("a server certificate with only a common name gets it as its SAN", async () => {
    const s = await issueServerCertificate(pki.ca, { commonName: "10.0.0.7" });
    expect(new X509Certificate(s.certPem).subjectAltName).toBe("IP Address:10.0.0.7");
    expect(keyMatchesCertificate(loadPrivateKey(s.keyPem), s.certPem)).toBe(true);
  });

  test("bad issue requests are refused", async () => {
    const ed = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }) as string;
    const p521 = generateKeyPairSync("ec", { namedCurve: "secp521r1" }).publicKey.export({ type: "spki", format: "pem" }) as string;
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ type: "spki", format: "pem" }) as string;
    const pub = pki.thing.publicKeyPem;
    await expect(issueThingCertificate(pki.ca, { thingName: "x", publicKeyPem: ed })).rejects.toThrow("an Ed25519 key is not supported");
    await expect(issueThingCertificate(pki.ca, { thingName: "x", publicKeyPem: p521 })).rejects.toThrow("curve secp521r1 is not supported");
    await expect(issueThingCertificate(pki.ca, { thingName: "x", publicKeyPem: small })).rejects.toThrow("RSA key of 1024 bits is not supported");
    await expect(issueThingCertificate(pki.ca, { thingName: "", publicKeyPem: pub })).rejects.toThrow(CryptoError);
    await expect(issueThingCertificate(pki.ca, { thingName: "x".repeat(65), publicKeyPem: pub })).rejects.toThrow(CryptoError);
    await expect(issueThingCertificate(pki.ca, { thingName: "x", publicKeyPem: pub, days: 0 })).rejects.toThrow(CryptoError);
    await expect(issueServerCertificate(pki.ca, { commonName: "h", ipAddresses: ["300.1.1.1"] })).rejects.toThrow(CryptoError);
    await expect(createCertificateAuthority({ commonName: "" })).rejects.toThrow(CryptoError);
  });

  test("the CA and a server certificate start a week back (a device clock behind the hub's takes them), a thing's an hour; each lasts its days from its start, but the CA its days from now, and no leaf outlives its CA (verify pass 31, F10)", async () => {
    const DAY = 86_400_000;
    const ca = await createCertificateAuthority({ commonName: "backdated CA" });
    const server = await issueServerCertificate(ca, { commonName: "127.0.0.1" });
    const thing = await issueThingCertificate(ca, { thingName: "backdated", publicKeyPem: pki.thing.publicKeyPem });
    const short = await issueServerCertificate(ca, { commonName: "127.0.0.1", days: 1 }); // a twentieth of its life, not a week
    const dates = (pem: string) => {
      const c = describeCertificate(pem);
      return { back: Date.now() - c.notBefore.getTime(), days: (c.notAfter.getTime() - c.notBefore.getTime()) / DAY };
    };
    const near = (ms: number, target: number) => Math.abs(ms - target) < 60_000;
    expect(near(dates(ca.certPem).back, 7 * DAY) && near(describeCertificate(ca.certPem).notAfter.getTime() - Date.now(), 3650 * DAY)).toBe(true);
    expect(near(dates(server.certPem).back, 7 * DAY) && dates(server.certPem).days === 825).toBe(true);
    expect(near(dates(thing).back, 3_600_000)).toBe(true);
    expect(near(dates(short.certPem).back, DAY / 20) && dates(short.certPem).days === 1).toBe(true);
    // a thing's 10 years from an hour back ended a week after the CA; now they end with it at the latest
    expect(describeCertificate(thing).notAfter.getTime()).toBeLessThanOrEqual(describeCertificate(ca.certPem).notAfter.getTime());
    const shortCa = await createCertificateAuthority({ commonName: "short CA", days: 30 });
    const clamped = await issueThingCertificate(shortCa, { thingName: "outlives", publicKeyPem: pki.thing.publicKeyPem });
    expect(describeCertificate(clamped).notAfter).toEqual(describeCertificate(shortCa.certPem).notAfter);
    const over = await createCertificateAuthority({ commonName: "over CA", notBefore: new Date(Date.now() - 3 * DAY), days: 1 });
    await expect(issueThingCertificate(over, { thingName: "late", publicKeyPem: pki.thing.publicKeyPem })).rejects.toThrow("the CA has expired");
    // ended minutes ago, within a leaf's backdating (verify pass 32, F7: it signed certificates already over)
    const justOver = await createCertificateAuthority({ commonName: "just over", notBefore: new Date(Date.now() - 10 * DAY), days: 10 - 0.01 });
    await expect(issueThingCertificate(justOver, { thingName: "late", publicKeyPem: pki.thing.publicKeyPem })).rejects.toThrow("the CA has expired");
    await expect(issueServerCertificate(justOver, { commonName: "127.0.0.1" })).rejects.toThrow("the CA has expired");
  });

  test("more things from the same CA via issueThing", async () => {
    const t2 = await pki.issueThing("second-thing");
    expect(t2.certPath).toBe(join(dir, "second-thing-certificate.pem"));
    expect(checkCertificate(t2.certPem, pki.ca.certPem, new Date()).ok).toBe(true);
    expect(describeCertificate(t2.certPem).serialNumber).not.toBe(describeCertificate(pki.thing.certPem).serialNumber);
  });
});

describe("thing tokens", () => {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  let thingKey: KeyObject;
  let thingPub: KeyObject;
  let thingId: string;
  const now = 1_800_000_000;

  beforeAll(() => {
    thingKey = loadPrivateKey(pki.thing.privateKeyPem);
    thingPub = loadPublicKey(pki.thing.publicKeyPem);
    thingId = pki.thing.thingId;
  });

  async function refusal(token: string, opts: { thingId?: string; now?: number; publicKey?: KeyObject } = {}): Promise<string> {
    try {
      await verifyThingToken(token, { thingId, publicKey: thingPub, now, ...opts });
    } catch (err) {
      expect(err).toBeInstanceOf(TokenError);
      expect(err).toBeInstanceOf(CryptoError);
      return (err as TokenError).reason;
    }
    throw new Error("token was accepted");
  }

  /** A correctly signed RS256 token with whatever header and claims a test wants. */
  function custom(claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: thingId, typ: "JWT", ...header }).sign(thingKey);
  }

  const good = () => ({ iss: `urn:thing:${thingId}`, aud: `urn:flashlex:${thingId}`, nbf: now - 360, exp: now + 360, iat: now });

  test("round trip with the claims DESIGN.md describes", async () => {
    expect(TOKEN_LIFETIME_SECONDS).toBe(360);
    const token = await signThingToken({ thingId, privateKey: thingKey, now });
    const [h, p] = token.split(".");
    expect(JSON.parse(Buffer.from(h!, "base64url").toString())).toEqual({ alg: "RS256", kid: thingId, typ: "JWT" });
    const raw = JSON.parse(Buffer.from(p!, "base64url").toString());
    expect(raw).toMatchObject(good());
    expect(raw.jti).toMatch(/^[0-9a-f-]{36}$/);
    const claims = await verifyThingToken(token, { thingId, publicKey: thingPub, now });
    expect(claims).toMatchObject(good());
    // Accepted across the whole window plus skew (exp itself is exclusive, as in jose), and with
    // the key read from the certificate.
    const certKey = loadPublicKey(pki.thing.certPem);
    for (const t of [now - 360 - 60, now + 360 + 59]) {
      await verifyThingToken(token, { thingId, publicKey: certKey, now: t });
    }
  });

  test("a PKCS#8-loaded key signs tokens just the same", async () => {
    const pkcs8 = createPrivateKey(pki.thing.privateKeyPem).export({ type: "pkcs8", format: "pem" }) as string;
    const token = await signThingToken({ thingId, privateKey: loadPrivateKey(pkcs8), now });
    await verifyThingToken(token, { thingId, publicKey: thingPub, now });
  });

  test("a tampered payload is refused", async () => {
    const [h, , s] = (await signThingToken({ thingId, privateKey: thingKey, now })).split(".");
    const forged = `${h}.${b64({ ...good(), exp: now + 300 })}.${s}`;
    expect(await refusal(forged)).toBe("bad signature");
  });

  test("a token signed by another key is refused", async () => {
    const stranger = loadPrivateKey(other.thing.privateKeyPem);
    expect(await refusal(await signThingToken({ thingId, privateKey: stranger, now }))).toBe("bad signature");
  });

  test("expired and not-yet-valid tokens are refused (60 s skew)", async () => {
    const token = await signThingToken({ thingId, privateKey: thingKey, now });
    expect(await refusal(token, { now: now + 360 + 60 })).toBe("expired");
    expect(await refusal(token, { now: now - 360 - 61 })).toBe("not yet valid");
  });

  test("wrong kid, iss, aud and typ are refused", async () => {
    const token = await signThingToken({ thingId, privateKey: thingKey, now });
    expect(await refusal(token, { thingId: randomUUID() })).toBe("wrong kid");
    expect(await refusal(await custom(good(), { kid: undefined }))).toBe("wrong kid");
    expect(await refusal(await custom({ ...good(), iss: "urn:thing:someone-else" }))).toBe("wrong issuer");
    expect(await refusal(await custom({ ...good(), aud: "urn:flashlex:someone-else" }))).toBe("wrong audience");
    expect(await refusal(await custom({ ...good(), aud: [`urn:flashlex:${thingId}`, "urn:other"] }))).toBe("wrong audience");
    expect(await refusal(await custom(good(), { typ: "at+jwt" }))).toBe("wrong typ");
    // typ may be left out, and a one-element audience array is the same audience.
    await verifyThingToken(await custom({ ...good(), aud: [`urn:flashlex:${thingId}`] }, { typ: undefined }), {
      thingId,
      publicKey: thingPub,
      now,
    });
  });

  test("alg: none is refused", async () => {
    const token = `${b64({ alg: "none", kid: thingId, typ: "JWT" })}.${b64(good())}.`;
    expect(await refusal(token)).toBe("algorithm not allowed");
  });

  test("HS256 with the public key PEM as the HMAC secret is refused", async () => {
    const signingInput = `${b64({ alg: "HS256", kid: thingId, typ: "JWT" })}.${b64(good())}`;
    const sig = createHmac("sha256", pki.thing.publicKeyPem).update(signingInput).digest("base64url");
    expect(await refusal(`${signingInput}.${sig}`)).toBe("algorithm not allowed");
  });

  test("a lifetime over 15 minutes, or no exp, is refused", async () => {
    expect(await refusal(await custom({ ...good(), nbf: now - 600, exp: now + 600 }))).toBe("lifetime too long");
    expect(await refusal(await custom({ iss: good().iss, aud: good().aud, exp: now + 3600 }))).toBe("lifetime too long");
    expect(await refusal(await custom({ iss: good().iss, aud: good().aud, iat: now + 3000, exp: now + 3600 }))).toBe("lifetime too long");
    expect(await refusal(await custom({ iss: good().iss, aud: good().aud, nbf: now - 60 }))).toBe("missing exp");
    expect(await refusal(await custom({ ...good(), exp: "soon" }))).toBe("malformed");
  });

  test("a window that ends before it begins is refused, even when both ends are within the clock skew of now (it was taken)", async () => {
    expect(await refusal(await custom({ iss: good().iss, aud: good().aud, nbf: now + 30, exp: now + 10 }))).toBe("window ends before it begins");
    expect(await refusal(await custom({ iss: good().iss, aud: good().aud, iat: now + 30, exp: now + 10 }))).toBe("window ends before it begins");
  });

  test("malformed tokens are refused as malformed", async () => {
    for (const junk of ["", "abc", "a.b", "a.b.c.d", "a b.c.d", "x".repeat(9000), `${b64("{")}.${b64({})}.AAAA`]) {
      expect(await refusal(junk)).toBe("malformed");
    }
  });

  test("the caller passing a private key is a CryptoError, not a token refusal", async () => {
    const token = await signThingToken({ thingId, privateKey: thingKey, now });
    const err = await verifyThingToken(token, { thingId, publicKey: thingKey, now }).catch((e) => e);
    expect(err).toBeInstanceOf(CryptoError);
    expect(err).not.toBeInstanceOf(TokenError);
    await expect(signThingToken({ thingId, privateKey: thingPub, now })).rejects.toThrow(CryptoError);
  });

  test("property: any UUID thing id round-trips; any one-character change to the signature is refused", async () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    await fc.assert(
      fc.asyncProperty(fc.uuid(), fc.nat(), fc.constantFrom(...alphabet, "=", "+", "/", ".", " "), async (id, at, ch) => {
        const token = await signThingToken({ thingId: id, privateKey: thingKey, now });
        const claims = await verifyThingToken(token, { thingId: id, publicKey: thingPub, now });
        expect(claims.iss).toBe(`urn:thing:${id}`);
        const sigStart = token.lastIndexOf(".") + 1;
        const i = sigStart + (at % (token.length - sigStart));
        if (token[i] === ch) return;
        const changed = token.slice(0, i) + ch + token.slice(i + 1);
        const reason = await refusal(changed, { thingId: id });
        expect(["bad signature", "malformed"]).toContain(reason);
      }),
      { numRuns: 50 },
    );
  });

  test("EC keys: P-256 signs ES256 and P-384 ES384, same header and claims; each verifies only as its own algorithm", async () => {
    for (const [curve, alg] of [
      ["P-256", "ES256"],
      ["P-384", "ES384"],
    ] as const) {
      const pair = generateKeyPairSync("ec", { namedCurve: curve });
      // SEC1 (`BEGIN EC PRIVATE KEY`) and PKCS#8 load to the same key
      const sec1 = loadPrivateKey(pair.privateKey.export({ type: "sec1", format: "pem" }) as string);
      const pkcs8 = loadPrivateKey(pair.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
      expect(spkiDer(sec1).equals(spkiDer(pkcs8))).toBe(true);
      expect(tokenAlgorithmFor(sec1)).toBe(alg);
      const token = await signThingToken({ thingId, privateKey: sec1, now });
      expect(JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString())).toEqual({ alg, kid: thingId, typ: "JWT" });
      expect(await verifyThingToken(token, { thingId, publicKey: pair.publicKey, now })).toMatchObject(good());
      // the RSA thing's key never accepts it, and the EC key never accepts RS256
      expect(await refusal(token)).toBe("algorithm not allowed");
      expect(await refusal(await signThingToken({ thingId, privateKey: thingKey, now }), { publicKey: pair.publicKey })).toBe("algorithm not allowed");
    }
  });

  test("keys FlashLex does not sign with are refused for signing and verifying, as a CryptoError", async () => {
    for (const pair of [
      generateKeyPairSync("ed25519"),
      generateKeyPairSync("ec", { namedCurve: "secp521r1" }),
      generateKeyPairSync("rsa", { modulusLength: 1024 }),
    ]) {
      await expect(signThingToken({ thingId, privateKey: pair.privateKey, now })).rejects.toThrow(
        /is not supported: FlashLex uses RSA keys of 2048 bits or more, EC P-256 or EC P-384 keys/,
      );
      const token = await signThingToken({ thingId, privateKey: thingKey, now });
      const err = await verifyThingToken(token, { thingId, publicKey: pair.publicKey, now }).catch((e) => e);
      expect(err).toBeInstanceOf(CryptoError);
      expect(err).not.toBeInstanceOf(TokenError);
    }
  });

  test("a token with crit or b64 in its header is refused, even correctly signed", async () => {
    // jose will not sign these, so the RS256 signature is made by hand.
    const raw = (header: object) => {
      const input = `${b64({ alg: "RS256", kid: thingId, typ: "JWT", ...header })}.${b64(good())}`;
      return `${input}.${cryptoSign("sha256", Buffer.from(input), thingKey).toString("base64url")}`;
    };
    expect(await verifyThingToken(raw({}), { thingId, publicKey: thingPub, now })).toMatchObject(good()); // the hand-made signature is right
    expect(await refusal(raw({ crit: ["exp"] }))).toBe("unsupported header");
    expect(await refusal(raw({ crit: ["b64"], b64: true }))).toBe("unsupported header");
    expect(await refusal(raw({ b64: false }))).toBe("unsupported header");
  });

  test("the last signature character cannot be swapped for a same-bytes spelling", async () => {
    // 256 signature bytes use 342 base64url characters; the last one carries 4 spare bits.
    // Decoders ignore them, so only the canonical-form check stops a second valid spelling.
    const token = await signThingToken({ thingId, privateKey: thingKey, now });
    const last = token.at(-1)!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const twin = alphabet[alphabet.indexOf(last) ^ 1]!; // flips a spare bit only
    const sibling = token.slice(0, -1) + twin;
    expect(Buffer.from(sibling.split(".")[2]!, "base64url")).toEqual(Buffer.from(token.split(".")[2]!, "base64url"));
    expect(await refusal(sibling)).toBe("malformed");
  });
});
