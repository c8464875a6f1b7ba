/**
 * The web console end to end, in Debian's Chromium (playwright-core, driven from Node by
 * test/support/console-driver.mjs) against the compiled hub on loopback: sign in, create a
 * thing, download its distribution, start the agent from it, send a message and see it
 * delivered, collect from the thing and see it appear live (a payload holding <script> shown as
 * text) and catch up after its stream was cut by a hub restart, download the range zip and check
 * its files, rotate the token and see the old cookie refused, sign out. Every page is saved as a screenshot at desktop and phone widths under
 * test-results/console/ (the README names it). Skipped, with the reason, without Chromium.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { type Background, run, start } from "../support/binary.ts";
import { unpackDistribution } from "../support/distribution.ts";
import { type HubFixture, makeHubFixture } from "../support/hub-fixture.ts";

const ROOT = join(import.meta.dir, "../..");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
/** Where the screenshots go (README, docs/console.md). */
const SCREENSHOTS = join(ROOT, "test-results", "console");
const DRIVER = join(ROOT, "test/support/console-driver.mjs");
const node = Bun.which("node");
const missing = !existsSync(CHROMIUM) ? `${CHROMIUM} is missing (apt-get install chromium)` : !node ? "node is not on the PATH" : undefined;
if (missing) console.warn(`console.test.ts skipped: ${missing}`);

const work = mkdtempSync(join(tmpdir(), "flashlex-console-"));
let hub: HubFixture;
let serving: Background;
/** what the hub logged before restartHub restarted it */
let earlierHubLog = "";
const children: Background[] = [];
let flags: string[] = [];

beforeAll(async () => {
  if (missing) return;
  hub = await makeHubFixture(work);
  serving = await hub.serve();
  rmSync(SCREENSHOTS, { recursive: true, force: true });
  mkdirSync(SCREENSHOTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  for (const child of children) await child.stop();
  await serving?.stop();
  rmSync(work, { recursive: true, force: true });
});

let agent: Background | undefined;

async function startServe(): Promise<void> {
  agent = start(["serve", ...flags]);
  children.push(agent);
  await agent.waitFor(/mqtt\.subscribed/, 30_000);
}

/** What the driver asks of the test: the parts a browser cannot do. */
const methods: Record<string, (params: any) => Promise<unknown>> = {
  /** The console's one-time cURL line run twice on "the device", as a shell would: each run's exit code and stderr. */
  async runCurlLine({ line }: { line: string }) {
    const device = mkdtempSync(join(work, "curl-"));
    return [1, 2].map(() => {
      const ran = Bun.spawnSync(["sh", "-c", line], { cwd: device, stderr: "pipe", timeout: 30_000 });
      return { code: ran.exitCode, stderr: ran.stderr.toString() };
    });
  },
  async startAgent({ zip, name }: { zip: string; name: string }) {
    const root = unpackDistribution(zip, join(work, "things"), name);
    flags = ["-c", join(root, "config.yml"), "-k", join(root, "keys"), "-d", join(root, "data")];
    await startServe();
    return { root };
  },
  /** the agent stopped: what the hub sends now stays pending */
  async stopAgent() {
    await agent?.stop();
    return {};
  },
  /** the agent started again from the same folder: it gets what is pending */
  async resumeAgent() {
    await startServe();
    return {};
  },
  async agentMessages() {
    const listed = await run(["messages", "list", "--json", ...flags]);
    if (listed.code !== 0) throw new Error(`messages list exited ${listed.code}: ${listed.stderr}`);
    return listed.stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line));
  },
  async collect({ payload }: { payload: unknown }) {
    const collected = await run(["collect", ...flags], { input: JSON.stringify(payload) });
    if (collected.code !== 0) throw new Error(`collect exited ${collected.code}: ${collected.stderr}`);
    return { code: collected.code };
  },
  /** `count` collects, one after another, each {[prefix]: i} */
  async collectMany({ prefix, count }: { prefix: string; count: number }) {
    for (let i = 0; i < count; i++) await methods.collect!({ payload: { [prefix]: i } });
    return {};
  },
  /** `hub serve` stopped and started again (its output so far kept in `earlierHubLog`) */
  async restartHub() {
    await serving.stop();
    earlierHubLog += serving.output();
    serving = await hub.serve();
    return {};
  },
  async inspectZip({ path }: { path: string }) {
    const files = Object.entries(unzipSync(readFileSync(path)))
      .filter(([name]) => name.endsWith(".json"))
      .map(([name, bytes]) => ({ name, json: JSON.parse(new TextDecoder().decode(bytes)) }));
    return { files };
  },
};

/** Runs the driver to its end (bounded), answering its requests; returns what it saw. */
async function drive(timeoutMs: number): Promise<any> {
  const proc = Bun.spawn([node!, DRIVER, JSON.stringify({ baseUrl: `http://127.0.0.1:${hub.apiPort}`, token: hub.token, work, screenshots: SCREENSHOTS })], {
    cwd: ROOT,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, CHROMIUM },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const log: string[] = [];
  let outcome: { done?: any; failed?: any } = {};
  const stderr = new Response(proc.stderr).text();
  let buffered = "";
  for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
    buffered += new TextDecoder().decode(chunk);
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf("\n");
      log.push(line);
      if (line.startsWith("rpc ")) {
        const { id, method, params } = JSON.parse(line.slice(4));
        methods[method]!(params).then(
          (result) => proc.stdin.write(`${JSON.stringify({ id, result })}\n`),
          (err: Error) => proc.stdin.write(`${JSON.stringify({ id, error: err.message })}\n`),
        );
      } else if (line.startsWith("done ")) outcome = { done: JSON.parse(line.slice(5)) };
      else if (line.startsWith("failed ")) outcome = { failed: JSON.parse(line.slice(7)) };
    }
  }
  const code = await proc.exited;
  clearTimeout(timer);
  if (!outcome.done) {
    throw new Error(
      `the browser run failed (exit ${code}):\n${JSON.stringify(outcome.failed, null, 2)}\n--- driver ---\n${log.join("\n")}\n${await stderr}\n--- hub ---\n${serving.output().slice(-4000)}`,
    );
  }
  return outcome.done;
}

