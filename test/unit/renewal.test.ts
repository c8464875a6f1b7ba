/**
 * The agent's renewal without processes: the file swap's recovery from a crash after every step
 * (thing/renewal/identity-files.ts), and the schedule's arithmetic (renewer.ts).
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { generateThingKeyPair } from "../../src/crypto/keys.ts";
import { type CertifiedKey, createCertificateAuthority, issueThingCertificate } from "../../src/crypto/x509.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { createLogger } from "../../src/shared/log.ts";
import { MAX_PEM_FILE_BYTES } from "../../src/shared/regular-file.ts";
import {
  DROPPED_STRAYS,
  type IdentityPaths,
  installStaged,
  previousKeyFile,
  recoverIdentityFiles,
  revertRenewal,
  stagedKey,
  stageKey,
} from "../../src/thing/renewal/identity-files.ts";
import { isNetworkFailure, renewalDueAt, retryDelay } from "../../src/thing/renewal/renewer.ts";
import { scratchDir } from "../support/scratch.ts";

const log = createLogger({ level: "error" });
let ca: CertifiedKey;
const pair = async () => {
  const keys = await generateThingKeyPair("rsa");
  return { key: keys.privateKeyPem, cert: await issueThingCertificate(ca, { thingName: "abcd1234-t", publicKeyPem: keys.publicKeyPem }) };
};

/** The old and the new pair every folder starts from: made once (RSA keys take a while on a busy machine). */
let pairs: { old: Awaited<ReturnType<typeof pair>>; fresh: Awaited<ReturnType<typeof pair>> };

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: "test" });
  pairs = { old: await pair(), fresh: await pair() };
});

/** A keys folder with the old pair in place, and the new pair to install. */
async function folder() {
  const dir = scratchDir("flashlex-renew-");
  const paths: IdentityPaths = { privateKey: join(dir, "k.pem"), cert: join(dir, "c.pem") };
  const { old, fresh } = pairs;
  writeFileSync(paths.privateKey, old.key, { mode: 0o600 });
  writeFileSync(paths.cert, old.cert);
  return { dir, paths, old, fresh };
}

