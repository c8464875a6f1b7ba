/**
 * bootstrap's chain check is a real TLS handshake on loopback (src/thing/bootstrap/handshake-check.ts).
 * Real chains made here: root → intermediate → leaf, several roots in one file, a wrong root,
 * expired and not-yet-valid certificates, a server-only certificate. Each verdict is compared
 * with `openssl verify -purpose sslclient` (OpenSSL is what Mosquitto verifies with), and the
 * refusals are turned into the one-sentence detail bootstrap prints.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadPrivateKey } from "../../src/crypto/keys.ts";
import { explainChainRefusal } from "../../src/thing/bootstrap/checks.ts";
import { type HandshakeVerdict, verifyByHandshake } from "../../src/thing/bootstrap/handshake-check.ts";
import type { ThingIdentity } from "../../src/thing/identity.ts";
import { connectFailureHint } from "../../src/thing/mqtt/connect-failure.ts";
import type { ThingConfig } from "../../src/thing/settings.ts";
import { type Issued, makeIntermediate, makeLeaf, makeRoot } from "../support/chains.ts";
import { scratchDir } from "../support/scratch.ts";
import { tally } from "../support/tally.ts";

const DAY = 86_400_000;
const dir = scratchDir("flashlex-handshake-");
let root: Issued, otherRoot: Issued, thirdRoot: Issued, intermediate: Issued;
let direct: Issued,
  viaIntermediate: Issued,
  expired: Issued,
  notYet: Issued,
  serverOnly: Issued,
  rsaLeaf: Issued,
  expiredIntermediate: Issued,
  leafOfExpired: Issued;

beforeAll(async () => {
  [root, otherRoot, thirdRoot] = await Promise.all([makeRoot("Test Root"), makeRoot("Other Root"), makeRoot("Third Root", { keyType: "rsa" })]);
  intermediate = await makeIntermediate(root, "Test Intermediate");
  expiredIntermediate = await makeIntermediate(root, "Old Intermediate", { notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
  [direct, viaIntermediate, expired, notYet, serverOnly, rsaLeaf, leafOfExpired] = await Promise.all([
    makeLeaf(root, "direct"),
    makeLeaf(intermediate, "via-intermediate"),
    makeLeaf(root, "expired", { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - 2 * DAY) }),
    makeLeaf(root, "not-yet", { notBefore: new Date(Date.now() + 2 * DAY), notAfter: new Date(Date.now() + 10 * DAY) }),
    makeLeaf(root, "server-only", { serverOnly: true }),
    makeLeaf(intermediate, "rsa-leaf", { keyType: "rsa" }),
    makeLeaf(expiredIntermediate, "leaf-of-expired"),
  ]);
});

/** What `openssl verify` (OpenSSL 3, as in Mosquitto) says about the same files: "OK" or its error name. */
function opensslVerdict(caPem: string, certPem: string): string {
  const blocks = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)!;
  const id = Math.random().toString(36).slice(2);
  const [ca, leaf, chain] = ["ca", "leaf", "chain"].map((n) => join(dir, `${id}-${n}.pem`)) as [string, string, string];
  writeFileSync(ca, caPem);
  writeFileSync(leaf, blocks[0]!);
  writeFileSync(chain, blocks.slice(1).join("") || blocks[0]!);
  const run = Bun.spawnSync(["openssl", "verify", "-purpose", "sslclient", "-CAfile", ca, "-untrusted", chain, leaf], { stdout: "pipe", stderr: "pipe" });
  return run.exitCode === 0 ? "OK" : `${run.stdout}${run.stderr}`;
}

