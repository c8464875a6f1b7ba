/**
 * A thing's whole life (issue 15, "Done when"), against the compiled binaries, on loopback, with
 * no step but what an operator runs on the hub and what the device does by itself:
 *
 *   1. enrolment    `hub enroll-token create`, `flashlex enroll` with the printed CA fingerprint
 *                   into a fresh folder (the key made there), `bootstrap` passes; `serve` starts
 *                   under a supervisor that does what the systemd unit does (the pre-start guard,
 *                   restart on a non-zero exit), from a copy of release 1.0.0 in the thing's
 *                   folder so that it can replace itself; ingress sent by the hub arrives, egress
 *                   collected reaches the hub
 *   2. renewal      certificates live 30 s and the agent checks every second: it renews by itself
 *                   (a new serial on disk and in `hub thing list`) and keeps working
 *   3. rollback     release 2.0.0, whose binary crashes at start, is rolled out: the guard puts
 *                   1.0.0 back at the third start, the hub shows rolled-back, 1.0.0 still delivers
 *   4. update       release 2.0.1 is rolled out and goes healthy; it renews and delivers too
 *   5. revocation   `hub thing revoke`: the thing is disconnected within seconds, its reconnects
 *                   are refused (CONNACK 5) and so are its collects
 *
 * The steps run in order on one hub and one thing; each waits with a bound, none for a fixed time.
 * Binaries: the hub is the host build (FLASHLEX_BIN); the thing's releases are this tree built as
 * 1.0.0 and 2.0.1, and test/support/crash-at-start.ts built as 2.0.0 (test/support/updates.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { type Background, binaryPath, run } from "../support/binary.ts";
import { type EnrolledThing, type HubFixture, makeHubFixture } from "../support/hub-fixture.ts";
import {
  addRelease,
  buildVersion,
  CRASH_AT_START,
  prepareUpdatingThing,
  rollOut,
  sha256Of,
  superviseServe,
  updates,
  versionOf,
  waitForUpdateState,
} from "../support/updates.ts";
import { waitForLog, waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-lifecycle-"));
const V1 = "1.0.0";
const CRASHING = "2.0.0";
const GOOD = "2.0.1";
const binaries: Record<string, string> = {};
let hub: HubFixture;
let hubServe: Background;
let thing: EnrolledThing;
let thingId: string;
/** the thing's own copy of the agent, which it replaces when it updates */
let thingBinary: string;
/** the supervisor running the thing's `serve` */
let agent: Background | undefined;

const logs = () => `--- agent ---\n${agent?.output().slice(-5000)}\n--- hub ---\n${hubServe?.output().slice(-3000)}`;
const listed = async () => (await hub.things()).find((t) => t.name === thing.name);
const diskSerial = () => describeCertificate(readFileSync(thing.certFile, "utf8")).serialNumber;
const waitForState = (version: string, state: string, timeoutMs = 60_000) => waitForUpdateState(hub, thing.name, version, state, timeoutMs, logs);

/** No renewal half done, and the certificate on disk is the one the hub lists. */
async function settledSerial(): Promise<string | false> {
  if (readdirSync(join(thing.dir, "keys")).some((f) => f.endsWith(".next") || f.endsWith(".previous"))) return false;
  const serial = diskSerial();
  return (await listed())?.certificateSerial === serial && serial;
}

/** Waits until a renewal committed after `from` (agent log offset) is settled on disk and on the hub; the serial. */
async function renewedSince(from: number, before: string): Promise<string> {
  await waitForLog(agent!, /renewal\.committed/, from, 45_000);
  return waitUntil(
    "a renewed certificate on disk and on the hub",
    async () => {
      const serial = await settledSerial();
      return serial !== before && serial;
    },
    45_000,
    logs,
  );
}

/**
 * The thing works: a message the hub publishes is delivered (its PUBACK reached the hub) and
 * stored by serve, and a message collected on the device, with the thing's own binary, is
 * stored by the hub.
 */
