/**
 * install-service / uninstall-service. The unit is rendered by the compiled binary (the
 * template must be embedded) and checked by systemd's own parser, `systemd-analyze verify`.
 * systemd is not running here, so install/uninstall run against a temp unit path and a fake
 * systemctl that records its arguments.
 */
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { interruptible } from "../../src/cli/command.ts";
import { ExitCode, exitCodeOf } from "../../src/cli/exit-codes.ts";
import { INSTALL_UNDONE } from "../../src/cli/thing/service.ts";
import { toFlashlexError } from "../../src/shared/foreign-errors.ts";
import { type InstallOptions, installService, uninstallService } from "../../src/thing/service/install.ts";
import { renderUnit, UNIT_TEMPLATE, type UnitValues } from "../../src/thing/service/unit.ts";
import { ordinaryAccount } from "../support/accounts.ts";
import { binaryPath, run } from "../support/binary.ts";
import { makeTestPki, type TestPki } from "../support/pki.ts";

const ROOT = join(import.meta.dir, "../..");
const isRoot = process.getuid?.() === 0;
const hasAnalyze = Bun.which("systemd-analyze") !== null;

let tmp: string;
let home: string; // <tmp>/home/pi/flashlex, the layout a Pi user unpacks
let config: string;
let owner: { name: string; uid: number; gid: number };
let pki: TestPki;
const THING = "ecd13b11-mything";
const GUIDE = join(import.meta.dir, "../fixtures/guide-config.yml");

/**
 * The guide's config and a working identity (keys beside the config, the guide's layout):
 * install-service checks both before it writes anything, as serve would at its start.
 */
function makeConfig(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "config.yml");
  copyFileSync(GUIDE, file);
  for (const name of ["root-ca-cert.pem", `${THING}-certificate.pem`, `${THING}-keypair-private.pem`, `${THING}-keypair-public.pem`]) {
    copyFileSync(join(pki.dir, name), join(dir, name));
    // the user unpacked the thing: its files, the private key (0600) among them, are that user's
    if (isRoot) chownSync(join(dir, name), owner.uid, owner.gid);
  }
  if (isRoot) {
    chownSync(file, owner.uid, owner.gid);
    chownSync(dir, owner.uid, owner.gid);
  }
  return file;
}

/** Runs systemd's unit parser on `unit` saved as <dir>/flashlex.service; returns its complaints about it. */
function verify(unit: string): { code: number; complaints: string[] } {
  const dir = mkdtempSync(join(tmp, "verify-"));
  const file = join(dir, "flashlex.service");
  writeFileSync(file, unit);
  const result = Bun.spawnSync(["systemd-analyze", "verify", file], { stdout: "pipe", stderr: "pipe" });
  const output = `${result.stdout.toString()}${result.stderr.toString()}`;
  return { code: result.exitCode, complaints: output.split("\n").filter((l) => l.includes("flashlex.service")) };
}

function capture() {
  const io = {
    stdout: "",
    stderr: "",
    out: (t: string) => {
      io.stdout += t;
    },
    err: (t: string) => {
      io.stderr += t;
    },
  };
  return io;
}

/** What the command makes of a use case's outcome (src/main.ts): its exit code, a failure's one line on stderr. */
async function exitOf(io: { err(text: string): void }, done: Promise<void>): Promise<number> {
  try {
    await done;
    return ExitCode.OK;
  } catch (err) {
    io.err(`flashlex: ${toFlashlexError(err).message}\n`);
    return exitCodeOf(err);
  }
}

/** The name of group `gid`, as install-service writes it in its fixes. */
const groupName = (gid: number) => execFileSync("getent", ["group", String(gid)], { encoding: "utf8" }).split(":")[0];