test.skipIf(Boolean(missing))(
  "a person does in the browser what the guide's console did: sign in, create, download, send, collect, export, rotate",
  async () => {
    const seen = await drive(150_000);

    // sign in: the cookie is HttpOnly and SameSite=Strict (plain HTTP on loopback: not Secure)
    expect(seen.firstFocus).toBe("Skip to content");
    expect(seen.cookie).toEqual({ httpOnly: true, sameSite: "Strict", secure: false });

    // the thing, its distribution and the guide's cURL line
    expect(seen.thingName).toMatch(/^[0-9a-f]{8}-e2e-pump$/);
    expect(seen.distribution).toBe(`${seen.thingName}.zip`);
    // a one-time line with a token for this zip alone: real curl gets the zip once, then 401
    expect([seen.tokenInThingPage, seen.tokenInLinePage, seen.curlAfterReload]).toEqual([false, false, 0]);
    expect(seen.curl).toMatch(
      /^\(umask 077; echo 'Authorization: Bearer flxd_[\w-]{43}' \| curl -fo (\S+\.zip)\.part -H @- http:\/\/\S+\/dist && mv -f \1\.part \1 \|\| \(echo '[^']+'; exit 1\)\)$/,
    );
    expect(seen.curlRuns).toEqual([
      { code: 0, stderr: expect.not.stringContaining("curl: (") },
      { code: 1, stderr: expect.stringContaining("curl: (22) The requested URL returned error: 401") },
    ]);

    // Send Message: invalid JSON is marked and not sent; the valid one reached the thing
    expect(seen.invalidMarked).toBe("true");
    expect(seen.sentWhileInvalid).toBe(0);
    expect(JSON.parse(seen.sentText)).toEqual({ valve: "open", note: "from the console" });
    expect(JSON.stringify(seen.agentMessages)).toContain("from the console");

    // collected messages appeared live; the attack stayed text, ran nothing
    expect(JSON.parse(seen.evilText)).toEqual({ note: '<script>window.__owned = 1</script><img src=x onerror="window.__owned = 2">' });
    expect(seen.evilAfterReload).toBe(seen.evilText);
    expect(seen.owned).toBeNull();
    expect(seen.injected).toBe(0);

    // the range zip: one <flmessagespk>.json per collected message, in the guide's format
    const files: { name: string; json: any }[] = seen.rangeZip.files;
    expect(seen.rangeZip.name).toMatch(/^[0-9a-f-]{36}_messages_\d{4}-\d{2}-\d{2}\.zip$/);
    expect(files).toHaveLength(2);
    for (const file of files) {
      expect(file.name.split("/").pop()).toBe(`${file.json.flmessagespk}.json`);
      expect(file.json.messagetype).toBe("egress");
    }
    expect(files.map((f) => f.json.payload)).toContainEqual({ temperature: 21.5, unit: "C" });

    expect(seen.latestCollected).toBe(2);
    expect(seen.filtered).toBe(1);

    // after the stream was cut (a hub restart) the live view shows what was stored meanwhile,
    // once, next to what it had; the attack still text
    expect(seen.catchUp.missed).toBe(1);
    expect(seen.catchUp.ids).toHaveLength(seen.catchUp.before + 1);
    expect(new Set(seen.catchUp.ids).size).toBe(seen.catchUp.ids.length);
    expect(seen.catchUp.evilStillText).toBe(1);
    expect(seen.ownedAfterCatchUp).toBeNull();
    // the catch-up's page, fetched before the delivery, did not take it back (attack round 23, F2)
    expect(seen.deliveredDuringCatchUp).toEqual({ delivered: 1, pending: 0 });
    // 51 stored while cut, the page holds 50: the list is those 50, nothing from before the cut
    // below them with a gap between (attack round 24, F1)
    expect(seen.gapless.map((text: string) => JSON.parse(text).gap ?? text)).toStrictEqual(Array.from({ length: 50 }, (_, i) => 50 - i));
    // a live page whose sign-in ended says so, once, instead of asking again every 30 s
    expect(seen.endedNotice).toBe("Live updates stopped: the sign-in ended. Reload the page.");

    // rotation: the new token shown once; the old cookie is sent to sign in; this browser stays
    expect(seen.rotated).toBe(true);
    expect(seen.oldCookieLandsOn).toBe("/signin?expired=1");
    expect(seen.stillSignedIn).toBe("/things");
    const old = await fetch(`http://127.0.0.1:${hub.apiPort}/dev/v1/things`, { headers: { Authorization: `Bearer ${hub.token}` } });
    expect(old.status).toBe(401);

    // no CSP violation, no script error on any page
    expect(seen.problems).toEqual([]);
    // the token never reached the hub's log (it travelled in a form body and a cookie only)
    expect(earlierHubLog + serving.output()).not.toContain(hub.token);

    const shots = readdirSync(SCREENSHOTS).sort();
    for (const pageName of ["signin", "things", "thing", "send", "thing-messages", "messages", "token"]) {
      expect(shots).toContain(`${pageName}-desktop.png`);
      expect(shots).toContain(`${pageName}-phone.png`);
    }
  },
  180_000,
);
