import { generateThingKeyPair, type ThingKeyType } from "../../crypto/keys.ts";
import { type CertifiedKey, issueThingCertificate } from "../../crypto/x509.ts";
import { buildDistribution, type DistributionValues, renderThingConfig } from "./distribution.ts";

/** What a new thing needs made: the hub CA that signs, its name, the kind of key, the config's values. */
export interface MaterialJob {
  ca: CertifiedKey;
  /** the full name, owner prefix included: the certificate's CN */
  thingName: string;
  keyType: ThingKeyType;
  values: DistributionValues;
  /** the zip entries' modification time, Unix ms */
  mtime: number;
}

/**
 * A new thing's public key (PEM), its certificate from the hub CA (PEM) and its distribution zip:
 * the private key is only in the zip.
 */
export interface ThingMaterial {
  publicKeyPem: string;
  certPem: string;
  zip: Uint8Array;
}

/**
 * Makes a thing's key pair, certificate and distribution (config.yml checked against the thing's
 * schema). Some 10 ms of CPU on x64 for an RSA thing beside the key generation, mostly ASN.1 and
 * YAML in JavaScript: the hub runs it on a worker thread (material-thread.ts). Throws ConfigError
 * when hub.yml's values would make a config.yml that does not validate, CryptoError for a name
 * a certificate cannot carry.
 */
export async function makeThingMaterial(job: MaterialJob): Promise<ThingMaterial> {
  const configText = renderThingConfig(job.values).text;
  const keys = await generateThingKeyPair(job.keyType);
  const certPem = await issueThingCertificate(job.ca, { thingName: job.thingName, publicKeyPem: keys.publicKeyPem });
  const zip = buildDistribution(
    job.values,
    { rootCaPem: job.ca.certPem, certPem, privateKeyPem: keys.privateKeyPem, publicKeyPem: keys.publicKeyPem },
    new Date(job.mtime),
    configText,
  );
  return { publicKeyPem: keys.publicKeyPem, certPem, zip };
}
