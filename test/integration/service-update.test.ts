/**
 * Self-update through the unit that install-service writes: the thing's own binary renders the
 * unit (`install-service --print`), and test/support/supervisor.ts runs that unit's lines as
 * systemd would on machines where it is not PID 1 (its ExecStartPre= guard before every start,
 * its ExecStart=, as its User= when the test runs as root, restarts decided by its Restart=,
 * SuccessExitStatus=, RestartForceExitStatus=, RestartPreventExitStatus= and StartLimitBurst=).
 * A real `hub serve` on loopback rolls out:
 *
 *   1. a good release: exit 3 is a clean exit that restarts into the new binary, which reports
 *      healthy; the service user wrote the new binary and `flashlex.previous` in the thing's folder;
 *   2. a release that crashes at start: two failed starts, then the unit's guard line puts the
 *      previous binary back, which reports the rollback;
 *   3. a release that refuses its config at start (78, which the unit's RestartPreventExitStatus=
 *      does not restart): on trial, serve ends with 75 instead, so it is restarted, and the guard
 *      rolls back at the third start as for a crash. The same binary with no update pending
 *      keeps its 78, and the supervisor does not restart that (it honours the unit's line).
 *
 * Not emulated: the sandbox (mount namespace, filters); the unit's Bind*Paths= are checked by
 * reading (test/unit/service-unit.test.ts, systemd-analyze verify).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ROOT } from "../../scripts/build.ts";
import { ordinaryAccount } from "../support/accounts.ts";
import { type Background, run, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { parseServiceUnit } from "../support/systemd-unit.ts";
import * as updates from "../support/updates.ts";
import { buildVersion, CRASH_AT_START, prepareUpdatingThing, sha256Of as sha, versionOf } from "../support/updates.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-service-update-"));
const isRoot = process.getuid?.() === 0;
const owner = ordinaryAccount();
const V1 = "1.0.0-unit";
const V2 = "2.0.0-unit";
const binaries: Record<string, string> = {};
let hub: HubFixture;
let hubServe: Background;
let thing: HubThing;
let agent: Background;
let thingBinary: string;
let unit: string;

const build = (name: string, version: string, entry?: string) => buildVersion(join(work, "build", name), version, { entry });
async function addRelease(version: string, file: string): Promise<void> {
  await updates.addRelease(hub, join(work, "releases"), version, file);
  await updates.rollOut(hub, version, [thing.name]);
}
const waitForState = (version: string, state: string, timeoutMs = 60_000) =>
  updates.waitForUpdateState(hub, thing.name, version, state, timeoutMs, () => agent.output());
const count = (text: string, what: string) => text.split(what).length - 1;

beforeAll(async () => {
  const [v1, v2, crash, refuses] = await Promise.all([
    build("v1", V1),
    build("v2", V2),
    build("crash", "3.0.0-crash", CRASH_AT_START),
    build("refuses", "4.0.0-refuses", join(ROOT, "test/support/config-refused-at-start.ts")),
  ]);
  Object.assign(binaries, { v1, v2, crash, refuses });
  hub = await makeHubFixture(work);
  thing = await hub.createThing("unitupdate");
  thingBinary = prepareUpdatingThing(thing.configPath, v1, join(thing.root, "flashlex"));
  if (isRoot) {
    // the Pi layout: the thing's folder belongs to the service user, who runs the agent
    Bun.spawnSync(["chown", "-R", `${owner.uid}:${owner.gid}`, thing.root]);
    for (let dir = dirname(thing.root); dir.startsWith(work); dir = dirname(dir)) chmodSync(dir, statSync(dir).mode | 0o005);
    chmodSync(work, 0o755);
  }
  const printed = await run(["install-service", "--print", ...thing.flags, ...(isRoot ? ["--user", owner.name] : [])], { command: [thingBinary] });
  expect(printed.stderr).toBe("");
  expect(printed.code).toBe(0);
  unit = printed.stdout;
  writeFileSync(join(work, "flashlex.service"), unit);
  hubServe = await hub.serve();
  agent = start([], { command: [process.execPath, join(ROOT, "test/support/supervisor.ts"), "--unit", join(work, "flashlex.service")] });
  await agent.waitFor(/serve\.started/, 30_000);
}, 240_000);

afterAll(async () => {
  await agent?.stop();
  await hubServe?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("self-update through the unit install-service writes", () => {
  test("the unit runs the guard before the agent and lets the binary's directory be written", () => {
    const parsed = parseServiceUnit(unit);
    expect(parsed.execStartPre).toEqual([{ argv: ["/bin/sh", join(thing.dataDir, "update", "guard.sh")], ignoreFailure: true }]);
    expect(parsed.execStart.argv.slice(0, 2)).toEqual([thingBinary, "serve"]);
    expect(unit).toMatch(new RegExp(`^ReadWritePaths=${thing.root} `, "m"));
    if (isRoot) expect(parsed.user).toBe(owner.name);
    // the very first start: serve had not written the guard yet, and "-" let the start go on
    expect(agent.output()).toContain("supervisor: ExecStartPre exit 2 (ignored)\nsupervisor: start 1\n");
  });

  test("a good update: exit 3 is clean and restarts, the new binary reports healthy", async () => {
    await addRelease(V2, binaries.v2!);
    const state = await waitForState(V2, "healthy");
    expect(state.version).toBe(V2);
    expect(versionOf(thingBinary)).toContain(V2);
    expect(versionOf(`${thingBinary}.previous`)).toContain(V1);
    expect(agent.output()).toContain("supervisor: exit 3\nsupervisor: clean, restart\n");
    if (isRoot) {
      expect(statSync(thingBinary).uid).toBe(owner.uid); // written by the service user, not root
      expect(statSync(thingBinary).mode & 0o777).toBe(0o755);
    }
  }, 90_000);

  test("a binary that crashes at start: the unit's guard puts the previous one back at the third start", async () => {
    const before = sha(thingBinary);
    const exitsBefore = count(agent.output(), "supervisor: exit SIGABRT");
    await addRelease("3.0.0-crash", binaries.crash!);
    const state = await waitForState("3.0.0-crash", "rolled-back", 90_000);
    expect(state.detail).toMatch(/started 2 times without reporting healthy/);
    expect(state.version).toBe(V2);
    expect(sha(thingBinary)).toBe(before);
    const output = agent.output();
    expect(count(output, "supervisor: exit SIGABRT") - exitsBefore).toBe(2);
    expect(output).toContain("supervisor: failed, restart");
    expect(output).toContain("the previous binary is back");
    expect(output).not.toContain("start-limit-hit");
  }, 120_000);

  test("a binary that exits 78 at start (a config it refuses): on trial it exits 75, is restarted, and the guard rolls it back", async () => {
    const before = sha(thingBinary);
    const exitsBefore = count(agent.output(), "supervisor: exit 75");
    await addRelease("4.0.0-refuses", binaries.refuses!);
    const state = await waitForState("4.0.0-refuses", "rolled-back", 90_000);
    expect(state.detail).toMatch(/started 2 times without reporting healthy/);
    expect(state.version).toBe(V2);
    expect(sha(thingBinary)).toBe(before);
    const output = agent.output();
    expect(count(output, "supervisor: exit 75") - exitsBefore).toBe(2);
    expect(output).toContain("exit 78 turned into 75: version 4.0.0-refuses is on trial");
    expect(output).not.toContain("start-limit-hit");
  }, 120_000);

  test("without an update on trial, the same binary's 78 is not restarted (the supervisor honours RestartPreventExitStatus=)", async () => {
    const lone = join(work, "lone.service");
    const dataDir = join(work, "lone-data");
    const flags = thing.flags.map((f) => (f === thing.dataDir ? dataDir : f));
    writeFileSync(lone, `[Service]\nExecStart=${binaries.refuses} serve ${flags.join(" ")}\nRestart=on-failure\nRestartPreventExitStatus=64 77 78\n`);
    const ran = Bun.spawnSync([process.execPath, join(ROOT, "test/support/supervisor.ts"), "--unit", lone], { stderr: "pipe", timeout: 30_000 });
    const said = ran.stderr.toString();
    expect(said).toContain("supervisor: exit 78\nsupervisor: failed, no restart");
    expect(count(said, "supervisor: start")).toBe(1);
  }, 40_000);
});