const cases: { name: string; ca: () => string; cert: () => string; key: () => string; authorized: boolean; code?: RegExp; opensslSays?: RegExp }[] = [
  { name: "root → leaf", ca: () => root.certPem, cert: () => direct.certPem, key: () => direct.keyPem, authorized: true },
  {
    name: "root → intermediate → leaf, the intermediate in the certificate file",
    ca: () => root.certPem,
    cert: () => viaIntermediate.certPem + intermediate.certPem,
    key: () => viaIntermediate.keyPem,
    authorized: true,
  },
  {
    name: "an RSA leaf under an EC intermediate, several roots in the CA file (ours in the middle)",
    ca: () => otherRoot.certPem + root.certPem + thirdRoot.certPem,
    cert: () => rsaLeaf.certPem + intermediate.certPem,
    key: () => rsaLeaf.keyPem,
    authorized: true,
  },
  {
    name: "the intermediate missing from the certificate file",
    ca: () => root.certPem,
    cert: () => viaIntermediate.certPem,
    key: () => viaIntermediate.keyPem,
    authorized: false,
    code: /^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/,
  },
  {
    name: "a CA file of other roots only",
    ca: () => otherRoot.certPem + thirdRoot.certPem,
    cert: () => direct.certPem,
    key: () => direct.keyPem,
    authorized: false,
    code: /^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/,
  },
  { name: "an expired leaf", ca: () => root.certPem, cert: () => expired.certPem, key: () => expired.keyPem, authorized: false, code: /^CERT_HAS_EXPIRED$/ },
  {
    name: "a not-yet-valid leaf",
    ca: () => root.certPem,
    cert: () => notYet.certPem,
    key: () => notYet.keyPem,
    authorized: false,
    code: /^CERT_NOT_YET_VALID$/,
  },
  {
    name: "an expired intermediate",
    ca: () => root.certPem,
    cert: () => leafOfExpired.certPem + expiredIntermediate.certPem,
    key: () => leafOfExpired.keyPem,
    authorized: false,
    code: /^CERT_HAS_EXPIRED$/,
  },
  {
    name: "a server-only certificate",
    ca: () => root.certPem,
    cert: () => serverOnly.certPem,
    key: () => serverOnly.keyPem,
    authorized: false,
    code: /^INVALID_PURPOSE$/,
  },
];

describe("verifyByHandshake judges a chain as TLS does", () => {
  for (const c of cases) {
    test(`${c.name}: ${c.authorized ? "accepted" : "refused"}, as openssl verify says`, async () => {
      tally("badInputs", c.authorized ? 0 : 1);
      const verdict = await verifyByHandshake({ caPem: c.ca(), certPem: c.cert(), keyPem: c.key() });
      expect(verdict.authorized).toBe(c.authorized);
      if (!verdict.authorized) expect(verdict.code).toMatch(c.code!);
      const openssl = opensslVerdict(c.ca(), c.cert());
      expect(openssl === "OK").toBe(c.authorized);
    });
  }

  test("a few milliseconds per handshake", async () => {
    const started = performance.now();
    for (let i = 0; i < 10; i++)
      await verifyByHandshake({ caPem: root.certPem, certPem: viaIntermediate.certPem + intermediate.certPem, keyPem: viaIntermediate.keyPem });
    const perHandshakeMs = (performance.now() - started) / 10;
    console.log(`loopback handshake: ${perHandshakeMs.toFixed(1)} ms each`);
    expect(perHandshakeMs).toBeLessThan(1000); // a bound against hanging, not a timing claim
  });

  test("a key that is not the certificate's makes no handshake at all: rejected, not a verdict", async () => {
    await expect(verifyByHandshake({ caPem: root.certPem, certPem: direct.certPem, keyPem: expired.keyPem })).rejects.toThrow();
  });
});

