/**
 * Values from the command line and stdin, and the single-serve lock, in process: a count flag
 * accepts only decimal whole numbers in range; strict UTF-8 names the first bad byte; the lock
 * is the kernel's (a second holder is refused with try-later until the first lets go).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { choice } from "../../src/cli/command.ts";
import { exitCodeOf } from "../../src/cli/exit-codes.ts";
import { countFlag } from "../../src/cli/input.ts";
import { decodeUtf8 } from "../../src/protocol/limits.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { acquireServeLock, LOCK_FILE } from "../../src/thing/local/serve-lock.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-cli-values-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("choice", () => {
  test("takes one of its words, or nothing; anything else is a usage error naming the flag, the words and the value cut at 48", () => {
    expect(choice(undefined, "--via", ["http", "mqtt"])).toBeUndefined();
    expect(choice("mqtt", "--via", ["http", "mqtt"])).toBe("mqtt");
    expect(() => choice("MQTT", "--via", ["http", "mqtt"])).toThrow('--via must be http or mqtt, not "MQTT"');
    expect(() => choice("x".repeat(5000), "--state", ["pending", "sent", "rejected"])).toThrow(
      `--state must be pending, sent or rejected, not "${"x".repeat(48)}…"`,
    );
    let error: unknown;
    try {
      choice("x", "--via", ["http"]);
    } catch (err) {
      error = err;
    }
    expect(exitCodeOf(error)).toBe(64);
  });
});

describe("countFlag", () => {
  test("takes decimal whole numbers from 1 to the maximum", () => {
    expect(countFlag(undefined, "--limit")).toBeUndefined();
    expect(countFlag("1", "--limit")).toBe(1);
    expect(countFlag("1000000000", "--limit")).toBe(1_000_000_000);
  });
  test("refuses text, zero, negative, fractions, exponents, hex, blanks and huge values with a usage error naming the flag", () => {
    for (const value of ["abc", "0", "-1", "1.5", "1e3", "0x10", "", " 7", "1000000001", "99999999999999999999", "Infinity"]) {
      let error: unknown;
      try {
        countFlag(value, "--limit");
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(FlashlexError);
      expect(exitCodeOf(error)).toBe(64);
      expect((error as FlashlexError).message).toContain("--limit");
    }
  });
});

describe("decodeUtf8", () => {
  test("decodes valid UTF-8, a literal U+FFFD included, and drops a BOM", () => {
    expect(decodeUtf8(Buffer.from("caf\u00e9 \uFFFD"), "stdin", "nothing was sent")).toBe("caf\u00e9 \uFFFD");
    expect(decodeUtf8(Buffer.from("\uFEFF{}"), "stdin", "nothing was sent")).toBe("{}");
  });
  test("refuses invalid sequences with exit 65, naming the source and the first bad byte", () => {
    const cases: [number[], number][] = [
      [[0x61, 0xc3, 0x28], 1], // a 2-byte lead without continuation
      [[0xef, 0xbf, 0xbd, 0xff], 3], // a real U+FFFD, then 0xff
      [[0xc0, 0xaf], 0], // overlong "/"
      [[0xed, 0xa0, 0x80], 0], // a UTF-16 surrogate
      [[0x7b, 0xe2, 0x82], 1], // cut short at the end
    ];
    for (const [bytes, offset] of cases) {
      let error: FlashlexError | undefined;
      try {
        decodeUtf8(new Uint8Array(bytes), "in.json", "nothing was sent");
      } catch (err) {
        error = err as FlashlexError;
      }
      expect(exitCodeOf(error)).toBe(65);
      expect(error?.message).toStartWith(`in.json: not valid UTF-8 (first bad byte at offset ${offset})`);
    }
  });
});

describe("the single-serve lock", () => {
  test("a second holder is refused (try-later, 75) until the first releases it", async () => {
    const data = join(dir, "data");
    const first = await acquireServeLock(data);
    let refused: unknown;
    try {
      await acquireServeLock(data);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(FlashlexError);
    expect(exitCodeOf(refused)).toBe(75);
    expect((refused as FlashlexError).message).toBe(
      `${data}: another flashlex serve is running for this data directory (or a collect --via mqtt is publishing as the thing)`,
    );
    await first.release();
    const again = await acquireServeLock(data);
    await again.release();
  });

  test("the lock is one owner-only file, the same by any path to the directory; the old lock key goes", async () => {
    const a = join(dir, "a");
    mkdirSync(a);
    writeFileSync(join(a, "serve.lock-key"), "0".repeat(64));
    const held = await acquireServeLock(a);
    try {
      expect(await acquireServeLock(join(dir, "a", "..", "a")).catch((err) => exitCodeOf(err))).toBe(75);
      await (await acquireServeLock(join(dir, "b"))).release();
      expect(readdirSync(a)).toEqual([LOCK_FILE]);
      expect(statSync(join(a, LOCK_FILE)).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, "b")).mode & 0o777).toBe(0o700);
    } finally {
      await held.release();
    }
  });
});
