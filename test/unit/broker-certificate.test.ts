import { afterAll, expect, test } from "bun:test";
import { createPublicKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificateAuthority, issueServerCertificate } from "../../src/crypto/x509.ts";
import { BROKER_CERT_RENEW_BEFORE_MS, keepBrokerCertificate, renewBrokerCertificateIfDue } from "../../src/hub/home/broker-certificate.ts";
import { readCa } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import { createLogger } from "../../src/shared/log.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-broker-cert-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const DAY = 86_400_000;

/** A hub home made by hub init under the test's directory. */
const hubAt = (name: string, apiUrl: string, names: string[]) =>
  initHub({ dir: join(dir, name), ownerId: "ecd13b11-2d4f-4e71-9a41-5f0e2c1b7a3d", apiUrl, names });

test("the broker certificate is renewed at hub start once it expires within 90 days: same key and names, a new lifetime; not before", async () => {
  const { home } = await hubAt("hub", "http://hub.example:8080", ["hub.example", "10.0.0.5"]);
  const { paths } = home;
  const keyPem = readFileSync(paths.brokerKey, "utf8");
  const fresh = new X509Certificate(readFileSync(paths.brokerCert));
  // as issued by hub init: 825 days, nothing to do
  expect(await renewBrokerCertificateIfDue(home)).toEqual({ notAfter: new Date(fresh.validTo), renewed: false });
  // 100 days left: still nothing
  const issue = async (daysLeft: number) => {
    const made = await issueServerCertificate(readCa(paths), {
      commonName: home.settings.broker.host,
      dnsNames: ["hub.example"],
      ipAddresses: ["10.0.0.5"],
      keyPem,
      notBefore: new Date(Date.now() - (825 - daysLeft) * DAY),
      days: 825,
    });
    writeFileSync(paths.brokerCert, made.certPem);
  };
  await issue(100);
  expect((await renewBrokerCertificateIfDue(home)).renewed).toBe(false);
  // 10 days left, and a moment before the end: renewed, for the same key and names
  for (const daysLeft of [10, 0.001]) {
    await issue(daysLeft);
    const before = readFileSync(paths.brokerCert, "utf8");
    const renewal = await renewBrokerCertificateIfDue(home);
    expect(renewal.renewed).toBe(true);
    const now = new X509Certificate(readFileSync(paths.brokerCert));
    expect(readFileSync(paths.brokerCert, "utf8")).not.toBe(before);
    expect(new Date(now.validTo).getTime()).toBe(renewal.notAfter.getTime());
    // 825 days in all, the most TLS clients take, from a week back: a device clock a week behind takes it (new-user pass 25, F13)
    expect(new Date(now.validTo).getTime() - new Date(now.validFrom).getTime()).toBe(825 * DAY);
    expect(Date.now() - new Date(now.validFrom).getTime()).toBeGreaterThan(7 * DAY - 60_000);
    expect(now.publicKey.export({ type: "spki", format: "der" })).toEqual(fresh.publicKey.export({ type: "spki", format: "der" }));
    expect(now.subjectAltName).toBe(fresh.subjectAltName);
    expect(now.verify(new X509Certificate(readCa(paths).certPem).publicKey)).toBe(true);
    expect(statSync(paths.brokerCert).mode & 0o777).toBe(0o644);
    expect(readFileSync(paths.brokerKey, "utf8")).toBe(keyPem);
  }
  // an expired one too
  await issue(-5);
  expect((await renewBrokerCertificateIfDue(home)).renewed).toBe(true);
  expect(BROKER_CERT_RENEW_BEFORE_MS).toBe(90 * DAY);
});

