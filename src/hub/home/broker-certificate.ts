/**
 * The broker's server certificate (broker-cert.pem, also the HTTPS API's) over the hub's life.
 * `hub init` issues it for 825 days, the longest TLS clients accept; past that every thing's
 * handshake fails (CERT_HAS_EXPIRED) and the whole fleet is offline. So `hub serve` renews it at
 * start once it expires within BROKER_CERT_RENEW_BEFORE_MS, before the broker and the API listen,
 * and a hub that runs without a restart says every day, in that window, that a restart renews it.
 *
 * A renewal keeps broker-key.pem: what pins the public key (the HTTPS download line's
 * `--pinnedpubkey`) still matches, and a thing needs nothing new (it trusts the CA). The names
 * are hub.yml's `broker.host` and `broker.names`, as `hub init` used them.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { describeCertificate } from "../../crypto/certificate-info.ts";
import { issueServerCertificate } from "../../crypto/x509.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import type { Logger } from "../../shared/log.ts";
import { type HubHome, readCa } from "./home.ts";

const DAY_MS = 86_400_000;

/** A broker certificate is renewed at hub start once less than this is left (ms): 90 days. */
export const BROKER_CERT_RENEW_BEFORE_MS = 90 * DAY_MS;

/**
 * Renews broker-cert.pem when it expires within BROKER_CERT_RENEW_BEFORE_MS of `now` (Unix ms):
 * a new certificate from the hub's CA for the same key and hub.yml's names, written atomically
 * with its owner kept. Gives the certificate's end and whether it was renewed. Throws what
 * reading the files or issuing throws (a missing CA key, a damaged PEM).
 */
export async function renewBrokerCertificateIfDue(home: HubHome, now = Date.now()): Promise<{ notAfter: Date; renewed: boolean }> {
  const { paths, settings } = home;
  const current = describeCertificate(readFileSync(paths.brokerCert, "utf8"));
  if (current.notAfter.getTime() - now > BROKER_CERT_RENEW_BEFORE_MS) return { notAfter: current.notAfter, renewed: false };
  const names = settings.broker.names;
  const renewed = await issueServerCertificate(readCa(paths), {
    commonName: settings.broker.host,
    dnsNames: names.filter((n) => !isIP(n)),
    ipAddresses: names.filter((n) => isIP(n)),
    keyPem: readFileSync(paths.brokerKey, "utf8"),
  });
  writeFileAtomicallySync(paths.brokerCert, renewed.certPem, 0o644, { keepOwner: true });
  return { notAfter: describeCertificate(renewed.certPem).notAfter, renewed: true };
}

/**
 * For a running hub: every day, a WARN while the broker certificate is within the renewal window
 * (a restart renews it), an ERROR once it has expired. Returns the function that stops it.
 */
export function watchBrokerCertificate(home: HubHome, log: Logger, now: () => number = Date.now): () => void {
  const look = () => {
    try {
      const { notAfter } = describeCertificate(readFileSync(home.paths.brokerCert, "utf8"));
      const leftMs = notAfter.getTime() - now();
      if (leftMs <= 0) {
        log.error("hub.broker_certificate_expired", {
          file: home.paths.brokerCert,
          notAfter: notAfter.toISOString(),
          fix: "restart hub serve: it renews the certificate at start",
        });
      } else if (leftMs <= BROKER_CERT_RENEW_BEFORE_MS) {
        log.warn("hub.broker_certificate_expiring", {
          file: home.paths.brokerCert,
          notAfter: notAfter.toISOString(),
          daysLeft: Math.floor(leftMs / DAY_MS),
          fix: "restart hub serve: it renews the certificate at start (things keep working: the key stays)",
        });
      }
    } catch (err) {
      log.warn("hub.broker_certificate_unreadable", { file: home.paths.brokerCert, error: err });
    }
  };
  const timer = setInterval(look, DAY_MS);
  timer.unref?.();
  return () => clearInterval(timer);
}