describe("explainChainRefusal: one sentence naming the file, OpenSSL's code kept", () => {
  const config = { paths: { cert: "/keys/thing-certificate.pem", rootCA: "/keys/root-ca-cert.pem", privateKey: "/keys/thing-private.pem" } } as ThingConfig;
  const identity = (certPem: string, caPem: string): ThingIdentity =>
    ({ thingId: "t", thingName: "n", caPem, certPem, keyPem: "", privateKey: loadPrivateKey(direct.keyPem), tokenAlgorithm: "ES256" }) as ThingIdentity;
  const explain = async (certPem: string, caPem: string, keyPem: string) => {
    const verdict: HandshakeVerdict = await verifyByHandshake({ caPem, certPem, keyPem });
    if (verdict.authorized) throw new Error("expected a refusal");
    return explainChainRefusal(verdict.code, identity(certPem, caPem), config, new Date());
  };

  test("missing intermediate: names both files and says to append the intermediate", async () => {
    const { detail, fix } = await explain(viaIntermediate.certPem, root.certPem, viaIntermediate.keyPem);
    expect(detail).toMatch(
      /^\/keys\/thing-certificate\.pem does not chain to a CA in \/keys\/root-ca-cert\.pem \((UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)$/,
    );
    expect(fix).toContain("append the intermediate's PEM to /keys/thing-certificate.pem");
  });

  test("expired: names the certificate that expired and where it is", async () => {
    const { detail, fix } = await explain(leafOfExpired.certPem + expiredIntermediate.certPem, root.certPem, leafOfExpired.keyPem);
    expect(detail).toMatch(/^Old Intermediate in \/keys\/thing-certificate\.pem expired on \d{4}-.*\(CERT_HAS_EXPIRED\)$/);
    expect(fix).toContain("timedatectl");
  });

  test("not yet valid and wrong purpose", async () => {
    expect((await explain(notYet.certPem, root.certPem, notYet.keyPem)).detail).toMatch(
      /^not-yet in \/keys\/thing-certificate\.pem is not valid until .*\(CERT_NOT_YET_VALID\)$/,
    );
    expect((await explain(serverOnly.certPem, root.certPem, serverOnly.keyPem)).detail).toContain(
      "may not be used as a TLS client certificate (INVALID_PURPOSE",
    );
  });
});

describe("connectFailureHint: the fix for a failed MQTT connect names the cause by the connection's error code", () => {
  const config = {
    file: "/home/pi/thing/config.yml",
    paths: { rootCA: "/keys/root-ca-cert.pem" },
    yaml: { thing: { endpoint: "hub.lan", mqtt: { port: 8883 } } },
  } as ThingConfig;
  // as the session reports it: its words, the TLS stack's error (with the code) as the cause
  const failed = (code: string) => new Error("the MQTT connection failed: ...", { cause: Object.assign(new Error("..."), { code }) });

  test("each cause it knows, by code or by MQTT.js's words; nothing for the rest", () => {
    expect(connectFailureHint(failed("ERR_TLS_CERT_ALTNAME_INVALID"), config)).toStartWith(
      "The broker's certificate is not issued for hub.lan (the error names what it is for): set flashlex.thing.endpoint in /home/pi/thing/config.yml",
    );
    expect(connectFailureHint(failed("SELF_SIGNED_CERT_IN_CHAIN"), config)).toContain(
      "a certificate that /keys/root-ca-cert.pem does not vouch for: that file may be another hub's",
    );
    expect(connectFailureHint(failed("ECONNREFUSED"), config)).toStartWith("Nothing listens on hub.lan:8883");
    expect(connectFailureHint(failed("ENOTFOUND"), config)).toStartWith(
      "hub.lan does not resolve to an address: correct flashlex.thing.endpoint in /home/pi/thing/config.yml",
    );
    expect(connectFailureHint(failed("ECONNRESET"), config)).toContain("it may be a listener without TLS");
    // MQTT.js's parser on an HTTPS server's answer, and its CONNACK timer: no code, its words
    expect(connectFailureHint(new Error("Invalid header flag bits, must be 0x0 for puback packet"), config)).toStartWith(
      "Something on hub.lan:8883 speaks TLS but not MQTT",
    );
    expect(connectFailureHint(new Error("connack timeout"), config)).toStartWith("Nothing answered MQTT on hub.lan:8883 in time");
    expect(connectFailureHint(new Error("no MQTT connection within 15 s"), config)).toStartWith("Nothing answered MQTT on hub.lan:8883 in time");
    // a CONNACK refusal says what it is itself, even when its words mention the protocol
    expect(connectFailureHint(Object.assign(new Error("Connection refused: Unacceptable protocol version"), { code: 1 }), config)).toBeUndefined();
    expect(connectFailureHint(new Error("something else"), config)).toBeUndefined();
  });
});
