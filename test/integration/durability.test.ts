/**
 * kill -9 of the hub: what was acknowledged survives. The hub is killed right after answering
 * collects with 200; after a restart it still has them all. (The thing agent killed while
 * receiving: exactly-once.test.ts.)
 */

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { run, start } from "../support/binary.ts";
import { unpackDistribution } from "../support/distribution.ts";
import { loopbackHubInit } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";

describe("the hub, killed after acknowledging", () => {
  const work = mkdtempSync(join(tmpdir(), "flashlex-durability-"));
  const hubDir = join(work, "hub");
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test("every collect answered 200 is still stored after kill -9", async () => {
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    const init = await run([...loopbackHubInit(hubDir, apiPort, brokerPort, "127.0.0.1")]);
    expect(init.code).toBe(0);
    const created = JSON.parse((await run(["hub", "thing", "create", "sturdy", "--dir", hubDir, "--json"], { cwd: work })).stdout);
    const zip = join(work, "sturdy.zip");
    expect((await run(["hub", "thing", "dist", created.name, "--dir", hubDir, "-o", zip])).code).toBe(0);
    const root = unpackDistribution(zip, join(work, "thing"), created.name);
    const flags = ["-c", join(root, "config.yml"), "-k", join(root, "keys"), "-d", join(root, "data")];

    let hub = start(["hub", "serve", "--dir", hubDir]);
    await hub.waitFor(/hub\.started/);
    const sent: string[] = [];
    for (let i = 0; i < 10; i++) {
      const result = await run(["collect", ...flags, "--json"], { input: JSON.stringify({ reading: i }) });
      expect(result.code).toBe(0);
      sent.push(JSON.parse(result.stdout).messageId);
    }
    hub.proc.kill("SIGKILL");
    await hub.proc.exited;

    hub = start(["hub", "serve", "--dir", hubDir]);
    try {
      await hub.waitFor(/hub\.started/);
    } finally {
      expect(await hub.stop()).toBe(0);
    }
    const archive = join(work, "export.zip");
    expect((await run(["hub", "export", created.name, "--dir", hubDir, "--type", "egress", "-o", archive])).code).toBe(0);
    const stored = Object.keys(unzipSync(readFileSync(archive))).map((path) =>
      path
        .split("/")
        .pop()!
        .replace(/\.json$/, ""),
    );
    expect(new Set(stored)).toEqual(new Set(sent));
  }, 120_000);
});
