/**
 * `collect` to a hub that serves HTTPS itself (hub.yml api.tls, an https:// --api-url), with the
 * compiled binaries on loopback: the thing trusts the hub's own CA from its distribution next to
 * the public roots, and verification stays on: with another CA in its place, nothing is
 * delivered, the message is queued (69) and the reason names the address.
 */
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
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

/** A hub home whose API is https://127.0.0.1:PORT, its certificate from the hub's own CA; its operator token. */
async function httpsHub(name: string): Promise<{ dir: string; token: string }> {
  const dir = join(work, name);
  const [apiPort, brokerPort] = [await freePort(), await freePort()];
  const init = await flashlex([
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
    "--json",
  ]);
  listenOnLoopback(dir);
  return { dir, token: JSON.parse(init.stdout).token as string };
}

test("a hub serving HTTPS with its own CA: collect delivers; with another CA in the thing's root file it is refused and queued", async () => {
  const { dir: hubDir } = await httpsHub("hub");
  const { dir: stranger } = await httpsHub("stranger");
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
    // no serve has run on this thing's data directory: the line says so
    expect(refused.stderr).toMatch(/is queued in \S+ \(127\.0\.0\.1:\d+: .*\), where no `flashlex serve` has run yet/);
    tally("attacks");
  } finally {
    expect(await hub.stop()).toBe(0);
  }
}, 90_000);

test("the one-time cURL line `hub thing dist --curl` prints for an HTTPS hub downloads with real curl: the hub's key is pinned, and another hub's is refused", async () => {
  const { dir: hubDir } = await httpsHub("pinned");
  const { dir: otherDir } = await httpsHub("other");
  await flashlex(["hub", "thing", "create", "kitchen", "--dir", hubDir, "-o", join(work, "kitchen-cli.zip")]);
  const printed = await flashlex(["hub", "thing", "dist", "kitchen", "--curl", "--dir", hubDir]);
  const line = /echo 'Authorization: Bearer (flxd_[\w-]+)' \| curl -fo \S+ -k --pinnedpubkey '(sha256\/\/[A-Za-z0-9+/=]+)' -H @- (https:\/\/\S+) && mv /m.exec(
    printed.stdout,
  );
  expect(line, printed.stdout).not.toBeNull();
  const [, token, pin, url] = line!;
  const curl = async (cwd: string, port?: string) => {
    // --connect-to sends the same URL to another hub's port: its key is not the pinned one.
    const target = port ? ["--connect-to", `127.0.0.1:${new URL(url!).port}:127.0.0.1:${port}`] : [];
    const proc = Bun.spawn(["curl", "-sS", "-fo", "kitchen.zip", "-k", "--pinnedpubkey", pin!, ...target, "-H", `Authorization: Bearer ${token}`, url!], {
      cwd,
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: await proc.exited, stderr: await new Response(proc.stderr).text() };
  };
  const hub = start(["hub", "serve", "--dir", hubDir]);
  const other = start(["hub", "serve", "--dir", otherDir]);
  try {
    await hub.waitFor(/hub\.started/, 30_000);
    const started = await other.waitFor(/hub\.started.*api=https:\/\/127\.0\.0\.1:(\d+)/, 30_000);
    const otherPort = /api=https:\/\/127\.0\.0\.1:(\d+)/.exec(started)![1]!;
    const fetched = mkdtempSync(join(work, "curl-"));
    const ok = await curl(fetched);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(join(fetched, "kitchen.zip")).subarray(0, 2).toString()).toBe("PK");
    const impostor = await curl(mkdtempSync(join(work, "curl-")), otherPort);
    expect(impostor.code).toBe(90); // curl: CURLE_SSL_PINNEDPUBKEYNOTMATCH
    tally("attacks");
  } finally {
    expect(await hub.stop()).toBe(0);
    expect(await other.stop()).toBe(0);
  }
}, 90_000);
