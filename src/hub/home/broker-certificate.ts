/**
 * The broker's server certificate (broker-cert.pem, also the HTTPS API's) over the hub's life.
 * `hub init` issues it for 825 days, the longest TLS clients accept; past that every thing's
 * handshake fails (CERT_HAS_EXPIRED) and the whole fleet is offline. So `hub serve` renews it once
 * it expires within BROKER_CERT_RENEW_BEFORE_MS: at start, before the broker and the API listen,
 * and, for a hub that runs on, at its daily look, when the embedded broker takes the new one at
 * once (its TLS context swapped; connected things stay connected).
 *
 * A renewal keeps broker-key.pem: what pins the public key (the HTTPS download line's
 * `--pinnedpubkey`) still matches, and a thing needs nothing new (it trusts the CA). The names
 * are hub.yml's `broker.host` and `broker.names`, as `hub init` used them.
 */
import { isIP } from "node:net";
import { describeCertificate } from "../../crypto/certificate-info.ts";
import { issueServerCertificate } from "../../crypto/x509.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import type { Logger } from "../../shared/log.ts";
import { readRegularFile } from "../../shared/regular-file.ts";
import { type HubHome, readCa } from "./home.ts";

const DAY_MS = 86_400_000;

/** A broker certificate is renewed once less than this is left (ms): 90 days. */
export const BROKER_CERT_RENEW_BEFORE_MS = 90 * DAY_MS;

/**
 * Renews broker-cert.pem when it expires within BROKER_CERT_RENEW_BEFORE_MS of `now` (Unix ms):
 * a new certificate from the hub's CA for the same key and hub.yml's names, written atomically
 * with its owner kept. Gives the certificate's end and whether it was renewed. Throws what
 * reading the files or issuing throws (a missing CA key, a damaged PEM).
 */
export async function renewBrokerCertificateIfDue(home: HubHome, now = Date.now()): Promise<{ notAfter: Date; renewed: boolean }> {
  const { paths, settings } = home;
  const current = describeCertificate(readRegularFile(paths.brokerCert, "broker certificate").toString("utf8"));
  if (current.notAfter.getTime() - now > BROKER_CERT_RENEW_BEFORE_MS) return { notAfter: current.notAfter, renewed: false };
  const names = settings.broker.names;
  const renewed = await issueServerCertificate(readCa(paths), {
    commonName: settings.broker.host,
    dnsNames: names.filter((n) => !isIP(n)),
    ipAddresses: names.filter((n) => isIP(n)),
    keyPem: readRegularFile(paths.brokerKey, "broker private key").toString("utf8"),
  });
  writeFileAtomicallySync(paths.brokerCert, renewed.certPem, 0o644, { keepOwner: true });
  return { notAfter: describeCertificate(renewed.certPem).notAfter, renewed: true };
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
    try {
      const result = await renewBrokerCertificateIfDue(home);
      if (result.renewed) {
        log.info("hub.broker_certificate_renewed", { file: brokerCert, notAfter: result.notAfter.toISOString() });
        renewed(readRegularFile(brokerCert, "broker certificate").toString("utf8"));
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
