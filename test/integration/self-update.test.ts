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
 *      signature and SHA-256 are fine): refused by the ELF check, nothing replaced;
 *   4. a release that crashes at start: the guard puts the previous binary back at its third
 *      start, which reports the rollback.
 *
 * Binaries: this tree built three times with scripts/build.ts (`defines`: other versions) and
 * once from test/support/crash-at-start.ts; the hub is the host binary (FLASHLEX_BIN).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { buildTarget, ROOT } from "../../scripts/build.ts";
import { writeSignedManifest } from "../../scripts/sign-release.ts";
import { hostTarget, targetByName } from "../../scripts/targets.ts";
import { type Background, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-self-update-"));
const host = hostTarget()!;
const V1 = "1.0.0-test";
const V2 = "2.0.0-test";
const binaries: Record<string, string> = {};
let hub: HubFixture;
let hubServe: Background;
let thing: HubThing;
let agent: Background;
let thingBinary: string;

async function build(name: string, version: string, entry = join(ROOT, "src/main.ts"), target = host): Promise<string> {
  const built = await buildTarget(target, { outdir: join(work, "build", name), entry, version, commit: "selfupd", bytecode: true });
  return built.file;
}

/** A signed release directory `version` whose linux-x64 binary is `file`, added to the hub. */
async function addRelease(version: string, file: string): Promise<void> {
  const dir = join(work, "releases", version);
  mkdirSync(dir, { recursive: true });
  copyFileSync(file, join(dir, `flashlex-${host.name}`));
  const signingKeyPem = readFileSync(join(hub.dir, "update-key.pem"), "utf8");
  await writeSignedManifest({ dir, version, commit: "selfupd", signingKeyPem, files: { [host.name]: `flashlex-${host.name}` } });
  await hub.flashlex(["hub", "release", "add", dir, "--dir", hub.dir]);
}

async function rollOut(version: string): Promise<void> {
  await hub.flashlex(["hub", "update", "--dir", hub.dir, "--to", version, "--things", thing.name]);
}

interface ThingState {
  state: string | null;
  version: string | null;
  detail: string | null;
  to_version: string | null;
}

async function thingState(): Promise<ThingState> {
  const answer = await fetch(`http://127.0.0.1:${hub.apiPort}/dev/v1/updates`, { headers: { Authorization: `Bearer ${hub.token}` } });
  const body = (await answer.json()) as { result: { things: (ThingState & { name: string })[] } };
  return body.result.things.find((t) => t.name === thing.name)!;
}

/** Waits until the hub shows `state` for the thing's update to `version`. */
async function waitForState(version: string, state: string, timeoutMs = 60_000): Promise<ThingState> {
  const deadline = Date.now() + timeoutMs;
  let last: ThingState | undefined;
  while (Date.now() < deadline) {
    last = await thingState();
    if (last.to_version === version && last.state === state) return last;
    await Bun.sleep(250);
  }
  throw new Error(`the thing did not reach ${state} for ${version}: ${JSON.stringify(last)}\n${agent.output().slice(-4000)}`);
}

const sha = (file: string) => new Bun.CryptoHasher("sha256").update(readFileSync(file)).digest("hex");
const versionOf = async (file: string) => {
  const run = Bun.spawnSync([file, "--version"], { stdout: "pipe" });
  return run.stdout.toString();
};

beforeAll(async () => {
  const arm64 = targetByName("linux-arm64")!;
  const [v1, v2, crash, other] = await Promise.all([
    build("v1", V1),
    build("v2", V2),
    build("crash", "3.0.0-crash", join(ROOT, "test/support/crash-at-start.ts")),
    build("other", V2, join(ROOT, "src/main.ts"), host.name === "linux-x64" ? arm64 : targetByName("linux-x64")!),
  ]);
  Object.assign(binaries, { v1, v2, crash, other });
  hub = await makeHubFixture(work);
  thing = await hub.createThing("updater");
  // the thing asks every second and has 20 s to come up healthy (defaults: 600 s and 120 s)
  const config = parseDocument(readFileSync(thing.configPath, "utf8"));
  config.setIn(["flashlex", "update", "checkSeconds"], 1);
  config.setIn(["flashlex", "update", "healthySeconds"], 20);
  writeFileSync(thing.configPath, config.toString());
  thingBinary = join(thing.root, "flashlex");
  copyFileSync(v1, thingBinary);
  hubServe = await hub.serve();
  const guard = join(thing.dataDir, "update", "guard.sh");
  agent = start([], { command: [process.execPath, join(ROOT, "test/support/supervisor.ts"), guard, "--", thingBinary, "serve", ...thing.flags] });
  await agent.waitFor(/serve\.started/, 30_000);
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
    expect(await versionOf(thingBinary)).toContain(V2);
    expect(await versionOf(`${thingBinary}.previous`)).toContain(V1);
    expect(agent.output()).toContain("supervisor: exit 3");
    expect(agent.output()).toMatch(/update\.healthy/);
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

  test("a binary for another architecture is refused and nothing is replaced", async () => {
    const before = sha(thingBinary);
    await addRelease("2.0.2-otherarch", binaries.other!);
    await rollOut("2.0.2-otherarch");
    const state = await waitForState("2.0.2-otherarch", "failed");
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
    const status = await fetch(`http://127.0.0.1:${hub.apiPort}/dev/v1/updates`, { headers: { Authorization: `Bearer ${hub.token}` } });
    const rollout = ((await status.json()) as { result: { rollout: { state: string; stop_reason: string } } }).result.rollout;
    expect(rollout.state).toBe("stopped");
  }, 120_000);
});
