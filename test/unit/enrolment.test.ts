/**
 * The rules of enrolment, without a hub process: CSR checks (crypto/csr.ts, RFC 2986), the
 * enrolment token rules (hub/enrolment/tokens.ts), the enrolment use case's all-or-nothing
 * transaction over a real hub database, and the device's flag parsing (thing/enrol).
 */
import { describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { createCsr, readCsr } from "../../src/crypto/csr.ts";
import { generateThingKeyPair } from "../../src/crypto/keys.ts";
import { EnrolmentTokens, tokenState, whyRefused } from "../../src/hub/enrolment/tokens.ts";
import type { EnrolmentTokenRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { formatDuration, parseDuration } from "../../src/shared/duration.ts";
import { normaliseFingerprint, normaliseHubUrl } from "../../src/thing/enrol/enrol.ts";
import { scratchDir } from "../support/scratch.ts";

const openssl = (args: string[]) => execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });

describe("CSR checks", () => {
  test("RSA-2048, EC P-256 and P-384 requests pass, with their CN and public key", async () => {
    for (const type of ["rsa", "ec"] as const) {
      const keys = await generateThingKeyPair(type);
      const csr = await readCsr(await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: "abcd1234-x" }));
      expect(csr.commonName).toBe("abcd1234-x");
      expect(csr.publicKeyPem).toBe(keys.publicKeyPem);
    }
    const p384 = generateKeyPairSync("ec", {
      namedCurve: "secp384r1",
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    expect((await readCsr(await createCsr({ privateKeyPem: p384.privateKey, commonName: "p" }))).keyKind).toContain("secp384r1");
  });

  test("weak or foreign kinds of key are refused for what they are: RSA 1024, Ed25519, P-521", async () => {
    const dir = scratchDir("flashlex-csr-");
    const csrFor = (newkey: string[]) => openssl(["req", "-new", ...newkey, "-nodes", "-keyout", join(dir, "k"), "-subj", "/CN=x"]);
    await expect(readCsr(csrFor(["-newkey", "rsa:1024"]))).rejects.toThrow(/RSA key of 1024 bits is too weak/);
    await expect(readCsr(csrFor(["-newkey", "ed25519"]))).rejects.toThrow(/Ed25519 key is too weak or not supported/);
    await expect(readCsr(csrFor(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"]))).rejects.toThrow(/not supported/);
  });

  test("a request whose signature does not verify, with two CNs or none, or that is not one, is refused", async () => {
    const keys = await generateThingKeyPair("rsa");
    const good = await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: "abcd1234-x" });
    const der = Buffer.from(good.split("\n").slice(1, -2).join(""), "base64");
    der[der.length - 5]! ^= 0x01;
    await expect(readCsr(`-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`)).rejects.toThrow(
      /signature does not verify/,
    );
    const dir = scratchDir("flashlex-csr-");
    const twoCns = openssl(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "k"), "-subj", "/CN=a/CN=b"]);
    await expect(readCsr(twoCns)).rejects.toThrow(/exactly one CN \(it has 2\)/);
    const noCn = openssl(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "k"), "-subj", "/O=nobody"]);
    await expect(readCsr(noCn)).rejects.toThrow(/exactly one CN \(it has 0\)/);
    await expect(readCsr("hello")).rejects.toThrow(/no CERTIFICATE REQUEST block/);
    await expect(readCsr(undefined)).rejects.toThrow(/missing/);
    await expect(readCsr(`${good}${good}`)).rejects.toThrow(/more than one/);
    await expect(readCsr("x".repeat(20_000))).rejects.toThrow(/longer than/);
    // the refusal is of the request (65 / 400), and never quotes it
    const err = await readCsr(twoCns).catch((e) => e);
    expect(err.kind).toBe("data");
    expect(err.message).not.toContain("BEGIN");
  });
});

