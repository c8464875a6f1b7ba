/**
 * The broker's server certificate (broker-cert.pem, also the HTTPS API's) over the hub's life.
 * `hub init` issues it for 825 days, the longest TLS clients accept; past that every thing's
 * handshake fails (CERT_HAS_EXPIRED) and the whole fleet is offline. So `hub serve` renews it once
 * it expires within BROKER_CERT_RENEW_BEFORE_MS: at start, before the broker and the API listen,
 * and, for a hub that runs on, at its daily look, when the embedded broker takes the new one at
 * once (its TLS context swapped; connected things stay connected).
 *
 * It is issued again, in the same way, when hub.yml names the broker by a name or address the
 * certificate lacks (`broker.host` or `broker.names` edited after `hub init`: the hub moved, or got
 * a LAN name): each thing checks the broker's certificate for the name it connects to, and would
 * be refused at its handshake. Only a certificate of the hub's own CA is replaced for its names;
 * one the operator brought from another CA is theirs to reissue.
 *
 * A renewal keeps broker-key.pem: what pins the public key (the HTTPS download line's
 * `--pinnedpubkey`) still matches, and a thing needs nothing new (it trusts the CA). The names
 * are hub.yml's `broker.host` and `broker.names`, as `hub init` used them.
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { describeCertificate, publicKeyIssuedBy } from "../../crypto/certificate-info.ts";
import { issueServerCertificate } from "../../crypto/x509.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import type { Logger } from "../../shared/log.ts";
import { readRegularFile } from "../../shared/regular-file.ts";
import { type HubHome, readCa, readCaCertificate } from "./home.ts";

const DAY_MS = 86_400_000;

/** A broker certificate is renewed once less than this is left (ms): 90 days. */
export const BROKER_CERT_RENEW_BEFORE_MS = 90 * DAY_MS;
/** The hub's CA is said to end (WARN, daily) once less than this is left (ms): a year, the time re-provisioning a fleet takes. */
export const CA_WARN_BEFORE_MS = 365 * DAY_MS;

/** What a broker certificate renewal did: the certificate's end, and why it was issued again (absent: it was not). */
export interface BrokerCertificateRenewal {
  notAfter: Date;
  renewed: boolean;
  why?: string;
  /** the names hub.yml gives the broker that a certificate of another CA, left in place, lacks */
  lacks?: string[];
  /** when a certificate of another CA, left in place, becomes valid (it is not yet) */
  notYetValid?: Date;
}

/**
 * Issues broker-cert.pem again when it expires within BROKER_CERT_RENEW_BEFORE_MS of `now` (Unix
 * ms), or when it is the hub CA's and lacks a name hub.yml gives the broker or is not valid yet
 * (issued while this hub's clock was ahead: every thing's handshake refuses it until then): a new
 * certificate from the hub's CA for the same key and hub.yml's names, written atomically with its
 * owner kept. Another CA's certificate is only reported (`lacks`, `notYetValid`). Throws what
 * reading the files or issuing throws (a missing CA key, a damaged PEM).
 */
export async function renewBrokerCertificateIfDue(home: HubHome, now = Date.now()): Promise<BrokerCertificateRenewal> {
  const { paths, settings } = home;
  const currentPem = readRegularFile(paths.brokerCert, "broker certificate").toString("utf8");
  const current = describeCertificate(currentPem);
  const names = brokerNames(home);
  // a certificate ending with the CA cannot be made to last longer (x509.ts ends no leaf past
  // its CA): renewing it would issue the same end again every day; the CA's end is said instead
  const caEnd = describeCertificate(readCaCertificate(paths)).notAfter.getTime();
  const why = renewalReason(current, namesMissing(currentPem, names), now, caEnd);
  if (why === undefined) return { notAfter: current.notAfter, renewed: false };
  if (why.kind !== "end" && !publicKeyIssuedBy(currentPem, readCa(paths).certPem)) {
    // another CA's certificate, brought by the operator: not ours to replace
    return why.kind === "names"
      ? { notAfter: current.notAfter, renewed: false, lacks: why.missing }
      : { notAfter: current.notAfter, renewed: false, notYetValid: current.notBefore };
  }
  const renewed = await issueServerCertificate(readCa(paths), {
    commonName: settings.broker.host,
    dnsNames: names.filter((n) => !isIP(n)),
    ipAddresses: names.filter((n) => isIP(n)),
    keyPem: readRegularFile(paths.brokerKey, "broker private key").toString("utf8"),
  });
  writeFileAtomicallySync(paths.brokerCert, renewed.certPem, 0o644, { keepOwner: true });
  return { notAfter: describeCertificate(renewed.certPem).notAfter, renewed: true, why: why.words };
}

