/**
 * Signed self-update end to end, with compiled binaries and a real `hub serve` on loopback: a
 * thing runs release 1 under a supervisor that does what the systemd unit does (the pre-start
 * guard, then restart on a non-zero exit: test/support/supervisor.ts), and the hub rolls out:
 *
 *   1. release 2, good: the thing downloads, verifies, replaces itself, restarts, reports healthy,
 *      and runs 2 (the previous binary kept beside it);
 *   2. a release whose stored binary was tampered with after signing (one byte flipped): refused
 *      by the thing (SHA-256), reported failed, nothing replaced;
 *   3. a release whose linux-x64 entry is really the arm64 binary (mixed up before signing, so
 *      signature and SHA-256 are fine): `hub release add` refuses it (the binary's ELF machine
 *      against its target's), and so does a release naming a target FlashLex does not ship; one
 *      that a hub without that check stored (written into the hub home and hub.db here) is
 *      refused by the thing's own ELF check, nothing replaced;
 *   4. a release that crashes at start: the guard puts the previous binary back at its third
 *      start, which reports the rollback.
 *
 * Binaries: this tree built three times with scripts/build.ts (`defines`: other versions) and
 * once from test/support/crash-at-start.ts; the hub is the host binary (FLASHLEX_BIN).
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { targetByName } from "../../scripts/targets.ts";
import { type Background, run } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import * as updates from "../support/updates.ts";
import { buildVersion, CRASH_AT_START, host, prepareUpdatingThing, sha256Of as sha, superviseServe, versionOf } from "../support/updates.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-self-update-"));
const V1 = "1.0.0-test";
const V2 = "2.0.0-test";
const binaries: Record<string, string> = {};
let hub: HubFixture;
let hubServe: Background;
let thing: HubThing;
let agent: Background;
let thingBinary: string;

const addRelease = (version: string, file: string) => updates.addRelease(hub, join(work, "releases"), version, file);
const rollOut = (version: string) => updates.rollOut(hub, version, [thing.name]);
const waitForState = (version: string, state: string, timeoutMs = 60_000) =>
  updates.waitForUpdateState(hub, thing.name, version, state, timeoutMs, () => agent.output());

beforeAll(async () => {
  const build = (name: string) => join(work, "build", name);
  const [v1, v2, crash, other] = await Promise.all([
    buildVersion(build("v1"), V1),
    buildVersion(build("v2"), V2),
    buildVersion(build("crash"), "3.0.0-crash", { entry: CRASH_AT_START }),
    buildVersion(build("other"), V2, { target: targetByName(host.name === "linux-x64" ? "linux-arm64" : "linux-x64")! }),
  ]);
  Object.assign(binaries, { v1, v2, crash, other });
  hub = await makeHubFixture(work);
  thing = await hub.createThing("updater");
  thingBinary = prepareUpdatingThing(thing.configPath, v1, join(thing.root, "flashlex"));
  hubServe = await hub.serve();
  agent = await superviseServe(thingBinary, thing.dataDir, thing.flags);
}, 240_000);

afterAll(async () => {
  await agent?.stop();
  await hubServe?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("self-update under a supervisor", () => {
  test("the distribution pins the hub's update key", () => {
    const pinned = parseDocument(readFileSync(thing.configPath, "utf8")).getIn(["flashlex", "update", "publicKey"]);
    expect(pinned).toBe(readFileSync(join(hub.dir, "update-key.pub"), "utf8").trim());
  });

  test("a good update: downloaded, verified, in place, restarted, healthy, and the hub shows the new version", async () => {
    await addRelease(V2, binaries.v2!);
    await rollOut(V2);
    const state = await waitForState(V2, "healthy");
    expect(state.version).toBe(V2);
    expect(versionOf(thingBinary)).toContain(V2);
    expect(versionOf(`${thingBinary}.previous`)).toContain(V1);
    expect(agent.output()).toContain("supervisor: exit 3");
    // the agent logs update.healthy once the hub's answer is back: after the hub shows it
    await agent.waitFor(/update\.healthy/, 30_000);
  }, 90_000);

  test("a binary tampered with after signing is refused and nothing is replaced", async () => {
    const before = sha(thingBinary);
    await addRelease("2.0.1-tampered", binaries.v2!);
    const stored = join(hub.dir, "releases", "2.0.1-tampered", `flashlex-${host.name}`);
    const bytes = readFileSync(stored);
    bytes[bytes.length >> 1]! ^= 0x01;
    writeFileSync(stored, bytes);
    await rollOut("2.0.1-tampered");
    const state = await waitForState("2.0.1-tampered", "failed");
    expect(state.detail).toMatch(/SHA-256 mismatch/);
    expect(state.version).toBe(V2);
    expect(sha(thingBinary)).toBe(before);
    expect(statSync(thing.root).isDirectory()).toBe(true);
  }, 60_000);

  const signedRelease = (version: string, file: string, target: string) => updates.signedRelease(hub, join(work, "releases"), version, file, target);

  test("hub release add refuses a binary built for another machine than its target, and a target FlashLex does not ship", async () => {
    const mixedUp = await signedRelease("2.0.2-mixedup", binaries.other!, host.name);
    const refused = await run(["hub", "release", "add", mixedUp, "--dir", hub.dir]);
    expect(refused.code).toBe(65);
    expect(refused.stderr.trim()).toMatch(
      new RegExp(`flashlex-${host.name}: the manifest lists it for ${host.name}, but it is built for \\S+, not \\S+; were the files mixed up`),
    );
    const typo = await signedRelease("2.0.2-typo", binaries.v2!, "linux-arm");
    const unknown = await run(["hub", "release", "add", typo, "--dir", hub.dir]);
    expect(unknown.code).toBe(65);
    expect(unknown.stderr).toMatch(/manifest\.json: "linux-arm" is not a target FlashLex ships \(linux-x64, linux-arm64, linux-armv7, /);
    expect(readdirSync(join(hub.dir, "releases")).filter((v) => v.startsWith("2.0.2"))).toEqual([]);
  }, 60_000);

  test("a binary for another architecture that a hub without the check stored is refused by the thing, and nothing is replaced", async () => {
    const before = sha(thingBinary);
    const version = "2.0.2-otherarch";
    await updates.storeReleaseUnchecked(hub, join(work, "releases"), version, binaries.other!);
    await rollOut(version);
    const state = await waitForState(version, "failed");
    expect(state.detail).toMatch(/cannot run here: it is built for/);
    expect(sha(thingBinary)).toBe(before);
  }, 60_000);

  test("a binary that crashes at start is rolled back to the previous one, and the hub is told", async () => {
    const before = sha(thingBinary);
    await addRelease("3.0.0-crash", binaries.crash!);
    await rollOut("3.0.0-crash");
    const state = await waitForState("3.0.0-crash", "rolled-back", 90_000);
    expect(state.detail).toMatch(/started 2 times without reporting healthy/);
    expect(state.version).toBe(V2);
    expect(sha(thingBinary)).toBe(before);
    expect(agent.output()).toContain("the previous binary is back");
    expect((await updates.updates(hub)).rollout?.state).toBe("stopped");
  }, 120_000);
});
