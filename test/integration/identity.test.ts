/**
 * Keys and certificates as people really have them, through the compiled binary and Debian's
 * Mosquitto (`require_certificate true`), with a real collect receiver and a small MQTT client
 * that echoes bootstrap's test message, so bootstrap can pass all 12 checks:
 *
 *   files from other systems   every variant of test/support/pem-variants.ts: `bootstrap`
 *                              passes ⇔ `serve` connects; a refused file is one line naming it
 *                              (bootstrap FAIL, serve 78, collect 78 with nothing queued)
 *   chains                     leaf + intermediate with several roots in the CA file is accepted
 *                              by bootstrap and by Mosquitto; a missing intermediate, an expired
 *                              or not-yet-valid leaf are refused by both; a root CA file that
 *                              holds no CA (the thing's own certificate) is 78 from serve at its
 *                              start, one that did not issue the certificate a WARN
 *   identity errors            key ≠ certificate, a garbage certificate, an unsupported key: 78
 *                              and one line from serve, collect (outbox untouched) and
 *                              install-service; another thing's certificate and key under this
 *                              thing's file names: 78 from them all and the SDK, bootstrap FAILs;
 *                              a group-readable key: serve warns once
 */

import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { createPublicKey } from "node:crypto";
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { generateThingKeyPair } from "../../src/crypto/keys.ts";
import { issueServerCertificate, issueThingCertificate } from "../../src/crypto/x509.ts";
import { FlashlexSDK } from "../../src/sdk/index.ts";
import { ordinaryAccount } from "../support/accounts.ts";
import { binaryPath, run, start } from "../support/binary.ts";
import { type Issued, makeIntermediate, makeLeaf, makeRoot } from "../support/chains.ts";
import { freePort, type MosquittoBroker, startMosquitto } from "../support/mosquitto.ts";
import { type IdentityFile, identityVariants, unsupportedKeys, type Variant } from "../support/pem-variants.ts";
import { type Receiver, startReceiver } from "../support/receiver.ts";
import { tally } from "../support/tally.ts";
import { makeThingFixture, type ThingFixture } from "../support/thing-fixture.ts";

let thing: ThingFixture;
let broker: MosquittoBroker;
let rsaReceiver: Receiver;
let ecReceiver: Receiver;
let echo: MqttClient;
let chainRoot: Issued, otherRoot: Issued, intermediate: Issued, chainLeaf: Issued;
let ec: { certPem: string; keyPem: string };
const original: Record<IdentityFile, Buffer> = {} as never;

const paths = (): Record<IdentityFile, string> => ({ ca: thing.pki.caCertPath, cert: thing.pki.thing.certPath, key: thing.pki.thing.privateKeyPath });

/** Replaces some identity files (the key stays 0600, as bootstrap wants). */
function writeIdentity(files: Partial<Record<IdentityFile, Uint8Array | string>>): void {
  for (const [file, bytes] of Object.entries(files) as [IdentityFile, Uint8Array | string][]) {
    writeFileSync(paths()[file], bytes);
    chmodSync(paths()[file], file === "key" ? 0o600 : 0o644);
  }
}

function restoreIdentity(): void {
  writeIdentity(original);
  thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = rsaReceiver.url));
}

