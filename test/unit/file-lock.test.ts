import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exitCodeOf } from "../../src/cli/exit-codes.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { userLabel } from "../../src/shared/passwd.ts";
import { acquireEnrolLock } from "../../src/thing/enrol/folder.ts";
import { acquireServeLock, acquireSessionLock, LOCK_FILE } from "../../src/thing/local/serve-lock.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-file-lock-"));
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const busy = () => new FlashlexError("held", "try-later");
const isRoot = process.geteuid?.() === 0;

/** Whether another process (util-linux flock(1), as `asNobody` or this user) can take the lock on `file` now. */
function otherProcessLocks(file: string, asNobody = false): { code: number | null; stderr: string } {
  const command = asNobody ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "flock", "-n", file, "true"] : ["flock", "-n", file, "true"];
  const result = spawnSync(command[0]!, command.slice(1), { encoding: "utf8", timeout: 10_000 });
  return { code: result.status, stderr: result.stderr };
}

describe("the thing's session lock, beside its private key file", () => {
  const keys = join(dir, "keys");
  mkdirSync(keys);
  const key = join(keys, "private.key");
  const lockFile = `${key}.lock`;
  execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], { stdio: "ignore" });
  chmodSync(key, 0o600);

  test("is one per key file, by any path to the keys directory; another process sees it held, and takes it once it is released", async () => {
    const held = await acquireSessionLock(key, busy);
    try {
      expect(await acquireSessionLock(join(keys, "..", "keys", "private.key"), busy).catch((err) => exitCodeOf(err))).toBe(75);
      expect(otherProcessLocks(lockFile).code).toBe(1);
      expect(statSync(lockFile).mode & 0o777).toBe(0o600);
    } finally {
      await held.release();
    }
    expect(otherProcessLocks(lockFile).code).toBe(0);
  });

  test("is the same for a keys folder of symbolic links to the key files: two serves took the session from each other", async () => {
    const links = join(dir, "keys-linked");
    mkdirSync(links);
    symlinkSync(key, join(links, "private.key"));
    const held = await acquireSessionLock(key, busy);
    try {
      const err = await acquireSessionLock(join(links, "private.key"), busy).catch((e) => e);
      expect(exitCodeOf(err)).toBe(75);
      expect(readdirSync(links)).toEqual(["private.key"]); // no lock of its own beside the link
    } finally {
      await held.release();
    }
  });

  test("holds while the key file is written anew by rename (a renewal, a restore, cp and mv): a lock on the key's own inode let a second session run", async () => {
    const held = await acquireSessionLock(key, busy);
    try {
      copyFileSync(key, `${key}.tmp`);
      renameSync(`${key}.tmp`, key);
      expect(await acquireSessionLock(key, busy).catch((err) => exitCodeOf(err))).toBe(75);
    } finally {
      await held.release();
    }
  });

  test("a child this process starts meanwhile (an exec handler) does not inherit the lock, so it goes with its release", async () => {
    const held = await acquireSessionLock(key, busy);
    const child = spawn("sleep", ["5"], { stdio: "ignore" });
    try {
      await held.release();
      expect(otherProcessLocks(lockFile).code).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test.skipIf(!isRoot)("another user cannot take it, even with a key others may read", async () => {
    chmodSync(key, 0o644);
    try {
      await (await acquireSessionLock(key, busy)).release();
      const result = otherProcessLocks(lockFile, true);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain("Permission denied");
    } finally {
      chmodSync(key, 0o600);
    }
  });
});

describe("serve's lock on its data directory: only the thing's user can hold it", () => {
  test.skipIf(!isRoot)("another local user cannot take serve.lock, held or not (abstract socket names could be bound by anyone)", async () => {
    const data = join(dir, "data-nobody");
    await (await acquireServeLock(data)).release();
    const result = otherProcessLocks(join(data, LOCK_FILE), true);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("Permission denied");
    // and serve starts after the attempt
    await (await acquireServeLock(data)).release();
  });

  test.skipIf(!isRoot)("a lock file another user made (in a directory they may write) is refused (78), not trusted", async () => {
    const data = join(dir, "data-foreign");
    mkdirSync(data, { mode: 0o777 });
    chmodSync(data, 0o777);
    writeFileSync(join(data, LOCK_FILE), "");
    chownSync(join(data, LOCK_FILE), 65534, 65534);
    const err = await acquireServeLock(data).catch((e) => e);
    expect(exitCodeOf(err)).toBe(78);
    expect(err.message).toBe(
      `${join(data, LOCK_FILE)}: belongs to ${userLabel(65534)}, not to root (uid 0), whom this command runs as, and another user could hold it; remove it`,
    );
  });

  test("a lock file of ours that others could open is made owner-only", async () => {
    const data = join(dir, "data-open");
    mkdirSync(data, { mode: 0o700 });
    writeFileSync(join(data, LOCK_FILE), "", { mode: 0o644 });
    chmodSync(join(data, LOCK_FILE), 0o644);
    await (await acquireServeLock(data)).release();
    expect(Bun.file(join(data, LOCK_FILE)).size).toBe(0);
    expect(statSync(join(data, LOCK_FILE)).mode & 0o777).toBe(0o600);
  });

  test("a hard link to another file (a key) where the lock file belongs is refused (78): serve locked its own key and refused itself", async () => {
    const data = join(dir, "data-hardlink");
    mkdirSync(data, { mode: 0o700 });
    writeFileSync(join(dir, "someone-elses"), "");
    chmodSync(join(dir, "someone-elses"), 0o666);
    linkSync(join(dir, "someone-elses"), join(data, LOCK_FILE));
    const err = await acquireServeLock(data).catch((e) => e);
    expect(exitCodeOf(err)).toBe(78);
    expect(err.message).toBe(`${join(data, LOCK_FILE)}: has 2 names (hard links), so it is not the lock's own file; remove it`);
    expect(statSync(join(dir, "someone-elses")).mode & 0o777).toBe(0o666);
  });

  test("a FIFO, a directory or a link where the lock file belongs is refused (78) without hanging", async () => {
    const data = join(dir, "data-fifo");
    mkdirSync(data, { mode: 0o700 });
    execFileSync("mkfifo", [join(data, LOCK_FILE)]);
    expect(exitCodeOf(await acquireServeLock(data).catch((e) => e))).toBe(78);
    const directory = join(dir, "data-dir-lock");
    mkdirSync(join(directory, LOCK_FILE), { recursive: true });
    expect(exitCodeOf(await acquireServeLock(directory).catch((e) => e))).toBe(78);
    const linked = join(dir, "data-link");
    mkdirSync(linked, { mode: 0o700 });
    writeFileSync(join(dir, "elsewhere"), "");
    symlinkSync(join(dir, "elsewhere"), join(linked, LOCK_FILE));
    const err = await acquireServeLock(linked).catch((e) => e);
    expect(exitCodeOf(err)).toBe(78);
    expect(err.message).toBe(`${join(linked, LOCK_FILE)}: a symbolic link where a lock file belongs; remove it`);
  });

  test("a socket where the lock file belongs is refused (78) as any non-file, not failed as an I/O error (ENXIO, 74)", async () => {
    const data = join(dir, "data-socket");
    mkdirSync(data, { mode: 0o700 });
    const listener = Bun.listen({ unix: join(data, LOCK_FILE), socket: { data() {} } });
    try {
      const err = await acquireServeLock(data).catch((e) => e);
      expect(exitCodeOf(err)).toBe(78);
      expect(err.message).toBe(`${join(data, LOCK_FILE)}: a socket where a lock file belongs; remove it`);
    } finally {
      listener.stop(true);
    }
  });

  test.skipIf(!isRoot)("a device node where the lock file belongs is refused (78) without being opened", async () => {
    const data = join(dir, "data-device");
    mkdirSync(data, { mode: 0o700 });
    execFileSync("mknod", [join(data, LOCK_FILE), "c", "1", "3"]);
    const err = await acquireServeLock(data).catch((e) => e);
    expect(exitCodeOf(err)).toBe(78);
    expect(err.message).toBe(`${join(data, LOCK_FILE)}: a device node where a lock file belongs; remove it`);
  });

  test.skipIf(!isRoot)(
    "a lock file another user left 0600 (root's serve ran once here) is refused as theirs (78), not as this user's permission problem (77)",
    () => {
      const data = join(dir, "data-roots");
      mkdirSync(data, { mode: 0o777 });
      chmodSync(data, 0o777);
      writeFileSync(join(data, LOCK_FILE), "", { mode: 0o600 });
      const script = `import { acquireServeLock } from ${JSON.stringify(join(import.meta.dir, "../../src/thing/local/serve-lock.ts"))};
      import { exitCodeOf } from ${JSON.stringify(join(import.meta.dir, "../../src/cli/exit-codes.ts"))};
      const err = await acquireServeLock(${JSON.stringify(data)}).catch((e) => e);
      console.log(JSON.stringify({ code: exitCodeOf(err), message: err.message }));`;
      const result = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", script], {
        encoding: "utf8",
        timeout: 20_000,
        cwd: "/",
      });
      const answer = JSON.parse(result.stdout.trim().split("\n").at(-1)!);
      expect(answer).toEqual({
        code: 78,
        message: `${join(data, LOCK_FILE)}: belongs to root (uid 0), not to ${userLabel(65534)}, whom this command runs as, and another user could hold it; remove it`,
      });
    },
  );
});

