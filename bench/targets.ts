/**
 * `bun bench/targets.ts [--dir dist] [--runs 7] [--idle 10]` (run alone; `bun run bench` has its own start and RSS rows):
 *
 * 1. start time, `flashlex --version` exec to exit, of every binary this machine can run
 *    (natively or under qemu): median of --runs runs after one warm-up, with hyperfine when it
 *    is installed (apt-get install -y hyperfine), else a timed loop;
 * 2. peak RSS (VmHWM, what `/usr/bin/time -v` reports as "Maximum resident set size") of
 *    `serve` connected to a hub and idle for --idle seconds: the host binary (Bun), the arm64
 *    and armv7 binaries under qemu (their RSS includes qemu's own: an upper bound), and the
 *    armv7 build's JavaScript bundle run by this machine's Node 20 (the same code on the same
 *    Node major, without emulation: the better estimate of the armv7 agent on a device, where
 *    32-bit pointers make it somewhat smaller still).
 *
 * Binaries come from --dir (dist/ after `bun run release` or `bun run build`); missing runnable
 * ones are built there first. A benchmark, not a test: it prints numbers and fails only when a
 * binary does not run.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseDocument } from "yaml";
import { buildTarget, commitSha, megabytes, packageVersion, printTable, ROOT } from "../scripts/build.ts";
import { bundleForNode } from "../scripts/bundle-node.ts";
import { binaryName, hostTarget, runnerFor, TARGETS } from "../scripts/targets.ts";
import { unpackDistribution } from "../test/support/distribution.ts";
import { listenOnLoopback, loopbackHubInit } from "../test/support/hub-fixture.ts";

const { values: args } = parseArgs({
  options: {
    dir: { type: "string", default: join(ROOT, "dist") },
    runs: { type: "string", default: "7" },
    idle: { type: "string", default: "10" },
  },
  strict: false, // unknown flags are ignored
});
const dir = resolve(String(args.dir));
const runs = Math.max(5, Number(args.runs));
const idleSeconds = Number(args.idle);
const version = await packageVersion();
const commit = commitSha();

interface Subject {
  label: string;
  how: string;
  command: string[];
}

// --- the binaries

const subjects: Subject[] = [];
const notRun: string[] = [];
for (const target of TARGETS) {
  const runner = runnerFor(target);
  if (!runner.ok) {
    notRun.push(`${target.name}: ${runner.why}`);
    continue;
  }
  const file = join(dir, binaryName(target));
  if (!existsSync(file)) {
    console.log(`building ${file} (not there)`);
    await buildTarget(target, { outdir: dir, entry: join(ROOT, "src/main.ts"), version, commit, bytecode: true });
  }
  subjects.push({ label: target.name, how: runner.how === "qemu" ? `qemu (${runner.prefix[0]})` : "native", command: [...runner.prefix, file] });
}
const host = hostTarget();
if (!host || !subjects.some((s) => s.label === host.name)) throw new Error("bench/targets.ts needs this machine's own binary (it runs the hub)");
const hostBinary = join(dir, binaryName(host));

// --- start time

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const quote = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`);

function startTimes(command: string[]): number[] {
  const argv = [...command, "--version"];
  if (Bun.which("hyperfine")) {
    const json = join(tmpdir(), `flashlex-hyperfine-${process.pid}.json`);
    const run = Bun.spawnSync(
      ["hyperfine", "-N", "--warmup", "1", "--runs", String(runs), "--style", "none", "--export-json", json, argv.map(quote).join(" ")],
      { stdout: "ignore", stderr: "pipe" },
    );
    if (!run.success) throw new Error(`hyperfine ${argv.join(" ")}: ${run.stderr.toString()}`);
    const times: number[] = JSON.parse(readFileSync(json, "utf8")).results[0].times;
    rmSync(json, { force: true });
    return times.map((s) => s * 1000);
  }
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const t0 = performance.now();
    const run = Bun.spawnSync(argv, { stdout: "ignore", stderr: "ignore" });
    if (!run.success) throw new Error(`${argv.join(" ")} exited ${run.exitCode}`);
    if (i > 0) times.push(performance.now() - t0); // the first is the warm-up
  }
  return times;
}

console.log(
  `start time: --version, median of ${runs} after a warm-up (${Bun.which("hyperfine") ? "hyperfine" : "a timed loop; apt-get install -y hyperfine for hyperfine"})`,
);
const startRows = [["target", "runs as", "median", "min", "max"]];
for (const subject of subjects) {
  const times = startTimes(subject.command);
  startRows.push([subject.label, subject.how, `${median(times).toFixed(0)} ms`, `${Math.min(...times).toFixed(0)} ms`, `${Math.max(...times).toFixed(0)} ms`]);
}
printTable(startRows);

// --- peak RSS of an idle serve, against a hub run by the host binary

const work = mkdtempSync(join(tmpdir(), "flashlex-bench-targets-"));
function hostRun(argv: string[]): string {
  const run = Bun.spawnSync([hostBinary, ...argv], { stdout: "pipe", stderr: "pipe" });
  if (!run.success) throw new Error(`flashlex ${argv.join(" ")} exited ${run.exitCode}: ${run.stderr.toString()}`);
  return run.stdout.toString();
}

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

const hubDir = join(work, "hub");
const apiPort = await freePort();
const brokerPort = await freePort();
hostRun([...loopbackHubInit(hubDir, apiPort, brokerPort, "127.0.0.1"), "--json"]);
listenOnLoopback(hubDir);

/** A thing provisioned by the hub and unpacked; returns -c -k -d flags. */
function provision(shortName: string): string[] {
  const created = JSON.parse(hostRun(["hub", "thing", "create", shortName, "--dir", hubDir, "--json"]));
  const zip = join(work, `${shortName}.zip`);
  hostRun(["hub", "thing", "dist", created.name, "--dir", hubDir, "-o", zip]);
  const root = unpackDistribution(zip, join(work, "things", shortName), created.name);
  const config = join(root, "config.yml");
  const doc = parseDocument(readFileSync(config, "utf8"));
  doc.setIn(["flashlex", "thing", "mqtt", "connectDisconnectTimeout"], 30);
  writeFileSync(config, doc.toString());
  return ["-c", config, "-k", join(root, "keys"), "-d", join(root, "data")];
}