async function delivers(step: string): Promise<void> {
  const from = agent!.output().length;
  const sent = await hub.publish(thingId, { step });
  await waitUntil(
    `ingress ${step} delivered`,
    async () => (await hub.ingress(thingId)).find((m) => m.flmessagespk === sent)?.delivery === "delivered",
    30_000,
    logs,
  );
  await waitForLog(agent!, /ingress\.stored/, from, 10_000);
  const collected = await run(["collect", "-c", thing.configPath, "--json"], { command: [thingBinary], input: JSON.stringify({ step }), timeoutMs: 30_000 });
  expect(collected.code, `${collected.stdout}\n${collected.stderr}\n${logs()}`).toBe(0);
  const { messageId } = JSON.parse(collected.stdout);
  const stored = (await hub.egress(thingId)).find((m) => m.flmessagespk === messageId);
  expect(stored?.payload).toEqual({ step });
}

beforeAll(async () => {
  binaryPath();
  const build = (name: string) => join(work, "build", name);
  const [v1, crash, good] = await Promise.all([
    buildVersion(build("v1"), V1),
    buildVersion(build("crash"), CRASHING, { entry: CRASH_AT_START }),
    buildVersion(build("good"), GOOD),
  ]);
  Object.assign(binaries, { v1, crash, good });
  hub = await makeHubFixture(work);
  // as the renewal test: certificates for 30 s (renewed at 20 s), a check every second
  hub.configure([
    [["certificates", "thingLifetime"], "30s"],
    [["certificates", "renewalCheck"], "1s"],
  ]);
  hubServe = await hub.serve();
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await hubServe?.stop();
  rmSync(work, { recursive: true, force: true });
}, 30_000);

