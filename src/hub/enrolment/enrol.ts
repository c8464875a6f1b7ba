/**
 * Enrolment: a device that holds an enrolment token becomes a thing, with a key it made itself.
 * The device sends the token, the name it wants and a CSR (RFC 2986); the hub checks the token
 * (tokens.ts), the name (as `hub thing create` does, plus the token's prefix), the CSR (its
 * self-signature, a key of FlashLex's kinds and strength, CN = the name the hub assigns: owner
 * prefix, dash, typed name), issues the certificate from its CA with the configured lifetime and
 * registers the thing, all or nothing: the token's use and the thing's row are one transaction,
 * and nothing is written to disk (no zip: the hub never had the private key).
 *
 * A retry is answered, not refused: a device whose enrolment the hub completed but which never
 * got the answer (the hub killed before it left, the device killed before it wrote its folder)
 * enrols again with the key it kept (src/thing/enrol/folder.ts). When the name is taken by a
 * thing that was enrolled, is not revoked, has never connected and whose public key is the
 * CSR's, the hub answers with that thing's certificate again. The token must still be valid
 * (the one that enrolled the thing may be used up by that very enrolment) and no further use is
 * spent. Anything else with a taken name stays a conflict.
 *
 * The answer carries what the device writes beside its key: the thing's id and name, its
 * certificate, the CA and the thing's config.yml, rendered by the hub from the same template as
 * the distribution (so the device never needs the template, and both flows write the same file).
 */
import { createPublicKey, randomUUID } from "node:crypto";
import { describeCertificate } from "../../crypto/certificate-info.ts";
import { readCsr } from "../../crypto/csr.ts";
import { spkiDer } from "../../crypto/keys.ts";
import { ConflictError, InputError } from "../../shared/errors.ts";
import { quoteLogText } from "../../shared/log.ts";
import { type HubHome, readCa } from "../home/home.ts";
import { ownerPrefix, settingMs } from "../home/settings.ts";
import { type HubStore, isThingNameTaken, type ThingRecord } from "../store/hub-store.ts";
import { issueWithLifetime } from "../things/certificates.ts";
import { renderThingConfig } from "../things/distribution.ts";
import { validateThingName } from "../things/provision.ts";
import { updateKey } from "../updates/update-key.ts";
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
  /** true: a retry of an enrolment already done (same name, same key), answered again; no token use spent */
  repeated: boolean;
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
  // The token first: a request without one is refused for that, whatever its name.
  if (typeof request.token !== "string" || request.token === "") throw new EnrolmentRefused("no enrolment token in the request (token)");
  let typedName: string;
  try {
    typedName = validateThingName(request.name, ownerPrefix(home.settings));
  } catch (err) {
    throw new EnrolmentRefused((err as Error).message);
  }
  const tokenHash = enrolmentTokenHash(request.token);
  const token = tokenHash ? await store.enrolmentTokenByHash(tokenHash) : undefined;
  const refused = whyRefused(token, typedName, now());
  // A used-up token may still answer the retry of the enrolment that used it up (below).
  if (refused && !(token && token.uses >= token.maxUses && whyRefused({ ...token, uses: 0 }, typedName, now()) === undefined))
    throw new EnrolmentRefused(refused);

  const name = `${ownerPrefix(home.settings)}-${typedName}`;
  let csr: Awaited<ReturnType<typeof readCsr>>;
  try {
    csr = await readCsr(request.csr);
  } catch (err) {
    throw new EnrolmentRefused((err as Error).message);
  }
  if (csr.commonName !== name)
    throw new EnrolmentRefused(`the CSR was refused: its CN must be ${name} (owner prefix and name), not ${quoteLogText(csr.commonName)}`);
  const existing = await store.getThingByName(name);
  if (existing) {
    if (!isRetryOf(existing, csr.publicKeyPem)) {
      if (refused) throw new EnrolmentRefused(refused);
      const free = existing.revokedAt ? " (a revoked one: the hub's operator frees the name with `hub thing delete`)" : "";
      throw new ConflictError(`a thing named ${name} already exists${free}; choose another name`);
    }
    if (refused && token!.id !== existing.enrolledWith) throw new EnrolmentRefused(refused);
    return {
      thing: existing,
      certPem: existing.certPem,
      caPem: readCa(home.paths).certPem,
      configText: configFor(home, existing.id, name, await updateKey(home, store)),
      repeated: true,
    };
  }
  if (refused) throw new EnrolmentRefused(refused);

  const at = now();
  const id = randomUUID();
  // Before the CA signs: a hub whose update key is unusable (78) signs no certificate it cannot hand out.
  const updatePublicKey = await updateKey(home, store);
  const certPem = await issueWithLifetime(home, { id, name }, csr.publicKeyPem, settingMs(home.settings.certificates.thingLifetime), at);
  const info = describeCertificate(certPem);
  const configText = configFor(home, id, name, updatePublicKey);
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
    if (isThingNameTaken(err)) throw new ConflictError(`a thing named ${name} already exists; choose another name`);
    throw err;
  }
  // Another device took the last use (or the token expired) between the check and the transaction.
  if (!used) throw new EnrolmentRefused(whyRefused(await store.enrolmentTokenByHash(tokenHash), typedName, at) ?? "the enrolment token can no longer be used");
  faultHook("enrolled");
  return { thing, certPem, caPem: readCa(home.paths).certPem, configText, repeated: false };
}

/**
 * Whether an enrolment request with `publicKeyPem` repeats the one that made `thing`: enrolled
 * (not made by `hub thing create`), not revoked, never connected (so its key was never renewed
 * and nobody runs it), and the same public key (so the requester holds the private key the
 * certificate was issued for: the CSR's self-signature proved it).
 */
function isRetryOf(thing: ThingRecord, publicKeyPem: string): boolean {
  if (thing.enrolledWith == null || thing.revokedAt !== null || thing.verifiedAt !== null || thing.lastSeenAt !== null) return false;
  try {
    return spkiDer(createPublicKey(thing.publicKeyPem)).equals(spkiDer(createPublicKey(publicKeyPem)));
  } catch {
    return false;
  }
}

/** The thing's config.yml, rendered from the hub's settings as every distribution's is. */
function configFor(home: HubHome, id: string, name: string, updatePublicKey: string): string {
  const { settings } = home;
  return renderThingConfig({
    thingId: id,
    thingName: name,
    apiEndpoint: settings.api.publicUrl,
    env: settings.env,
    brokerHost: settings.broker.host,
    brokerPort: settings.broker.port,
    // the key its updates must be signed with, pinned at enrolment as in every distribution
    updatePublicKey,
  }).text;
}

/**
 * The test-only fault hook: SIGKILL right after `step` when FLASHLEX_FAULT_KILL_AT_ENROL names
 * it (`enrolled`: the thing's row and the token's use are committed, the answer not yet sent).
 * Never set outside tests.
 */
function faultHook(step: string): void {
  if (process.env.FLASHLEX_FAULT_KILL_AT_ENROL === step) process.kill(process.pid, "SIGKILL");
}
