/**
 * The rendered systemd unit and self-update (docs/service.md, docs/updates.md): the guard before
 * every start, the binary's directory writable while the config and keys stay read-only, exit 3
 * a clean exit that restarts, room in the start limit for the guard's rollback. Where Debian's
 * systemd-analyze is installed, systemd's own parser checks each rendering (it works without
 * systemd as PID 1). What systemd does with the restart lines is read by test/support/systemd-unit.ts,
 * our reading of systemd.service(5), which the supervisor of the integration tests runs.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { guardCommand, renderUnit, UNIT_TEMPLATE, type UnitValues } from "../../src/thing/service/unit.ts";
import { markerPaths } from "../../src/thing/update/marker.ts";
import { isClean, parseServiceUnit, shallRestart, splitCommand } from "../support/systemd-unit.ts";

const hasAnalyze = Bun.which("systemd-analyze") !== null;
const tmp = mkdtempSync(join(tmpdir(), "flashlex-unit-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The hub distribution's layout: the binary, config.yml, keys/ and data/ in the thing's folder. */
function layout(name: string, keysBeside = false): UnitValues {
  const dir = join(tmp, name);
  const keys = keysBeside ? dir : join(dir, "keys");
  mkdirSync(keys, { recursive: true });
  mkdirSync(join(dir, "data"), { recursive: true });
  copyFileSync("/bin/true", join(dir, "flashlex")); // systemd-analyze verify wants an executable ExecStart
  writeFileSync(join(dir, "config.yml"), "");
  const keyFiles = ["root-ca-cert.pem", "t-certificate.pem", "t-keypair-private.pem"].map((f) => join(keys, f));
  for (const f of keyFiles) writeFileSync(f, "");
  return {
    binary: join(dir, "flashlex"),
    config: join(dir, "config.yml"),
    keys,
    data: join(dir, "data"),
    user: "pi",
    group: "pi",
    systemdVersion: 252,
  };
}

const lines = (unit: string) => unit.split("\n");
const setting = (unit: string, key: string) => lines(unit).filter((l) => l.startsWith(`${key}=`));

function verify(unit: string): string[] {
  const dir = mkdtempSync(join(tmp, "verify-"));
  const file = join(dir, "flashlex.service");
  writeFileSync(file, unit);
  const result = Bun.spawnSync(["systemd-analyze", "verify", file], { stdout: "pipe", stderr: "pipe" });
  const output = `${result.stdout.toString()}${result.stderr.toString()}`;
  expect(result.exitCode).toBe(0);
  return output.split("\n").filter((l) => l.includes("flashlex.service"));
}

describe("self-update on", () => {
  const values = { ...layout("thing"), selfUpdate: true as const };
  const unit = renderUnit(UNIT_TEMPLATE, values);
  const dir = join(tmp, "thing");

  test("the guard runs before every start, from where serve writes it, its failure ignored", () => {
    expect(setting(unit, "ExecStartPre")).toEqual([`ExecStartPre=-/bin/sh ${markerPaths(values.data).guard}`]);
    expect(lines(unit).indexOf(setting(unit, "ExecStartPre")[0]!)).toBeLessThan(lines(unit).indexOf(setting(unit, "ExecStart")[0]!));
    expect(guardCommand(values.data)).toBe(`/bin/sh ${values.data}/update/guard.sh`);
  });

  test("the binary's directory is writable; the binary is not bound onto itself; the keys writable for renewal, the config read-only", () => {
    expect(setting(unit, "BindReadOnlyPaths")).toEqual([`BindReadOnlyPaths=${values.config}`]);
    expect(setting(unit, "BindPaths")).toEqual([`BindPaths=${dir} ${values.keys} ${values.data}`]);
    expect(setting(unit, "ReadWritePaths")).toEqual([`ReadWritePaths=${dir} ${values.keys} ${values.data}`]);
    expect(unit.split(values.binary)).toHaveLength(2); // named once: in ExecStart
    expect(setting(unit, "ExecStart")[0]).toStartWith(`ExecStart=${values.binary} serve`);
  });

  test("keys beside the binary (the guide's layout): that directory is listed once, writable; only the config is read-only", () => {
    const guide = { ...layout("guide", true), selfUpdate: true as const };
    const rendered = renderUnit(UNIT_TEMPLATE, guide);
    const guideDir = join(tmp, "guide");
    expect(setting(rendered, "BindReadOnlyPaths")).toEqual([`BindReadOnlyPaths=${guide.config}`]);
    expect(setting(rendered, "BindPaths")).toEqual([`BindPaths=${guideDir} ${guide.data}`]);
    // systemd merges a path given read-only and read-write into a read-only one (namespace.c drop_duplicates)
    expect(setting(rendered, "BindReadOnlyPaths")[0]!.split(" ")).not.toContain(guideDir);
    if (hasAnalyze) expect(verify(rendered)).toEqual([]);
  });

  test("the data directory as the binary's directory is listed once", () => {
    const v = layout("same");
    const rendered = renderUnit(UNIT_TEMPLATE, { ...v, data: join(tmp, "same"), selfUpdate: true });
    expect(setting(rendered, "ReadWritePaths")).toEqual([`ReadWritePaths=${join(tmp, "same")} ${v.keys}`]);
  });

  test("spaces and % in the paths are quoted and escaped in the guard line too", () => {
    const odd = { ...layout("odd dir 100%"), selfUpdate: true as const };
    const rendered = renderUnit(UNIT_TEMPLATE, odd);
    const guard = `${markerPaths(odd.data).guard}`;
    expect(setting(rendered, "ExecStartPre")).toEqual([`ExecStartPre=-/bin/sh "${guard.replaceAll("%", "%%")}"`]);
    expect(splitCommand(setting(rendered, "ExecStartPre")[0]!.slice("ExecStartPre=".length))).toEqual({ argv: ["/bin/sh", guard], ignoreFailure: true });
    if (hasAnalyze) expect(verify(rendered)).toEqual([]);
  });

  test.skipIf(!hasAnalyze)("passes systemd-analyze verify without a warning", () => {
    expect(verify(unit)).toEqual([]);
  });

  test("a single quote: refused in the binary's path (systemd will not run such an executable), quoted everywhere else", () => {
    const quoted = { ...layout("it's here"), selfUpdate: true as const };
    expect(() => renderUnit(UNIT_TEMPLATE, quoted)).toThrow(`binary: ${JSON.stringify(quoted.binary)}: a systemd unit cannot name a path containing "'"`);
    const elsewhere = { ...quoted, binary: layout("plain").binary };
    const rendered = renderUnit(UNIT_TEMPLATE, elsewhere);
    expect(rendered).toContain(`-c "${elsewhere.config}"`);
    if (hasAnalyze) expect(verify(rendered)).toEqual([]);
  });
});

