/**
 * The broker certificate over the hub's life (src/hub/home/broker-certificate.ts), with the
 * compiled binary: `hub init` issues it for 825 days, and a `hub serve` that starts within 90
 * days of its end, or after it, renews it (same key, same names) before the broker listens, so
 * things keep connecting; without that, every thing's handshake failed from the day it lapsed.
 * It issues it again, too, when hub.yml names the broker by a name the certificate lacks.
 */
import { afterAll, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificateAuthority, issueServerCertificate } from "../../src/crypto/x509.ts";
import { run } from "../support/binary.ts";
import { makeHubFixture } from "../support/hub-fixture.ts";
import { tally } from "../support/tally.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-broker-cert-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("a hub restarted a day after its broker certificate lapsed renews it for the same key; the thing's bootstrap connects (every handshake failed)", async () => {
  const hub = await makeHubFixture(work);
  const thing = await hub.createThing("lasting");
  const certFile = join(hub.dir, "broker-cert.pem");
  const keyPem = readFileSync(join(hub.dir, "broker-key.pem"), "utf8");
  const ca = { certPem: readFileSync(join(hub.dir, "ca-cert.pem"), "utf8"), keyPem: readFileSync(join(hub.dir, "ca-key.pem"), "utf8") };
  const issued = new X509Certificate(readFileSync(certFile));
  const lapsed = await issueServerCertificate(ca, {
    commonName: "127.0.0.1",
    ipAddresses: ["127.0.0.1"],
    dnsNames: ["localhost"],
    keyPem,
    notBefore: new Date(Date.now() - 826 * 86_400_000),
    days: 825,
  });
  writeFileSync(certFile, lapsed.certPem);
  const serving = await hub.serve();
  try {
    tally("faults");
    const boot = await run(["bootstrap", ...thing.flags, "--json"], { timeoutMs: 40_000 });
    const connect = JSON.parse(boot.stdout).checks.find((c: { name: string }) => c.name === "mutual-TLS connect");
    expect(connect).toMatchObject({ status: "pass" });
    expect(boot.code, boot.stdout).toBe(0);
    const renewed = await serving.waitFor(/hub\.broker_certificate_renewed [^\n]*/, 10_000);
    const now = new X509Certificate(readFileSync(certFile));
    expect(renewed).toContain(`notAfter=${new Date(now.validTo).toISOString()}`);
    // 825 days in all from a week back, so a device clock a week behind takes it (new-user pass 25, F13)
    expect(new Date(now.validTo).getTime() - new Date(now.validFrom).getTime()).toBe(825 * 86_400_000);
    expect(now.publicKey.export({ type: "spki", format: "der" })).toEqual(issued.publicKey.export({ type: "spki", format: "der" }));
  } finally {
    expect(await serving.stop()).toBe(0);
  }
}, 90_000);

test("a hub given a new name for its broker in hub.yml (broker.host: localhost, where init named 127.0.0.1) issues its certificate again at start; a thing made then connects by that name (every handshake failed: the certificate did not name it)", async () => {
  const hub = await makeHubFixture(join(work, "renamed"));
  hub.configure([[["broker", "host"], "localhost"]]);
  // made before hub serve was restarted: the note says so
  const early = await run(["hub", "thing", "create", "early", "--dir", hub.dir, "-o", join(work, "early.zip")]);
  expect(early.code).toBe(0);
  expect(early.stdout).toContain(
    "note: the broker certificate does not name localhost (hub.yml broker.host, which the thing connects to) yet: restart hub serve",
  );
  const serving = await hub.serve();
  try {
    const renewed = await serving.waitFor(/hub\.broker_certificate_renewed [^\n]*/, 10_000);
    expect(renewed).toContain('why="hub.yml names the broker localhost, which it was not issued for"');
    const later = await run(["hub", "thing", "create", "later", "--dir", hub.dir, "-o", join(work, "later.zip")]);
    expect([later.code, later.stdout]).toEqual([0, expect.not.stringContaining("note: the broker certificate")]);
    const thing = await hub.createThing("by-name");
    expect(readFileSync(thing.configPath, "utf8")).toContain("endpoint: localhost");
    tally("faults");
    const boot = await run(["bootstrap", ...thing.flags, "--json"], { timeoutMs: 40_000 });
    const connect = JSON.parse(boot.stdout).checks.find((c: { name: string }) => c.name === "mutual-TLS connect");
    expect(connect).toMatchObject({ status: "pass" });
    const now = new X509Certificate(readFileSync(join(hub.dir, "broker-cert.pem")));
    expect([now.checkHost("localhost"), now.checkIP("127.0.0.1")]).toEqual(["localhost", "127.0.0.1"]);
  } finally {
    expect(await serving.stop()).toBe(0);
  }
}, 90_000);

test("a broker certificate of another CA that lacks broker.host: hub thing create's note gives that CA's way, not a restart (verify pass 29, F8)", async () => {
  const hub = await makeHubFixture(join(work, "foreign"));
  const stranger = await createCertificateAuthority({ commonName: "the operator's own CA" });
  const keyPem = readFileSync(join(hub.dir, "broker-key.pem"), "utf8");
  writeFileSync(
    join(hub.dir, "broker-cert.pem"),
    (await issueServerCertificate(stranger, { commonName: "127.0.0.1", ipAddresses: ["127.0.0.1"], keyPem })).certPem,
  );
  hub.configure([[["broker", "host"], "localhost"]]);
  const made = await run(["hub", "thing", "create", "foreign", "--dir", hub.dir, "-o", join(work, "foreign.zip")]);
  expect(made.code).toBe(0);
  expect(made.stdout).toContain(
    "note: the broker certificate does not name localhost (hub.yml broker.host, which the thing connects to) yet: it is not the hub CA's, so issue it again for that name with the CA that made it",
  );
}, 60_000);
