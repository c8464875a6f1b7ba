/**
 * `collect` to a hub that serves HTTPS itself (hub.yml api.tls, an https:// --api-url), with the
 * compiled binaries on loopback: the thing trusts the hub's own CA from its distribution next to
 * the public roots, and verification stays on: with another CA in its place, nothing is
 * delivered, the message is queued (69) and the reason names the address.
 */
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, start } from "../support/binary.ts";
import { provisionThing } from "../support/distribution.ts";
import { listenOnLoopback } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { tally } from "../support/tally.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-collect-https-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function flashlex(args: string[], input?: string) {
  const result = await run(args, { input, timeoutMs: 60_000 });
  if (result.code !== 0) throw new Error(`flashlex ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** A hub home whose API is https://127.0.0.1:PORT, its certificate from the hub's own CA. */
async function httpsHub(name: string): Promise<string> {
  const dir = join(work, name);
  const [apiPort, brokerPort] = [await freePort(), await freePort()];
  await flashlex([
    "hub",
    "init",
    "--dir",
    dir,
    "--api-url",
    `https://127.0.0.1:${apiPort}`,
    "--broker-host",
    "127.0.0.1",
    "--broker-port",
    String(brokerPort),
    "--name",
    "127.0.0.1",
  ]);
  listenOnLoopback(dir);
  return dir;
}

test("a hub serving HTTPS with its own CA: collect delivers; with another CA in the thing's root file it is refused and queued", async () => {
  const hubDir = await httpsHub("hub");
  const stranger = await httpsHub("stranger");
  const thing = await provisionThing(flashlex, hubDir, work, "secure");
  const hub = start(["hub", "serve", "--dir", hubDir]);
  try {
    await hub.waitFor(/hub\.started/, 30_000);
    const delivered = await run(["collect", ...thing.flags], { input: '{"over":"https"}', timeoutMs: 30_000 });
    expect(delivered.code, delivered.stderr).toBe(0);
    expect(delivered.stdout).toContain("status code: 200");

    copyFileSync(join(stranger, "ca-cert.pem"), join(thing.keysDir, "root-ca-cert.pem"));
    const refused = await run(["collect", ...thing.flags], { input: '{"over":"https","ca":"wrong"}', timeoutMs: 30_000 });
    expect(refused.code, refused.stderr).toBe(69);
    expect(refused.stderr).toMatch(/is queued \(127\.0\.0\.1:\d+: .*\)/);
    tally("attacks");
  } finally {
    expect(await hub.stop()).toBe(0);
  }
}, 90_000);