describe("a thing's life: enrolment, renewal, rollback, update, revocation", () => {
  let enrolledSerial: string;

  test("enrolment: the key is made on the device, bootstrap passes, and serve runs 1.0.0 under the supervisor", async () => {
    thing = await hub.enrol("lifecycle", join(work, "device"));
    expect(statSync(thing.keyFile).mode & 0o777).toBe(0o600);
    const row = await listed();
    expect(row).toMatchObject({ enrolled: true, distribution: null });
    thingId = row.id;
    enrolledSerial = diskSerial();
    expect(row.certificateSerial).toBe(enrolledSerial);
    // the device's own copy of release 1.0.0, beside its config (the layout of docs/updates.md)
    const config = parseDocument(readFileSync(thing.configPath, "utf8"));
    expect(config.getIn(["flashlex", "update", "publicKey"])).toBe(readFileSync(join(hub.dir, "update-key.pub"), "utf8").trim());
    thingBinary = prepareUpdatingThing(thing.configPath, binaries.v1!, join(thing.dir, "flashlex"));

    const boot = await run(["bootstrap", "-c", thing.configPath], { command: [thingBinary], timeoutMs: 40_000 });
    expect(boot.code, `${boot.stdout}\n${boot.stderr}`).toBe(0);
    expect(boot.stdout.match(/^\[PASS\]/gm)).toHaveLength(12);

    agent = await superviseServe(thingBinary, thing.dataDir, ["-c", thing.configPath]);
    await agent.waitFor(/mqtt\.subscribed/, 30_000);
    await delivers("enrolled");
  }, 90_000);

  test("renewal: the certificate renews by itself (a new serial on disk and on the hub), and the thing keeps working", async () => {
    const serial = await renewedSince(0, enrolledSerial);
    expect(agent!.output()).toMatch(/renewal\.started .*two thirds/);
    const row = await listed();
    expect(Date.parse(row.certificateNotAfter)).toBeGreaterThan(Date.now());
    expect(serial).not.toBe(enrolledSerial);
    await delivers("renewed");
  }, 90_000);

  test("rollback: release 2.0.0 crashes at start, the guard puts 1.0.0 back, the hub shows rolled-back, and 1.0.0 still delivers", async () => {
    const before = sha256Of(thingBinary);
    const from = agent!.output().length;
    await addRelease(hub, join(work, "releases"), CRASHING, binaries.crash!);
    await rollOut(hub, CRASHING, [thing.name]);
    const state = await waitForState(CRASHING, "rolled-back", 90_000);
    expect(state.detail).toMatch(/started 2 times without reporting healthy/);
    expect(state.version).toBe(V1);
    expect(sha256Of(thingBinary)).toBe(before);
    expect(versionOf(thingBinary)).toContain(V1);
    expect(agent!.output().slice(from)).toContain("supervisor: exit 3");
    expect(agent!.output().slice(from)).toContain("the previous binary is back");
    expect((await updates(hub)).rollout?.state).toBe("stopped");
    await waitUntil("serve back on 1.0.0 and connected", () => /mqtt\.subscribed/.test(agent!.output().slice(from)), 30_000, logs);
    await delivers("rolled back");
  }, 120_000);

  test("update: release 2.0.1, rolled out as a renewal is asked for, goes healthy; the updated thing renews and delivers", async () => {
    const from = agent!.output().length;
    const serialBefore = diskSerial();
    await addRelease(hub, join(work, "releases"), GOOD, binaries.good!);
    // `hub thing rotate` and the rollout at once: the renewal and the update meet, in either
    // order (renewed by 1.0.0 just before it replaces itself, or asked again of 2.0.1 after)
    await Promise.all([hub.flashlex(["hub", "thing", "rotate", thing.name, "--dir", hub.dir]), rollOut(hub, GOOD, [thing.name])]);
    const state = await waitForState(GOOD, "healthy", 60_000);
    expect(state.version).toBe(GOOD);
    expect(versionOf(thingBinary)).toContain(GOOD);
    expect(versionOf(`${thingBinary}.previous`)).toContain(V1);
    // the hub records "healthy" when it takes the report; the agent logs it once the answer is back
    await waitForLog(agent!, /update\.healthy/, from, 10_000);
    await waitUntil("2.0.1 connected", () => /mqtt\.subscribed/.test(agent!.output().slice(from)), 30_000, logs);
    await delivers("updated");
    // the renewal asked for is done, whichever binary did it ...
    await renewedSince(from, serialBefore);
    expect(agent!.output().slice(from)).toMatch(/renewal\.started .*asked by the hub/);
    expect((await listed()).renewalRequested).toBe(false);
    // ... and the new binary renews too (after it reported healthy), and still delivers
    const healthyAt = agent!.output().indexOf("update.healthy", from);
    await renewedSince(healthyAt, diskSerial());
    await delivers("updated and renewed");
  }, 120_000);

  test("revocation: disconnected within seconds, reconnects refused (CONNACK 5), collects refused", async () => {
    const agentFrom = agent!.output().length;
    const hubFrom = hubServe.output().length;
    const revoked = await hub.flashlex(["hub", "thing", "revoke", thing.name, "--dir", hub.dir]);
    const revokedAt = Date.now();
    expect(revoked.stdout).toContain(`revoked ${thing.name}`);
    // `revoke` writes the database; the running hub polls it every 3 s and kicks the thing
    await waitForLog(hubServe, new RegExp(`mqtt\\.kicked [^\\n]*thing=${thing.name}`), hubFrom, 10_000);
    expect(Date.now() - revokedAt).toBeLessThan(6_000);
    await waitForLog(agent!, /mqtt\.connect_refused [^\n]*code=5/, agentFrom, 30_000);
    const refusedAt = agent!.output().indexOf("mqtt.connect_refused", agentFrom);
    // egress is refused too, through serve or not
    const egressBefore = (await hub.egress(thingId)).length;
    const collected = await run(["collect", "-c", thing.configPath, "--json"], { command: [thingBinary], input: '{"after":"revocation"}', timeoutMs: 30_000 });
    // 69: the hub refused it (401), so it stays in the thing's outbox; the hub stored nothing
    expect(collected.code, `${collected.stdout}\n${collected.stderr}`).toBe(69);
    expect(JSON.parse(collected.stdout)).toMatchObject({ outcome: "queued", status: 401 });
    await waitForLog(hubServe, /hub\.collect_refused [^\n]*reason="revoked thing"/, hubFrom);
    expect((await hub.egress(thingId)).length).toBe(egressBefore);
    expect(await listed()).toMatchObject({ status: "revoked" });
    // nothing on the thing's side needed a hand: the supervisor's serve still runs, shut out
    expect(agent!.proc.exitCode).toBeNull();
    expect(agent!.output().slice(refusedAt)).not.toContain("mqtt.subscribed");
    expect(existsSync(join(thing.dataDir, "update", "pending"))).toBe(false);
    expect(versionOf(thingBinary)).toContain(GOOD);
  }, 60_000);
});