/** hub.yml's names for the broker, each once: `broker.host` (what things connect to) first, then `broker.names`. */
function brokerNames(home: HubHome): string[] {
  const { host, names } = home.settings.broker;
  const seen = new Set<string>();
  return [host, ...names].filter((name) => {
    const key = name.toLowerCase();
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

type RenewalReason = { kind: "end" | "start"; words: string } | { kind: "names"; words: string; missing: string[] };

/** Why the certificate in place must be issued again; undefined when it need not. */
function renewalReason(current: { notBefore: Date; notAfter: Date }, missing: string[], now: number, caEnd: number): RenewalReason | undefined {
  const { notBefore, notAfter } = current;
  if (notAfter.getTime() - now <= BROKER_CERT_RENEW_BEFORE_MS && notAfter.getTime() < caEnd && caEnd > now) {
    return { kind: "end", words: `it ends on ${notAfter.toISOString()}` };
  }
  if (notBefore.getTime() > now) {
    return {
      kind: "start",
      words: `it is not valid until ${notBefore.toISOString()} (issued while this hub's clock was ahead), and things refuse it until then`,
    };
  }
  if (missing.length === 0) return undefined;
  return { kind: "names", words: `hub.yml names the broker ${missing.join(", ")}, which it was not issued for`, missing };
}

/**
 * The names of `names` the certificate does not carry, as a TLS client checks them (RFC 6125:
 * subjectAltName DNS entries, wildcards included; addresses against its IP entries).
 */
export function namesMissing(certPem: string, names: string[]): string[] {
  const certificate = new X509Certificate(certPem);
  return names.filter((name) => (isIP(name) ? certificate.checkIP(name) : certificate.checkHost(name)) === undefined);
}

/**
 * Says, at each daily look, that the hub's CA ends within CA_WARN_BEFORE_MS (WARN `hub.ca_expiring`)
 * or has ended (ERROR `hub.ca_expired`): every certificate it signed ends with it at the latest,
 * and the fleet's handshakes fail all at once (new-user pass 27, F7: nothing said so). A CA that
 * cannot be read is the renewal's to report.
 */
function sayCaEnd(home: HubHome, log: Logger, now = Date.now()): void {
  let end: Date;
  try {
    end = describeCertificate(readCaCertificate(home.paths)).notAfter;
  } catch {
    return;
  }
  const fields = {
    file: home.paths.caCert,
    notAfter: end.toISOString(),
    note: "every certificate the hub signs ends with its CA at the latest; a new CA means a new root-ca-cert.pem on every thing",
    fix: "provision the fleet again under a new hub before then (docs/hub.md, The CA's end)",
  };
  if (end.getTime() <= now) log.error("hub.ca_expired", fields);
  else if (end.getTime() - now <= CA_WARN_BEFORE_MS) log.warn("hub.ca_expiring", fields);
}

/**
 * Keeps the broker certificate valid for a running hub: renews it now when due (before the broker
 * and the API read it), then looks again every day. `renewed` hears of each renewal with the new
 * PEM (the embedded broker swaps its TLS context; what cannot, says so). A failed renewal is an
 * ERROR, tried again the next day; the certificate in place goes on being served. Once it has
 * expired, an ERROR every day. Returns the function that stops the daily look.
 */
export async function keepBrokerCertificate(home: HubHome, log: Logger, renewed: (certPem: string) => void): Promise<() => void> {
  const { brokerCert } = home.paths;
  const look = async () => {
    sayCaEnd(home, log);
    try {
      const result = await renewBrokerCertificateIfDue(home);
      if (result.renewed) {
        log.info("hub.broker_certificate_renewed", { file: brokerCert, notAfter: result.notAfter.toISOString(), why: result.why });
        renewed(readRegularFile(brokerCert, "broker certificate").toString("utf8"));
      }
      if (result.lacks) {
        log.warn("hub.broker_certificate_lacks_names", {
          file: brokerCert,
          names: result.lacks.join(","),
          note: "it is not the hub CA's, so the hub does not issue it again: things connecting by these names are refused at their handshake",
          fix: "issue it again for these names with the CA that made it, or remove them from hub.yml broker.host and broker.names",
        });
      }
      if (result.notYetValid) {
        log.error("hub.broker_certificate_not_yet_valid", {
          file: brokerCert,
          notBefore: result.notYetValid.toISOString(),
          note: "it is not the hub CA's, so the hub does not issue it again: every thing's handshake refuses it until then",
          fix: "issue it again with the CA that made it, on a machine whose clock is right",
        });
      }
    } catch (err) {
      log.error("hub.broker_certificate_renewal_failed", { file: brokerCert, error: err, note: "the certificate in place is served on; tried again in a day" });
    }
  };
  await look();
  const timer = setInterval(() => void look(), DAY_MS);
  timer.unref?.();
  return () => clearInterval(timer);
}