describe("enrolment tokens", () => {
  const record = (over: Partial<EnrolmentTokenRecord> = {}): EnrolmentTokenRecord => ({
    id: "abc",
    hash: "h",
    namePrefix: null,
    maxUses: 1,
    uses: 0,
    createdAt: 0,
    expiresAt: 1000,
    revokedAt: null,
    ...over,
  });

  test("state: revoked before used up before expired", () => {
    expect(tokenState(record(), 10)).toBe("active");
    expect(tokenState(record(), 1000)).toBe("expired");
    expect(tokenState(record({ uses: 1 }), 2000)).toBe("used up");
    expect(tokenState(record({ uses: 1, revokedAt: 5 }), 2000)).toBe("revoked");
  });

  test("why a token may not enrol a name", () => {
    expect(whyRefused(undefined, "x", 0)).toContain("not known");
    expect(whyRefused(record({ uses: 1 }), "x", 0)).toContain("already used");
    expect(whyRefused(record(), "x", 5000)).toContain("expired");
    expect(whyRefused(record({ revokedAt: 1 }), "x", 0)).toContain("revoked");
    expect(whyRefused(record({ namePrefix: "sensor-" }), "pump", 0)).toContain("start with sensor-");
    expect(whyRefused(record({ namePrefix: "sensor-" }), "sensor-1", 0)).toBeUndefined();
  });

  test("create: defaults, ranges, only the hash stored; the last use is taken once", async () => {
    const store = await openHubStore(join(scratchDir("flashlex-tokens-"), "hub.db"), { create: true });
    const tokens = new EnrolmentTokens(store, () => 1_000_000, "abcd1234");
    const { token, record: made } = await tokens.create();
    expect(token).toMatch(/^flxe_[A-Za-z0-9_-]{43}$/);
    expect(made).toMatchObject({ maxUses: 1, uses: 0, expiresAt: 1_000_000 + 86_400_000, namePrefix: null });
    expect(JSON.stringify(await store.listEnrolmentTokens())).not.toContain(token);
    await expect(tokens.create({ maxUses: 0 })).rejects.toThrow(/max uses/);
    await expect(tokens.create({ lifetimeMs: 31 * 86_400_000 })).rejects.toThrow(/30d/);
    await expect(tokens.create({ namePrefix: "no spaces" })).rejects.toThrow(/prefix/);
    // cut, as every refusal quotes a value: the API answered a 50,000-character prefix whole (attack round 26, F3)
    await expect(tokens.create({ namePrefix: "x".repeat(50_000) })).rejects.toThrow(`the name prefix "${"x".repeat(48)}…" must be`);
    // quoted with its bidirectional and C1 characters escaped: the message reaches the operator's terminal
    await expect(tokens.create({ namePrefix: "a\u202eb\u009bc" })).rejects.toThrow('the name prefix "a\\u202eb\\u009bc" must be');
    // names are given without the owner prefix: a token for names that start with it could enrol nothing
    await expect(tokens.create({ namePrefix: "abcd1234-sensor" })).rejects.toThrow("starts with the owner prefix abcd1234-");
    await expect(tokens.create({ namePrefix: "ABCD1234-sensor" })).rejects.toThrow("starts with the owner prefix abcd1234-");
    expect((await tokens.create({ namePrefix: "abcd1234x" })).record.namePrefix).toBe("abcd1234x");
    await expect(tokens.revoke("nope")).rejects.toThrow(/no enrolment token/);
    // an id typed in upper case is the same id, as the API takes it (the command refused it, 65)
    const upper = (await tokens.create()).record.id;
    expect(await tokens.revoke(upper.toUpperCase())).toEqual({ id: upper, changed: true });
    // the use and the thing are one transaction: the last use goes to one thing only
    const thing = (id: string) => ({
      id,
      name: `abcd1234-${id}`,
      shortName: id,
      publicKeyPem: "k",
      certPem: "c",
      certSerial: id,
      createdAt: 1,
      verifiedAt: null,
      lastSeenAt: null,
      revokedAt: null,
    });
    const outcomes = await Promise.all([store.enrolThing(thing("one"), made.hash, 1_000_001), store.enrolThing(thing("two"), made.hash, 1_000_001)]);
    expect(outcomes.sort()).toEqual([false, true]);
    expect((await store.listThings()).length).toBe(1);
    // a failed insert (a name taken) leaves the token unused
    const second = await tokens.create({ maxUses: 5 });
    await expect(store.enrolThing({ ...thing("three"), name: "abcd1234-one" }, second.record.hash, 1_000_001)).rejects.toThrow(/UNIQUE/);
    expect((await store.enrolmentTokenByHash(second.record.hash))!.uses).toBe(0);
    expect(await tokens.revoke(made.id)).toEqual({ id: made.id, changed: true });
    expect(await tokens.revoke(made.id)).toEqual({ id: made.id, changed: false });
    // by the token itself (a leaked one), never repeated in a refusal
    expect(await tokens.revoke(second.token)).toEqual({ id: second.record.id, changed: true });
    const unknown = `${second.token.slice(0, -4)}AAAA`;
    const refusal = await tokens.revoke(unknown).catch((err) => err);
    expect(refusal.message).toContain("no enrolment token is the one given");
    expect(refusal.message).not.toContain(unknown);
    await store.close();
  });
});

describe("device flags", () => {
  test("fingerprints with or without colons, any case, sha256: prefix; anything else is usage", () => {
    const hex = "AB".repeat(32);
    expect(normaliseFingerprint(`${"ab:".repeat(31)}ab`)).toBe(hex);
    expect(normaliseFingerprint(`sha256:${hex.toLowerCase()}`)).toBe(hex);
    expect(() => normaliseFingerprint("AB:CD")).toThrow(/64 hex/);
  });

  test("the hub URL ends in /<env>/v1", () => {
    expect(normaliseHubUrl("https://hub.example:8080/dev/v1/")).toBe("https://hub.example:8080/dev/v1");
    expect(() => normaliseHubUrl("https://hub.example:8080")).toThrow(/ending in \/<env>\/v1/);
    // the address given to `hub init --api-url`: the URL it likely means is named
    expect(() => normaliseHubUrl("http://127.0.0.1:19080/")).toThrow(
      `--hub must be the hub's API URL as \`hub enroll-token create\` printed it, ending in /<env>/v1 (such as https://hub.example:8080/dev/v1), not "http://127.0.0.1:19080/" (the hub's address alone: its API is likely http://127.0.0.1:19080/dev/v1)`,
    );
    expect(() => normaliseHubUrl("https://hub.example:8080/api")).not.toThrow(/likely/);
    expect(() => normaliseHubUrl("https://hub.example:8080/api")).toThrow(/ending in/);
    expect(() => normaliseHubUrl("ftp://hub/dev/v1")).toThrow();
    expect(() => normaliseHubUrl("not a url")).toThrow();
  });

  test("durations", () => {
    expect(parseDuration("90d")).toBe(90 * 86_400_000);
    expect(parseDuration("15m")).toBe(900_000);
    expect(parseDuration("1.5h")).toBeUndefined();
    expect(parseDuration("-1s")).toBeUndefined();
    expect(formatDuration(86_400_000)).toBe("1d");
    expect(formatDuration(90_000)).toBe("90s");
  });
});