function statusKb(pid: number, field: string): number {
  const match = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return match ? Number(match[1]) : NaN;
}

async function idleServeRss(command: string[], flags: string[]): Promise<{ peakKb: number; rssKb: number; subscribedMs: number }> {
  const proc = Bun.spawn([...command, "serve", ...flags], { stdout: "ignore", stderr: "pipe" });
  let log = "";
  void (async () => {
    for await (const chunk of proc.stderr) log += new TextDecoder().decode(chunk);
  })();
  const t0 = performance.now();
  let subscribedMs = NaN;
  while (performance.now() - t0 < idleSeconds * 1000) {
    if (Number.isNaN(subscribedMs) && log.includes("mqtt.subscribed")) subscribedMs = performance.now() - t0;
    if (proc.exitCode !== null) throw new Error(`serve exited ${proc.exitCode}:\n${log}`);
    await Bun.sleep(50);
  }
  if (Number.isNaN(subscribedMs)) throw new Error(`serve did not subscribe within ${idleSeconds} s:\n${log}`);
  const peakKb = statusKb(proc.pid, "VmHWM");
  const rssKb = statusKb(proc.pid, "VmRSS");
  proc.kill("SIGTERM");
  const code = await proc.exited;
  if (code !== 0) throw new Error(`serve exited ${code} on SIGTERM:\n${log}`);
  return { peakKb, rssKb, subscribedMs };
}

const rssSubjects: Subject[] = subjects.filter((s) => s.label === host.name || s.label === "linux-arm64" || s.label === "linux-armv7");
const nodeVersion = Bun.which("node") ? Bun.spawnSync(["node", "--version"]).stdout.toString().trim() : "";
if (nodeVersion.startsWith("v20.")) {
  const bundle = await bundleForNode(join(work, "flashlex.cjs"), {
    define: { FLASHLEX_VERSION: JSON.stringify(version), FLASHLEX_COMMIT: JSON.stringify(commit) },
  });
  rssSubjects.push({ label: "armv7 bundle", how: `native node ${nodeVersion}`, command: ["node", bundle.outFile] });
} else {
  notRun.push(`armv7 bundle on this machine's Node: needs Node 20 on PATH (found ${nodeVersion || "none"})`);
}

const hub = Bun.spawn([hostBinary, "hub", "serve", "--dir", hubDir], { stdout: "ignore", stderr: "pipe" });
try {
  let hubLog = "";
  void (async () => {
    for await (const chunk of hub.stderr) hubLog += new TextDecoder().decode(chunk);
  })();
  for (let waited = 0; !hubLog.includes("hub.started"); waited += 50) {
    if (waited > 20_000 || hub.exitCode !== null) throw new Error(`the hub did not start:\n${hubLog}`);
    await Bun.sleep(50);
  }
  console.log(`\npeak RSS of serve, connected to the hub and idle for ${idleSeconds} s (VmHWM)`);
  const rssRows = [["runs", "as", "peak RSS", "RSS at the end", "subscribed after"]];
  for (const [i, subject] of rssSubjects.entries()) {
    const flags = provision(`bench-${i}`);
    const { peakKb, rssKb, subscribedMs } = await idleServeRss(subject.command, flags);
    rssRows.push([subject.label, subject.how, megabytes(peakKb * 1024), megabytes(rssKb * 1024), `${(subscribedMs / 1000).toFixed(1)} s`]);
  }
  printTable(rssRows);
} finally {
  hub.kill("SIGTERM");
  await hub.exited;
  rmSync(work, { recursive: true, force: true });
}
for (const line of notRun) console.log(`not measured: ${line}`);