/** Rows in the outbox; 0 when the database was never created. */
function outboxRows(): number {
  const file = join(thing.dataDir, "subscription.db");
  if (!existsSync(file)) return 0;
  const db = new Database(file, { readonly: true });
  try {
    return (db.query("SELECT COUNT(*) AS n FROM outbox").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

interface Verdicts {
  bootstrap: { code: number; report: any };
  serve: { connected: boolean; code?: number; output: string };
}

/** Runs bootstrap, then serve until it connects (then stops it) or gives up / exits. */
async function judge(): Promise<Verdicts> {
  const boot = await run(["bootstrap", ...thing.flags, "--json"], { timeoutMs: 40_000 });
  const report = JSON.parse(boot.stdout);
  const serve = start(["serve", ...thing.flags]);
  // serve either connects, exits, or (a refused handshake) schedules a reconnect: all three are events.
  const event = await serve.waitFor(/mqtt\.connected|mqtt\.reconnect_scheduled/, 15_000).catch(() => "exited");
  const connected = event.startsWith("mqtt.connected");
  const code = await serve.stop();
  return { bootstrap: { code: boot.code, report }, serve: { connected, code, output: serve.output() } };
}

function failedChecks(report: any): { name: string; detail: string; fix: string }[] {
  return report.checks.filter((c: any) => c.status === "fail");
}

beforeAll(async () => {
  binaryPath();
  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  [chainRoot, otherRoot] = await Promise.all([makeRoot("Chain Root"), makeRoot("Other Root", { keyType: "rsa" })]);
  intermediate = await makeIntermediate(chainRoot, "Chain Intermediate");
  chainLeaf = await makeLeaf(intermediate, thing.thingName, { keyType: "rsa" });
  // Mosquitto trusts the fixture's CA and the chain's root: both kinds of client can connect.
  const bundle = join(thing.dir, "broker-ca-bundle.pem");
  writeFileSync(bundle, readFileSync(thing.pki.caCertPath, "utf8") + chainRoot.certPem);
  broker = await startMosquitto({
    dir: thing.dir,
    caFile: bundle,
    certFile: thing.pki.brokerCertPath,
    keyFile: thing.pki.brokerKeyPath,
    requireCertificate: true,
  });
  thing.editConfig((doc) => (doc.flashlex.thing.mqtt.port = broker.port));
  const ecKeys = await generateThingKeyPair("ec");
  ec = { keyPem: ecKeys.privateKeyPem, certPem: await issueThingCertificate(thing.pki.ca, { thingName: thing.thingName, publicKeyPem: ecKeys.publicKeyPem }) };
  rsaReceiver = await startReceiver({ thingId: thing.thingId, publicKeyPem: thing.pki.thing.publicKeyPem });
  ecReceiver = await startReceiver({ thingId: thing.thingId, publicKeyPem: ecKeys.publicKeyPem });
  for (const file of ["ca", "cert", "key"] as const) original[file] = readFileSync(paths()[file]);
  restoreIdentity();

  // The hub's part of bootstrap: echo each test message that carries a nonce to the thing's ingress.
  const hubFiles = await thing.pki.issueThing("test-hub");
  echo = mqtt.connect({
    protocol: "mqtts",
    host: "127.0.0.1",
    port: broker.port,
    ca: thing.pki.ca.certPem,
    cert: hubFiles.certPem,
    key: hubFiles.privateKeyPem,
    rejectUnauthorized: true,
    clientId: "test-hub",
    reconnectPeriod: 0,
  });
  await new Promise<void>((resolve, reject) => (echo.once("connect", () => resolve()), echo.once("error", reject)));
  await echo.subscribeAsync("flashlex/test", { qos: 1 });
  echo.on("message", (_topic, payload) => {
    const message = JSON.parse(payload.toString());
    if (message.nonce) echo.publish(`ingress/${message.thingName}`, JSON.stringify({ message }), { qos: 1 });
  });
}, 60_000);

afterAll(async () => {
  echo?.end(true);
  await broker?.stop();
  await rsaReceiver?.stop();
  await ecReceiver?.stop();
  if (thing) rmSync(thing.dir, { recursive: true, force: true });
});

/** One variant end to end: accepted ⇒ bootstrap passes and serve connects; refused ⇒ neither, one line naming the file everywhere. */
async function checkVariant(variant: Variant): Promise<void> {
  writeIdentity(variant.files);
  try {
    const verdicts = await judge();
    const failed = failedChecks(verdicts.bootstrap.report);
    if (!variant.refused) {
      expect({ variant: variant.name, failed, serveConnected: verdicts.serve.connected }).toEqual({ variant: variant.name, failed: [], serveConnected: true });
      expect(verdicts.bootstrap.code).toBe(0);
      expect(verdicts.serve.code).toBe(0);
      return;
    }
    tally("badInputs");
    const file = paths()[variant.refused.file];
    // bootstrap: the key-files check fails with the one line; nothing after it that needs the files passes
    expect({ variant: variant.name, check: failed[0]?.name }).toEqual({ variant: variant.name, check: "key files present" });
    expect(failed[0]!.detail.startsWith(`${file}: `)).toBe(true);
    expect(failed[0]!.detail).toMatch(variant.refused.says);
    expect(verdicts.bootstrap.code).toBe(1);
    // serve: never connects, exits 78 with that line
    expect({ variant: variant.name, connected: verdicts.serve.connected, code: verdicts.serve.code }).toEqual({
      variant: variant.name,
      connected: false,
      code: 78,
    });
    expect(verdicts.serve.output).toContain(`flashlex: ${file}: `);
    // collect: 78, the same one line, nothing queued
    const before = outboxRows();
    const collect = await run(["collect", ...thing.flags], { input: '{"queued":"never"}' });
    expect(collect.code).toBe(78);
    expect(collect.stderr.trim().split("\n")).toEqual([expect.stringMatching(new RegExp(`^flashlex: ${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: `))]);
    expect(outboxRows()).toBe(before);
  } finally {
    restoreIdentity();
  }
}

describe("identity files from other systems: bootstrap passes ⇔ serve connects", () => {
  test("an RSA identity (PKCS#1, as distributions ship it), every variant", async () => {
    const variants = identityVariants({ caPem: original.ca.toString(), certPem: original.cert.toString(), keyPem: original.key.toString(), keyType: "rsa" });
    for (const variant of variants) await checkVariant(variant);
  }, 240_000);

  test("an EC P-256 identity (PKCS#8 and SEC1), the key-format variants", async () => {
    thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = ecReceiver.url));
    const variants = identityVariants({ caPem: original.ca.toString(), certPem: ec.certPem, keyPem: ec.keyPem, keyType: "ec" }).filter(
      (v) => /key|PKCS#12 where the key/.test(v.name) || v.name.startsWith("CRLF"),
    );
    expect(variants.length).toBeGreaterThan(8);
    for (const variant of variants) {
      // every EC variant starts from the EC pair; checkVariant restores the RSA one afterwards
      thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = ecReceiver.url));
      await checkVariant({ ...variant, files: { cert: ec.certPem, key: ec.keyPem, ...variant.files } });
    }
    expect(ecReceiver.received.length).toBeGreaterThan(0);
    expect(ecReceiver.received.every((r) => r.header.alg === "ES256")).toBe(true);
  }, 120_000);

  test("keys FlashLex does not sign with: one line naming the key file, from bootstrap, serve and collect", async () => {
    for (const key of unsupportedKeys()) await checkVariant({ name: key.name, files: { key: key.keyPem }, refused: { file: "key", says: key.says } });
  }, 60_000);
});

