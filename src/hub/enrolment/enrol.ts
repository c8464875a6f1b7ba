/**
 * Enrolment: a device that holds an enrolment token becomes a thing, with a key it made itself.
 * The device sends the token, the name it wants and a CSR (RFC 2986); the hub checks the token
 * (tokens.ts), the name (as `hub thing create` does, plus the token's prefix), the CSR (its
 * self-signature, a key of FlashLex's kinds and strength, CN = the name the hub assigns: owner
 * prefix, dash, typed name), issues the certificate from its CA with the configured lifetime and
 * registers the thing, all or nothing: the token's use and the thing's row are one transaction,
 * and nothing is written to disk (no zip: the hub never had the private key).
 *
 * The answer carries what the device writes beside its key: the thing's id and name, its
 * certificate, the CA and the thing's config.yml, rendered by the hub from the same template as
 * the distribution (so the device never needs the template, and both flows write the same file).
 */
import { randomUUID } from "node:crypto";
import { describeCertificate } from "../../crypto/certificate-info.ts";
import { readCsr } from "../../crypto/csr.ts";
import { ConflictError, InputError } from "../../shared/errors.ts";
import { type HubHome, readCa } from "../home/home.ts";
import { ownerPrefix, settingMs } from "../home/settings.ts";
import type { HubStore, ThingRecord } from "../store/hub-store.ts";
import { issueWithLifetime } from "../things/certificates.ts";
import { renderThingConfig } from "../things/distribution.ts";
import { validateThingName } from "../things/provision.ts";
import { ensureUpdateKey } from "../updates/update-key.ts";
import { enrolmentTokenHash, whyRefused } from "./tokens.ts";

/** A refused enrolment: one line saying why, safe to tell the device (never the token). Kind `data`: 65 on the device, 400 over HTTP. */
export class EnrolmentRefused extends InputError {
  constructor(reason: string) {
    super(reason);
    this.name = "EnrolmentRefused";
  }
}

export interface EnrolmentRequest {
  token: unknown;
  /** the typed name; the thing's name is the owner prefix, a dash and this */
  name: unknown;
  /** PEM */
  csr: unknown;
}

export interface Enrolled {
  thing: ThingRecord;
  certPem: string;
  caPem: string;
  /** the thing's config.yml, ready to write */
  configText: string;
}

/** What a device needs before it can make its CSR: the CN prefix, and the CA it pins by fingerprint. */
export function enrolmentInfo(home: HubHome): { ownerPrefix: string; caPem: string; caFingerprint: string } {
  const caPem = readCa(home.paths).certPem;
  return { ownerPrefix: ownerPrefix(home.settings), caPem, caFingerprint: describeCertificate(caPem).fingerprint256 };
}

/**
 * Enrols a device (see the module comment). Throws EnrolmentRefused (a token, name or CSR
 * refused: nothing was created), ConflictError (the name is taken: nothing was created).
 */
export async function enrol(home: HubHome, store: HubStore, request: EnrolmentRequest, now: () => number = Date.now): Promise<Enrolled> {
  let typedName: string;
  try {
    typedName = validateThingName(request.name);
  } catch (err) {
    throw new EnrolmentRefused((err as Error).message);
  }
  const tokenHash = enrolmentTokenHash(request.token);
  const token = tokenHash ? await store.enrolmentTokenByHash(tokenHash) : undefined;
  const refused = whyRefused(token, typedName, now());
  if (refused) throw new EnrolmentRefused(refused);

  const name = `${ownerPrefix(home.settings)}-${typedName}`;
  let csr: Awaited<ReturnType<typeof readCsr>>;
  try {
    csr = await readCsr(request.csr);
  } catch (err) {
    throw new EnrolmentRefused((err as Error).message);
  }
  if (csr.commonName !== name)
    throw new EnrolmentRefused(`the CSR was refused: its CN must be ${name} (owner prefix and name), not ${JSON.stringify(csr.commonName)}`);
  if (await store.getThingByName(name)) throw new ConflictError(`a thing named ${name} already exists; choose another name`);

  const at = now();
  const id = randomUUID();
  const certPem = await issueWithLifetime(home, name, csr.publicKeyPem, settingMs(home.settings.certificates.thingLifetime), at);
  const info = describeCertificate(certPem);
  const { settings } = home;
  const configText = renderThingConfig({
    thingId: id,
    thingName: name,
    apiEndpoint: settings.api.publicUrl,
    env: settings.env,
    brokerHost: settings.broker.host,
    brokerPort: settings.broker.port,
    // the key its updates must be signed with, pinned at enrolment as in every distribution
    updatePublicKey: ensureUpdateKey(home.paths.dir),
  }).text;
  const thing: ThingRecord = {
    id,
    name,
    shortName: typedName,
    publicKeyPem: csr.publicKeyPem,
    certPem,
    certSerial: info.serialNumber,
    certNotAfter: info.notAfter.getTime(),
    createdAt: at,
    verifiedAt: null,
    lastSeenAt: null,
    revokedAt: null,
    enrolledWith: token!.id,
  };
  let used: boolean;
  try {
    used = await store.enrolThing(thing, tokenHash, at);
  } catch (err) {
    if (/UNIQUE/i.test(String((err as Error).message))) throw new ConflictError(`a thing named ${name} already exists; choose another name`);
    throw err;
  }
  // Another device took the last use (or the token expired) between the check and the transaction.
  if (!used) throw new EnrolmentRefused(whyRefused(await store.enrolmentTokenByHash(tokenHash), typedName, at) ?? "the enrolment token can no longer be used");
  return { thing, certPem, caPem: readCa(home.paths).certPem, configText };
}