describe("flock(2) on a descriptor: through bun:ffi in Bun builds, through util-linux's flock(1) in the Node build", () => {
  test(`bun:ffi: taken when free, refused (false) while another open of the file holds it, free again once that is closed`, async () => {
    const { takeExclusiveFlock } = await import("../../src/shared/flock.ts");
    const file = join(dir, "raw-bunffi.lock");
    writeFileSync(file, "");
    const first = openSync(file, "r");
    const second = openSync(file, "r");
    try {
      expect(await takeExclusiveFlock(first, file, "the test lock")).toBe(true);
      expect(otherProcessLocks(file).code).toBe(1);
      expect(await takeExclusiveFlock(second, file, "the test lock")).toBe(false);
      closeSync(first);
      expect(await takeExclusiveFlock(second, file, "the test lock")).toBe(true);
    } finally {
      closeSync(second);
      try {
        closeSync(first);
      } catch {
        // closed above
      }
    }
    expect(otherProcessLocks(file).code).toBe(0);
  });

  test("flock(1), under Node as in the armv7 build: taken when free, refused (false) while another open of the file holds it, free again once that is closed", async () => {
    // Under Node, its runtime: under Bun, one of node:child_process's children once exited unseen
    // (a zombie) and the test process waited on it for good.
    const out = mkdtempSync(join(dir, "flock-command-"));
    const built = await Bun.build({ entrypoints: [join(import.meta.dir, "../../src/shared/flock-command.ts")], target: "node", format: "esm", outdir: out });
    expect(built.success).toBe(true);
    const harness = join(out, "harness.mjs");
    writeFileSync(
      harness,
      `import { closeSync, openSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { takeExclusiveFlock } from "./flock-command.js";
const file = process.argv[2];
writeFileSync(file, "");
const first = openSync(file, "r");
const second = openSync(file, "r");
const other = () => spawnSync("flock", ["-n", file, "true"], { timeout: 10000 }).status;
const seen = [await takeExclusiveFlock(first, file, "the test lock"), other(), await takeExclusiveFlock(second, file, "the test lock")];
closeSync(first);
seen.push(await takeExclusiveFlock(second, file, "the test lock"));
closeSync(second);
seen.push(other());
console.log(JSON.stringify(seen));
`,
    );
    const run = spawnSync("node", [harness, join(out, "raw.lock")], { encoding: "utf8", timeout: 30_000 });
    expect({ stderr: run.stderr, seen: JSON.parse(run.stdout || "null") }).toEqual({ stderr: "", seen: [true, 1, false, true, 0] });
  });

  test("bun:ffi: a descriptor flock(2) refuses is an error naming the lock and the errno, not a held lock", async () => {
    const { takeExclusiveFlock } = await import("../../src/shared/flock.ts");
    const err = await takeExclusiveFlock(987_654, "/some/file.lock", "the test lock").catch((e) => e);
    expect(exitCodeOf(err)).toBe(74);
    expect(err.message).toBe("/some/file.lock: flock(2) failed for the test lock: bad file descriptor (EBADF)");
  });

  test("flock(1) not on PATH: a one-line error (69) naming what is missing", async () => {
    const { takeExclusiveFlock } = await import("../../src/shared/flock-command.ts");
    const path = process.env.PATH;
    process.env.PATH = join(dir, "empty-bin");
    const fd = openSync(join(dir, "x.lock"), "a");
    try {
      const err = await takeExclusiveFlock(fd, join(dir, "x.lock"), "the test lock").catch((e) => e);
      expect(exitCodeOf(err)).toBe(69);
      expect(err.message).toStartWith("flock(1) was not found on PATH; the test lock needs it");
    } finally {
      process.env.PATH = path;
      closeSync(fd);
    }
  });
});

describe("the enrolment lock", () => {
  test("refuses a second enroll in the folder (75), and leaves no file behind", async () => {
    const folder = join(dir, "thing-folder");
    const held = await acquireEnrolLock(folder);
    expect(exitCodeOf(await acquireEnrolLock(folder).catch((e) => e))).toBe(75);
    await held.release();
    await held.release();
    expect(readdirSync(folder)).toEqual([]);
    await (await acquireEnrolLock(folder)).release();
  });
});
