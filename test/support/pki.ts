/**
 * A throwaway PKI on disk for tests: root CA, broker certificate for 127.0.0.1/localhost, and
 * thing certificates, laid out with the file names the thing agent and hub expect. Everything is
 * made with src/crypto, so the tests exercise the same code that production uses.
 */

import { randomUUID } from "node:crypto";
import { chmodSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { generateRsaKeyPair } from "../../src/crypto/keys.ts";
import { type CertifiedKey, createCertificateAuthority, issueServerCertificate, issueThingCertificate } from "../../src/crypto/x509.ts";

export interface ThingFiles {
  name: string;
  thingId: string;
  certPath: string;
  privateKeyPath: string;
  publicKeyPath: string;
  certPem: string;
  /** PKCS#1, as FlashLex distributions shipped it. */
  privateKeyPem: string;
  publicKeyPem: string;
}

export interface OtherCa {
  dir: string;
  caCertPath: string;
  caKeyPath: string;
  ca: CertifiedKey;
  /** A thing whose certificate this unrelated CA signed: the hub's broker must refuse it. */
  thing: ThingFiles;
}

export interface TestPki {
  dir: string;
  caCertPath: string;
  caKeyPath: string;
  brokerCertPath: string;
  brokerKeyPath: string;
  ca: CertifiedKey;
  broker: CertifiedKey;
  thing: ThingFiles;
  /** Issues one more thing certificate from the same CA, written into the same directory. */
  issueThing(name: string, thingId?: string): Promise<ThingFiles>;
  /** A second, unrelated CA (in `<dir>/other-ca/`) with a thing certificate of its own. */
  otherCa(thingName?: string): Promise<OtherCa>;
}

function write(path: string, text: string, mode: number): string {
  writeFileSync(path, text, { mode });
  chmodSync(path, mode); // `mode` above is ignored when the file already exists
  return path;
}

async function makeThing(dir: string, ca: CertifiedKey, name: string, thingId: string): Promise<ThingFiles> {
  const { privateKeyPem, publicKeyPem } = await generateRsaKeyPair();
  const certPem = await issueThingCertificate(ca, { thingName: name, publicKeyPem });
  return {
    name,
    thingId,
    certPem,
    privateKeyPem,
    publicKeyPem,
    certPath: write(join(dir, `${name}-certificate.pem`), certPem, 0o644),
    privateKeyPath: write(join(dir, `${name}-keypair-private.pem`), privateKeyPem, 0o600),
    publicKeyPath: write(join(dir, `${name}-keypair-public.pem`), publicKeyPem, 0o644),
  };
}

async function makeCa(dir: string, commonName: string): Promise<{ ca: CertifiedKey; caCertPath: string; caKeyPath: string }> {
  mkdirSync(dir, { recursive: true });
  // Mosquitto runs as user `mosquitto` and must traverse the directory (mkdtemp makes it 0700).
  // Only bits are added, so a shared dir such as /tmp keeps its sticky bit.
  chmodSync(dir, (statSync(dir).mode & 0o7777) | 0o755);
  const ca = await createCertificateAuthority({ commonName });
  return {
    ca,
    caCertPath: write(join(dir, "root-ca-cert.pem"), ca.certPem, 0o644),
    caKeyPath: write(join(dir, "root-ca-key.pem"), ca.keyPem, 0o600),
  };
}

export async function makeTestPki(dir: string, opts: { thingName?: string; thingId?: string; serverNames?: string[] } = {}): Promise<TestPki> {
  const { ca, caCertPath, caKeyPath } = await makeCa(dir, "FlashLex Test Root CA");
  const names = opts.serverNames ?? ["127.0.0.1", "localhost"];
  const broker = await issueServerCertificate(ca, {
    commonName: names[0] ?? "localhost",
    ipAddresses: names.filter((n) => isIP(n)),
    dnsNames: names.filter((n) => !isIP(n)),
  });
  const brokerCertPath = write(join(dir, "broker-cert.pem"), broker.certPem, 0o644);
  // 0644 on purpose, test keys only: Mosquitto started as root drops to user `mosquitto` before
  // it reads its key, and a root-owned 0600 key would make the broker fail to start.
  const brokerKeyPath = write(join(dir, "broker-key.pem"), broker.keyPem, 0o644);
  const thing = await makeThing(dir, ca, opts.thingName ?? "test-thing", opts.thingId ?? randomUUID());

  return {
    dir,
    caCertPath,
    caKeyPath,
    brokerCertPath,
    brokerKeyPath,
    ca,
    broker,
    thing,
    issueThing: (name, thingId = randomUUID()) => makeThing(dir, ca, name, thingId),
    async otherCa(thingName = "stranger") {
      const otherDir = join(dir, "other-ca");
      // Same common name as the real root on purpose: only the signature tells them apart, which
      // is exactly what a "certificate from another CA is refused" test must rely on.
      const other = await makeCa(otherDir, "FlashLex Test Root CA");
      return { dir: otherDir, ...other, thing: await makeThing(otherDir, other.ca, thingName, randomUUID()) };
    },
  };
}
