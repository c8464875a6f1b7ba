/**
 * Files that must be regular files (keys, certificates, the hub CA): a FIFO or a device in their
 * place is refused at once (78, naming the file) instead of blocking the open or filling memory,
 * and the hub CA's key must be its certificate's own before anything is signed with it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode, exitCodeOf } from "../../src/cli/exit-codes.ts";
import { type HubHome, readCa } from "../../src/hub/home/home.ts";
import { homeIdentity } from "../../src/hub/home/identity.ts";
import { initHub } from "../../src/hub/home/init.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { readRegularFile } from "../../src/shared/regular-file.ts";
import { readIdentity } from "../../src/thing/identity.ts";
import type { ThingConfig } from "../../src/thing/settings.ts";

let root: string;
let home: HubHome;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "flashlex-regular-file-"));
  home = (await initHub({ dir: join(root, "hub"), ownerId: "ecd13b11-6d91-4e8e-9156-60e451a3c975", names: ["127.0.0.1"] })).home;
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A FIFO at a new path under root (no writer ever opens it). */
function fifo(name: string): string {
  const path = join(root, name);
  expect(Bun.spawnSync(["mkfifo", path]).exitCode).toBe(0);
  return path;
}

/** What `fn` throws, as a ConfigError's message and its exit code. */
function refusal(fn: () => unknown): { message: string; code: number } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return { message: (err as Error).message, code: exitCodeOf(err) };
  }
  throw new Error("nothing was thrown");
}

describe("readRegularFile", () => {
  test("a FIFO, a device, a directory: refused at once, 78 naming the file and what it is (a FIFO blocked the open until a writer came, SIGTERM unheard)", () => {
    const pipe = fifo("key.fifo");
    expect(refusal(() => readRegularFile(pipe, "private key"))).toEqual({
      message: `${pipe}: the private key is not a regular file (a FIFO); it must be the file itself`,
      code: ExitCode.CONFIG,
    });
    const zero = join(root, "zero-link.pem");
    symlinkSync("/dev/zero", zero);
    expect(refusal(() => readRegularFile(zero, "thing certificate")).message).toBe(
      `${zero}: the thing certificate is not a regular file (a device); it must be the file itself`,
    );
    const dir = join(root, "a-dir");
    mkdirSync(dir);
    expect(refusal(() => readRegularFile(dir, "root CA certificate")).message).toBe(
      `${dir}: the root CA certificate is not a regular file (a directory); it must be the file itself`,
    );
  });

  test("over the size: refused before it is read; a regular file within it is read whole", () => {
    const big = join(root, "big.pem");
    writeFileSync(big, Buffer.alloc(2048, 0x41));
    expect(refusal(() => readRegularFile(big, "private key", 1024)).message).toBe(`${big}: 2048 bytes is too large for the private key (at most 1024)`);
    expect(readRegularFile(big, "private key", 2048).length).toBe(2048);
  });

  test("a file that is not there is the file system's error (ENOENT), for the caller to word", () => {
    expect(() => readRegularFile(join(root, "missing.pem"), "private key")).toThrow(expect.objectContaining({ code: "ENOENT" }));
  });

  test("the thing's key files go through it: a FIFO as the private key is 78 at once", () => {
    const pipe = fifo("thing-key.fifo");
    const config = { file: join(root, "config.yml"), paths: { privateKey: pipe } } as unknown as ThingConfig;
    expect(refusal(() => readIdentity(config)).code).toBe(ExitCode.CONFIG);
  });
});

describe("the hub CA (readCa, homeIdentity)", () => {
  /** A copy of the hub's paths whose CA files are `certFile` and `keyFile`. */
  const pathsWith = (certFile: string, keyFile: string) => ({ ...home.paths, caCert: certFile, caKey: keyFile });

  test("the CA as hub init made it is read", () => {
    const ca = readCa(home.paths);
    expect(ca.certPem).toStartWith("-----BEGIN CERTIFICATE-----");
    expect(ca.keyPem).toContain("PRIVATE KEY-----");
  });

  test("a key that is not the certificate's own: 78 naming both files (hub thing create exited 0 with a certificate that did not verify)", () => {
    const other = join(root, "other-ca-key.pem");
    writeFileSync(other, generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }));
    expect(refusal(() => readCa(pathsWith(home.paths.caCert, other)))).toEqual({
      message: `${other} is not the private key of ${home.paths.caCert}: what it signed would not verify; put back the key hub init made with that certificate (from a backup of the hub home)`,
      code: ExitCode.CONFIG,
    });
  });

  test("a CA file that is not what it should be is named (the error said only 'not a certificate' / 'no PEM block found')", () => {
    const junk = join(root, "junk.pem");
    writeFileSync(junk, "junk\n");
    expect(refusal(() => readCa(pathsWith(junk, home.paths.caKey))).message).toBe(
      `${junk}: not a PEM certificate (the hub CA's, made by hub init; put it back from a backup of the hub home)`,
    );
    expect(refusal(() => homeIdentity({ paths: pathsWith(junk, home.paths.caKey), settings: home.settings })).message).toStartWith(
      `${junk}: not a PEM certificate`,
    );
    const keyCopy = join(root, "ca-cert-copy.pem");
    copyFileSync(home.paths.caCert, keyCopy);
    expect(refusal(() => readCa(pathsWith(keyCopy, junk))).message).toStartWith(`${junk}: not a PKCS#1, SEC1 or PKCS#8 private key`);
    expect(refusal(() => readCa(pathsWith(fifo("ca-key.fifo"), home.paths.caKey))).message).toEndWith(
      "is not a regular file (a FIFO); it must be the file itself",
    );
  });
});
