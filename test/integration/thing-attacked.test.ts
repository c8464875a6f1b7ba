/**
 * What a new user found when they attacked the thing agent (issue 12, thing side), each through
 * the compiled binary against the real hub (`hub serve`, its embedded broker) on loopback:
 * - bootstrap's MQTT connection dropping during the ingress round trip is a FAIL with why, not
 *   exit 0 with no output;
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { type Background, binaryPath, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { tally } from "../support/tally.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-thing-attacked-"));
let hub: HubFixture;
let hubProcess: Background | undefined;

beforeAll(async () => {
  binaryPath();
  hub = await makeHubFixture(work);
});
afterAll(async () => {
  await hubProcess?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** Sets `path` in the thing's config.yml. */
function setConfig(thing: HubThing, path: string[], value: unknown): void {
  const doc = parseDocument(readFileSync(thing.configPath, "utf8"));
  doc.setIn(path, value);
  writeFileSync(thing.configPath, doc.toString());
}

/** Waits for `pattern` in what `process` printed after its first `from` characters. */
async function waitAfter(process: Background, from: number, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = process.output().slice(from).match(pattern);
    if (match) return match[0];
    await Bun.sleep(25);
  }
  throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${process.output().slice(from)}`);
}

async function serveHub(): Promise<Background> {
  if (hubProcess?.proc.exitCode === null) return hubProcess;
  hubProcess = await hub.serve();
  return hubProcess;
}

describe("bootstrap's connection drops while it waits for the ingress round trip", () => {
  // thing.id names another thing: the hub drops the test message (hub.test_dropped), so no echo
  // comes and bootstrap is waiting on its connection when it goes.
  let thing: HubThing;
  beforeAll(async () => {
    thing = await hub.createThing("roundtrip");
    setConfig(thing, ["flashlex", "thing", "id"], crypto.randomUUID());
  });

  async function bootstrapUntilDropped(drop: (hub: Background) => Promise<unknown>): Promise<{ code: number; stdout: string }> {
    const hubNow = await serveHub();
    const seen = hubNow.output().length;
    const bootstrap = start(["bootstrap", ...thing.flags]);
    await waitAfter(hubNow, seen, new RegExp(`hub\\.test_dropped[^\\n]*${thing.name}`));
    await drop(hubNow);
    const code = await bootstrap.proc.exited;
    return { code, stdout: bootstrap.output() };
  }

  test("another client takes the thing's session: [FAIL] ingress round trip, the connection closed, exit 1", async () => {
    let other: Background | undefined;
    const result = await bootstrapUntilDropped(async (hubNow) => {
      const before = hubNow.output().length;
      other = start(["serve", "-c", thing.configPath, "-k", thing.keysDir, "-d", join(work, "other-device")]);
      await waitAfter(hubNow, before, new RegExp(`mqtt\\.connected[^\\n]*${thing.name}`));
    });
    await other?.stop();
    tally("faults");
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/\[FAIL\] ingress round trip: the connection closed before the echo came on ingress\/\S+ \(/);
    expect(result.stdout).toContain("no other device or process uses this thing's identity");
    expect(result.stdout).toMatch(/bootstrap failed/);
  }, 60_000);

  test("the hub is killed with SIGKILL: [FAIL] ingress round trip, the connection closed, exit 1 (not 0 in silence)", async () => {
    const result = await bootstrapUntilDropped(async (hubNow) => {
      hubNow.proc.kill("SIGKILL");
      await hubNow.proc.exited;
    });
    tally("faults");
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/\[FAIL\] ingress round trip: the connection closed before the echo came on ingress\/\S+ \(/);
  }, 60_000);
});
