/**
 * Signed self-update of the **arm64** agent, run under qemu-aarch64-static on this x64 machine,
 * against a real compiled x64 `hub serve` on loopback (issue 15: "x64 natively; arm64 under
 * qemu"). The arm64 binary renders its own unit (`install-service --print`, under qemu: its
 * ExecStart= is the path qemu reports as process.execPath), and test/support/supervisor.ts runs
 * that unit as systemd would, with the emulator before ExecStart= (`--unit FILE -- qemu...`): the
 * guard before every start, restarts by the unit's Restart= lines, each one starting qemu again
 * on whatever binary is then at the unit's path. Cases:
 *
 *   1. a good release whose linux-arm64 entry is a real arm64 build of a newer version:
 *      downloaded, signature and SHA-256 checked, in place, exit 3, restarted under qemu, on
 *      trial, healthy; the hub shows the new version and target, and the bytes on disk are the
 *      new build's (the previous build's kept beside it);
 *   2. a release whose linux-arm64 entry is really an x64 binary (signature and digest fine):
 *      refused by the ELF check, which compares with process.arch, `arm64` inside the emulated
 *      binary (EM_AARCH64, the arm64 branch that the x64 tests never take);
 *   3. a linux-arm64 release that crashes at start (qemu passes the guest's SIGABRT on to
 *      itself, so the supervisor sees a SIGABRT death): two starts, the guard puts the previous
 *      binary back at the third, which reports the rollback; the rollout stops.
 *   4. a linux-arm64 binary changed after signing: refused (SHA-256), nothing replaced.
 *
 * Binaries: this tree built for linux-arm64 three times with scripts/build.ts (versions
 * 1.0.0-arm64, 2.0.0-arm64, and crash-at-start.ts), in this test's own directory: each build
 * takes ~1-2 s once the arm64 Bun runtime is in Bun's cache (~/.bun/install/cache, which
 * targets.test.ts and `bun run build` fill); reusing targets.test.ts's dist/test/targets binary
 * is not possible (it carries the package version, and a test needs two versions). The hub and
 * the x64 binary of case 2 are this machine's (FLASHLEX_BIN, or built once by binary.ts).
 *
 * Skipped, loudly, when this machine cannot run arm64 binaries (no qemu-user-static, no
 * libc6-arm64-cross: scripts/targets.ts runnerFor) or is not x64 (self-update.test.ts runs the
 * arm64 agent natively there).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { runnerFor, targetByName } from "../../scripts/targets.ts";
import { elfMismatch } from "../../src/shared/elf.ts";
import { ordinaryAccount } from "../support/accounts.ts";
import { type Background, binaryPath, run } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { parseServiceUnit } from "../support/systemd-unit.ts";
import * as updates from "../support/updates.ts";
import { buildVersion, CRASH_AT_START, prepareUpdatingThing, sha256Of as sha, superviseUnit } from "../support/updates.ts";

const ARM64 = targetByName("linux-arm64")!;
const runner = runnerFor(ARM64);
const SKIP =
  process.arch !== "x64"
    ? `this machine is ${process.arch}, not x64: self-update.test.ts runs its own architecture natively`
    : runner.ok
      ? undefined
      : `${runner.why}${runner.install ? `; install with: ${runner.install} (or: bash scripts/install-system-packages.sh)` : ""}`;
const prefix = runner.ok ? runner.prefix : [];
if (SKIP) console.warn(`\n!!! SKIPPED: the arm64 agent's self-update is not tested on this machine: ${SKIP}\n`);

const work = mkdtempSync(join(tmpdir(), "flashlex-self-update-arm64-"));
const isRoot = process.getuid?.() === 0;
const V1 = "1.0.0-arm64";
const V2 = "2.0.0-arm64";
const binaries: Record<string, string> = {};
let hub: HubFixture;
let hubServe: Background;
let thing: HubThing;
let agent: Background;
let thingBinary: string;
let unitText: string;

const addRelease = (version: string, file: string) => updates.addRelease(hub, join(work, "releases"), version, file, ARM64);
const rollOut = (version: string) => updates.rollOut(hub, version, [thing.name]);
const waitForState = (version: string, state: string, timeoutMs = 60_000) =>
  updates.waitForUpdateState(hub, thing.name, version, state, timeoutMs, () => agent.output());
const versionOf = (file: string) => updates.versionOf(file, prefix);
const count = (text: string, what: string) => text.split(what).length - 1;

beforeAll(async () => {
  if (SKIP) return;
  const build = (name: string) => join(work, "build", name);
  const [v1, v2, crash] = await Promise.all([
    buildVersion(build("v1"), V1, { target: ARM64 }),
    buildVersion(build("v2"), V2, { target: ARM64 }),
    buildVersion(build("crash"), "3.0.0-arm64-crash", { entry: CRASH_AT_START, target: ARM64 }),
  ]);
  Object.assign(binaries, { v1, v2, crash, x64: binaryPath() });
  hub = await makeHubFixture(work);
  thing = await hub.createThing("arm64updater");
  // under qemu a start and a TLS handshake take seconds, so the trial gets 60 s (default 120 s)
  // and MQTT its own generous timeouts, as in targets.test.ts
  thingBinary = prepareUpdatingThing(thing.configPath, v1, join(thing.root, "flashlex"), {
    healthySeconds: 60,
    settings: [
      [["flashlex", "thing", "mqtt", "connectDisconnectTimeout"], 30],
      [["flashlex", "thing", "mqtt", "mqttOperationTimeout"], 30],
    ],
  });
  const owner = ordinaryAccount();
  if (isRoot) {
    // the Pi layout: the thing's folder belongs to the service user, who runs the agent
    Bun.spawnSync(["chown", "-R", `${owner.uid}:${owner.gid}`, thing.root]);
    for (let dir = dirname(thing.root); dir.startsWith(work); dir = dirname(dir)) chmodSync(dir, statSync(dir).mode | 0o005);
    chmodSync(work, 0o755);
  }
  const printed = await run(["install-service", "--print", ...thing.flags, ...(isRoot ? ["--user", owner.name] : [])], {
    command: [...prefix, thingBinary],
    timeoutMs: 60_000,
  });
  if (printed.code !== 0) throw new Error(`install-service --print under qemu exited ${printed.code}\n${printed.stdout}${printed.stderr}`);
  unitText = printed.stdout;
  writeFileSync(join(work, "flashlex.service"), unitText);
  hubServe = await hub.serve();
  agent = await superviseUnit(join(work, "flashlex.service"), prefix, 60_000);
}, 120_000);

afterAll(async () => {
  await agent?.stop(20_000);
  await hubServe?.stop();
  rmSync(work, { recursive: true, force: true });
  if (SKIP) console.warn(`\n!!! SKIPPED: the arm64 agent's self-update is not tested on this machine: ${SKIP}\n`);
});

describe.skipIf(Boolean(SKIP))("the arm64 agent updates itself under qemu", () => {
  test("the arm64 binary runs under qemu and its unit names the thing's binary", () => {
    // process.execPath inside the emulated binary is the guest binary (qemu answers /proc/self/exe)
    expect(parseServiceUnit(unitText).execStart.argv.slice(0, 2)).toEqual([thingBinary, "serve"]);
    expect(elfMismatch(thingBinary, "arm64")).toBeUndefined();
    expect(elfMismatch(thingBinary, "x64")).toMatch(/built for aarch64/);
    expect(versionOf(thingBinary)).toContain(`${V1} (selfupd), Bun`);
    expect(versionOf(thingBinary)).toContain("linux-arm64");
  });

  test("a good arm64 release: downloaded, verified, in place, restarted under qemu, healthy", async () => {
    await addRelease(V2, binaries.v2!);
    await rollOut(V2);
    const state = await waitForState(V2, "healthy", 90_000);
    // what the new process itself says it runs (its poll and its healthy report)
    expect(state.version).toBe(V2);
    expect(state.target).toBe("linux-arm64");
    // the bytes on disk are the new build's, the previous build's kept beside them
    expect(sha(thingBinary)).toBe(sha(binaries.v2!));
    expect(sha(`${thingBinary}.previous`)).toBe(sha(binaries.v1!));
    expect(versionOf(thingBinary)).toContain(V2);
    // the agent logs update.healthy once the hub's answer is back: after the hub shows it
    await agent.waitFor(/update\.healthy version=2\.0\.0-arm64/, 30_000);
    const output = agent.output();
    expect(output).toContain("supervisor: exit 3\nsupervisor: clean, restart\n");
    expect(output).toMatch(/update\.trial version=2\.0\.0-arm64/);
    if (isRoot) expect(statSync(thingBinary).uid).toBe(ordinaryAccount().uid); // written by the service user under qemu
  }, 120_000);

  test("a linux-arm64 entry that holds an x64 binary (stored by a hub without release add's own check) is refused by the thing's ELF check, nothing replaced", async () => {
    const before = sha(thingBinary);
    await updates.storeReleaseUnchecked(hub, join(work, "releases"), "2.0.2-x64-inside", binaries.x64!, ARM64);
    await rollOut("2.0.2-x64-inside");
    const state = await waitForState("2.0.2-x64-inside", "failed");
    expect(state.detail).toBe("the binary cannot run here: it is built for x86-64, not aarch64");
    expect(state.version).toBe(V2);
    expect(sha(thingBinary)).toBe(before);
  }, 60_000);

  test("an arm64 binary that crashes at start under qemu is rolled back by the guard, and the hub is told", async () => {
    const before = sha(thingBinary);
    const abortsBefore = count(agent.output(), "supervisor: exit SIGABRT");
    await addRelease("3.0.0-arm64-crash", binaries.crash!);
    await rollOut("3.0.0-arm64-crash");
    const state = await waitForState("3.0.0-arm64-crash", "rolled-back", 90_000);
    expect(state.detail).toMatch(/started 2 times without reporting healthy/);
    expect(state.version).toBe(V2); // reported by the previous arm64 binary, back in place
    expect(sha(thingBinary)).toBe(before);
    const output = agent.output();
    expect(count(output, "supervisor: exit SIGABRT") - abortsBefore).toBe(2);
    expect(output).toContain("the previous binary is back");
    expect(output).not.toContain("start-limit-hit");
    expect((await updates.updates(hub)).rollout?.state).toBe("stopped");
  }, 120_000);

  test("an arm64 binary changed after signing is refused (SHA-256), nothing replaced", async () => {
    const before = sha(thingBinary);
    await addRelease("2.0.1-tampered", binaries.v2!);
    const stored = join(hub.dir, "releases", "2.0.1-tampered", "flashlex-linux-arm64");
    const bytes = readFileSync(stored);
    bytes[bytes.length >> 1]! ^= 0x01;
    writeFileSync(stored, bytes);
    await rollOut("2.0.1-tampered");
    const state = await waitForState("2.0.1-tampered", "failed");
    expect(state.detail).toMatch(/SHA-256 mismatch/);
    expect(state.version).toBe(V2);
    expect(sha(thingBinary)).toBe(before);
  }, 60_000);
});