beforeAll(async () => {
  tmp = realpathSync(mkdtempSync(join(tmpdir(), "flashlex-service-")));
  chmodSync(tmp, 0o755); // the non-root run below must reach the config
  owner = ordinaryAccount();
  pki = await makeTestPki(join(tmp, "pki"), { thingName: THING });
  home = join(tmp, "home/pi/flashlex");
  config = makeConfig(home);
  binaryPath(); // build once, before the first timed test
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("install-service --dry-run (compiled binary)", () => {
  let unit: string;

  beforeAll(async () => {
    const result = await run(["install-service", "-c", config, "--dry-run"], { cwd: tmp });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(ExitCode.OK);
    unit = result.stdout;
  });

  test("renders the embedded template with absolute paths and the config's owner", () => {
    const bin = realpathSync(binaryPath());
    expect(unit).not.toContain("{{");
    expect(unit).toContain(`ExecStart=${bin} serve -c ${config} -k ${home} -d ${home}/data\n`);
    expect(unit).toContain(`User=${owner.name}\n`);
    // the guide's layout: the keys beside the config, so that directory is writable (renewal); binary and config read-only
    expect(unit).toContain(`BindReadOnlyPaths=${bin} ${config}\n`);
    expect(unit).toContain(`BindPaths=${home} ${home}/data\n`);
    expect(unit).toContain(`ReadWritePaths=${home} ${home}/data\n`);
    expect(existsSync(join(home, "data"))).toBe(false); // a dry run changes nothing
  });

  test("--print is --dry-run", async () => {
    const result = await run(["install-service", "-c", config, "--print"], { cwd: tmp });
    expect(result.code).toBe(ExitCode.OK);
    expect(result.stdout).toBe(unit);
  });

  test("is hardened", () => {
    const lines = new Set(unit.split("\n"));
    for (const line of [
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=tmpfs",
      "PrivateTmp=yes",
      "PrivateDevices=yes",
      "ProtectKernelTunables=yes",
      "ProtectKernelModules=yes",
      "ProtectKernelLogs=yes",
      "ProtectControlGroups=yes",
      "RestrictNamespaces=yes",
      "LockPersonality=yes",
      "SystemCallArchitectures=native",
      "CapabilityBoundingSet=",
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
      "UMask=0077",
      "Restart=on-failure",
      "RestartPreventExitStatus=64 77 78",
      "KillSignal=SIGTERM",
      "TimeoutStopSec=15s",
      "Type=simple",
      "After=network-online.target",
      "Wants=network-online.target",
    ]) {
      expect(lines.has(line)).toBe(true);
    }
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute=/m); // the JIT needs W+X memory
    expect(unit).not.toMatch(/^User=root$/m);
    expect(unit).toMatch(/^StartLimitIntervalSec=/m);
    expect(unit).toMatch(/^StartLimitBurst=/m);
  });

  test.skipIf(!hasAnalyze)("passes systemd-analyze verify without a warning", () => {
    const { code, complaints } = verify(unit);
    expect(complaints).toEqual([]);
    expect(code).toBe(0);
  });

  test.skipIf(!hasAnalyze)("systemd-analyze security rates it OK or better", () => {
    const dir = mkdtempSync(join(tmp, "security-"));
    writeFileSync(join(dir, "flashlex.service"), unit);
    const result = Bun.spawnSync(["systemd-analyze", "security", "--offline=true", "--no-pager", join(dir, "flashlex.service")], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const match = /Overall exposure level for flashlex\.service: ([\d.]+) (\w+)/.exec(result.stdout.toString());
    expect(match).not.toBeNull();
    console.log(`systemd-analyze security: ${match![1]} ${match![2]}`);
    expect(Number(match![1])).toBeLessThanOrEqual(2.0);
  });
});

describe("paths systemd has to be told carefully", () => {
  test.skipIf(!hasAnalyze)("spaces and % in every path still verify", async () => {
    const odd = join(tmp, "odd dir 100%", "flash lex");
    const oddConfig = makeConfig(odd);
    const result = await run(["install-service", "-c", oddConfig, "--dry-run"], { cwd: tmp });
    expect(result.code).toBe(ExitCode.OK);
    expect(result.stdout).toContain(`-c "${oddConfig.replaceAll("%", "%%")}"`);
    const { code, complaints } = verify(result.stdout);
    expect(complaints).toEqual([]);
    expect(code).toBe(0);
  });

  test("a path systemd cannot express is refused, not mangled", async () => {
    const bad = makeConfig(join(tmp, "a:b"));
    const result = await run(["install-service", "-c", bad, "--dry-run"], { cwd: tmp });
    expect(result.code).toBe(ExitCode.USAGE);
    expect(result.stderr).toContain("cannot name a path");
    expect(result.stdout).toBe("");
  });

  const values: UnitValues = { binary: "/opt/f/flashlex", config: "/opt/f/config.yml", keys: "/opt/f", data: "/opt/f/data", user: "pi", group: "pi" };

  test("renderUnit refuses relative paths and odd user names", () => {
    expect(() => renderUnit(UNIT_TEMPLATE, { ...values, config: "config.yml" })).toThrow("absolute");
    expect(() => renderUnit(UNIT_TEMPLATE, { ...values, data: "/opt/f/../data" })).toThrow("normalized");
    expect(() => renderUnit(UNIT_TEMPLATE, { ...values, keys: '/opt/"f"' })).toThrow("cannot name");
    expect(() => renderUnit(UNIT_TEMPLATE, { ...values, user: "pi\nExecStartPre=/bin/sh" })).toThrow("user");
    expect(() => renderUnit("{{nope}}", values)).toThrow("unknown placeholder");
  });

  test("a growing restart delay only where systemd knows it (254+)", () => {
    expect(renderUnit(UNIT_TEMPLATE, { ...values, systemdVersion: 257 })).toMatch(/^RestartSteps=\d+\nRestartMaxDelaySec=/m);
    expect(renderUnit(UNIT_TEMPLATE, { ...values, systemdVersion: 252 })).not.toMatch(/^RestartSteps=/m);
    expect(renderUnit(UNIT_TEMPLATE, { ...values, systemdVersion: null })).not.toMatch(/^RestartSteps=/m);
  });
});

describe("self-update (config.yml has flashlex.update.publicKey)", () => {
  /** The hub distribution's layout: the binary beside config.yml, keys/ and data/ in the thing's folder. */
  function thingFolder(name: string): { dir: string; config: string; bin: string } {
    const dir = join(tmp, name);
    const keys = join(dir, "keys");
    mkdirSync(keys, { recursive: true });
    for (const f of readdirSync(home).filter((f) => f.endsWith(".pem"))) copyFileSync(join(home, f), join(keys, f));
    const text = readFileSync(config, "utf8").replace(
      "flashlex:\n",
      `flashlex:\n  update:\n    publicKey: ed25519:${Buffer.alloc(32, 7).toString("base64")}\n`,
    );
    writeFileSync(join(dir, "config.yml"), text);
    const bin = join(dir, "flashlex");
    writeFileSync(bin, "#!/bin/sh\n", { mode: 0o755 });
    if (isRoot) Bun.spawnSync(["chown", "-R", `${owner.uid}:${owner.gid}`, dir]);
    return { dir, config: join(dir, "config.yml"), bin };
  }
  const print = async (folder: { config: string; bin: string }, user?: string) => {
    const io = capture();
    const code = await exitOf(
      io,
      installService({
        config: folder.config,
        user,
        dryRun: true,
        io,
        systemctl: "/bin/false",
        executable: { command: folder.bin, args: [], compiled: true },
      }),
    );
    return { code, ...io };
  };

  test("the binary's directory is the service user's: the guard and a writable directory", async () => {
    const folder = thingFolder("updating");
    const { code, stdout, stderr } = await print(folder);
    expect(code).toBe(ExitCode.OK);
    expect(stderr).toBe("");
    expect(stdout).toContain(
      `\nExecStartPre=-/bin/sh ${folder.dir}/data/update/guard.sh\nExecStart=${folder.bin} serve -c ${folder.config} -k ${folder.dir}/keys -d ${folder.dir}/data\n`,
    );
    expect(stdout).toContain(
      `\nBindReadOnlyPaths=${folder.config}\nBindPaths=${folder.dir} ${folder.dir}/keys ${folder.dir}/data\nReadWritePaths=${folder.dir} ${folder.dir}/keys ${folder.dir}/data\n`,
    );
    expect(stdout).toContain("\nSuccessExitStatus=3\nRestartForceExitStatus=3\nRestartPreventExitStatus=64 77 78\n");
    if (hasAnalyze) expect(verify(stdout).complaints).toEqual([]);
  });

  test.skipIf(!isRoot)(
    "a folder unzipped as root: the one refusal names the keys directory (renewal; one the user may not enter too) and the folder (self-update), and its one fix leaves nothing to warn about (two more chowns came as warnings after it)",
    async () => {
      const folder = thingFolder("unzipped-as-root-updating");
      Bun.spawnSync(["chown", "-R", "0:0", folder.dir]);
      const keys = join(folder.dir, "keys");
      // keys/ the user may not even enter: one of the paths, not a `chmod o+x` of it first (new-user pass 18, F5)
      chmodSync(keys, 0o700);
      const { code, stderr } = await print(folder, owner.name);
      expect(code).toBe(ExitCode.PERMISSION);
      expect(stderr).toContain(`cannot write ${keys}, where serve makes the thing's MQTT session lock`); // and renewal its new key
      expect(stderr).toContain(`cannot write ${folder.dir}, where self-update replaces the binary`);
      const fix = /\(fix: (sudo chown [^)]*)\)\n$/.exec(stderr)![1]!;
      expect(fix).not.toContain(folder.config); // the config stays root's: the user never needs to write it
      execFileSync("sh", ["-c", fix.replaceAll("sudo ", "")]);
      const after = await print(folder, owner.name);
      expect({ code: after.code, stderr: after.stderr }).toEqual({ code: ExitCode.OK, stderr: "" });
    },
  );

  test("a directory the service user cannot write: said clearly, and the unit keeps the binary read-only", async () => {
    const folder = thingFolder("readonly-dir");
    chmodSync(folder.dir, 0o555);
    try {
      const { code, stdout, stderr } = await print(folder);
      expect(code).toBe(ExitCode.OK);
      expect(stderr).toContain(`warning: self-update will not work: ${owner.name} cannot write ${folder.dir}`);
      expect(stderr).toContain("run install-service again");
      expect(stdout).not.toMatch(/^ExecStartPre=/m);
      expect(stdout).toContain(`\nBindReadOnlyPaths=${folder.bin} ${folder.config}\nBindPaths=${folder.dir}/keys ${folder.dir}/data\n`);
      expect(stdout).toContain(`# Self-update is off (${owner.name} cannot write ${folder.dir}`);
    } finally {
      chmodSync(folder.dir, 0o755);
    }
  });

  test("a binary outside the thing's folder, in a directory the service user cannot write (/usr/local/bin): copy it into the folder, never hand the directory over", async () => {
    const folder = thingFolder("outside-bin");
    const binDir = join(tmp, "usr-local-bin");
    mkdirSync(binDir, { recursive: true });
    const bin = join(binDir, "flashlex");
    writeFileSync(bin, "#!/bin/sh\n", { mode: 0o755 });
    chmodSync(binDir, 0o555);
    try {
      const { code, stderr } = await print({ ...folder, bin });
      expect(code).toBe(ExitCode.OK);
      expect(stderr).toContain(
        `${owner.name} cannot write ${binDir}, where the binary is replaced, and should not be given it: copy the binary into the thing's folder`,
      );
      expect(stderr).toContain(
        `${bin} ${folder.dir}/flashlex) and run install-service with that one (sudo ${folder.dir}/flashlex install-service -c ${folder.config})`,
      );
      expect(stderr).not.toContain("chown");
      // the run it suggests keeps --user (without it, a root-owned config was refused, 64)
      const named = await print({ ...folder, bin }, owner.name);
      expect(named.stderr).toContain(`(sudo ${folder.dir}/flashlex install-service --user ${owner.name} -c ${folder.config})`);
    } finally {
      chmodSync(binDir, 0o755);
    }
  });

  test("without update.publicKey nothing changes for the binary, and nothing is said", async () => {
    const result = await run(["install-service", "-c", config, "--print"], { cwd: tmp });
    expect(result.stderr).toBe("");
    expect(result.stdout).not.toMatch(/^ExecStartPre=/m);
    expect(result.stdout).toContain("# Self-update is off (config.yml has no flashlex.update.publicKey)");
  });
});

describe("refusals", () => {
  test("not root: one line and exit 77, for install and uninstall", async () => {
    // as root, drop to nobody for the run; a non-root runner is already the case under test
    const asNobody = isRoot && Bun.which("setpriv") ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    for (const args of [["install-service", "-c", config], ["uninstall-service"]]) {
      const proc = Bun.spawnSync([...asNobody, binaryPath(), ...args], { cwd: "/", stdout: "pipe", stderr: "pipe" });
      const stderr = proc.stderr.toString();
      expect(proc.exitCode).toBe(ExitCode.PERMISSION);
      expect(stderr.trim().split("\n")).toHaveLength(1);
      expect(stderr).toContain("sudo");
      // each says what it does: uninstall writes no unit and has none to print
      expect(stderr).toContain(args[0] === "install-service" ? "writes /etc/systemd/system/flashlex.service" : "removes /etc/systemd/system/flashlex.service");
    }
    const io = capture();
    expect(await exitOf(io, installService({ config, uid: 1000, io }))).toBe(ExitCode.PERMISSION);
  });

  test("a missing config is a configuration error naming the file", async () => {
    const missing = join(tmp, "nowhere", "config.yml");
    const result = await run(["install-service", "-c", missing, "--dry-run"], { cwd: tmp });
    expect(result.code).toBe(ExitCode.CONFIG);
    expect(result.stderr).toContain(missing);
  });

  test("never root: --user root, or a root-owned config without --user", async () => {
    let io = capture();
    expect(await exitOf(io, installService({ config, user: "root", dryRun: true, io }))).toBe(ExitCode.USAGE);
    expect(io.stderr).toContain("never runs as root");
    if (isRoot) {
      const rootOwned = makeConfig(join(tmp, "rootowned"));
      chownSync(rootOwned, 0, 0);
      io = capture();
      expect(await exitOf(io, installService({ config: rootOwned, dryRun: true, io }))).toBe(ExitCode.USAGE);
      expect(io.stderr).toContain("--user");
      io = capture();
      expect(await exitOf(io, installService({ config: rootOwned, user: owner.name, dryRun: true, io }))).toBe(ExitCode.OK);
      // without systemd too: the refusal to name a user comes first, so the dry run that the
      // systemd refusal points to does not then refuse for it
      io = capture();
      const compiled = { command: "/usr/bin/true", args: [], compiled: true };
      expect(await exitOf(io, installService({ config: rootOwned, systemdRunDir: join(tmp, "no-systemd"), executable: compiled, io }))).toBe(ExitCode.USAGE);
      expect(io.stderr).toContain("--user");
      // a folder that is nobody's: the dry run the refusal to install points to names the fix
      // (it said "needs a real user, not nobody" and nothing more: a circle)
      const nobodys = makeConfig(join(tmp, "nobodys"));
      for (const path of [join(tmp, "nobodys"), ...readdirSync(join(tmp, "nobodys")).map((f) => join(tmp, "nobodys", f))]) chownSync(path, 65534, 65534);
      io = capture();
      expect(await exitOf(io, installService({ config: nobodys, dryRun: true, io }))).toBe(ExitCode.USAGE);
      expect(io.stderr).toContain(
        `${nobodys} is owned by nobody: the service needs a real user, not nobody: give the thing's folder to an ordinary user (sudo chown -R NAME: ${join(tmp, "nobodys")}), then run install-service again (or pass --user NAME)`,
      );
    }
  });

  test("from source: a dry run works, an install is refused", async () => {
    const dry = Bun.spawnSync([process.execPath, join(ROOT, "src/main.ts"), "install-service", "-c", config, "--dry-run"], {
      cwd: tmp,
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(dry.exitCode).toBe(ExitCode.OK);
    expect(dry.stdout.toString()).toContain(`ExecStart=${realpathSync(process.execPath)} ${join(ROOT, "src/main.ts")} serve -c ${config}`);
    const io = capture();
    const code = await exitOf(
      io,
      installService({
        config,
        uid: 0,
        io,
        executable: { command: process.execPath, args: [join(ROOT, "src/main.ts")], compiled: false },
        unitPath: join(tmp, "never", "flashlex.service"),
      }),
    );
    expect(code).toBe(ExitCode.USAGE);
    expect(io.stderr).toContain("npm run build");
  });
});

describe("install and uninstall against a fake systemctl", () => {
  let etc: string;
  let unitPath: string;
  let log: string;
  let systemctl: string;
  let opts: Omit<InstallOptions, "io">;

  const calls = () => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n").filter(Boolean) : []);
  const reset = () => {
    rmSync(log, { force: true });
    rmSync(`${log}.int`, { force: true });
  };

  beforeAll(() => {
    const base = mkdtempSync(join(tmp, "install-"));
    etc = join(base, "etc");
    mkdirSync(etc);
    unitPath = join(etc, "flashlex.service");
    log = join(base, "systemctl.log");
    systemctl = join(base, "systemctl");
    // exit status from FAIL_ON (a subcommand name) so one test can make a step fail; INT_AFTER:
    // a step that succeeds, then Ctrl-C reaches its parent (the install, this process), once
    writeFileSync(
      systemctl,
      `#!/bin/sh\necho "$*" >> ${JSON.stringify(log)}\n[ "$1" = --version ] && echo "systemd 252 (252.38-1)"\n[ "$1" = "$FAIL_ON" ] && { echo "Job for $2 failed." >&2; exit 1; }\n[ "$1" = "$INT_AFTER" ] && [ ! -e ${JSON.stringify(`${log}.int`)} ] && { : > ${JSON.stringify(`${log}.int`)}; kill -INT $PPID; }\nexit 0\n`,
      { mode: 0o755 },
    );
    const bin = join(base, "bin", "flashlex");
    mkdirSync(join(base, "bin"));
    writeFileSync(bin, "#!/bin/sh\n", { mode: 0o755 });
    // systemd "runs" here: sd_booted's directory, made by the test
    const runDir = join(base, "run-systemd-system");
    mkdirSync(runDir);
    opts = { config, unitPath, systemctl, uid: 0, executable: { command: bin, args: [], compiled: true }, systemdRunDir: runDir };
  });

  test.skipIf(!isRoot)("every file serve opens is checked as the service user first: 77 naming the file and the fix, nothing written", async () => {
    const folder = join(tmp, "unreadable", "thing");
    const cfg = makeConfig(folder);
    const key = join(folder, `${THING}-keypair-private.pem`);
    const fresh = join(etc, "unreadable.service");
    const attempt = async () => {
      reset();
      const io = capture();
      const code = await exitOf(io, installService({ ...opts, config: cfg, unitPath: fresh, io }));
      return { code, io };
    };
    // the trial's case: the private key root's and 0600, only the config checked before
    chownSync(key, 0, 0);
    let { code, io } = await attempt();
    expect(code).toBe(ExitCode.PERMISSION);
    expect(io.stderr).toContain(`${owner.name} cannot read ${key}`);
    expect(io.stderr).toContain("sudo chown");
    expect(existsSync(fresh)).toBe(false);
    expect(existsSync(join(folder, "data"))).toBe(false);
    expect(calls()).toEqual([]);
    // a dry run refuses the same way
    const dry = capture();
    expect(await exitOf(dry, installService({ config: cfg, dryRun: true, io: dry }))).toBe(ExitCode.PERMISSION);
    chownSync(key, owner.uid, owner.gid);
    // a config naming a file only root may read as its key (/etc/shadow): it was read by root,
    // which said what it found there (78 "neither PEM nor DER", "not issued for this key")
    const rootOnly = mkdtempSync(join(tmp, "root-only-"));
    chmodSync(rootOnly, 0o700);
    const secret = join(rootOnly, "shadow");
    writeFileSync(secret, "root:$6$secret:19000:0:99999:7:::\n", { mode: 0o600 });
    const original = readFileSync(cfg, "utf8");
    for (const named of [secret, join(rootOnly, "missing.pem")]) {
      writeFileSync(cfg, original.replace(/privateKey: .*/, `privateKey: ${named}`));
      ({ code, io } = await attempt());
      expect({ named, code }).toEqual({ named, code: ExitCode.PERMISSION });
      expect(io.stderr).toContain(`${owner.name} cannot reach ${named}: it may not enter ${rootOnly}`);
      expect(io.stderr).not.toMatch(/PEM|DER|issued|ENOENT/);
      // and no chmod of a directory outside the thing's folder (it said `sudo chmod o+x` of it)
      expect(io.stderr).toContain("outside the thing's folder");
      expect(io.stderr).not.toContain("chmod");
    }
    // one the user may read, though not root's: as before, the key's own fault
    // (in a directory of the user's: serve makes the session lock beside it)
    const usersDir = mkdtempSync(join(tmp, "users-"));
    chownSync(usersDir, owner.uid, owner.gid);
    const elsewhere = join(usersDir, "readable-elsewhere.pem");
    writeFileSync(elsewhere, "not a key\n");
    chownSync(elsewhere, owner.uid, owner.gid);
    writeFileSync(cfg, original.replace(/privateKey: .*/, `privateKey: ${elsewhere}`));
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.CONFIG);
    writeFileSync(cfg, original);
    // the config itself a link to such a file: a parse error named the keys it found there
    writeFileSync(secret, "flashlex:\n  thing:\n    name: hidden\n", { mode: 0o600 });
    const linkedConfig = join(folder, "linked.yml");
    symlinkSync(secret, linkedConfig);
    const linked = capture();
    expect(await exitOf(linked, installService({ config: linkedConfig, user: owner.name, dryRun: true, io: linked }))).toBe(ExitCode.PERMISSION);
    expect(linked.stderr).toContain(`${owner.name} cannot reach`);
    expect(linked.stderr).not.toContain("flashlex.");
    // the fixes offered: a chown only inside the thing's folder (it told root to give /etc/shadow,
    // /etc or /root to the user)
    const openDir = mkdtempSync(join(tmp, "root-file-"));
    chmodSync(openDir, 0o755);
    const rootFile = join(openDir, "key.pem");
    writeFileSync(rootFile, "x", { mode: 0o600 });
    writeFileSync(cfg, original.replace(/privateKey: .*/, `privateKey: ${rootFile}`));
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.PERMISSION);
    // with the directory serve would make the key's session lock in: one fix for both
    expect(io.stderr).toContain(
      `cannot read ${rootFile}; cannot write ${openDir}, where serve makes the thing's MQTT session lock ${rootFile}.lock (fix: it is outside the thing's folder ${folder}: put the thing's own copy in the folder`,
    );
    expect(io.stderr).not.toContain("chown");
    writeFileSync(cfg, original);
    // a key in the folder that is a hard link to a file elsewhere: a chown of it changes that one too
    const keyCopy = readFileSync(key);
    const elsewhereKey = join(openDir, "system-secret.pem");
    writeFileSync(elsewhereKey, keyCopy, { mode: 0o600 });
    rmSync(key);
    linkSync(elsewhereKey, key);
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.PERMISSION);
    expect(io.stderr).toContain(`${owner.name} cannot read ${key} (fix: it has 1 other name(s) (hard links)`);
    expect(io.stderr).not.toContain("chown");
    rmSync(key);
    writeFileSync(key, keyCopy, { mode: 0o600 });
    chownSync(key, owner.uid, owner.gid);
    const shadowLike = join(openDir, "shadow");
    writeFileSync(shadowLike, "root:x\n", { mode: 0o600 });
    rmSync(linkedConfig);
    symlinkSync(shadowLike, linkedConfig);
    const noUser = capture();
    expect(await exitOf(noUser, installService({ config: linkedConfig, dryRun: true, io: noUser }))).toBe(ExitCode.USAGE);
    expect(noUser.stderr).toContain("its config.yml is a link out of it, to a file of root's");
    expect(noUser.stderr).not.toContain("chown");
    rmSync(openDir, { recursive: true, force: true });
    rmSync(linkedConfig);
    rmSync(rootOnly, { recursive: true, force: true });
    // a key others may read: serve runs (and warns in its log), bootstrap fails it; the installer warns
    chmodSync(key, 0o644);
    const openKey = capture();
    expect(await exitOf(openKey, installService({ config: cfg, dryRun: true, io: openKey }))).toBe(ExitCode.OK);
    expect(openKey.stderr).toContain(`warning: other users can read the thing's private key ${key} (mode 0644) (fix: chmod 600 ${key})`);
    chmodSync(key, 0o600);
    // a file where the data directory belongs: not a question of permission (no chown fixes it)
    writeFileSync(join(folder, "data"), "");
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.CONFIG);
    expect(io.stderr).toContain(`${join(folder, "data")}: the data directory is not a directory`);
    expect(io.stderr).not.toContain("chown");
    rmSync(join(folder, "data"));
    // a -k that goes through a file, or names one: which file, as given (not "does not exist or is not a directory")
    const asFile = join(folder, "afile");
    writeFileSync(asFile, "");
    for (const [keys, said] of [
      [join(asFile, "keys"), `${join(asFile, "keys")}: the keys directory does not exist: ${asFile} is a file, not a directory`],
      [asFile, `${asFile}: the keys directory is not a directory`],
      [join(folder, "no-keys"), `${join(folder, "no-keys")}: the keys directory does not exist`],
    ] as const) {
      reset();
      const keysIo = capture();
      expect(await exitOf(keysIo, installService({ ...opts, config: cfg, keys, unitPath: fresh, io: keysIo }))).toBe(ExitCode.CONFIG);
      expect(keysIo.stderr).toContain(said);
      expect(existsSync(fresh)).toBe(false);
    }
    rmSync(asFile);
    // a data directory the user cannot write
    mkdirSync(join(folder, "data"), { mode: 0o755 });
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.PERMISSION);
    expect(io.stderr).toContain(`${owner.name} cannot write the data directory ${join(folder, "data")}`);
    expect(existsSync(fresh)).toBe(false);
    chownSync(join(folder, "data"), owner.uid, owner.gid);
    // what a serve run by hand as root left: its lock and update files in data/, the session lock
    // beside the key. The service's serve stopped on them (78, then 77), the dry run said nothing.
    mkdirSync(join(folder, "data", "update"));
    chownSync(join(folder, "data", "update"), owner.uid, owner.gid);
    writeFileSync(join(folder, "data", "update", "guard.sh"), "#!/bin/sh\n", { mode: 0o700 });
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.PERMISSION);
    expect(io.stderr).toContain(
      `${owner.name} cannot use ${join(folder, "data", "update", "guard.sh")}: it belongs to root (uid 0), left there by another user (a serve run as root?), and the service's serve would stop on it (fix: sudo chown -R ${owner.name}:`,
    );
    expect(io.stderr).toContain(` ${join(folder, "data")})`);
    // another user's (nobody's) file: not guessed to be a root serve's (new-user pass 21, F14)
    chownSync(join(folder, "data", "update", "guard.sh"), 65534, 65534);
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.PERMISSION);
    expect(io.stderr).toContain(`it belongs to nobody (uid 65534), left there by another user, and the service's serve would stop on it`);
    rmSync(join(folder, "data", "update"), { recursive: true });
    writeFileSync(`${key}.lock`, "", { mode: 0o600 });
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.PERMISSION);
    expect(io.stderr).toContain(`${owner.name} cannot use ${key}.lock: it belongs to root (uid 0)`);
    expect(io.stderr).toMatch(new RegExp(`\\(fix: sudo chown ${owner.name}:\\S+ ${key}\\.lock\\)`));
    rmSync(`${key}.lock`);
    // a folder on the way it cannot enter
    chmodSync(join(tmp, "unreadable"), 0o700);
    ({ code, io } = await attempt());
    expect(code).toBe(ExitCode.PERMISSION);
    expect(io.stderr).toContain(`may not enter ${join(tmp, "unreadable")}`);
    chmodSync(join(tmp, "unreadable"), 0o755);
    ({ code, io } = await attempt());
    expect(code, io.stderr).toBe(ExitCode.OK);
    rmSync(fresh, { force: true });
  });

  test.skipIf(!isRoot)(
    "a folder unzipped as root, with --user: one run names every path the user's serve could not use, with their chowns in one command (it took three runs, one file each, and passed a keys directory serve could not make its session lock in); a link where the lock belongs is to be removed, not chmod'ed",
    async () => {
      const folder = join(tmp, "unzipped-as-root");
      const cfg = makeConfig(folder);
      execFileSync("chown", ["-R", "0:0", folder]);
      const key = join(folder, `${THING}-keypair-private.pem`);
      mkdirSync(join(folder, "data", "update"), { recursive: true });
      const io = capture();
      expect(await exitOf(io, installService({ config: cfg, user: owner.name, dryRun: true, io }))).toBe(ExitCode.PERMISSION);
      const owns = `${owner.name}:${groupName(owner.gid)}`;
      const fix = `sudo chown -R ${owns} ${join(folder, "data")} && sudo chown ${owns} ${key} ${folder}`;
      expect(io.stderr).toBe(
        `flashlex: ${owner.name} cannot use 4 of the paths the service's serve needs: cannot read ${key}; cannot write the data directory ${join(folder, "data")}; cannot use ${join(folder, "data", "update")}: it belongs to root (uid 0), left there by another user (a serve run as root?), and the service's serve would stop on it; cannot write ${folder}, where serve makes the thing's MQTT session lock ${key}.lock (fix: ${fix})\n`,
      );
      // the one fix it names is enough, and gives the user nothing it did not name
      execFileSync("sh", ["-c", fix.replaceAll("sudo ", "")]);
      expect(statSync(cfg).uid).toBe(0);
      const after = capture();
      expect(await exitOf(after, installService({ config: cfg, user: owner.name, dryRun: true, io: after }))).toBe(ExitCode.OK);
      // alone, the session lock's directory: the serve it would start exits 77 (it was a warning about renewal)
      chownSync(folder, 0, 0);
      const lockDir = capture();
      expect(await exitOf(lockDir, installService({ config: cfg, user: owner.name, dryRun: true, io: lockDir }))).toBe(ExitCode.PERMISSION);
      expect(lockDir.stderr).toBe(
        `flashlex: ${owner.name} cannot write ${folder}, where serve makes the thing's MQTT session lock ${key}.lock (fix: sudo chown ${owner.name}:${groupName(owner.gid)} ${folder})\n`,
      );
      // a session lock of the user's it may not open for writing (serve opens it O_RDWR): 77 too
      chownSync(folder, owner.uid, owner.gid);
      // a link where the lock belongs (a chmod of it changed what it leads to): removed, never chmod'ed
      const elsewhere = join(tmp, "lock-target");
      writeFileSync(elsewhere, "", { mode: 0o644 });
      symlinkSync(elsewhere, `${key}.lock`);
      const linked = capture();
      expect(await exitOf(linked, installService({ config: cfg, user: owner.name, dryRun: true, io: linked }))).toBe(ExitCode.PERMISSION);
      expect(linked.stderr).toBe(
        `flashlex: ${owner.name} cannot use ${key}.lock: it is a symbolic link where the thing's MQTT session lock belongs, and the service's serve would refuse it (fix: sudo rm ${key}.lock; serve makes the lock itself)\n`,
      );
      rmSync(`${key}.lock`);
      writeFileSync(`${key}.lock`, "", { mode: 0o400 });
      chownSync(`${key}.lock`, owner.uid, owner.gid);
      const readOnly = capture();
      expect(await exitOf(readOnly, installService({ config: cfg, user: owner.name, dryRun: true, io: readOnly }))).toBe(ExitCode.PERMISSION);
      expect(readOnly.stderr).toContain(`cannot open ${key}.lock, the thing's MQTT session lock, for writing (fix: sudo chmod 600 ${key}.lock)`);
    },
  );

  test.skipIf(!isRoot)(
    "a config in a directory of other files (-c /etc/flashlex.yml, -k /etc/flashlex-keys): the joined fix names only what the user needs, never the whole directory (it said chown -R of /etc)",
    async () => {
      const system = join(tmp, "etc-like");
      mkdirSync(system, { mode: 0o755 });
      writeFileSync(join(system, "passwd"), "root:x:0:0::/root:/bin/sh\n");
      const keys = join(system, "flashlex-keys");
      mkdirSync(keys, { mode: 0o755 });
      const cfg = join(system, "flashlex.yml");
      copyFileSync(GUIDE, cfg);
      for (const name of ["root-ca-cert.pem", `${THING}-certificate.pem`, `${THING}-keypair-private.pem`]) copyFileSync(join(pki.dir, name), join(keys, name));
      chmodSync(join(keys, `${THING}-keypair-private.pem`), 0o600);
      const io = capture();
      expect(await exitOf(io, installService({ config: cfg, keys, user: owner.name, dryRun: true, io }))).toBe(ExitCode.PERMISSION);
      const key = join(keys, `${THING}-keypair-private.pem`);
      expect(io.stderr).toContain(`(fix: sudo chown ${owner.name}:${groupName(owner.gid)} ${key} ${keys})`);
      expect(io.stderr).not.toContain(`${system} `);
      expect(io.stderr).not.toContain(`${system})`);
    },
  );

  test.skipIf(!isRoot)("a root-owned config and keys: the --user hint does not send the user to root", async () => {
    const folder = join(tmp, "allroot");
    const cfg = makeConfig(folder);
    for (const name of readdirSync(folder)) chownSync(join(folder, name), 0, 0);
    chownSync(folder, 0, 0);
    const io = capture();
    expect(await exitOf(io, installService({ config: cfg, dryRun: true, io }))).toBe(ExitCode.USAGE);
    expect(io.stderr).not.toContain("the user who owns the keys");
    expect(io.stderr).toContain(`sudo chown -R NAME: ${folder}`);
    // keys still the user's: the hint names that user
    for (const name of readdirSync(folder)) if (name !== "config.yml") chownSync(join(folder, name), owner.uid, owner.gid);
    chownSync(folder, owner.uid, owner.gid);
    const named = capture();
    expect(await exitOf(named, installService({ config: cfg, dryRun: true, io: named }))).toBe(ExitCode.USAGE);
    expect(named.stderr).toContain(`pass --user ${owner.name} (the user who owns the keys)`);
  });

  test("without systemd (a container, WSL) install says so and writes nothing", async () => {
    reset();
    const io = capture();
    const elsewhere = join(etc, "..", "not-installed.service");
    expect(await exitOf(io, installService({ ...opts, unitPath: elsewhere, systemdRunDir: join(etc, "no-such-dir"), io }))).toBe(ExitCode.UNAVAILABLE);
    expect(io.stderr).toContain("systemd is not running on this machine");
    expect(io.stderr).toContain("nothing was written");
    expect(existsSync(elsewhere)).toBe(false);
    expect(calls()).toEqual([]);
  });

  test("a daemon-reload that fails takes the new unit back: nothing is left half-installed", async () => {
    process.env.FAIL_ON = "daemon-reload";
    const fresh = join(etc, "fresh.service");
    try {
      const io = capture();
      expect(await exitOf(io, installService({ ...opts, unitPath: fresh, io }))).toBe(ExitCode.UNAVAILABLE);
      expect(io.stderr).toContain("daemon-reload failed");
      expect(existsSync(fresh)).toBe(false);
    } finally {
      delete process.env.FAIL_ON;
    }
  });

  test("Ctrl-C after daemon-reload or after enable takes the new unit back (disabled again): 130, one line, nothing half-installed", async () => {
    for (const step of ["daemon-reload", "enable"]) {
      process.env.INT_AFTER = step;
      const fresh = join(etc, "interrupted.service");
      reset();
      try {
        const io = capture();
        const said: unknown[][] = [];
        const stderr = spyOn(console, "error").mockImplementation((...line) => void said.push(line));
        const code = await interruptible("install-service", INSTALL_UNDONE, async (signal) => {
          await installService({ ...opts, unitPath: fresh, io, signal });
          return ExitCode.OK;
        }).finally(() => stderr.mockRestore());
        expect(code).toBe(130);
        expect(said).toEqual([[`flashlex: install-service stopped by SIGINT; ${INSTALL_UNDONE}`]]);
        expect(existsSync(fresh)).toBe(false);
        const undo = step === "enable" ? ["disable interrupted.service"] : [];
        expect(calls()).toEqual(["--version", "daemon-reload", ...(step === "enable" ? ["enable interrupted.service"] : []), ...undo, "daemon-reload"]);
      } finally {
        delete process.env.INT_AFTER;
      }
    }
  });

  test("install writes the unit 0644, makes the data directory, reloads, enables, restarts", async () => {
    reset();
    const io = capture();
    expect(await exitOf(io, installService({ ...opts, io }))).toBe(ExitCode.OK);
    expect(calls()).toEqual(["--version", "daemon-reload", "enable flashlex.service", "restart flashlex.service"]);
    expect(statSync(unitPath).mode & 0o777).toBe(0o644);
    expect(readdirSync(etc)).toEqual(["flashlex.service"]); // no temp file left behind
    expect(io.stdout).toContain(`wrote ${unitPath}`);
    // every directory the unit lets it write, as ReadWritePaths= lists them
    expect(io.stdout).toMatch(/writes only .*\(certificate renewal[^)]*\)/);
    expect(io.stdout).toContain(join(home, "data"));
    expect(io.stdout).toContain("systemctl status flashlex");
    expect(io.stdout).toContain("journalctl -u flashlex -f");
    const data = statSync(join(home, "data"));
    expect(data.isDirectory()).toBe(true);
    expect(data.uid).toBe(owner.uid);
    if (hasAnalyze) expect(verify(readFileSync(unitPath, "utf8")).complaints).toEqual([]);
  });

  test("a second install changes nothing but still reloads and restarts", async () => {
    const before = readFileSync(unitPath, "utf8");
    const mtime = statSync(unitPath).mtimeMs;
    reset();
    const io = capture();
    expect(await exitOf(io, installService({ ...opts, io }))).toBe(ExitCode.OK);
    expect(io.stdout).toContain("up to date");
    expect(readFileSync(unitPath, "utf8")).toBe(before);
    expect(statSync(unitPath).mtimeMs).toBe(mtime);
    expect(calls()).toEqual(["--version", "daemon-reload", "enable flashlex.service", "restart flashlex.service"]);
  });

  test("a changed setting rewrites the unit", async () => {
    const io = capture();
    expect(await exitOf(io, installService({ ...opts, data: join(home, "data2"), io }))).toBe(ExitCode.OK);
    expect(io.stdout).toContain(`updated ${unitPath}`);
    expect(readFileSync(unitPath, "utf8")).toContain(`-d ${home}/data2`);
    expect(await exitOf(capture(), installService({ ...opts, io: capture() }))).toBe(ExitCode.OK);
  });

  test("a unit that runs another thing is not rewritten: 64 naming its config and the ways on; --replace rewrites it (new-user pass 26, F4: the first thing's agent was stopped for good without a word)", async () => {
    const other = makeConfig(join(tmp, "second-thing", "thing"));
    const before = readFileSync(unitPath, "utf8");
    reset();
    const io = capture();
    expect(await exitOf(io, installService({ ...opts, config: other, io }))).toBe(ExitCode.USAGE);
    expect(io.stderr).toContain(`${unitPath} runs another thing's serve (its config is ${config}): a machine runs one thing's service;`);
    expect(io.stderr).toContain("flashlex uninstall-service first, or pass --replace");
    expect(readFileSync(unitPath, "utf8")).toBe(before);
    expect(calls().filter((c) => c !== "--version")).toEqual([]);
    // the preview says so too, and changes nothing (attack round 28, I1)
    const preview = capture();
    expect(await exitOf(preview, installService({ ...opts, config: other, dryRun: true, io: preview }))).toBe(ExitCode.OK);
    expect(preview.stderr).toContain(`warning: ${unitPath} runs another thing's serve (its config is ${config})`);
    expect(preview.stderr).toContain("installing this would be refused without --replace");
    expect(readFileSync(unitPath, "utf8")).toBe(before);
    const replaced = capture();
    expect(await exitOf(replaced, installService({ ...opts, config: other, replace: true, io: replaced }))).toBe(ExitCode.OK);
    expect(readFileSync(unitPath, "utf8")).toContain(`serve -c ${other} -k`);
    // paths with a space are quoted in the unit: told apart all the same, and the same thing's own
    // unit is its own (verify pass 31, F4: two spaced folders replaced each other silently)
    const spacedA = makeConfig(join(tmp, "spaced thing a", "thing"));
    const spacedB = makeConfig(join(tmp, "spaced thing b", "thing"));
    expect(await exitOf(capture(), installService({ ...opts, config: spacedA, replace: true, io: capture() }))).toBe(ExitCode.OK);
    expect(await exitOf(capture(), installService({ ...opts, config: spacedA, io: capture() }))).toBe(ExitCode.OK);
    const spaced = capture();
    expect(await exitOf(spaced, installService({ ...opts, config: spacedB, io: spaced }))).toBe(ExitCode.USAGE);
    expect(spaced.stderr).toContain(`(its config is "${spacedA}")`);
    // the unit the tests below expect
    expect(await exitOf(capture(), installService({ ...opts, replace: true, io: capture() }))).toBe(ExitCode.OK);
    expect(readFileSync(unitPath, "utf8")).toBe(before);
  });

  test("a folder, binary or config other users may change is warned about, naming the fix: they could replace what the service runs (attack round 28, F6)", async () => {
    const bin = opts.executable!.command;
    const io = capture();
    chmodSync(home, 0o777);
    chmodSync(bin, 0o757);
    try {
      expect(await exitOf(io, installService({ ...opts, dryRun: true, io }))).toBe(ExitCode.OK);
    } finally {
      chmodSync(home, 0o755);
      chmodSync(bin, 0o755);
    }
    expect(io.stderr).toContain(`warning: other users may change ${home} (mode 0777): they could replace what the service runs as`);
    expect(io.stderr).toContain(`warning: other users may change ${bin} (mode 0757)`);
    expect(io.stderr).toContain(`(fix: chmod go-w ${home})`);
    // sticky keeps others from renaming what is there, not from making data/update first (verify pass 32, F5)
    const data = join(home, "data");
    const made = !existsSync(data);
    mkdirSync(data, { recursive: true });
    const dataMode = statSync(data).mode & 0o7777;
    chmodSync(data, 0o1777);
    const sticky = capture();
    try {
      expect(await exitOf(sticky, installService({ ...opts, dryRun: true, io: sticky })), sticky.stderr).toBe(ExitCode.OK);
    } finally {
      if (made) rmSync(data, { recursive: true });
      else chmodSync(data, dataMode);
    }
    expect(sticky.stderr).toContain(`warning: other users may change ${data} (mode 01777)`);
    const quiet = capture();
    expect(await exitOf(quiet, installService({ ...opts, dryRun: true, io: quiet }))).toBe(ExitCode.OK);
    expect(quiet.stderr).not.toContain("other users may change");
  });

  test("a hand-made drop-in that runs the update guard too is pointed out", async () => {
    mkdirSync(`${unitPath}.d`, { recursive: true });
    writeFileSync(join(`${unitPath}.d`, "override.conf"), `[Service]\nExecStartPre=-/bin/sh ${home}/data/update/guard.sh\n`);
    writeFileSync(join(`${unitPath}.d`, "gpio.conf"), "[Service]\nSupplementaryGroups=gpio\n");
    try {
      const io = capture();
      expect(await exitOf(io, installService({ ...opts, io }))).toBe(ExitCode.OK);
      expect(io.stderr).toContain(`warning: ${unitPath}.d/override.conf runs the update guard too`);
      expect(io.stderr).not.toContain("gpio.conf");
    } finally {
      rmSync(`${unitPath}.d`, { recursive: true, force: true });
    }
  });

  test("a failing systemctl step is exit 69 with the step and a hint", async () => {
    process.env.FAIL_ON = "restart";
    try {
      const io = capture();
      expect(await exitOf(io, installService({ ...opts, io }))).toBe(ExitCode.UNAVAILABLE);
      expect(io.stderr).toContain("restart flashlex.service failed");
      expect(io.stderr).toContain("journalctl -u flashlex.service");
    } finally {
      delete process.env.FAIL_ON;
    }
  });

  test("uninstall stops, disables, removes and reloads; a second uninstall is a no-op", async () => {
    reset();
    let io = capture();
    expect(await exitOf(io, uninstallService({ unitPath, systemctl, uid: 0, io }))).toBe(ExitCode.OK);
    expect(existsSync(unitPath)).toBe(false);
    expect(calls()).toEqual(["stop flashlex.service", "disable flashlex.service", "daemon-reload", "reset-failed flashlex.service"]);
    expect(existsSync(join(home, "data"))).toBe(true); // data is the user's, never removed

    reset();
    io = capture();
    expect(await exitOf(io, uninstallService({ unitPath, systemctl, uid: 0, io }))).toBe(ExitCode.OK);
    expect(io.stdout).toContain("not installed");
    expect(calls()).toEqual([]);
    // and a dry run says so too, rather than the steps it would not take
    io = capture();
    expect(await exitOf(io, uninstallService({ unitPath, systemctl, uid: 1000, dryRun: true, io }))).toBe(ExitCode.OK);
    expect(io.stdout).toBe(`${unitPath} is not installed; nothing to do\n`);
  });
});