test("keepBrokerCertificate: renews when due and hands the new PEM over; a renewal that fails is an ERROR, the hub goes on", async () => {
  const { home } = await hubAt("kept", "http://hub.example:8080", ["hub.example"]);
  const { paths } = home;
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (line) => lines.push(line) });
  const handed: string[] = [];
  let stop = await keepBrokerCertificate(home, log, (pem) => handed.push(pem));
  stop();
  expect(handed).toEqual([]);
  const lapsed = await issueServerCertificate(readCa(paths), {
    commonName: "hub.example",
    keyPem: readFileSync(paths.brokerKey, "utf8"),
    notBefore: new Date(Date.now() - 830 * DAY),
    days: 825,
  });
  writeFileSync(paths.brokerCert, lapsed.certPem);
  stop = await keepBrokerCertificate(home, log, (pem) => handed.push(pem));
  stop();
  expect(handed).toEqual([readFileSync(paths.brokerCert, "utf8")]);
  expect(lines.join("\n")).toMatch(/hub\.broker_certificate_renewed .*notAfter=/);
  // the CA key gone: said, not thrown; the certificate in place stays
  writeFileSync(paths.brokerCert, lapsed.certPem);
  rmSync(paths.caKey);
  stop = await keepBrokerCertificate(home, log, (pem) => handed.push(pem));
  stop();
  expect(handed).toHaveLength(1);
  expect(lines.join("\n")).toMatch(/ERROR +hub\.broker_certificate_renewal_failed .*tried again in a day/);
  expect(readFileSync(paths.brokerCert, "utf8")).toBe(lapsed.certPem);
});

test("a name hub.yml gives the broker that its certificate lacks (broker.host or broker.names edited after init): issued again at start, same key, every name; another CA's certificate is left and warned about", async () => {
  const { home } = await hubAt("renamed", "http://127.0.0.1:8080", ["127.0.0.1"]);
  const { paths } = home;
  const keyPem = readFileSync(paths.brokerKey, "utf8");
  expect((await renewBrokerCertificateIfDue(home)).renewed).toBe(false);
  // the operator gives the hub its LAN name and address, and things connect by the name
  const moved = { ...home, settings: { ...home.settings, broker: { ...home.settings.broker, host: "hub.lan", names: ["127.0.0.1", "10.0.0.7", "HUB.lan"] } } };
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (line) => lines.push(line) });
  const handed: string[] = [];
  (await keepBrokerCertificate(moved, log, (pem) => handed.push(pem)))();
  const renewedPem = readFileSync(paths.brokerCert, "utf8");
  const renewed = new X509Certificate(renewedPem);
  for (const name of ["hub.lan", "HUB.lan"]) expect(renewed.checkHost(name)).toBeDefined();
  for (const ip of ["127.0.0.1", "10.0.0.7"]) expect(renewed.checkIP(ip)).toBe(ip);
  expect(renewed.publicKey.export({ type: "spki", format: "pem" })).toBe(createPublicKey(keyPem).export({ type: "spki", format: "pem" }));
  expect(renewed.verify(new X509Certificate(readCa(paths).certPem).publicKey)).toBe(true);
  expect(lines.join("\n")).toMatch(/hub\.broker_certificate_renewed .*why="hub\.yml names the broker hub\.lan, 10\.0\.0\.7, which it was not issued for"/);
  expect(handed).toEqual([renewedPem]);
  // all named now: nothing more to do
  expect((await renewBrokerCertificateIfDue(moved)).renewed).toBe(false);
  // a certificate of another CA (the operator's own) is theirs: left in place, the missing names said
  const other = await hubAt("other-ca", "http://127.0.0.1:8080", ["127.0.0.1"]);
  const foreign = await issueServerCertificate(readCa(other.home.paths), { commonName: "127.0.0.1", ipAddresses: ["127.0.0.1"], keyPem });
  writeFileSync(paths.brokerCert, foreign.certPem);
  expect(await renewBrokerCertificateIfDue(moved)).toMatchObject({ renewed: false, lacks: ["hub.lan", "10.0.0.7"] });
  const stop = await keepBrokerCertificate(moved, log, (pem) => handed.push(pem));
  stop();
  expect(readFileSync(paths.brokerCert, "utf8")).toBe(foreign.certPem);
  expect(lines.join("\n")).toMatch(/WARN +hub\.broker_certificate_lacks_names .*names=hub\.lan,10\.0\.0\.7 /);
});

