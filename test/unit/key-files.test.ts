/**
 * The one identity loader (src/thing/identity.ts over src/crypto/key-files.ts) with the files
 * people bring from other systems (test/support/pem-variants.ts, made with the openssl command
 * line): every normalisable variant loads into exactly the identity the clean files give, and
 * every other is refused with one line that names the file (and the openssl command that
 * converts it, where there is one). The same variants run against the compiled binary and
 * Mosquitto in test/integration/identity.test.ts.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { issuedByCaIn } from "../../src/crypto/certificate-info.ts";
import { normalisePrivateKey } from "../../src/crypto/key-files.ts";
import { generateThingKeyPair, spkiDer } from "../../src/crypto/keys.ts";
import { issueThingCertificate } from "../../src/crypto/x509.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { loadIdentity, readIdentity, rootCaMismatch, type ThingIdentity } from "../../src/thing/identity.ts";
import type { ThingConfig } from "../../src/thing/settings.ts";
import { makeIntermediate, makeLeaf, makeRoot } from "../support/chains.ts";
import { type IdentityFile, identityVariants, type SourceIdentity, unsupportedKeys } from "../support/pem-variants.ts";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { scratchDir } from "../support/scratch.ts";
import { tally } from "../support/tally.ts";

const dir = scratchDir("flashlex-key-files-");
let pki: TestPki;
const sources: Record<"rsa" | "ec", SourceIdentity> = {} as never;

function configFor(name: string, files: Record<IdentityFile, Uint8Array | string>): ThingConfig {
  const base = mkdtempSync(join(dir, `${name.replace(/\W+/g, "-").slice(0, 40)}-`));
  const paths = {
    rootCA: join(base, "root-ca-cert.pem"),
    cert: join(base, "thing-certificate.pem"),
    privateKey: join(base, "thing-keypair-private.pem"),
    publicKey: undefined,
    database: join(base, "db"),
  };
  writeFileSync(paths.rootCA, files.ca);
  writeFileSync(paths.cert, files.cert);
  writeFileSync(paths.privateKey, files.key, { mode: 0o600 });
  return {
    file: join(base, "config.yml"),
    dataDir: base,
    keysDir: base,
    paths,
    unknownKeys: [],
    yaml: { thing: { id: "t-id", name: "test-thing" } },
  } as unknown as ThingConfig;
}

const filePath = (config: ThingConfig, file: IdentityFile) =>
  file === "ca" ? config.paths.rootCA : file === "cert" ? config.paths.cert : config.paths.privateKey;

beforeAll(async () => {
  pki = await makeTestPki(join(dir, "pki"), { thingName: "test-thing" });
  sources.rsa = { caPem: pki.ca.certPem, certPem: pki.thing.certPem, keyPem: pki.thing.privateKeyPem, keyType: "rsa" };
  const ec = await generateThingKeyPair("ec");
  sources.ec = {
    caPem: pki.ca.certPem,
    certPem: await issueThingCertificate(pki.ca, { thingName: "test-thing", publicKeyPem: ec.publicKeyPem }),
    keyPem: ec.privateKeyPem,
    keyType: "ec",
  };
});

function same(a: ThingIdentity, b: ThingIdentity) {
  expect(a.caPem).toBe(b.caPem);
  expect(a.certPem).toBe(b.certPem);
  expect(a.keyPem).toBe(b.keyPem);
  expect(spkiDer(a.privateKey).equals(spkiDer(b.privateKey))).toBe(true);
  expect(a.tokenAlgorithm).toBe(b.tokenAlgorithm);
}

for (const keyType of ["rsa", "ec"] as const) {
  describe(`${keyType.toUpperCase()} identity files from other systems`, () => {
    test("normalisable variants load as the clean files do; the rest are refused naming the file", () => {
      const source = sources[keyType];
      const clean = loadIdentity(configFor("clean", { ca: source.caPem, cert: source.certPem, key: source.keyPem }));
      expect(clean.tokenAlgorithm).toBe(keyType === "rsa" ? "RS256" : "ES256");
      expect(clean.keyPem).toStartWith("-----BEGIN PRIVATE KEY-----\n");
      const variants = identityVariants(source);
      expect(variants.length).toBeGreaterThan(25);
      for (const variant of variants) {
        const config = configFor(variant.name, { ca: source.caPem, cert: source.certPem, key: source.keyPem, ...variant.files });
        if (!variant.refused) {
          try {
            same(loadIdentity(config), clean);
          } catch (err) {
            throw new Error(`${variant.name}: ${(err as Error).message}`);
          }
          continue;
        }
        tally("badInputs");
        const err = (() => {
          try {
            loadIdentity(config);
          } catch (e) {
            return e as Error;
          }
          throw new Error(`${variant.name}: accepted`);
        })();
        expect({ variant: variant.name, kind: err.constructor.name }).toEqual({ variant: variant.name, kind: "ConfigError" });
        const message = err.message;
        expect({ variant: variant.name, startsWithFile: message.startsWith(`${filePath(config, variant.refused.file)}: `) }).toEqual({
          variant: variant.name,
          startsWithFile: true,
        });
        expect({ variant: variant.name, message }).toMatchObject({ variant: variant.name, message: expect.stringMatching(variant.refused.says) });
        expect(message).not.toContain("\n");
        expect(message).not.toMatch(/-----BEGIN [A-Z ]+-----|MII[A-Za-z0-9+/]{20}/); // no key material, no PEM
      }
    });
  });
}

describe("keys FlashLex does not sign with", () => {
  test("Ed25519, P-521, secp256k1, DSA and RSA-1024 are refused naming the key file, whatever the certificate", () => {
    for (const key of unsupportedKeys()) {
      tally("badInputs");
      const config = configFor(key.name, { ca: sources.rsa.caPem, cert: sources.rsa.certPem, key: key.keyPem });
      expect(() => readIdentity(config)).toThrow(ConfigError);
      try {
        readIdentity(config);
      } catch (err) {
        expect({ key: key.name, message: (err as Error).message }).toMatchObject({ key: key.name, message: expect.stringMatching(key.says) });
        expect((err as Error).message).toStartWith(`${config.paths.privateKey}: `);
      }
    }
  });

  test("EC P-384 is supported (ES384)", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const certPem = await issueThingCertificate(pki.ca, { thingName: "test-thing", publicKeyPem: publicKey.export({ type: "spki", format: "pem" }) as string });
    const identity = loadIdentity(configFor("p384", { ca: pki.ca.certPem, cert: certPem, key: privateKey.export({ type: "sec1", format: "pem" }) as string }));
    expect(identity.tokenAlgorithm).toBe("ES384");
  });
});

describe("key and certificate belong together", () => {
  test("another thing's certificate: one line naming the certificate and the key", async () => {
    const other = await pki.issueThing("other-thing");
    tally("badInputs");
    const config = configFor("mismatch", { ca: pki.ca.certPem, cert: other.certPem, key: pki.thing.privateKeyPem });
    expect(() => loadIdentity(config)).toThrow(
      `${config.paths.cert}: this certificate was not issued for the private key ${config.paths.privateKey}; use the certificate and key of the same distribution`,
    );
    // readIdentity alone (what bootstrap's first key check uses) does not judge the pair.
    expect(readIdentity(config).thingName).toBe("test-thing");
  });

  test("a chain written root-first: the key's own certificate is put first, where TLS expects it", () => {
    const config = configFor("root-first", { ca: pki.ca.certPem, cert: pki.ca.certPem + pki.thing.certPem, key: pki.thing.privateKeyPem });
    const identity = loadIdentity(config);
    expect(identity.certPem.indexOf(pki.thing.certPem.split("\n")[1]!)).toBeLessThan(identity.certPem.indexOf(pki.ca.certPem.split("\n")[1]!));
  });

  test("a root CA file that holds no CA (the thing's own certificate, a server's): 78 naming it and the setting; a CA that did not issue the certificate is said, not refused (it may be the broker's); intermediates after the leaf are followed", async () => {
    const root = await makeRoot("Unit Chain Root");
    const intermediate = await makeIntermediate(root, "Unit Chain Intermediate");
    const leaf = await makeLeaf(intermediate, "test-thing", { keyType: "rsa" });
    const server = await makeLeaf(root, "broker.lan", { serverOnly: true });
    // leaf, an unrelated CA, then the intermediate: the walk finds the issuer wherever it is
    const chained = configFor("via-intermediate", {
      ca: pki.ca.certPem + root.certPem,
      cert: leaf.certPem + pki.ca.certPem + intermediate.certPem,
      key: leaf.keyPem,
    });
    expect(rootCaMismatch(loadIdentity(chained), chained)).toBeUndefined();
    for (const { name, files, says } of [
      {
        name: "own-certificate",
        files: { ca: pki.thing.certPem, cert: pki.thing.certPem, key: pki.thing.privateKeyPem },
        says: "this file holds the thing's own certificate",
      },
      {
        name: "server-certificate",
        files: { ca: server.certPem, cert: pki.thing.certPem, key: pki.thing.privateKeyPem },
        says: "this file holds no CA certificate",
      },
    ]) {
      tally("badInputs");
      const config = configFor(name, files);
      expect(() => loadIdentity(config)).toThrow(ConfigError);
      expect(() => loadIdentity(config)).toThrow(
        `${config.paths.rootCA}: ${says}, so no broker's certificate can be checked with it (flashlex.thing.keys.rootCA in ${config.file})`,
      );
      expect(readIdentity(config).thingName).toBe("test-thing"); // bootstrap's handshake judges it instead
    }
    for (const [name, files] of [
      ["intermediate-missing", { ca: root.certPem, cert: leaf.certPem, key: leaf.keyPem }],
      ["another-ca", { ca: root.certPem, cert: pki.thing.certPem, key: pki.thing.privateKeyPem }],
    ] as const) {
      const config = configFor(name, files);
      expect(rootCaMismatch(loadIdentity(config), config)).toStartWith(
        `no CA in ${config.paths.rootCA} (flashlex.thing.keys.rootCA) issued ${config.paths.cert}: `,
      );
    }
  });

  test("a renewed certificate is taken from any CA of the root CA file, not only its first (a bundle with the hub's CA second could never renew)", async () => {
    const root = await makeRoot("Unit Other Root");
    expect(issuedByCaIn(pki.thing.certPem, root.certPem + pki.ca.certPem)).toBe(true);
    expect(issuedByCaIn(pki.thing.certPem, root.certPem)).toBe(false);
  });

  test("the public key where the private key belongs (two *-keypair-*.pem side by side): the refusal names the setting that points there", () => {
    tally("badInputs");
    const config = configFor("public-as-private", { ca: pki.ca.certPem, cert: pki.thing.certPem, key: pki.thing.publicKeyPem });
    expect(() => loadIdentity(config)).toThrow(`; the file is flashlex.thing.keys.privateKey in ${config.file}`);
    expect(() => loadIdentity(config)).toThrow(new RegExp(`^${config.paths.privateKey}: .*public key`));
  });

  test("the root CA's certificate where the thing's belongs: said as a CA certificate, with the setting (new-user pass 24, F5)", () => {
    tally("badInputs");
    const config = configFor("ca-as-cert", { ca: pki.ca.certPem, cert: pki.ca.certPem, key: pki.thing.privateKeyPem });
    expect(() => loadIdentity(config)).toThrow(
      `${config.paths.cert}: this file holds a CA certificate, not the thing's (the file is flashlex.thing.keys.cert in ${config.file}); point it at the thing's certificate`,
    );
  });

  test("a missing file is a configuration error naming it", () => {
    const config = configFor("missing", { ca: pki.ca.certPem, cert: pki.thing.certPem, key: pki.thing.privateKeyPem });
    const missing = { ...config, paths: { ...config.paths, cert: join(dir, "nowhere.pem") } };
    expect(() => loadIdentity(missing)).toThrow(
      `${join(dir, "nowhere.pem")}: cannot read the thing certificate: there is no such file (ENOENT); copy the distribution's keys there, pass -k with the directory that has them, or correct flashlex.thing.keys.cert in ${config.file}`,
    );
    expect(() => loadIdentity(missing)).toThrow(ConfigError);
  });
});

describe("a SEC1 EC key without its optional public key (RFC 5915 §3: `openssl ec -no_public`)", () => {
  test("is read as the key it is, not refused as damaged (Bun reads it from PEM, not from DER)", () => {
    const dir = mkdtempSync(join(scratchDir("flashlex-sec1-"), "k-"));
    const full = join(dir, "full.pem");
    const bare = join(dir, "bare.pem");
    execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", full], { stdio: "ignore" });
    execFileSync("openssl", ["ec", "-in", full, "-no_public", "-out", bare], { stdio: "ignore" });
    const read = (file: string) => normalisePrivateKey(readFileSync(file));
    expect(spkiDer(createPublicKey(read(bare).key))).toEqual(spkiDer(createPublicKey(read(full).key)));
    // the same bytes as DER (the binary form of the file) too
    const der = Buffer.from(readFileSync(bare, "utf8").replace(/-----[^-]+-----|\s/g, ""), "base64");
    expect(spkiDer(createPublicKey(normalisePrivateKey(der).key))).toEqual(spkiDer(createPublicKey(read(full).key)));
  });
});
