import { expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FlashlexError } from "../../src/shared/errors.ts";
import { acquireSessionLock } from "../../src/thing/local/serve-lock.ts";

const busy = () => new FlashlexError("held", "try-later");

test("the thing's session lock is one per key and name, however the key file writes the key (an EC key with its point compressed made a second lock)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "flashlex-session-lock-"));
  try {
    const file = (name: string, ...args: string[]) => {
      execFileSync("openssl", args, { stdio: "ignore" });
      return createPrivateKey(readFileSync(join(dir, name)));
    };
    const ec = file("ec.pem", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", join(dir, "ec.pem"));
    const compressed = file("ecc.pem", "ec", "-in", join(dir, "ec.pem"), "-conv_form", "compressed", "-out", join(dir, "ecc.pem"));
    const rsa = file("rsa.pem", "genrsa", "-out", join(dir, "rsa.pem"), "2048");
    const pkcs1 = file("rsa1.pem", "rsa", "-in", join(dir, "rsa.pem"), "-traditional", "-out", join(dir, "rsa1.pem"));
    for (const [first, second] of [
      [ec, compressed],
      [rsa, pkcs1],
    ]) {
      const held = await acquireSessionLock({ privateKey: first!, thingName: "abcd1234-pump" }, busy);
      try {
        const again = await acquireSessionLock({ privateKey: second!, thingName: "abcd1234-pump" }, busy).catch((err) => err);
        expect(again).toBeInstanceOf(FlashlexError);
        expect(again.kind).toBe("try-later");
        // another thing (another name) has a lock of its own
        await (await acquireSessionLock({ privateKey: second!, thingName: "abcd1234-other" }, busy)).release();
      } finally {
        await held.release();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