describe("crash recovery of the file swap", () => {
  test("after every step, recovery leaves a matching pair: the old one before the certificate is staged, the new one after", async () => {
    const steps = ["key-staged", "cert-staged", "previous-saved", "cert-swapped", "key-swapped"] as const;
    for (const step of steps) {
      const { dir, paths, old, fresh } = await folder();
      // run the swap in this process up to `step`, by replaying its writes (the fault hook would kill the test runner)
      stageKey(paths, fresh.key);
      if (step !== "key-staged") writeFileSync(`${paths.cert}.next`, fresh.cert);
      if (["previous-saved", "cert-swapped", "key-swapped"].includes(step)) {
        copyFileSync(paths.privateKey, `${paths.privateKey}.previous`);
        copyFileSync(paths.cert, `${paths.cert}.previous`);
      }
      if (["cert-swapped", "key-swapped"].includes(step)) renameSync(`${paths.cert}.next`, paths.cert);
      if (step === "key-swapped") renameSync(`${paths.privateKey}.next`, paths.privateKey);
      const result = recoverIdentityFiles(paths, log);
      const expected = step === "key-staged" ? old : fresh;
      expect(readFileSync(paths.privateKey, "utf8"), step).toBe(expected.key);
      expect(readFileSync(paths.cert, "utf8"), step).toBe(expected.cert);
      expect(
        readdirSync(dir).filter((f) => f.endsWith(".next")),
        step,
      ).toEqual([]);
      // after the roll forward the renewal waits for its first connection, the old pair kept
      expect(result.pending, step).toBe(step !== "key-staged");
      if (result.pending) expect(readFileSync(`${paths.privateKey}.previous`, "utf8")).toBe(old.key);
    }
  });

  test("installStaged swaps durably and keeps the previous pair; a mismatch with a whole previous pair restores it", async () => {
    const { paths, old, fresh } = await folder();
    stageKey(paths, fresh.key);
    installStaged(paths, fresh.cert);
    expect(readFileSync(paths.cert, "utf8")).toBe(fresh.cert);
    expect(readFileSync(`${paths.cert}.previous`, "utf8")).toBe(old.cert);
    // a key that is neither: the last whole pair comes back
    const stranger = await pair();
    writeFileSync(paths.privateKey, stranger.key);
    expect(recoverIdentityFiles(paths, log)).toMatchObject({ pending: false, recovered: "restored the previous identity" });
    expect(readFileSync(paths.privateKey, "utf8")).toBe(old.key);
    expect(existsSync(`${paths.privateKey}.previous`)).toBe(false);
  });

  test("nothing to do: nothing done", async () => {
    const { paths } = await folder();
    expect(recoverIdentityFiles(paths, log)).toEqual({ pending: false, recovered: undefined });
  });

  /**
   * Things no renewal writes, in the place of a renewal file (`file`, beside the thing's own
   * `own`): each is torn, never read to its end, never renamed over the thing's own file.
   */
  const strays = [
    ["a FIFO", (file: string) => expect(Bun.spawnSync(["mkfifo", file]).exitCode).toBe(0)],
    ["/dev/zero", (file: string) => symlinkSync("/dev/zero", file)],
    ["a file over 1 MiB", (file: string) => writeFileSync(file, Buffer.alloc(MAX_PEM_FILE_BYTES + 1, 0x41))],
    // renamed over K, it made K a link to itself: the identity was gone (ELOOP, 74 at every start)
    ["a link to the thing's own file", (file: string, own: string) => symlinkSync(own, file)],
    // rename(2) between two names of one file does nothing: it stayed, and each renewal took it for a staged key
    ["a hard link to the thing's own file", (file: string, own: string) => linkSync(own, file)],
  ] as const;

  test("a FIFO, a device, an oversized file or a link as a staged key or certificate is dropped as torn, the current pair kept (serve exited 78, hung on the FIFO, or renamed the link over its key)", async () => {
    for (const [kind, make] of strays) {
      for (const staged of [["privateKey"], ["cert"], ["privateKey", "cert"]] as const) {
        const { dir, paths, old } = await folder();
        for (const own of staged) make(`${paths[own]}.next`, paths[own]);
        expect(recoverIdentityFiles(paths, log), `${kind} ${staged}`).toEqual({ pending: false, recovered: DROPPED_STRAYS });
        expect(readFileSync(paths.privateKey, "utf8")).toBe(old.key);
        expect(readFileSync(paths.cert, "utf8")).toBe(old.cert);
        expect(lstatSync(paths.privateKey).isFile() && lstatSync(paths.cert).isFile()).toBe(true);
        expect(readdirSync(dir).filter((f) => f.endsWith(".next"))).toEqual([]);
        expect(stagedKey(paths)).toBeUndefined();
      }
    }
  });

  test("a staged key with another name elsewhere (a hard-link backup) is no stray: it is handled as a staged key, not dropped as one", async () => {
    const { dir, paths, fresh } = await folder();
    stageKey(paths, fresh.key);
    linkSync(`${paths.privateKey}.next`, join(dir, "backup-of-next.pem"));
    expect(stagedKey(paths)).toBe(fresh.key);
    expect(recoverIdentityFiles(paths, log)).toEqual({ pending: false, recovered: "dropped a key staged before its certificate" });
  });

  test("with the certificate swapped in, a stray staged key is no half-swap to finish, and the whole previous pair comes back", async () => {
    for (const [kind, make] of strays) {
      const { paths, old, fresh } = await folder();
      copyFileSync(paths.privateKey, `${paths.privateKey}.previous`);
      copyFileSync(paths.cert, `${paths.cert}.previous`);
      writeFileSync(paths.cert, fresh.cert);
      make(`${paths.privateKey}.next`, paths.privateKey);
      expect(recoverIdentityFiles(paths, log), kind).toEqual({ pending: false, recovered: "restored the previous identity" });
      expect(readFileSync(paths.privateKey, "utf8")).toBe(old.key);
      expect(readFileSync(paths.cert, "utf8")).toBe(old.cert);
    }
  });

  test("a stray previous pair is dropped, no renewal left pending; the fall-back's and the revert's reads of one are a ConfigError, never a hang", async () => {
    for (const [kind, make] of strays) {
      const { dir, paths } = await folder();
      make(`${paths.privateKey}.previous`, paths.privateKey);
      make(`${paths.cert}.previous`, paths.cert);
      if (!kind.includes("link to the thing's own file")) {
        expect(() => previousKeyFile(paths), kind).toThrow(ConfigError);
        expect(() => revertRenewal(paths), kind).toThrow(ConfigError);
      }
      expect(recoverIdentityFiles(paths, log), kind).toEqual({ pending: false, recovered: DROPPED_STRAYS });
      expect(readdirSync(dir).filter((f) => f.endsWith(".previous"))).toEqual([]);
    }
  });

  test("a directory where a renewal file goes is a ConfigError (78) naming it, not removed", async () => {
    for (const name of ["privateKey", "cert"] as const) {
      for (const suffix of [".next", ".previous"]) {
        const { paths } = await folder();
        mkdirSync(`${paths[name]}${suffix}`);
        expect(() => recoverIdentityFiles(paths, log)).toThrow(
          `${paths[name]}${suffix}: a directory where a renewal puts a key or certificate file; remove it`,
        );
        expect(lstatSync(`${paths[name]}${suffix}`).isDirectory()).toBe(true);
      }
    }
  });

  test("the thing's own key or certificate as a FIFO, a device, an oversized file or a socket stays a ConfigError (78) naming it, nothing changed", async () => {
    const own = [
      ...strays.filter(([kind]) => !kind.includes("link")),
      [
        "a socket",
        async (file: string) => {
          const server = createServer();
          await new Promise<void>((resolve) => server.listen(file, resolve));
          return () => server.close();
        },
      ],
    ] as const;
    for (const [kind, make] of own) {
      for (const name of ["privateKey", "cert"] as const) {
        const { dir, paths, fresh } = await folder();
        stageKey(paths, fresh.key);
        writeFileSync(`${paths.cert}.next`, fresh.cert);
        rmSync(paths[name]);
        const close = await make(paths[name], paths[name]);
        try {
          expect(() => recoverIdentityFiles(paths, log), `${kind} ${name}`).toThrow(`${paths[name]}: `);
          expect(() => recoverIdentityFiles(paths, log), `${kind} ${name}`).toThrow(ConfigError);
        } finally {
          if (typeof close === "function") close();
        }
        expect(readdirSync(dir).filter((f) => f.endsWith(".next")).length).toBe(2);
      }
    }
  });
});