test("a certificate not valid yet (renewed while the hub's clock was ahead) is issued again at start; another CA's is left, with an ERROR (new-user pass 25, F2: the fleet was refused until the clock caught up, without a word)", async () => {
  const { home } = await hubAt("clock-ahead", "http://127.0.0.1:8080", ["127.0.0.1"]);
  const { paths } = home;
  const keyPem = readFileSync(paths.brokerKey, "utf8");
  const ahead = new Date(Date.now() + 800 * DAY);
  const early = await issueServerCertificate(readCa(paths), { commonName: "127.0.0.1", ipAddresses: ["127.0.0.1"], keyPem, notBefore: ahead, days: 825 });
  writeFileSync(paths.brokerCert, early.certPem);
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (line) => lines.push(line) });
  (await keepBrokerCertificate(home, log, () => {}))();
  const renewed = new X509Certificate(readFileSync(paths.brokerCert));
  expect(new Date(renewed.validFrom).getTime()).toBeLessThanOrEqual(Date.now());
  expect(renewed.checkIP("127.0.0.1")).toBe("127.0.0.1");
  expect(lines.join("\n")).toContain(
    `INFO  hub.broker_certificate_renewed file=${paths.brokerCert} notAfter=${new Date(renewed.validTo).toISOString()} why="it is not valid until ${ahead.toISOString().replace(/\.\d+Z$/, ".000Z")} (issued while this hub's clock was ahead), and things refuse it until then"`,
  );
  // another CA's, not valid yet: the operator's to issue again
  const other = await hubAt("clock-ahead-other", "http://127.0.0.1:8080", ["127.0.0.1"]);
  const foreign = await issueServerCertificate(readCa(other.home.paths), {
    commonName: "127.0.0.1",
    ipAddresses: ["127.0.0.1"],
    keyPem,
    notBefore: ahead,
    days: 825,
  });
  writeFileSync(paths.brokerCert, foreign.certPem);
  (await keepBrokerCertificate(home, log, () => {}))();
  expect(readFileSync(paths.brokerCert, "utf8")).toBe(foreign.certPem);
  expect(lines.join("\n")).toMatch(/ERROR +hub\.broker_certificate_not_yet_valid .*notBefore=\S+ note="it is not the hub CA's/);
});

test("a CA that ends within a year is said every day (WARN hub.ca_expiring), one that ended is an ERROR; a broker certificate that ends with its CA is not issued again each day, as no renewal can outlast the CA (new-user pass 27, F7)", async () => {
  const { home } = await hubAt("ca-end", "http://hub.example:8080", ["hub.example"]);
  const { paths } = home;
  const useCa = async (ca: { certPem: string; keyPem: string }) => {
    writeFileSync(paths.caCert, ca.certPem);
    writeFileSync(paths.caKey, ca.keyPem, { mode: 0o600 });
    const broker = await issueServerCertificate(ca, { commonName: "hub.example", keyPem: readFileSync(paths.brokerKey, "utf8") });
    writeFileSync(paths.brokerCert, broker.certPem);
    return broker.certPem;
  };
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (line) => lines.push(line) });
  const ending = await useCa(await createCertificateAuthority({ commonName: "ending CA", days: 60 }));
  // the broker certificate ends with the CA, within the 90 days: left as it is
  expect((await renewBrokerCertificateIfDue(home)).renewed).toBe(false);
  (await keepBrokerCertificate(home, log, () => {}))();
  expect(readFileSync(paths.brokerCert, "utf8")).toBe(ending);
  expect(lines.join("\n")).toMatch(/WARN +hub\.ca_expiring file=\S+ca-cert\.pem notAfter=\S+ note=/);
  expect(lines.join("\n")).not.toContain("broker_certificate_renewed");
  lines.length = 0;
  const ended = await createCertificateAuthority({ commonName: "ended CA", notBefore: new Date(Date.now() - 10 * DAY), days: 5 });
  writeFileSync(paths.caCert, ended.certPem);
  writeFileSync(paths.caKey, ended.keyPem, { mode: 0o600 });
  (await keepBrokerCertificate(home, log, () => {}))();
  expect(lines.join("\n")).toMatch(/ERROR +hub\.ca_expired /);
  expect(lines.join("\n")).not.toMatch(/broker_certificate_renewed|renewal_failed/);
});
