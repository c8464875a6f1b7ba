/**
 * Atomic writes (src/shared/files.ts): a stopped write leaves the old file and no temporary file;
 * what a dead writer left is removed, a live one's work is not; errors name the file the caller
 * gave, not the temporary one (nor none, for a write that failed on its descriptor); a device or
 * FIFO is written through, never renamed over.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeLeftovers, writeFileAtomically, writeFileAtomicallySync } from "../../src/shared/files.ts";
import { toFlashlexError } from "../../src/shared/foreign-errors.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The pid of a process that has exited (a pid reused since would only keep a leftover). */
async function deadPid(): Promise<number> {
  const proc = Bun.spawn(["true"]);
  await proc.exited;
  return proc.pid;
}

describe("writeFileAtomically", () => {
  test("aborted between chunks: the reason is thrown, the old file stays, no temporary file is left", async () => {
    const file = join(dir, "aborted.zip");
    writeFileSync(file, "old");
    const controller = new AbortController();
    const reason = new Error("stopped by SIGTERM");
    async function* chunks() {
      yield new Uint8Array(1024);
      controller.abort(reason);
      yield new Uint8Array(1024);
      throw new Error("not reached: the write stops at the abort");
    }
    await expect(writeFileAtomically(file, chunks(), 0o600, { signal: controller.signal })).rejects.toBe(reason);
    expect(readFileSync(file, "utf8")).toBe("old");
    expect(readdirSync(dir).filter((n) => n.startsWith(".aborted"))).toEqual([]);
  });

  test("an error about the temporary file names the file asked for", async () => {
    const file = join(dir, "no-such-dir", "out.zip");
    const err = await writeFileAtomically(file, "x", 0o600).catch((e) => e);
    expect(err.code).toBe("ENOENT");
    expect(err.path).toBe(file);
    let syncErr: NodeJS.ErrnoException | undefined;
    try {
      writeFileAtomicallySync(file, "x", 0o600);
    } catch (e) {
      syncErr = e as NodeJS.ErrnoException;
    }
    expect(syncErr?.path).toBe(file);
    // the message too (logs print it): it named '.out.zip.<pid>-<hex>.tmp'
    for (const e of [err as Error, syncErr!]) {
      expect(e.message).toContain(file);
      expect(e.message).not.toContain(".tmp");
    }
  });

  test("exclusive: a file there (or a dangling link) is never replaced: EEXIST naming it, nothing changed, no temporary file; a free name is made whole", async () => {
    const area = join(dir, "exclusive");
    mkdirSync(area);
    writeFileSync(join(area, "export.zip"), "earlier export");
    symlinkSync(join(area, "nowhere"), join(area, "dangling.zip"));
    for (const name of ["export.zip", "dangling.zip"]) {
      const err = await writeFileAtomically(join(area, name), "later export", 0o600, { exclusive: true }).then(
        () => undefined,
        (e) => e as NodeJS.ErrnoException,
      );
      expect({ name, code: err?.code, path: err?.path }).toEqual({ name, code: "EEXIST", path: join(area, name) });
    }
    expect(readFileSync(join(area, "export.zip"), "utf8")).toBe("earlier export");
    await writeFileAtomically(join(area, "export-2.zip"), "later export", 0o600, { exclusive: true });
    expect(readdirSync(area).sort()).toEqual(["dangling.zip", "export-2.zip", "export.zip"]);
    expect([readFileSync(join(area, "export-2.zip"), "utf8"), statSync(join(area, "export-2.zip")).mode & 0o777]).toEqual(["later export", 0o600]);
    // a name taken meanwhile: the next one nextName gives, and the name written is returned
    const names = ["export-2.zip", "export-3.zip"].map((n) => join(area, n));
    expect(await writeFileAtomically(join(area, "export.zip"), "third", 0o600, { exclusive: true, nextName: () => names.shift() })).toBe(
      join(area, "export-3.zip"),
    );
    expect(readFileSync(join(area, "export-3.zip"), "utf8")).toBe("third");
    expect(readdirSync(area).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  test.skipIf(process.getuid?.() !== 0)("keepOwner: a file another user's program reads keeps its owner and group when replaced (as root)", () => {
    const file = join(dir, "broker-key.pem");
    writeFileSync(file, "old key");
    chownSync(file, 0, 65534); // `chown root:mosquitto`, with nogroup standing in
    writeFileAtomicallySync(file, "new key", 0o640, { keepOwner: true });
    expect([readFileSync(file, "utf8"), statSync(file).uid, statSync(file).gid, statSync(file).mode & 0o777]).toEqual(["new key", 0, 65534, 0o640]);
    // without it, the writer's (what made a re-run of `hub mosquitto-config` lock Mosquitto out)
    writeFileAtomicallySync(file, "newer key", 0o640);
    expect(statSync(file).gid).toBe(0);
    // a new file is the writer's
    const fresh = join(dir, "fresh.pem");
    writeFileAtomicallySync(fresh, "x", 0o644, { keepOwner: true });
    expect(statSync(fresh).gid).toBe(0);
  });
});

describe("a target that is a stream, not a file", () => {
  test("a FIFO (as /dev/null or /dev/stdout would be) is written through and stays a FIFO, never replaced by a rename", async () => {
    for (const [name, write] of [
      ["async", (file: string) => writeFileAtomically(file, "through the pipe", 0o600)],
      ["sync", async (file: string) => writeFileAtomicallySync(file, "through the pipe", 0o600)],
    ] as const) {
      const fifo = join(dir, `fifo-${name}`);
      expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
      const reader = Bun.spawn(["cat", fifo], { stdout: "pipe" });
      await write(fifo);
      expect(await new Response(reader.stdout).text()).toBe("through the pipe");
      expect(statSync(fifo).isFIFO()).toBe(true);
      expect(readdirSync(dir).filter((n) => n.startsWith(`.fifo-${name}`))).toEqual([]);
    }
  });

  test("stdout redirected to a file, named by /proc/self/fd/1 (or /dev/stdout): written through into that file (a rename put the temporary file in /dev and, as root, replaced /dev/stdout itself)", async () => {
    const files = join(import.meta.dir, "../../src/shared/files.ts");
    for (const [name, call] of [
      ["async", "await writeFileAtomically"],
      ["sync", "writeFileAtomicallySync"],
    ] as const) {
      const out = join(dir, `redirected-${name}.zip`);
      const script = `import { writeFileAtomically, writeFileAtomicallySync } from ${JSON.stringify(files)}; ${call}("/proc/self/fd/1", "through stdout", 0o600);`;
      const child = Bun.spawn([process.execPath, "-e", script], { stdout: Bun.file(out), stderr: "pipe" });
      const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
      expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
      expect(readFileSync(out, "utf8")).toBe("through stdout");
    }
  });

  test("a full device (/dev/full): the error names it, so the one-line message says which file did not fit", async () => {
    for (const write of [() => writeFileAtomically("/dev/full", "x".repeat(70_000), 0o600), async () => writeFileAtomicallySync("/dev/full", "x", 0o600)]) {
      const err = await write().then(
        () => undefined,
        (e) => e,
      );
      expect({ code: err?.code, message: toFlashlexError(err).message }).toEqual({
        code: "ENOSPC",
        message: "/dev/full: no space left on the device (ENOSPC)",
      });
    }
  });
});

describe("removeLeftovers", () => {
  test("a dead writer's temporary files and directories go; a live one's, and other names, stay; the first write into the directory removes every dead writer's", async () => {
    const sub = join(dir, "leftovers");
    mkdirSync(sub);
    const dead = await deadPid();
    const names = {
      deadFile: `.out.zip.${dead}-0badc0de.tmp`,
      deadDir: `.out.zip.${dead}-feedbeef.tmp`,
      live: `.out.zip.${process.pid}-12345678.tmp`,
      otherTarget: `.other.zip.${dead}-0badc0de.tmp`,
      notOurs: `.out.zip.${dead}-XYZ.tmp`,
    };
    for (const [key, name] of Object.entries(names)) {
      if (key === "deadDir") mkdirSync(join(sub, name));
      else writeFileSync(join(sub, name), "x");
    }
    const pattern = /^\.out\.zip\.(\d+)-[0-9a-f]{8}\.tmp$/; // out.zip's temporary files, as files.ts names them
    expect(removeLeftovers(sub, pattern).sort()).toEqual([join(sub, names.deadDir), join(sub, names.deadFile)].sort());
    expect(readdirSync(sub).sort()).toEqual([names.live, names.notOurs, names.otherTarget].sort());

    writeFileSync(join(sub, names.deadFile), "x");
    writeFileAtomicallySync(join(sub, "out.zip"), "new", 0o600);
    expect(readdirSync(sub).sort()).toEqual([names.live, names.notOurs, "out.zip"].sort());
    // once per process and directory: a later write does not list the directory again
    writeFileSync(join(sub, names.deadFile), "x");
    writeFileAtomicallySync(join(sub, "out2.zip"), "new", 0o600);
    expect(readdirSync(sub)).toContain(names.deadFile);
  });

  test("a directory that cannot be read has nothing to remove", () => {
    expect(removeLeftovers(join(dir, "absent"), /^(\d+)$/)).toEqual([]);
  });
});