describe("the schedule", () => {
  test("due at two thirds of the lifetime", () => {
    expect(renewalDueAt(0, 90)).toBe(60);
  });

  test("retries back off from 30 s to an hour, never beyond a tenth of what is left (at least a second) while valid; after expiry from 30 s to five minutes", () => {
    for (let i = 0; i < 50; i++) {
      const first = retryDelay(1, 365 * 86_400_000);
      expect(first).toBeGreaterThanOrEqual(24_000);
      expect(first).toBeLessThanOrEqual(36_000);
      expect(retryDelay(20, 365 * 86_400_000)).toBeLessThanOrEqual(3_600_000 * 1.2);
      expect(retryDelay(5, 20_000)).toBeLessThanOrEqual(2_400);
      expect(retryDelay(5, 500)).toBeGreaterThanOrEqual(800);
      // expired: from 30 s again (attempts counted since the expiry), doubling to five minutes,
      // never a retry every second, nor an hour away once the hub is back
      expect(retryDelay(1, -1)).toBeGreaterThanOrEqual(24_000);
      expect(retryDelay(1, -1)).toBeLessThanOrEqual(36_000);
      expect(retryDelay(5, -1)).toBeGreaterThanOrEqual(240_000);
      expect(retryDelay(50, -1)).toBeLessThanOrEqual(360_000);
    }
  });

  test("a network failure is not a refusal of the identity", () => {
    expect(isNetworkFailure(Object.assign(new Error("x"), { code: "ECONNREFUSED" }))).toBe(true);
    expect(isNetworkFailure(Object.assign(new Error("x"), { code: 3 }))).toBe(true);
    expect(isNetworkFailure(Object.assign(new Error("certificate unknown"), { code: "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA" }))).toBe(false);
    expect(isNetworkFailure(Object.assign(new Error("not authorized"), { code: 5 }))).toBe(false);
  });
});
