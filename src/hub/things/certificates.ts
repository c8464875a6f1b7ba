/**
 * A thing's certificate over its life: issuing one for a public key the thing made (enrolment and
 * renewal both come here, so both follow the one lifetime rule), renewing it over the thing's
 * authenticated channel, an operator's request to renew now, and what the hub says about expiry.
 *
 * Lifetime: hub.yml `certificates.thingLifetime` (default 90 days; docs/enrolment.md says why);
 * the agent renews at two thirds of it. A certificate starts a little in the past (5% of the
 * lifetime, at most an hour) so a thing whose clock is behind can use it at once, and the start
 * never eats into the lifetime: notAfter is `now + lifetime`.
 */
import { rmSync } from "node:fs";
import { type CertificateInfo, describeCertificate, publicKeyIssuedBy } from "../../crypto/certificate-info.ts";
import { readCsr } from "../../crypto/csr.ts";
import { issueThingCertificate } from "../../crypto/x509.ts";
import { ConflictError, InputError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { quoteLogText } from "../../shared/log.ts";
import { type HubHome, readCa, readCaCertificate } from "../home/home.ts";
import { distributionPath } from "../home/paths.ts";
import { settingMs } from "../home/settings.ts";
import type { HubStore, ThingRecord } from "../store/hub-store.ts";

const DAY_MS = 86_400_000;
const MAX_BACKDATE_MS = 3_600_000;

/** A certificate for `publicKeyPem` naming the thing (its name and id), valid from a little before `now` (Unix ms) to `now + lifetimeMs`. */
export async function issueWithLifetime(
  home: HubHome,
  thing: { id: string; name: string },
  publicKeyPem: string,
  lifetimeMs: number,
  now: number,
): Promise<string> {
  const backdateMs = Math.min(MAX_BACKDATE_MS, Math.floor(lifetimeMs / 20));
  return issueThingCertificate(readCa(home.paths), {
    thingName: thing.name,
    thingId: thing.id,
    publicKeyPem,
    notBefore: new Date(now - backdateMs),
    days: (lifetimeMs + backdateMs) / DAY_MS,
  });
}

/** The certificate's notAfter in Unix ms: the stored column, else read from the certificate (things stored before the column). */
export function certificateNotAfter(thing: Pick<ThingRecord, "certNotAfter" | "certPem">): number | null {
  if (thing.certNotAfter != null) return thing.certNotAfter;
  try {
    return describeCertificate(thing.certPem).notAfter.getTime();
  } catch {
    return null;
  }
}

/** What a thing asks at each renewal check (GET .../certificate): when its certificate ends and whether to renew now. */
export interface RenewalAdvice {
  /** Unix ms */
  notAfter: number | null;
  /** an operator asked for it (`hub thing rotate`), or the certificate is not valid yet (issued while the hub's clock was ahead) */
  renewNow: boolean;
  /** ms until the agent should ask again (hub.yml certificates.renewalCheck) */
  checkAfterMs: number;
  /** ms: the lifetime a renewed certificate gets */
  lifetimeMs: number;
}

/**
 * The answer to `thing`'s renewal check at `now` (Unix ms): its notAfter, whether to renew now,
 * and hub.yml's durations in ms.
 */
export function renewalAdvice(home: HubHome, thing: ThingRecord, now: number): RenewalAdvice {
  const { certificates } = home.settings;
  return {
    notAfter: certificateNotAfter(thing),
    renewNow: thing.renewRequestedAt != null || notYetValid(thing, now),
    checkAfterMs: settingMs(certificates.renewalCheck),
    lifetimeMs: settingMs(certificates.thingLifetime),
  };
}

/**
 * A certificate that starts after `now` (Unix ms) was issued while the hub's clock was ahead (it
 * backdates its certificates): the broker refuses it until then, so the thing renews at its
 * next check, over HTTP, where its token is checked with its key and not its certificate's dates.
 */
function notYetValid(thing: Pick<ThingRecord, "certPem">, now: number): boolean {
  try {
    return describeCertificate(thing.certPem).notBefore.getTime() > now;
  } catch {
    return false;
  }
}

/**
 * Removes the thing's distribution zip, which holds a private key it no longer uses (after a
 * renewal, or a lost renewal adopted). Returns undefined when it is gone (or was never there), or
 * which zip could not be removed and why (a dists/ another user owns): the caller's to report.
 */
export function removeDistribution(home: HubHome, thingId: string): string | undefined {
  const zip = distributionPath(home.paths, thingId);
  try {
    rmSync(zip, { force: true });
    return undefined;
  } catch (err) {
    return `${zip}: ${toFlashlexError(err).message}`;
  }
}

/** A renewal's certificate (PEM) and its end (Unix ms); `zipLeft`: the old distribution zip that could not be removed, and why. */
export interface RenewedCertificate {
  certPem: string;
  notAfter: number;
  zipLeft?: string;
}

/**
 * Renews `thing`'s certificate for the key in `csrPem` (RFC 2986; crypto/csr.ts `readCsr`
 * checks signature and key strength), whose CN must be the thing's name. `authenticatedWith` is
 * the public key whose token let the request in: it is kept as the thing's previous key, so a
 * thing that loses power before it has stored its new certificate still authenticates with the
 * old one (and can renew again). The thing's other certificate, if it had one, is superseded at
 * once (listed in the CRL); the kept one is superseded when the hub forgets the previous key
 * (store `forgetPreviousKey`). The thing's distribution zip, if it has one, is deleted: it holds
 * the replaced private key; when it cannot be, `zipLeft` says which and why (the renewal stands).
 * Throws InputError (65/400) for a refused CSR, ConflictError (409) when the thing changed
 * since it was read (another renewal, a revoke or a delete committed first: the certificate just
 * issued is then listed as superseded, so it works nowhere).
 */
export async function renewCertificate(
  home: HubHome,
  store: HubStore,
  thing: ThingRecord,
  csrPem: unknown,
  authenticatedWith: string,
  now: number,
): Promise<RenewedCertificate> {
  const csr = await readCsr(csrPem);
  if (csr.commonName !== thing.name) throw new InputError(`the CSR was refused: its CN must be ${thing.name}, not ${quoteLogText(csr.commonName)}`);
  const certPem = await issueWithLifetime(home, thing, csr.publicKeyPem, settingMs(home.settings.certificates.thingLifetime), now);
  const info = describeCertificate(certPem);
  // The key that signed the request stays accepted (as the previous one) with its certificate;
  // the other certificate the thing had is superseded now: a renewal signed with the previous
  // key drops the current certificate, which the thing never used (it fell back, or lost it).
  const current = { key: thing.publicKeyPem, serial: thing.certSerial, notAfter: certificateNotAfter(thing) };
  const previous = { key: thing.previousPublicKeyPem ?? null, serial: thing.previousCertSerial ?? null, notAfter: thing.previousCertNotAfter ?? null };
  const kept = authenticatedWith === current.key ? current : previous;
  const dropped = kept === current ? previous : current;
  const replaced = await store.replaceCertificate(thing.id, {
    publicKeyPem: csr.publicKeyPem,
    certPem,
    certSerial: info.serialNumber,
    certNotAfter: info.notAfter.getTime(),
    previousPublicKeyPem: authenticatedWith,
    previousCertSerial: kept.serial,
    previousCertNotAfter: kept.notAfter,
    superseded: dropped.serial && dropped.notAfter != null ? [{ serial: dropped.serial, notAfter: dropped.notAfter }] : [],
    at: now,
    expected: { publicKeyPem: thing.publicKeyPem, certSerial: thing.certSerial },
    onConflict: "supersede",
  });
  // the certificate just issued is listed as superseded: it works nowhere
  if (!replaced) throw new ConflictError(`${thing.name} changed while it renewed (another renewal, a revoke or a delete came first): check again`);
  // A zip-made thing's distribution holds the private key it just replaced: never to be handed
  // out again (Things.distribution refuses it), so it is not kept either. The renewal is
  // committed: a zip that cannot be removed (a dists/ another user owns) is the caller's to
  // report, not a failure the thing would retry without ever getting its certificate.
  return { certPem, notAfter: info.notAfter.getTime(), zipLeft: removeDistribution(home, thing.id) };
}

/**
 * Takes `certPem`, a certificate for `thing` that this hub's database does not know, as the
 * thing's current certificate when the hub's CA issued it after the one the database holds: the
 * database was put back from a backup older than the thing's renewal (docs/hub.md, Backups), and
 * the thing has long thrown away the key the database knows, so it could never connect again and
 * had to enrol anew under a new id. The certificate must name the thing (its name, and its id
 * when the certificate carries one: every certificate issued since 2026-12-08), verify with the CA, be
 * valid at `now` (Unix ms), start after the database's certificate of the thing, and not be one
 * the hub has superseded. The database's key is kept as the previous one (superseded, and listed
 * in the CRL, once the thing uses the new one), as after a renewal. Returns undefined when the
 * certificate was taken, else why not, for the log; throws what the store throws.
 */
export async function adoptLostRenewal(home: HubHome, store: HubStore, thing: ThingRecord, certPem: string, now: number): Promise<string | undefined> {
  let info: CertificateInfo;
  let known: CertificateInfo;
  try {
    info = describeCertificate(certPem);
    known = describeCertificate(thing.certPem);
  } catch {
    return "not a certificate";
  }
  const publicKeyPem = publicKeyIssuedBy(certPem, readCaCertificate(home.paths));
  if (!publicKeyPem) return "not issued by this hub's CA";
  if (info.subjectCN !== thing.name) return `issued for ${quoteLogText(info.subjectCN)}, not ${thing.name}`;
  // the same name is not the same thing: one deleted and made again after the backup has a new id
  // (new-user pass 28, F2: its device was given the old thing, and the old thing's pending ingress)
  if (info.thingId !== undefined && info.thingId !== thing.id) return `issued for the thing with id ${quoteLogText(info.thingId)}, not ${thing.id}`;
  if (info.notAfter.getTime() <= now || info.notBefore.getTime() > now) return "not valid now";
  if (info.notBefore.getTime() <= known.notBefore.getTime()) return "issued before the certificate the hub holds for the thing";
  if (await store.certificateSuperseded(info.serialNumber)) return "a certificate the hub superseded";
  const previous =
    thing.previousCertSerial && thing.previousCertNotAfter != null ? [{ serial: thing.previousCertSerial, notAfter: thing.previousCertNotAfter }] : [];
  const replaced = await store.replaceCertificate(thing.id, {
    publicKeyPem,
    certPem,
    certSerial: info.serialNumber,
    certNotAfter: info.notAfter.getTime(),
    previousPublicKeyPem: thing.publicKeyPem,
    previousCertSerial: thing.certSerial,
    previousCertNotAfter: certificateNotAfter(thing),
    superseded: previous,
    at: now,
    expected: { publicKeyPem: thing.publicKeyPem, certSerial: thing.certSerial },
    onConflict: "keep",
  });
  return replaced ? undefined : "the thing changed meanwhile (renewed, revoked or deleted)";
}

export interface ThingCertificatesDeps {
  home: HubHome;
  store: HubStore;
  /** Unix ms */
  now?: () => number;
}

/** The certificate use cases the CLI, the API and the console call. */
export class ThingCertificates {
  private readonly now: () => number;

  constructor(private readonly deps: ThingCertificatesDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** What the agent learns at each check: notAfter, whether to renew now, when to ask again. */
  advice(thing: ThingRecord): RenewalAdvice {
    return renewalAdvice(this.deps.home, thing, this.now());
  }

  /** Renews (see `renewCertificate`); `authenticatedWith` is the key whose token let the thing in. */
  renew(thing: ThingRecord, csrPem: unknown, authenticatedWith: string): Promise<RenewedCertificate> {
    return renewCertificate(this.deps.home, this.deps.store, thing, csrPem, authenticatedWith, this.now());
  }

  /**
   * `hub thing rotate`: asks the thing to renew at its next check (hub.yml
   * `certificates.renewalCheck`). Throws InputError for a revoked thing (it can renew nothing).
   */
  async requestRotation(thing: ThingRecord): Promise<{ checkAfterMs: number }> {
    if (thing.revokedAt !== null || !(await this.deps.store.requestRenewal(thing.id, this.now()))) {
      throw new InputError(`${thing.name} is revoked: it cannot renew its certificate`);
    }
    return { checkAfterMs: settingMs(this.deps.home.settings.certificates.renewalCheck) };
  }
}