describe("certificate chains: bootstrap judges as the broker's handshake does", () => {
  test("leaf + intermediate, several roots in the CA file: bootstrap passes and serve connects", async () => {
    writeIdentity({
      cert: chainLeaf.certPem + intermediate.certPem,
      key: chainLeaf.keyPem,
      ca: otherRoot.certPem + chainRoot.certPem + original.ca.toString(),
    });
    const chainReceiver = await startReceiver({
      thingId: thing.thingId,
      publicKeyPem: createPublicKey(chainLeaf.keyPem).export({ type: "spki", format: "pem" }) as string,
    });
    thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = chainReceiver.url));
    try {
      const verdicts = await judge();
      expect(failedChecks(verdicts.bootstrap.report)).toEqual([]);
      expect(verdicts.bootstrap.report.checks.find((c: any) => c.name.startsWith("certificate chain")).detail).toContain("(with 1 intermediate)");
      expect(verdicts.serve.connected).toBe(true);
    } finally {
      restoreIdentity();
      await chainReceiver.stop();
    }
  }, 60_000);

  /**
   * `serveSays`: what serve says of the files at its start: 78 and this line for a root CA file that
   * holds no CA (it retried for ever); a WARN otherwise (the file checks the broker, whose
   * certificate another CA may have issued), and Mosquitto refuses it.
   */
  const refusedChains: { name: string; files: () => Partial<Record<IdentityFile, string>>; says: RegExp; serveSays?: { code: number; line: RegExp } }[] = [
    {
      name: "the intermediate missing from the certificate file",
      files: () => ({ cert: chainLeaf.certPem, key: chainLeaf.keyPem, ca: chainRoot.certPem + original.ca.toString() }),
      says: /does not chain to a CA in .*\((UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)$/,
      serveSays: {
        code: 0,
        line: /WARN +identity\.root_ca_not_issuer note="no CA in .*root-ca-cert\.pem \(flashlex\.thing\.keys\.rootCA\) issued .*certificate\.pem: .*append the intermediate CA's PEM/,
      },
    },
    {
      name: "the thing's own certificate as the root CA file (two *-cert*.pem files side by side)",
      files: () => ({ ca: original.cert.toString() }),
      says: /does not chain to a CA in .*\((UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)$/,
      serveSays: {
        code: 78,
        line: /root-ca-cert\.pem: this file holds the thing's own certificate, so no broker's certificate can be checked with it \(flashlex\.thing\.keys\.rootCA in /,
      },
    },
    {
      name: "another CA's certificate as the root CA file",
      files: () => ({ ca: otherRoot.certPem }),
      says: /does not chain to a CA in .*\((UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)$/,
      serveSays: { code: 0, line: /WARN +identity\.root_ca_not_issuer note="no CA in / },
    },
    {
      name: "an expired leaf",
      files: () => ({ cert: expiredLeaf, key: original.key.toString() }),
      says: /^ecd13b11-mything in .* expired on .*\(CERT_HAS_EXPIRED\)$/,
    },
    {
      name: "a leaf not valid yet",
      files: () => ({ cert: futureLeaf, key: original.key.toString() }),
      says: /^ecd13b11-mything in .* is not valid until .*\(CERT_NOT_YET_VALID\)$/,
    },
  ];
  let expiredLeaf = "";
  let futureLeaf = "";

  beforeAll(async () => {
    const publicKeyPem = thing.pki.thing.publicKeyPem;
    const day = 86_400_000;
    expiredLeaf = await issueThingCertificate(thing.pki.ca, { thingName: thing.thingName, publicKeyPem, notBefore: new Date(Date.now() - 10 * day), days: 3 });
    futureLeaf = await issueThingCertificate(thing.pki.ca, { thingName: thing.thingName, publicKeyPem, notBefore: new Date(Date.now() + 2 * day), days: 30 });
  });

  for (const chain of refusedChains) {
    test(`${chain.name}: bootstrap fails the chain check with the fix; ${chain.serveSays?.code === 78 ? "serve refuses it at its start (78)" : "Mosquitto refuses serve"}`, async () => {
      tally("badInputs");
      writeIdentity(chain.files());
      try {
        const verdicts = await judge();
        const failed = failedChecks(verdicts.bootstrap.report);
        expect(failed[0]?.name).toBe("certificate chain accepted by a TLS handshake against the root CA");
        expect(failed[0]!.detail).toMatch(chain.says);
        expect(verdicts.bootstrap.code).toBe(1);
        expect(verdicts.serve.connected).toBe(false);
        expect(verdicts.serve.output).not.toContain("mqtt.connected");
        if (chain.serveSays) {
          expect(verdicts.serve.code).toBe(chain.serveSays.code);
          expect(verdicts.serve.output).toMatch(chain.serveSays.line);
        }
      } finally {
        restoreIdentity();
      }
    }, 60_000);
  }
});

/**
 * Points the thing at the broker on `port`: bootstrap's connect check must fail with a fix that
 * matches `fix`, and serve's first mqtt.error must carry the same fix as its hint. Returns the fix.
 */
async function connectFixSaidTwice(port: number, fix: RegExp): Promise<string> {
  thing.editConfig((doc) => (doc.flashlex.thing.mqtt.port = port));
  const boot = await run(["bootstrap", ...thing.flags, "--json"], { timeoutMs: 40_000 });
  expect(boot.code).not.toBe(0);
  const connect = failedChecks(JSON.parse(boot.stdout)).find((c) => c.name === "mutual-TLS connect");
  expect(connect?.fix).toMatch(fix);
  const serve = start(["serve", ...thing.flags]);
  try {
    await serve.waitFor(/WARN\s+mqtt\.error .* hint=/, 15_000);
    expect(serve.output()).toContain(`hint="${connect?.fix}"`);
  } finally {
    await serve.stop();
  }
  tally("badInputs");
  return connect!.fix!;
}

describe("a broker address that is wrong: bootstrap's fix says which way", () => {
  test("the port of a web server, of an HTTPS server, and one nothing listens on: bootstrap's FAIL and serve's first mqtt.error name the cause and the setting to change", async () => {
    // an HTTPS server with a certificate the thing trusts (as the hub's API served over HTTPS)
    const https = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: readFileSync(thing.pki.brokerCertPath, "utf8"), key: readFileSync(thing.pki.brokerKeyPath, "utf8") },
      fetch: () => new Response("not MQTT"),
    });
    const cases = [
      { port: Number(new URL(rsaReceiver.url).port), fix: /^Something answers on 127\.0\.0\.1:\d+, but not with TLS .*flashlex\.thing\.mqtt\.port in / },
      { port: https.port, fix: /^Something on 127\.0\.0\.1:\d+ speaks TLS but not MQTT .*flashlex\.thing\.mqtt\.port in / },
      { port: await freePort(), fix: /^Nothing listens on 127\.0\.0\.1:\d+: start the broker/ },
    ];
    try {
      for (const { port, fix } of cases) {
        expect(await connectFixSaidTwice(port!, fix)).toContain(thing.configPath);
      }
    } finally {
      thing.editConfig((doc) => (doc.flashlex.thing.mqtt.port = broker.port));
      await https.stop(true);
    }
  }, 90_000);
});

