/**
 * `hub init` and `hub thing create/revoke`: the hub home, its files and modes, thing names,
 * certificates, and the distribution built from dist-template/.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync, randomUUID, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { parse } from "yaml";
import { ExitCode, exitCodeOf } from "../../src/cli/exit-codes.ts";
import { parseTime } from "../../src/cli/input.ts";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { loadPrivateKey } from "../../src/crypto/keys.ts";
import { type HubHome, openHubHome } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import { distributionPath } from "../../src/hub/home/paths.ts";
import { addCrlFile, loadHubSettings, ownerPrefix } from "../../src/hub/home/settings.ts";
import { hashToken, tokenMatchesAny } from "../../src/hub/home/tokens.ts";
import type { HubStore } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { buildDistribution, renderTemplate, renderThingConfig } from "../../src/hub/things/distribution.ts";
import { createThing, findThing, removeOrphanDistributions, validateThingName } from "../../src/hub/things/provision.ts";
import { Things, thingStatus } from "../../src/hub/things/things.ts";
import { PYTHON_MODULE } from "../../src/protocol/python-module.ts";
import { ThingYamlSchema } from "../../src/protocol/thing-config.ts";
import { ConfigError, ConflictError, InputError } from "../../src/shared/errors.ts";
import { checkCertificate, keyMatchesCertificate } from "../support/certificates.ts";

const OWNER = "ecd13b11-6d91-4e8e-9156-60e451a3c975";
let root: string;
let home: HubHome;
let store: HubStore;
let token: string;

const mode = (file: string) => statSync(file).mode & 0o777;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "flashlex-hub-provision-"));
  const result = await initHub({ dir: join(root, "hub"), ownerId: OWNER, names: ["hub.example", "192.0.2.7"] });
  home = result.home;
  token = result.token;
  store = await openHubStore(home.paths.database);
});

afterAll(async () => {
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

describe("hub init", () => {
  test("creates the home with owner-only secrets", () => {
    const p = home.paths;
    expect(mode(p.dir)).toBe(0o700);
    for (const secret of [p.caKey, p.brokerKey, p.clientKey]) expect(mode(secret)).toBe(0o600);
    for (const file of [p.caCert, p.brokerCert, p.clientCert, p.config, p.database]) expect(existsSync(file)).toBe(true);
    expect(mode(p.dists)).toBe(0o700);
  });

  test("the broker certificate names what was asked, the client certificate is flashlex-hub", () => {
    const ca = readFileSync(home.paths.caCert, "utf8");
    const broker = readFileSync(home.paths.brokerCert, "utf8");
    expect(checkCertificate(broker, ca, new Date()).ok).toBe(true);
    const san = new X509Certificate(broker).subjectAltName as string;
    expect(san).toContain("DNS:hub.example");
    expect(san).toContain("IP Address:192.0.2.7");
    expect(describeCertificate(readFileSync(home.paths.clientCert, "utf8")).subjectCN).toBe("flashlex-hub");
    expect(keyMatchesCertificate(loadPrivateKey(readFileSync(home.paths.clientKey, "utf8")), readFileSync(home.paths.clientCert, "utf8"))).toBe(true);
  });

  test("hub.yml validates and says what things will use", () => {
    const { settings: s, unknownKeys } = loadHubSettings(home.paths.config);
    expect(unknownKeys).toEqual([]);
    expect(s).toMatchObject({
      ownerId: OWNER,
      env: "dev",
      api: { publicUrl: "http://127.0.0.1:8080", host: "127.0.0.1", port: 8080, tls: false, payloadLimitBytes: 262144 },
      broker: { host: "hub.example", port: 8883, listenHost: "0.0.0.0" },
    });
    // no `metrics: {}` for an operator to replace: absent is the default (127.0.0.1:9464)
    expect(readFileSync(home.paths.config, "utf8")).not.toContain("metrics");
  });

  test("hub.metrics.listen: a bare port (a number to YAML) is 127.0.0.1's; anything else but HOST:PORT or false says what to write", () => {
    const withListen = (value: string) => {
      const file = join(root, `hub-metrics-${Math.random().toString(16).slice(2)}.yml`);
      writeFileSync(file, `${readFileSync(home.paths.config, "utf8")}  metrics:\n    listen: ${value}\n`);
      return () => loadHubSettings(file).settings.metrics?.listen;
    };
    expect(withListen("19465")()).toBe("19465");
    expect(withListen("false")()).toBe(false);
    expect(withListen("true")).toThrow("hub.metrics.listen: must be HOST:PORT (127.0.0.1:9464, [::1]:9464), PORT (on 127.0.0.1) or false");
  });

  test("hub.yml hosts a resolver could never take are refused, as hub init refuses them (attack round 26, F5: a hand-edited publicUrl went into every distribution)", () => {
    const edited = (from: string, to: string) => {
      const file = join(root, `hub-long-${Math.random().toString(16).slice(2)}.yml`);
      const text = readFileSync(home.paths.config, "utf8");
      expect(text).toContain(from);
      writeFileSync(file, text.replace(from, to));
      return () => loadHubSettings(file);
    };
    const long = "a".repeat(300);
    expect(edited("publicUrl: http://127.0.0.1:8080", `publicUrl: http://${long}:8080`)).toThrow("its host is longer than a DNS name may be");
    expect(edited("host: 127.0.0.1", `host: ${long}`)).toThrow("at most 253 characters, 63 between dots");
    expect(edited("listenHost: 0.0.0.0", `listenHost: ${long}`)).toThrow("at most 253 characters, 63 between dots");
    // the API's own address, as the hub prints it: every distribution got .../dev/v1/dev/v1 (verify pass 28, F2)
    expect(edited("publicUrl: http://127.0.0.1:8080", "publicUrl: http://127.0.0.1:8080/dev/v1")).toThrow("hub.api.publicUrl: ends with /{env}/v1");
    // a publicUrl that is no URL at all: named (78), not an internal error from the length check (verify pass 27, F1)
    for (const bad of ["nope", '"http://"', '"http://a b"'])
      expect(edited("publicUrl: http://127.0.0.1:8080", `publicUrl: ${bad}`)).toThrow("hub.api.publicUrl");
    // an env longer than hub init now takes, in a hub made before the rule: still read (verify pass 27, F2)
    expect(edited("env: dev", `env: ${"e".repeat(100)}`)().settings.env).toBe("e".repeat(100));
  });

  test("keys hub.yml has that the hub does not know are listed, for a warning, not refused", () => {
    const file = join(root, "hub-unknown.yml");
    writeFileSync(file, readFileSync(home.paths.config, "utf8").replace("hub:\n", "hub:\n  colour: blue\n"));
    expect(loadHubSettings(file).unknownKeys).toEqual(["hub.colour"]);
  });

  test("a setting misspelt, which the file does not also set, is refused (78): the default would quietly stand in (new-user 22 F10)", () => {
    const file = join(root, "hub-misspelt.yml");
    const original = readFileSync(home.paths.config, "utf8");
    writeFileSync(file, original.replace(/\n(\s+)port: /, "\n$1prot: "));
    expect(() => loadHubSettings(file)).toThrow(/hub\.api\.prot is not a setting; did you mean hub\.api\.port\? It is not set/);
    // beside the key it is near, it is only extra: a warning, as any unknown key
    writeFileSync(file, original.replace(/\n(\s+)port: (\d+)/, "\n$1port: $2\n$1prot: 1"));
    expect(loadHubSettings(file).unknownKeys).toEqual(["hub.api.prot"]);
  });

  test("only the hash of the operator token is stored", async () => {
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const hashes = await store.activeTokenHashes(Date.now());
    expect(hashes).toEqual([hashToken(token)]);
    expect(tokenMatchesAny(token, hashes)).toBe(true);
    expect(tokenMatchesAny(`${token}x`, hashes)).toBe(false);
    expect(readFileSync(home.paths.database).includes(Buffer.from(token))).toBe(false);
  });

  test("short-lived CLI tokens expire; rotation replaces the operator token", async () => {
    const t0 = Date.now();
    await store.addToken(hashToken("cli-token"), "cli", t0, t0 + 60_000);
    expect(await store.activeTokenHashes(t0)).toContain(hashToken("cli-token"));
    expect(await store.activeTokenHashes(t0 + 60_000)).not.toContain(hashToken("cli-token"));
    await store.deleteToken(hashToken("cli-token"));
    expect(await store.activeTokenHashes(t0)).toEqual([hashToken(token)]);
  });

  test("refuses an existing hub or a non-empty directory with exit code 78, and leaves it alone", async () => {
    const before = readFileSync(home.paths.config, "utf8");
    const err = await initHub({ dir: home.paths.dir }).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(exitCodeOf(err)).toBe(ExitCode.CONFIG);
    expect(readFileSync(home.paths.config, "utf8")).toBe(before);
    const other = join(root, "busy");
    mkdirSync(other);
    writeFileSync(join(other, "notes.txt"), "mine");
    expect(await initHub({ dir: other }).catch((e) => e)).toBeInstanceOf(ConfigError);
  });

  test("an empty directory is fine; a failed init leaves nothing behind", async () => {
    const empty = join(root, "empty");
    mkdirSync(empty);
    await initHub({ dir: empty });
    expect(mode(empty)).toBe(0o700);
    const bad = join(root, "bad");
    const err = await initHub({ dir: bad, names: ["not a name!"] }).catch((e) => e);
    expect(exitCodeOf(err)).toBe(ExitCode.USAGE);
    expect(existsSync(bad)).toBe(false);
  });

  test("a refused value names the flag it came from, then the hub.yml setting", async () => {
    const refusal = async (options: Partial<Parameters<typeof initHub>[0]>) =>
      ((await initHub({ dir: join(root, "refused"), ...options }).catch((e) => e)) as Error).message;
    expect(await refusal({ apiUrl: "http://127.0.0.1:0" })).toStartWith("hub init: --api-url (api.port): ");
    expect(await refusal({ env: "a b" })).toStartWith("hub init: --env (env): ");
    // a path segment of every request and config.yml: 5,000 letters were taken (verify pass 26, F2)
    expect(await refusal({ env: "a".repeat(65) })).toBe(`--env: at most 64 characters, not "${"a".repeat(48)}…"`);
    // the broker host comes from --broker-host, else the first --name: the refusal says which
    expect(await refusal({ names: ["::1"] })).toStartWith("hub init: --name (its first, the broker host things are told) (broker.host): ");
    expect(await refusal({ brokerHost: "::1" })).toStartWith("hub init: --broker-host (broker.host): ");
    const long = `${"a".repeat(30)}.${"b".repeat(39)}`; // a valid DNS name, too long for a certificate's CN
    expect(await refusal({ names: [long] })).toBe(
      `--name (its first, the broker host things are told): "${long.slice(0, 48)}…" is longer than 64 characters, which a certificate's common name cannot hold; give a shorter name first, or --broker-host`,
    );
    expect(await refusal({ apiUrl: "ftp://hub.lan/" })).toBe('--api-url must be an http:// or https:// URL, not "ftp://hub.lan/"');
    // no port in the URL: the hub listens on the scheme's, which every thing is told (it listened
    // on 8080 while things went to 443: new-user pass 21, F1)
    for (const [apiUrl, port] of [
      ["https://hub.lan", 443],
      ["http://hub.lan:80", 80],
      ["https://hub.lan:8443", 8443],
    ] as const) {
      const made = await initHub({ dir: join(root, `port-${port}`), apiUrl, brokerHost: "127.0.0.1" });
      expect([made.home.settings.api.port, Number(new URL(made.home.settings.api.publicUrl).port || port)]).toStrictEqual([port, port]);
    }
    // an IDN host is kept as punycode (hub.yml refused it, saying it held spaces, quotes or '#')
    const idn = await initHub({ dir: join(root, "idn"), apiUrl: "http://Bücher.Example:8080/", brokerHost: "127.0.0.1" });
    expect(idn.home.settings.api.publicUrl).toBe("http://xn--bcher-kva.example:8080");
    // a path went in front of /<env>/v1, and enroll refused the --hub line enroll-token create printed
    for (const withPath of ["http://hub.lan:8080/dev/v1", "http://hub.lan:8080/prefix", "http://hub.lan:8080/?x=1"]) {
      expect(await refusal({ apiUrl: withPath })).toBe(
        `--api-url is where things reach the hub: scheme, host and port only (the API is served at /<env>/v1 under it), such as http://hub.lan:8080, not ${JSON.stringify(withPath)}`,
      );
    }
    // the URL parser drops them without a word: http://hub.lan:8080 would have gone into every config.yml
    expect(await refusal({ apiUrl: "http://hub\r.lan:8080" })).toBe('--api-url must be an http:// or https:// URL, not "http://hub\\r.lan:8080"');
    expect(await refusal({ apiUrl: "http://hub.lan:80\t80" })).toStartWith("--api-url must be an http:// or https:// URL, not ");
    // it would be written into every distribution
    expect(await refusal({ apiUrl: "http://user:secret@hub.lan:8080" })).toStartWith("--api-url must not hold a user name or password");
    expect(await refusal({ apiUrl: "http://hub.lan:8883" })).toStartWith(
      "the API's port (--api-url) and the broker's (--broker-port, 8883 unless given) are both 8883",
    );
    expect(existsSync(join(root, "refused"))).toBe(false);
  });

  test("an API on IPv6's loopback listens there, where its things will connect (it listened on 127.0.0.1)", async () => {
    const result = await initHub({ dir: join(root, "ipv6"), apiUrl: "http://[::1]:18798", brokerPort: 18799 });
    expect(result.home.settings.api).toMatchObject({ host: "::1", port: 18798, publicUrl: "http://[::1]:18798" });
  });

  test("openHubHome explains a missing home: where to name the hub, or a hub init line a shell reads back; a thing's folder or a file is not taken for a home to make", () => {
    expect(() => openHubHome(join(root, "nowhere"))).toThrow(/not a hub home/);
    const spaced = join(root, "my hub's home");
    expect(() => openHubHome(spaced)).toThrow(
      `${spaced}: not a hub home (no hub.yml); pass the hub's home with --dir (or set FLASHLEX_HUB_DIR), or make a new hub here with \`flashlex hub init --dir '${spaced.replace("'", "'\\''")}'\``,
    );
    // a thing's folder given as the hub's home: the hub is elsewhere, not to be made here
    const thingFolder = join(root, "a-thing");
    mkdirSync(thingFolder);
    writeFileSync(join(thingFolder, "config.yml"), "flashlex: {}\n");
    expect(() => openHubHome(thingFolder)).toThrow(
      `${thingFolder}: a thing's folder (it holds config.yml), not a hub home; pass the hub's home with --dir (or set FLASHLEX_HUB_DIR)`,
    );
    const file = join(root, "hub.yml");
    writeFileSync(file, "hub: {}\n");
    expect(() => openHubHome(file)).toThrow(`${file}: a file, not a hub home (the directory hub init made, holding hub.yml)`);
  });
});

describe("hub thing create", () => {
  test("prefixes the name with the owner id, issues a certificate and writes the distribution 0600", async () => {
    const { thing, distribution } = await createThing(home, store, "mything");
    expect(thing.name).toBe("ecd13b11-mything");
    expect(thing.shortName).toBe("mything");
    expect(thing.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(thingStatus(thing)).toBe("created");
    expect(distribution).toBe(distributionPath(home.paths, thing.id));
    expect(mode(distribution)).toBe(0o600);

    const files = unzipSync(readFileSync(distribution));
    const text = (name: string) => new TextDecoder().decode(files[`${thing.name}/${name}`]);
    const cert = text(`keys/${thing.name}-certificate.pem`);
    expect(describeCertificate(cert).subjectCN).toBe(thing.name);
    expect(describeCertificate(cert).serialNumber).toBe(thing.certSerial);
    expect(checkCertificate(cert, readFileSync(home.paths.caCert, "utf8"), new Date()).ok).toBe(true);
    const privateKeyPem = text(`keys/${thing.name}-keypair-private.pem`);
    expect(privateKeyPem).toContain("BEGIN RSA PRIVATE KEY"); // PKCS#1, as distributions shipped
    const key = loadPrivateKey(privateKeyPem);
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(keyMatchesCertificate(key, cert)).toBe(true);
    expect(text(`keys/${thing.name}-keypair-public.pem`)).toBe(thing.publicKeyPem);
    expect(text("keys/root-ca-cert.pem")).toBe(readFileSync(home.paths.caCert, "utf8"));
    // The hub database never holds the private key.
    expect(readFileSync(home.paths.database).includes(Buffer.from(privateKeyPem.split("\n")[1]!))).toBe(false);

    const config = ThingYamlSchema.parse(parse(text("config.yml"))).flashlex;
    expect(config.thing.keys).toEqual({
      rootCA: "root-ca-cert.pem",
      cert: "ecd13b11-mything-certificate.pem",
      privateKey: "ecd13b11-mything-keypair-private.pem",
      publicKey: "ecd13b11-mything-keypair-public.pem",
    });
  });

  test("key, certificate and zip are made on a worker thread: what it refuses there comes back with its kind (78) and message, and nothing is written", async () => {
    const broken: HubHome = { ...home, settings: { ...home.settings, broker: { ...home.settings.broker, host: "evil # comment" } } };
    const before = (await store.listThings()).length;
    const err = await createThing(broken, store, "refused-on-thread").catch((e) => e);
    expect(err).toMatchObject({ kind: "config" });
    expect(exitCodeOf(err)).toBe(ExitCode.CONFIG);
    expect(err.message).toContain("unquoted");
    expect((await store.listThings()).length).toBe(before);
    // the thread is still there for the next thing
    expect((await createThing(home, store, "after-refusal")).thing.shortName).toBe("after-refusal");
  });

  test("names: letters, digits, - and _, 1 to 40, not a flag, a UUID or the owner's prefix; duplicates refused", async () => {
    const prefix = ownerPrefix(home.settings);
    for (const ok of ["a", "Sensor_1", "x-y", "_x", "1", "a".repeat(40)]) expect(validateThingName(ok, prefix)).toBe(ok);
    const bad = ["", "a".repeat(41), "has space", "dot.ted", "slash/", "ünï", "semi;colon", 42, undefined, "-sh", "-1", "--x"];
    for (const name of [...bad, randomUUID(), `${prefix}-x`]) expect(() => validateThingName(name, prefix)).toThrow(InputError);
    await createThing(home, store, "twin");
    const err = await createThing(home, store, "twin").catch((e) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.kind).toBe("conflict"); // HTTP 409 (hub-api.test.ts), exit 65
    expect(exitCodeOf(err)).toBe(ExitCode.DATA);
  });

  test("findThing accepts the id (in either case), the full name and the typed name", async () => {
    const { thing } = await createThing(home, store, "findme");
    for (const ref of [thing.id, thing.id.toUpperCase(), thing.name, "findme"]) expect((await findThing(home, store, ref))?.id).toBe(thing.id);
    expect(await findThing(home, store, "nobody")).toBeUndefined();
  });

  test("a typed name that another thing's id or full name would shadow is refused (65): commands would find that thing instead", async () => {
    const { thing } = await createThing(home, store, "shadowed");
    for (const shadow of [thing.id, randomUUID().toUpperCase(), thing.name, thing.name.toUpperCase()]) {
      const err = await createThing(home, store, shadow).catch((e: unknown) => e);
      expect(exitCodeOf(err)).toBe(ExitCode.DATA);
      expect((err as Error).message).toMatch(/may not be a UUID|without the owner prefix/);
    }
    expect((await findThing(home, store, thing.id))?.id).toBe(thing.id);
  });

  test("revoke marks the thing, deletes its distribution and rewrites the CRLs with its serial", async () => {
    const { thing, distribution } = await createThing(home, store, "revokee");
    const extra = join(root, "mosquitto-crl.pem");
    addCrlFile(home.paths.config, extra);
    addCrlFile(home.paths.config, extra); // once only
    const reopened = openHubHome(home.paths.dir);
    expect(reopened.settings.broker.crlFiles).toEqual([extra]);
    expect(readFileSync(home.paths.config, "utf8")).toContain("# FlashLex hub settings"); // comments kept

    const disconnected: string[] = [];
    const things = new Things({ home: reopened, store, disconnect: (name) => disconnected.push(name) });
    const said = { brokerCrlFiles: [extra], reloadCommand: undefined, configuredBroker: "embedded" as const };
    expect(await things.revoke(thing)).toEqual({ changed: true, ...said });
    expect(await things.revoke(thing)).toEqual({ changed: false, ...said });
    expect(disconnected).toEqual([thing.name]);
    expect(existsSync(distribution)).toBe(false);
    const after = (await store.getThing(thing.id))!;
    expect(thingStatus(after)).toBe("revoked");
    expect(things.distribution(after)).toEqual({ missing: "it was revoked, and its distribution, whose key the hub now refuses, is not handed out" });
    // its name stays taken, and the refusal says what frees it
    await expect(createThing(home, store, "revokee")).rejects.toThrow(
      `a thing named ${thing.name} already exists (revoked; \`flashlex hub thing delete ${thing.name}\` removes it and frees the name)`,
    );

    // A thing that renewed its key on the device: the zip's key is no longer the thing's.
    const { thing: renewing } = await createThing(reopened, store, "renewing");
    expect("zip" in things.distribution(renewing)).toBe(true);
    const fresh = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }).toString();
    await store.replaceCertificate(renewing.id, {
      publicKeyPem: fresh,
      certPem: renewing.certPem,
      certSerial: "0DD5",
      certNotAfter: Date.now() + 86_400_000,
      previousPublicKeyPem: renewing.publicKeyPem,
      previousCertSerial: renewing.certSerial,
      previousCertNotAfter: renewing.certNotAfter ?? null,
      superseded: [],
      at: Date.now(),
      expected: { publicKeyPem: renewing.publicKeyPem, certSerial: renewing.certSerial },
      onConflict: "supersede",
    });
    expect(things.distribution((await store.getThing(renewing.id))!)).toEqual({
      missing: "it renewed its key on the device since: the zip's key is no longer accepted (create the thing again, or enrol it)",
    });
    // the renewal itself deletes the zip: its absence then says the likelier cause first
    rmSync(distributionPath(reopened.paths, renewing.id));
    expect(things.distribution((await store.getThing(renewing.id))!)).toEqual({
      missing:
        "its zip is not in the hub's dists/ folder: the thing renewed its key on the device since (the hub then deletes the zip, whose key is no longer accepted), or the file was removed; create the thing again, or enrol it",
    });
    expect(await store.revokedSince(after.revokedAt!)).toContain(thing.name);
    expect(existsSync(join(reopened.paths.dir, "crl.pem"))).toBe(true);
    const { X509Crl } = await import("@peculiar/x509");
    const crl = new X509Crl(readFileSync(extra, "utf8"));
    expect(crl.entries.map((e) => e.serialNumber.toUpperCase().replace(/^0+/, ""))).toContain(thing.certSerial.replace(/^0+/, ""));
  });

  test("a CRL file that cannot be written does not stop the others, nor the revocation: the error names it and hub.yml, the thing is revoked and shut out", async () => {
    const settingsBefore = readFileSync(home.paths.config, "utf8");
    try {
      const stale = join(root, "gone", "crl.pem"); // a --out directory removed since
      const after = join(root, "after-crl.pem");
      addCrlFile(home.paths.config, stale);
      addCrlFile(home.paths.config, after);
      const reopened = openHubHome(home.paths.dir);
      const disconnected: string[] = [];
      const things = new Things({ home: reopened, store, disconnect: (name) => disconnected.push(name) });
      const { thing } = await createThing(reopened, store, "stalecrl");
      const err = (await things.revoke(thing).catch((e: unknown) => e)) as Error;
      expect(exitCodeOf(err)).toBe(ExitCode.IO);
      expect(err.message).toBe(
        `${thing.name} is revoked (the hub refuses it from now on), but the CRL could not be written to ${stale} (no such file or directory (ENOENT)), ` +
          "listed in hub.yml broker.crlFiles: a broker reading it does not learn of new revocations, and refuses every client once the old CRL expires; fix the path or remove it from hub.yml",
      );
      expect(err.message).not.toContain(".tmp");
      expect(thingStatus((await store.getThing(thing.id))!)).toBe("revoked");
      expect(disconnected).toEqual([thing.name]);
      // every file after the one that failed was written, with the new serial
      const { X509Crl } = await import("@peculiar/x509");
      const serials = new X509Crl(readFileSync(after, "utf8")).entries.map((e) => e.serialNumber.toUpperCase().replace(/^0+/, ""));
      expect(serials).toContain(thing.certSerial.replace(/^0+/, ""));
      // a delete says the same, and shuts the thing out too
      const { thing: deleted } = await createThing(reopened, store, "stalecrl2");
      await expect(things.delete(deleted)).rejects.toThrow(
        `${deleted.name} is deleted (the hub refuses it from now on), but the CRL could not be written to ${stale}`,
      );
      expect(disconnected).toEqual([thing.name, deleted.name]);
    } finally {
      writeFileSync(home.paths.config, settingsBefore);
    }
  });
});

describe("a closed hub store", () => {
  test("is 'stopping' (unavailable, 503) to late work, not SQLite's 'Cannot use a closed database' (a bug, 500, in a hub stopped while creates were in flight); a second close does nothing", async () => {
    const late = await openHubStore(home.paths.database);
    await late.close();
    const err = await late.getThing(randomUUID()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect({ message: (err as Error).message, code: exitCodeOf(err) }).toEqual({
      message: "the hub database is closed: the hub is stopping",
      code: ExitCode.UNAVAILABLE,
    });
    await late.close();
  });
});

describe("distributions no thing has", () => {
  test("removed: the zip, or the temporary it was being written to, of a create of this home killed before its row (its mark older than 10 minutes), and a revoked thing's; kept: a zip with no row and no mark (another hub's, or a newer database's), a live thing's, a create in flight, other files; one entry that cannot be looked at stops nothing", async () => {
    const kept = (await createThing(home, store, "keeps-its-zip")).thing;
    expect(existsSync(home.paths.creating) ? readdirSync(home.paths.creating) : []).toEqual([]); // a create leaves no mark
    const revoked = (await createThing(home, store, "revoked-kept-zip")).thing;
    expect(await store.revokeThing(revoked.id, Date.now())).toBe(true);
    const markedLate = (await createThing(home, store, "killed-after-its-row")).thing;
    const { dists, creating } = home.paths;
    const [killed, othersHub, inFlight, unreadable, beforeZip] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const zip = readFileSync(distributionPath(home.paths, kept.id));
    for (const id of [killed, othersHub, inFlight]) writeFileSync(join(dists, `${id}.zip`), zip);
    // the temporaries zips are written through (files.ts): a killed create's goes with its mark, whoever's pid it names
    const temporaryOf = (id: string, pid: number) => join(dists, `.${id}.zip.${pid}-0a1b2c3d.tmp`);
    for (const id of [killed, beforeZip]) writeFileSync(temporaryOf(id, 4_000_000), zip);
    for (const id of [othersHub, inFlight]) writeFileSync(temporaryOf(id, process.pid), zip);
    for (const id of [killed, inFlight, markedLate.id, beforeZip]) writeFileSync(join(creating, id), "");
    symlinkSync(unreadable, join(creating, unreadable)); // a loop: stat fails with ELOOP
    writeFileSync(join(dists, "notes.txt"), "an operator's");
    const old = new Date(Date.now() - 11 * 60_000);
    for (const path of [...[killed, othersHub, kept.id, revoked.id].map((id) => join(dists, `${id}.zip`)), join(dists, "notes.txt")])
      utimesSync(path, old, old);
    for (const id of [killed, markedLate.id, beforeZip]) utimesSync(join(creating, id), old, old);

    const swept = await removeOrphanDistributions(home, store, Date.now());
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
    expect(swept.removed.sort(byId)).toEqual(
      [
        { id: killed, kind: "killed create" as const },
        { id: beforeZip, kind: "killed create" as const },
        { id: revoked.id, kind: "revoked" as const },
      ].sort(byId),
    );
    for (const id of [killed, beforeZip]) expect(existsSync(temporaryOf(id, 4_000_000))).toBe(false);
    for (const id of [othersHub, inFlight]) expect(existsSync(temporaryOf(id, process.pid))).toBe(true);
    expect(swept.left).toEqual([{ id: unreadable, kind: "killed create", reason: expect.stringContaining("ELOOP") }]);
    for (const id of [killed, revoked.id]) expect(existsSync(join(dists, `${id}.zip`))).toBe(false);
    for (const id of [othersHub, kept.id, inFlight, markedLate.id]) expect(existsSync(join(dists, `${id}.zip`))).toBe(true);
    expect(existsSync(join(dists, "notes.txt"))).toBe(true);
    expect(readdirSync(creating).sort()).toEqual([inFlight, unreadable].sort());
    for (const name of [`${othersHub}.zip`, `${inFlight}.zip`, "notes.txt", inFlight, unreadable]) rmSync(join(name.includes(".") ? dists : creating, name));
    for (const id of [othersHub, inFlight]) rmSync(temporaryOf(id, process.pid));
  });

  test("a creating/ that cannot be listed (a file in its place) is reported, and a revoked thing's zip still goes", async () => {
    const revoked = (await createThing(home, store, "revoked-beside-a-bad-mark-dir")).thing;
    expect(await store.revokeThing(revoked.id, Date.now())).toBe(true);
    rmSync(home.paths.creating, { recursive: true, force: true });
    writeFileSync(home.paths.creating, "not a directory");
    try {
      const swept = await removeOrphanDistributions(home, store, Date.now());
      expect(swept.unchecked).toEqual([{ dir: home.paths.creating, reason: expect.stringContaining("ENOTDIR") }]);
      expect(swept.removed).toEqual([{ id: revoked.id, kind: "revoked" }]);
    } finally {
      rmSync(home.paths.creating);
    }
  });
});

describe("distribution template", () => {
  const values = {
    thingId: randomUUID(),
    thingName: "ecd13b11-t",
    apiEndpoint: "https://hub.example:8443/",
    env: "prod",
    brokerHost: "hub.example",
    brokerPort: 18883,
    commitSha: "abc123",
  };

  test("config.yml has the guide's values and validates against the thing's schema", () => {
    const { parsed } = renderThingConfig(values);
    const f = parsed.flashlex;
    expect(f.app).toMatchObject({
      api: { endpoint: "https://hub.example:8443", env: "prod" },
      callback: "persistent",
      thread: "subscribe",
      db: { subscriptionData: "subscription.json", expireSeconds: 3600 },
    });
    expect(f.dist?.commitSha).toBe("abc123");
    expect(f.thing.mqtt).toMatchObject({
      pubsub: { topic: "pubsub/ecd13b11-t" },
      ingress: { topic: "ingress/ecd13b11-t" },
      egress: { topic: "flashlex/collect" },
      useWebsocket: false,
      port: 18883,
      autoReconnectBackoffTime: { baseReconnectQuietTimeSecond: 1, maxReconnectQuietTimeSecond: 30, stableConnectionTimeSecond: 10 },
      offlinePublishQueueing: -1,
      drainingFrequency: 2,
      connectDisconnectTimeout: 60,
      mqttOperationTimeout: 120,
    });
  });

  test("a commit id that YAML would read as a number stays the text it is (a hub built at commit 3814770 made no thing)", () => {
    for (const commitSha of ["3814770", "0123456", "1e10000", "0e12345", "abc123"]) {
      expect(renderThingConfig({ ...values, commitSha }).parsed.flashlex.dist?.commitSha).toBe(commitSha);
    }
  });

  test("values that YAML would misread are refused, not written", () => {
    expect(() => renderThingConfig({ ...values, brokerHost: "evil # comment" })).toThrow(/unquoted/);
    expect(() => renderThingConfig({ ...values, env: "x\n  injected: true" })).toThrow();
    expect(() => renderTemplate("{{missing}}", {}, true)).toThrow(/no value/);
  });

  test("the zip holds <name>/config.yml, README.md, flashlex.py and keys/, nothing else", () => {
    const zip = buildDistribution(values, { rootCaPem: "ca", certPem: "cert", privateKeyPem: "key", publicKeyPem: "pub" });
    expect(Object.keys(unzipSync(zip)).sort()).toEqual([
      "ecd13b11-t/README.md",
      "ecd13b11-t/config.yml",
      "ecd13b11-t/flashlex.py",
      "ecd13b11-t/keys/ecd13b11-t-certificate.pem",
      "ecd13b11-t/keys/ecd13b11-t-keypair-private.pem",
      "ecd13b11-t/keys/ecd13b11-t-keypair-public.pem",
      "ecd13b11-t/keys/root-ca-cert.pem",
    ]);
    const readme = new TextDecoder().decode(unzipSync(zip)["ecd13b11-t/README.md"]);
    expect(readme).not.toContain("{{");
    expect(readme).toContain("cd ecd13b11-t\n");
    expect(readme).toContain("    ./flashlex bootstrap\n");
    // the zip is already on the thing when its README is read: no download line, and no token
    expect(readme).not.toMatch(/curl|FLASHLEX_TOKEN|Bearer/);
  });

  test("every zip made in one process is whole: Info-ZIP's unzip tests it, modes and flashlex.py byte for byte (deflated once, reused)", () => {
    const dir = mkdtempSync(join(tmpdir(), "flashlex-zips-"));
    try {
      for (const n of [1, 2]) {
        const file = join(dir, `${n}.zip`);
        writeFileSync(file, buildDistribution(values, { rootCaPem: "ca", certPem: "cert", privateKeyPem: `key ${n}`, publicKeyPem: "pub" }));
        expect(Bun.spawnSync(["unzip", "-tq", file]).exitCode).toBe(0);
        expect(Bun.spawnSync(["unzip", "-p", file, "ecd13b11-t/flashlex.py"]).stdout.toString()).toBe(PYTHON_MODULE);
        expect(Bun.spawnSync(["unzip", "-p", file, "ecd13b11-t/keys/ecd13b11-t-keypair-private.pem"]).stdout.toString()).toBe(`key ${n}`);
        const modes = Bun.spawnSync(["unzip", "-Z", file]).stdout.toString();
        expect(modes).toMatch(/^-rw------- .* ecd13b11-t\/keys\/ecd13b11-t-keypair-private\.pem$/m);
        expect(modes).toMatch(/^-rw-r--r-- .* ecd13b11-t\/flashlex\.py$/m);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("hub export times", () => {
  test("Unix seconds, ISO date-times, and bare dates (end of day for --until)", () => {
    expect(parseTime(undefined, "--since", false)).toBeUndefined();
    expect(parseTime("1563587144", "--since", false)).toBe(1563587144);
    expect(parseTime("2019-07-20", "--since", false)).toBe(1563580800);
    expect(parseTime("2019-07-20", "--until", true)).toBe(1563580800 + 86399);
    expect(parseTime("2019-07-20T01:45:44Z", "--until", true)).toBe(1563587144);
    expect(() => parseTime("yesterday", "--since", false)).toThrow(/--since/);
  });

  test("ISO 8601 only, UTC unless a zone is given: what else Date.parse takes is refused", () => {
    // a date-time without a zone is UTC, as the flags say (Date.parse would read local time)
    expect(parseTime("2019-07-20T01:45:44", "--since", false)).toBe(1563587144);
    expect(parseTime("2019-07-20 01:45", "--since", false)).toBe(1563587100);
    expect(parseTime("2019-07-20T02:45:44+0100", "--since", false)).toBe(1563587144);
    expect(parseTime("2019-07-20T02:45:44.5+01:00", "--since", false)).toBe(1563587144);
    expect(parseTime("2024-02-29", "--since", false)).toBe(1709164800); // a leap day that is one
    // "-1" was 2001-01-01 to Bun's Date.parse, "-1.5" 2001-01-05, "Jul 20 2019" a date
    // a day the month does not have, or a clock past 23:59:59, is refused, not rolled over (2026-02-30 was March 2nd)
    for (const value of [
      "-1",
      "-12",
      "-1.5",
      "Jul 20 2019",
      "2019-13-45",
      "2019-07-20Z",
      "2019-07-20T25:00",
      "2026-02-30",
      "2026-04-31",
      "2025-02-29",
      "2026-01-01T23:60",
      "2026-01-01T24:00:00Z",
      "2026-01-01T12:00:60Z",
      "2026-00-10",
    ]) {
      expect(() => parseTime(value, "--since", false)).toThrow(
        `--since must be Unix seconds or an ISO date (2024-01-31 or 2024-01-31T12:00:00Z), not "${value}"`,
      );
    }
  });
});
