import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { createPrivateKey, randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { exitCodeOf } from "../../src/cli/exit-codes.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { createLogger } from "../../src/shared/log.ts";
import { acquireServeLock, acquireSessionLock, holdAbstractLock, LOCK_KEY_FILE, listeningSockets, lockName } from "../../src/thing/local/serve-lock.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-locks-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const busy = () => new FlashlexError("held", "try-later");
function recordingLog() {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: "debug", write: (line) => lines.push(line), journald: false }) };
}
const { log } = recordingLog();

describe("the single-serve lock", () => {
  test("a second holder is refused (try-later, 75) until the first releases it", async () => {
    const data = join(dir, "data");
    const first = await acquireServeLock(data, log);
    let refused: unknown;
    try {
      await acquireServeLock(data, log);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(FlashlexError);
    expect(exitCodeOf(refused)).toBe(75);
    expect((refused as FlashlexError).message).toBe(
      `${data}: another flashlex serve is running for this data directory (or a collect --via mqtt is publishing as the thing)`,
    );
    await first.release();
    const again = await acquireServeLock(data, log);
    await again.release();
  });

  test("the name depends on the directory's real path and its owner-only key, which is made once", () => {
    const a = join(dir, "a");
    const { name } = lockName(a);
    expect(lockName(a).name).toBe(name);
    expect(lockName(join(dir, "a", "..", "a")).name).toBe(name);
    expect(lockName(join(dir, "b")).name).not.toBe(name);
    expect(readFileSync(join(a, LOCK_KEY_FILE), "utf8")).toMatch(/^[0-9a-f]{64}\n$/);
    expect(statSync(join(a, LOCK_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(a).mode & 0o777).toBe(0o700);
  });
});

test("the thing's session lock is one per key and name, however the key file writes the key (an EC key with its point compressed made a second lock)", async () => {
  const keys = mkdtempSync(join(dir, "keys-"));
  const file = (name: string, ...args: string[]) => {
    execFileSync("openssl", args, { stdio: "ignore" });
    return createPrivateKey(readFileSync(join(keys, name)));
  };
  const ec = file("ec.pem", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", join(keys, "ec.pem"));
  const compressed = file("ecc.pem", "ec", "-in", join(keys, "ec.pem"), "-conv_form", "compressed", "-out", join(keys, "ecc.pem"));
  const rsa = file("rsa.pem", "genrsa", "-out", join(keys, "rsa.pem"), "2048");
  const pkcs1 = file("rsa1.pem", "rsa", "-in", join(keys, "rsa.pem"), "-traditional", "-out", join(keys, "rsa1.pem"));
  for (const [first, second] of [
    [ec, compressed],
    [rsa, pkcs1],
  ]) {
    const held = await acquireSessionLock({ privateKey: first!, thingName: "abcd1234-pump" }, busy, log);
    try {
      const again = await acquireSessionLock({ privateKey: second!, thingName: "abcd1234-pump" }, busy, log).catch((err) => err);
      expect(again).toBeInstanceOf(FlashlexError);
      expect(again.kind).toBe("try-later");
      // another thing (another name) has a lock of its own
      await (await acquireSessionLock({ privateKey: second!, thingName: "abcd1234-other" }, busy, log)).release();
    } finally {
      await held.release();
    }
  }
});

// Another local user reads a held lock's name in /proc/net/unix and binds it while no flashlex
// holds it: serve refused to start (75) for as long as that process lived.
describe.skipIf(process.getuid?.() !== 0 || !Bun.which("setpriv"))("a lock's name held by another user", () => {
  const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
  const module = resolve(import.meta.dir, "../../src/thing/local/serve-lock.ts");
  const logModule = resolve(import.meta.dir, "../../src/shared/log.ts");

  /** A process (of `user`) holding `name`: a bare listener, or flashlex's own lock with `proofKey`. */
  async function holder(user: string[], name: string, proofKey?: Buffer) {
    const script = join(dir, `holder-${randomBytes(4).toString("hex")}.ts`);
    writeFileSync(
      script,
      proofKey
        ? `import { holdAbstractLock } from ${JSON.stringify(module)};
           import { createLogger } from ${JSON.stringify(logModule)};
           await holdAbstractLock({ name: ${JSON.stringify(name)}, busy: () => new Error("busy"), what: "x", proofKey: Buffer.from(${JSON.stringify(proofKey.toString("hex"))}, "hex"), log: createLogger({ write: () => {} }) });
           console.log("held"); setInterval(() => {}, 1000);`
        : `require("node:net").createServer(() => {}).listen("\\0" + ${JSON.stringify(name)}, () => console.log("held")); setInterval(() => {}, 1000);`,
    );
    chmodSync(dir, 0o755);
    chmodSync(script, 0o644);
    const proc = Bun.spawn([...user, process.execPath, script], { stdout: "pipe", stderr: "ignore" });
    const reader = proc.stdout.getReader();
    const first = await Promise.race([reader.read(), Bun.sleep(20_000).then(() => ({ value: undefined }))]);
    expect(new TextDecoder().decode(first.value)).toContain("held");
    return proc;
  }

  test("serve's data-directory lock and the session lock go on without it, with a warning, instead of 75", async () => {
    const data = join(dir, "squatted-data");
    const { name } = lockName(data);
    const key = createPrivateKey(execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout"]));
    const session = await acquireSessionLock({ privateKey: key, thingName: "abcd1234-pump" }, busy, log);
    const sessionName = session.name;
    await session.release();
    const squatters = [await holder(asNobody, name), await holder(asNobody, sessionName)];
    try {
      expect(listeningSockets(name).size).toBe(1);
      const { lines, log: recording } = recordingLog();
      const lock = await acquireServeLock(data, recording);
      const sessionLock = await acquireSessionLock({ privateKey: key, thingName: "abcd1234-pump" }, busy, recording);
      expect([lock.squatted, sessionLock.squatted]).toEqual([true, true]);
      expect(lines.filter((line) => line.includes("lock.squatted"))).toHaveLength(2);
      expect(lines.join("\n")).toContain(`${data}: the single-serve lock`);
      await lock.release();
      await sessionLock.release();
    } finally {
      for (const squatter of squatters) squatter.kill();
    }
  }, 60_000);

  test("a holder of another user that proves the lock's secret is a flashlex (busy, 75); one with another secret is not", async () => {
    const name = `flashlex-test-${randomBytes(8).toString("hex")}`;
    const secret = randomBytes(32);
    const proving = await holder(asNobody, name, secret);
    try {
      const refused = await holdAbstractLock({ name, busy, what: "the test lock", proofKey: secret, log }).catch((err) => err);
      expect(refused).toBeInstanceOf(FlashlexError);
      expect(exitCodeOf(refused)).toBe(75);
      const other = await holdAbstractLock({ name, busy, what: "the test lock", proofKey: randomBytes(32), log });
      expect(other.squatted).toBe(true);
    } finally {
      proving.kill();
    }
  }, 60_000);

  test("a holder of this user that does not answer (stopped, or an older flashlex) still holds it: 75", async () => {
    const name = `flashlex-test-${randomBytes(8).toString("hex")}`;
    const silent = await holder([], name);
    try {
      silent.kill("SIGSTOP");
      const refused = await holdAbstractLock({ name, busy, what: "the test lock", proofKey: randomBytes(32), log }).catch((err) => err);
      expect(exitCodeOf(refused)).toBe(75);
    } finally {
      silent.kill("SIGKILL");
    }
  }, 60_000);
});