describe("a broker certificate the device's clock does not accept: the fix says the clock", () => {
  test("a broker whose certificate expired, and one not valid yet: bootstrap's FAIL and serve's mqtt.error hint at the clock and NTP", async () => {
    const day = 86_400_000;
    const certificates = [
      {
        made: await issueServerCertificate(thing.pki.ca, { commonName: "127.0.0.1", notBefore: new Date(Date.now() - 10 * day), days: 3 }),
        fix: /has expired by this device's clock: if the clock is wrong, set it \(enable NTP/,
      },
      {
        made: await issueServerCertificate(thing.pki.ca, { commonName: "127.0.0.1", notBefore: new Date(Date.now() + 2 * day), days: 30 }),
        fix: /is not valid yet by this device's clock, which is probably behind/,
      },
    ];
    try {
      for (const { made, fix } of certificates) {
        const server = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: made.certPem, key: made.keyPem }, fetch: () => new Response("") });
        try {
          await connectFixSaidTwice(server.port!, fix);
        } finally {
          await server.stop(true);
        }
      }
    } finally {
      thing.editConfig((doc) => (doc.flashlex.thing.mqtt.port = broker.port));
    }
  }, 90_000);
});

describe("identity problems are configuration errors found before anything is queued", () => {
  const oneLine = (stderr: string) => stderr.trim().split("\n");

  test("collect with a key that is not the certificate's: 78, one line naming both files, nothing queued", async () => {
    tally("badInputs");
    const other = await thing.pki.issueThing("someone-else");
    writeIdentity({ key: readFileSync(other.privateKeyPath) });
    try {
      const before = outboxRows();
      for (const via of ["http", "mqtt"]) {
        const result = await run(["collect", ...thing.flags, "--via", via], { input: '{"n":1}' });
        expect(result.code).toBe(78);
        expect(oneLine(result.stderr)).toEqual([
          `flashlex: ${paths().cert}: this certificate was not issued for the private key ${paths().key}; use the certificate and key of the same distribution`,
        ]);
      }
      expect(outboxRows()).toBe(before);
    } finally {
      restoreIdentity();
    }
  });

  test("serve with a key that is not the certificate's, or a garbage certificate: 78 and one line, no OpenSSL text", async () => {
    const other = await thing.pki.issueThing("someone-else-2");
    for (const [files, line] of [
      [
        { key: readFileSync(other.privateKeyPath) },
        `flashlex: ${paths().cert}: this certificate was not issued for the private key ${paths().key}; use the certificate and key of the same distribution`,
      ],
      [
        { cert: "-----BEGIN CERTIFICATE-----\nTUlJQmFk\n-----END CERTIFICATE-----\n" },
        `flashlex: ${paths().cert}: certificate 1 of the file is damaged (its base64 is not an X.509 certificate); the file is flashlex.thing.keys.cert in ${thing.configPath}`,
      ],
      [
        { cert: "hello, I am not a certificate\n" },
        `flashlex: ${paths().cert}: neither PEM nor DER; the file should hold the thing's certificate; the file is flashlex.thing.keys.cert in ${thing.configPath}`,
      ],
    ] as const) {
      tally("badInputs");
      writeIdentity(files);
      try {
        const serve = await run(["serve", ...thing.flags], { timeoutMs: 15_000 });
        expect(serve.code).toBe(78);
        expect(oneLine(serve.stderr)).toEqual([line]);
      } finally {
        restoreIdentity();
      }
    }
  });

  /**
   * `install-service --dry-run` as an owner runs it: as root for a folder an ordinary user owns
   * (a root-owned config is refused first, 64, for the user to name), or as that user.
   */
  async function installServiceDryRun(): Promise<Awaited<ReturnType<typeof run>>> {
    if (process.getuid?.() !== 0) return run(["install-service", ...thing.flags, "--dry-run"]);
    const user = ordinaryAccount();
    const mode = statSync(thing.dir).mode & 0o777;
    chmodSync(thing.dir, 0o755);
    execFileSync("chown", ["-R", `${user.uid}:${user.gid}`, thing.dir]);
    try {
      return await run(["install-service", ...thing.flags, "--dry-run"]);
    } finally {
      execFileSync("chown", ["-R", "0:0", thing.dir]);
      chmodSync(thing.dir, mode);
    }
  }

  test("install-service with a key that is not the certificate's: 78, one line, nothing written", async () => {
    tally("badInputs");
    const other = await thing.pki.issueThing("someone-else-3");
    writeIdentity({ key: readFileSync(other.privateKeyPath) });
    try {
      const dry = await installServiceDryRun();
      expect(dry.code).toBe(78);
      expect(dry.stdout).toBe("");
      expect(oneLine(dry.stderr)).toEqual([
        `flashlex: ${paths().cert}: this certificate was not issued for the private key ${paths().key}; use the certificate and key of the same distribution`,
      ]);
    } finally {
      restoreIdentity();
    }
  });

  test("another thing's certificate and key copied in under this thing's file names: collect, serve, install-service and the SDK refuse it (78, one line), nothing queued; bootstrap says the same", async () => {
    const other = await thing.pki.issueThing("ecd13b11-other");
    writeIdentity({ cert: readFileSync(other.certPath), key: readFileSync(other.privateKeyPath) });
    const line = `flashlex: ${paths().cert}: the certificate is for "ecd13b11-other", the config names "${thing.thingName}" (flashlex.thing.name in ${thing.configPath}); use the config and keys of the same thing`;
    try {
      const before = outboxRows();
      for (const args of [["collect", "--via", "http"], ["collect", "--via", "mqtt"], ["serve"], ["install-service", "--dry-run"]]) {
        tally("attacks");
        const result =
          args[0] === "install-service" ? await installServiceDryRun() : await run([...args, ...thing.flags], { input: '{"n":1}', timeoutMs: 15_000 });
        expect({ args, code: result.code, stdout: result.stdout, stderr: oneLine(result.stderr) }).toEqual({ args, code: 78, stdout: "", stderr: [line] });
      }
      const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
      try {
        const refused = await sdk.collectMessage({ n: 1 }).catch((err) => err);
        expect({ kind: refused.kind, exitCode: refused.exitCode, message: `flashlex: ${refused.message}` }).toEqual({
          kind: "config",
          exitCode: 78,
          message: line,
        });
      } finally {
        sdk.close();
      }
      expect(outboxRows()).toBe(before);
      const bootstrap = await run(["bootstrap", ...thing.flags]);
      expect(bootstrap.code).toBe(1);
      expect(bootstrap.stdout).toContain(`[FAIL] certificate chain accepted by a TLS handshake against the root CA: ${line.slice("flashlex: ".length)}`);
    } finally {
      restoreIdentity();
    }
  });

  test("serve with a group-readable private key runs, and says so once with the chmod fix", async () => {
    chmodSync(paths().key, 0o640);
    try {
      const serve = start(["serve", ...thing.flags]);
      await serve.waitFor(/mqtt\.connected/);
      expect(await serve.stop()).toBe(0);
      const warnings = serve
        .output()
        .split("\n")
        .filter((l) => l.includes("identity.key_file_open"));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(" WARN ");
      expect(warnings[0]).toContain(`fix="chmod 600 ${paths().key}"`);
      expect(warnings[0]).toContain("mode=0640");
    } finally {
      restoreIdentity();
    }
  });
});
