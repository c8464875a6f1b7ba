/** The release signature (RFC 8032 Ed25519 via node:crypto) and the manifest's canonical form. */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeSignedManifest } from "../../scripts/sign-release.ts";
import { decodeUpdatePublicKey, generateUpdateKeyPair, loadUpdatePrivateKey, signRelease, verifyRelease } from "../../src/crypto/update-signing.ts";
import { canonicalJson, MANIFEST_FILE, parseManifest, SIGNATURE_FILE } from "../../src/protocol/release-manifest.ts";
import { scratchDir } from "../support/scratch.ts";
import { tally } from "../support/tally.ts";

describe("Ed25519 release signatures", () => {
  const pair = generateUpdateKeyPair();
  const pub = decodeUpdatePublicKey(pair.publicKey);
  const key = loadUpdatePrivateKey(pair.privateKeyPem);
  const bytes = new TextEncoder().encode("manifest bytes");

  test("the public key is ed25519:<32 bytes in base64>", () => {
    expect(pair.publicKey).toMatch(/^ed25519:[A-Za-z0-9+/]{43}=$/);
  });

  test("a signature verifies over the same bytes and the same key only", () => {
    const signature = signRelease(bytes, key);
    expect(verifyRelease(bytes, signature, pub)).toBe(true);
    const flipped = Uint8Array.from(bytes);
    flipped[0]! ^= 1;
    expect(verifyRelease(flipped, signature, pub)).toBe(false);
    expect(verifyRelease(bytes, signature, decodeUpdatePublicKey(generateUpdateKeyPair().publicKey))).toBe(false);
    expect(verifyRelease(bytes, "not a signature", pub)).toBe(false);
    const badSignature = Buffer.from(signature, "base64");
    badSignature[10]! ^= 1;
    expect(verifyRelease(bytes, badSignature.toString("base64"), pub)).toBe(false);
  });

  test("RFC 8032 §7.1 test 1: the empty message", () => {
    // secret d75a98..., public d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
    const publicKey = decodeUpdatePublicKey(
      `ed25519:${Buffer.from("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "hex").toString("base64")}`,
    );
    const signature = Buffer.from(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
      "hex",
    ).toString("base64");
    expect(verifyRelease(new Uint8Array(), signature, publicKey)).toBe(true);
  });

  test("keys that are not Ed25519, or malformed, are refused", () => {
    expect(() => decodeUpdatePublicKey("rsa:abc")).toThrow(/ed25519:/);
    expect(() => decodeUpdatePublicKey("ed25519:AAAA")).toThrow(/32 bytes/);
    expect(() => loadUpdatePrivateKey("nope")).toThrow(/not a PEM/);
  });
});

describe("the release manifest", () => {
  test("canonical JSON sorts keys and has no whitespace", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, "x"], c: null } })).toBe('{"a":{"c":null,"d":[1,"x"]},"b":1}');
  });

  test("sign-release writes a canonical, verifiable manifest of the binaries in a directory", async () => {
    const dir = scratchDir("flashlex-sign-");
    writeFileSync(join(dir, "flashlex-linux-x64"), "x64 binary");
    writeFileSync(join(dir, "flashlex-linux-arm64"), "arm64 binary");
    const pair = generateUpdateKeyPair();
    await writeSignedManifest({ dir, version: "2.0.0", commit: "abc1234", signingKeyPem: pair.privateKeyPem });
    const bytes = readFileSync(join(dir, MANIFEST_FILE));
    expect(verifyRelease(bytes, readFileSync(join(dir, SIGNATURE_FILE), "utf8").trim(), decodeUpdatePublicKey(pair.publicKey))).toBe(true);
    const manifest = parseManifest(bytes);
    expect(manifest.version).toBe("2.0.0");
    expect(Object.keys(manifest.targets).sort()).toEqual(["linux-arm64", "linux-x64"]);
    expect(manifest.targets["linux-x64"]).toEqual({
      file: "flashlex-linux-x64",
      size: 10,
      sha256: new Bun.CryptoHasher("sha256").update("x64 binary").digest("hex"),
    });
    // re-indented is not what was signed
    expect(() => parseManifest(new TextEncoder().encode(JSON.stringify(manifest, null, 2)))).toThrow(/canonical/);
    expect(() => parseManifest(new TextEncoder().encode(canonicalJson({ ...manifest, targets: {} })))).toThrow(/targets/);
  });

  test("the build scripts answer --help with their usage (0) and a bad flag or a missing value with one line and the usage (64), never a stack (new-user pass 23, F8)", () => {
    const script = (name: string, ...args: string[]) => {
      const r = Bun.spawnSync([process.execPath, join(import.meta.dir, `../../scripts/${name}.ts`), ...args], { stdout: "pipe", stderr: "pipe" });
      return { code: r.exitCode, out: `${r.stdout}${r.stderr}`.trim() };
    };
    for (const name of ["build", "release", "sign-release", "build-sdk"]) {
      const help = script(name, "--help");
      expect({ name, code: help.code, usage: help.out.startsWith("usage: ") }).toEqual({ name, code: 0, usage: true });
      for (const args of [["--bogus"], ["--outdir"]]) {
        const refused = script(name, ...args);
        expect({ name, args, code: refused.code, lines: refused.out.split("\n").length, named: refused.out.startsWith(`${name}: `) }).toEqual({
          name,
          args,
          code: 64,
          lines: 2,
          named: true,
        });
      }
    }
  });

  test("release reads its --signing-key before it builds: one line, at once (verify pass 28, F6: a minute of building, then a stack trace)", () => {
    const r = Bun.spawnSync([process.execPath, join(import.meta.dir, "../../scripts/release.ts"), "--signing-key", "/nonexistent/key.pem"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect({ code: r.exitCode, said: r.stderr.toString().trim(), out: r.stdout.toString() }).toEqual({
      code: 1,
      said: "release: --signing-key /nonexistent/key.pem: cannot read it (ENOENT)",
      out: "",
    });
  });

  test("sign-release refuses what it cannot sign on one line with exit 65 (a bad version, a missing key), and a wrong flag with 64: no stack, nothing written", () => {
    const dir = scratchDir("flashlex-sign-");
    writeFileSync(join(dir, "flashlex-linux-x64"), "x64 binary");
    const keyFile = join(dir, "update-key.pem");
    writeFileSync(keyFile, generateUpdateKeyPair().privateKeyPem);
    const sign = (...args: string[]) => {
      const r = Bun.spawnSync([process.execPath, join(import.meta.dir, "../../scripts/sign-release.ts"), "--dir", dir, ...args], {
        stdout: "pipe",
        stderr: "pipe",
      });
      return { code: r.exitCode, stderr: r.stderr.toString() };
    };
    const cases = [
      { run: sign("--signing-key", keyFile, "--version", "1.0/evil"), code: 65, says: "sign-release: the release manifest is not valid: version: a version" },
      {
        run: sign("--signing-key", join(dir, "missing.pem")),
        code: 65,
        says: `sign-release: --signing-key ${join(dir, "missing.pem")}: no such file or directory (ENOENT)`,
      },
      { run: sign("--signing-key", keyFile, "--bogus"), code: 64, says: "sign-release: Unknown option '--bogus'" },
    ];
    for (const c of cases) {
      expect({ code: c.run.code, says: c.run.stderr.startsWith(c.says), lines: c.run.stderr.trim().split("\n").length }).toEqual({
        code: c.code,
        says: true,
        lines: c.code === 64 ? 2 : 1,
      });
    }
    tally("badInputs", cases.length);
    expect(existsSync(join(dir, MANIFEST_FILE))).toBe(false);
  });
});