describe("self-update off", () => {
  const values = layout("old");
  test("as before: no guard, the binary bound read-only, and the reason in a comment", () => {
    const unit = renderUnit(UNIT_TEMPLATE, { ...values, selfUpdate: "config.yml has no flashlex.update.publicKey" });
    expect(setting(unit, "ExecStartPre")).toEqual([]);
    expect(unit).toContain("# Self-update is off (config.yml has no flashlex.update.publicKey)");
    expect(setting(unit, "BindReadOnlyPaths")).toEqual([`BindReadOnlyPaths=${values.binary} ${values.config}`]);
    expect(setting(unit, "ReadWritePaths")).toEqual([`ReadWritePaths=${values.keys} ${values.data}`]);
    expect(renderUnit(UNIT_TEMPLATE, values)).toContain("# Self-update is off (not asked for)");
    if (hasAnalyze) expect(verify(unit)).toEqual([]);
  });
});

describe("restarts, as systemd.service(5) reads the unit's lines", () => {
  const unit = parseServiceUnit(renderUnit(UNIT_TEMPLATE, { ...layout("restart"), selfUpdate: true }));

  test("exit 3 (an update or a rollback) is a clean exit that always restarts", () => {
    expect(isClean(unit, { code: 3 })).toBe(true);
    expect(shallRestart(unit, { code: 3 })).toBe(true);
  });

  test("a crash restarts; 0, a stop, 64, 77 and 78 do not", () => {
    for (const end of [{ code: 1 }, { code: 70 }, { code: 74 }, { signal: "SIGABRT" }, { signal: "SIGSEGV" }, { signal: "SIGKILL" }]) {
      expect(shallRestart(unit, end)).toBe(true);
    }
    for (const end of [{ code: 0 }, { signal: "SIGTERM" }, { code: 64 }, { code: 77 }, { code: 78 }]) {
      expect(shallRestart(unit, end)).toBe(false);
    }
  });

  test("the start limit leaves room for two failed updates (4 starts each) and the boot start", () => {
    expect(unit.startLimitBurst).toBeGreaterThanOrEqual(1 + 2 * 4);
    expect(unit.startLimitIntervalSec).toBe(600);
    expect(unit.restartSec).toBe(5);
    // and still ends a plain crash loop, RestartSec apart, within a couple of minutes
    expect(unit.startLimitBurst * unit.restartSec).toBeLessThanOrEqual(120);
  });

  test("the guard command is the one the updater's guard expects: /bin/sh and the script, no arguments", () => {
    expect(unit.execStartPre).toHaveLength(1);
    expect(unit.execStartPre[0]).toEqual({ argv: ["/bin/sh", markerPaths(join(tmp, "restart", "data")).guard], ignoreFailure: true });
  });
});
