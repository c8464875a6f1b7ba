/**
 * The thing's update pieces that need no hub: the marker format, the pre-start guard (run with
 * the real /bin/sh, as the unit runs it), the ELF check and the install's file steps.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { elfMismatch } from "../../src/thing/update/elf.ts";
import { writeGuard } from "../../src/thing/update/guard.ts";
import { installBinary, restorePrevious } from "../../src/thing/update/install.ts";
import { formatMarker, markerPaths, parseMarker, readPending, readRolledBack } from "../../src/thing/update/marker.ts";
import { scratchDir } from "../support/scratch.ts";

function device() {
  const root = scratchDir("flashlex-update-agent-");
  const data = join(root, "data");
  mkdirSync(data);
  const binary = join(root, "flashlex");
  writeFileSync(binary, "old binary", { mode: 0o755 });
  const download = join(root, ".flashlex.download-1");
  writeFileSync(download, "new binary");
  return { root, data, binary, download };
}

const guard = (data: string) => Bun.spawnSync(["/bin/sh", markerPaths(data).guard], { stderr: "pipe" });

describe("the pending marker", () => {
  test("round-trips and refuses what sh could not read back", () => {
    const update = { version: "2.0.0", from: "1.0.0", binary: "/opt/my thing/flashlex", previous: "/opt/my thing/flashlex.previous" };
    expect(parseMarker(formatMarker(update))).toEqual({ ...update, reason: undefined });
    expect(() => formatMarker({ ...update, binary: "/opt/it's/flashlex" })).toThrow(/quote/);
  });
});

describe("install, then the guard", () => {
  test("install keeps the previous binary, writes the marker, puts the new one in place", () => {
    const d = device();
    writeGuard(d.data);
    const pending = installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    expect(readFileSync(d.binary, "utf8")).toBe("new binary");
    expect(readFileSync(pending.previous, "utf8")).toBe("old binary");
    expect(statSync(d.binary).mode & 0o777).toBe(0o755);
    expect(readPending(d.data)?.version).toBe("2.0.0");
    expect(existsSync(d.download)).toBe(false);
  });

  test("the guard lets a pending version start twice and puts the previous binary back at the third start", () => {
    const d = device();
    writeGuard(d.data);
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    for (const start of [1, 2]) {
      expect(guard(d.data).exitCode).toBe(0);
      expect(readFileSync(markerPaths(d.data).starts, "utf8").trim()).toBe(String(start));
      expect(readFileSync(d.binary, "utf8")).toBe("new binary");
    }
    const third = guard(d.data);
    expect(third.stderr.toString()).toContain("the previous binary is back");
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    expect(readPending(d.data)).toBeUndefined();
    expect(readRolledBack(d.data)).toMatchObject({ version: "2.0.0", from: "1.0.0", reason: "2.0.0 started 2 times without reporting healthy" });
    // and with nothing pending it does nothing
    expect(guard(d.data).exitCode).toBe(0);
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
  });

  test("restorePrevious is the watchdog's rollback", () => {
    const d = device();
    const pending = installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    expect(restorePrevious(pending)).toBe(true);
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    expect(restorePrevious(pending)).toBe(false);
  });
});

describe("the ELF check", () => {
  test("the running binary fits this machine; other machines and non-ELF files do not", () => {
    expect(elfMismatch(process.execPath)).toBeUndefined();
    expect(elfMismatch(process.execPath, process.arch === "x64" ? "arm64" : "x64")).toMatch(/built for .*, this machine is/);
    const d = device();
    expect(elfMismatch(d.binary)).toBe("it is not an ELF executable");
  });
});
