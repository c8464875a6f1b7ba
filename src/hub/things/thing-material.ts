import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { describeCertificate } from "../../crypto/certificate-info.ts";
import { generateThingKeyPair, type ThingKeyType } from "../../crypto/keys.ts";
import { issueThingCertificate } from "../../crypto/x509.ts";
import { createFile } from "../../shared/files.ts";
import { readCa } from "../home/home.ts";
import type { HubPaths } from "../home/paths.ts";
import { buildDistribution, type DistributionValues, renderThingConfig } from "./distribution.ts";

/** What a new thing needs made: the hub CA that signs, its name, the kind of key, the config's values, where its zip goes. */
export interface MaterialJob {
  /** the hub CA's certificate and key files, read and checked here (readCa) */
  ca: Pick<HubPaths, "caCert" | "caKey">;
  /** the full name, owner prefix included: the certificate's CN */
  thingName: string;
  keyType: ThingKeyType;
  values: DistributionValues;
  /** the zip entries' modification time, Unix ms */
  mtime: number;
  /** the distribution zip's path: made 0600 (its folder 0700 when missing), never over a file that is there */
  distribution: string;
}

/**
 * A new thing's public key (PEM) and its certificate from the hub CA (PEM, its serial and
 * notAfter as Unix ms): the private key is only in the distribution zip, written to the job's path.
 */
export interface ThingMaterial {
  publicKeyPem: string;
  certPem: string;
  certSerial: string;
  certNotAfter: number;
}

/**
 * Makes a thing's key pair, certificate and distribution (config.yml checked against the thing's
 * schema) and writes the zip, synced, to `job.distribution`. Some 10 ms of CPU on x64 for an RSA
 * thing beside the key generation, mostly ASN.1 and YAML in JavaScript, and the zip's fsync: the
 * hub runs it on a worker thread (material-thread.ts). Throws ConfigError when the CA's files are
 * wrong or hub.yml's values would make a config.yml that does not validate, CryptoError for a name
 * a certificate cannot carry, and what the file system throws (EEXIST when the zip is there,
 * EACCES, ENOSPC).
 */
export async function makeThingMaterial(job: MaterialJob): Promise<ThingMaterial> {
  const ca = readCa(job.ca);
  const configText = renderThingConfig(job.values).text;
  const keys = await generateThingKeyPair(job.keyType);
  const certPem = await issueThingCertificate(ca, { thingName: job.thingName, thingId: job.values.thingId, publicKeyPem: keys.publicKeyPem });
  const zip = buildDistribution(
    job.values,
    { rootCaPem: ca.certPem, certPem, privateKeyPem: keys.privateKeyPem, publicKeyPem: keys.publicKeyPem },
    new Date(job.mtime),
    configText,
  );
  // A shared directory (hub.sharedDir) set after `hub init` has no dists/ yet.
  mkdirSync(dirname(job.distribution), { recursive: true, mode: 0o700 });
  createFile(job.distribution, zip, 0o600);
  const info = describeCertificate(certPem);
  return { publicKeyPem: keys.publicKeyPem, certPem, certSerial: info.serialNumber, certNotAfter: info.notAfter.getTime() };
}
