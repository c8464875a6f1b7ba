/**
 * `bun run build [--target NAME]... [--all] [--host] [--outdir DIR] [--entry FILE] [--no-bytecode]`
 *
 * Without --target it builds linux-x64 and linux-arm64; --all builds every target in the table.
 * Builds src/main.ts into one executable per target (scripts/targets.ts), dist/flashlex-<name>:
 * `bun build --compile` for Bun targets, a Node single executable for linux-armv7
 * (scripts/build-node-sea.ts). Then runs each binary this machine can run (natively, or under
 * qemu) with --version and fails unless it prints the package version and commit; a binary that
 * cannot run here says why in the table. release.ts uses the same functions.
 *
 * Before compiling it bundles the web console's browser script into
 * src/hub/console/generated/console-client.js (gitignored), which the binary embeds.
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { bundleConsoleClient } from "../src/hub/console/build-client.ts";
import { buildNodeSea } from "./build-node-sea.ts";
import { quietDebugPlugin } from "./quiet-debug.ts";
import { scriptArgs } from "./script-args.ts";
import { type BunTarget, binaryName, hostTarget, runnerFor, TARGETS, type Target, targetByName } from "./targets.ts";

export const ROOT = resolve(import.meta.dir, "..");

export interface BuildOptions {
  outdir: string;
  /** releases always build src/main.ts; another entry is for testing the scripts */
  entry: string;
  version: string;
  commit: string;
  bytecode: boolean;
  log?: (line: string) => void;
}

export interface Built {
  target: Target;
  file: string;
  bytes: number;
  seconds: number;
}

export function commitSha(): string {
  const git = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT, stderr: "ignore" });
  const sha = git.success ? git.stdout.toString().trim() : "";
  return sha || "unknown";
}

/**
 * When HEAD was committed, as ISO 8601 UTC; undefined outside a git checkout. Built in as the
 * oldest signing time a release offered to this build may have (docs/updates.md, "Older
 * releases"): the time of the commit, not of the build, so a build is the same whenever it runs.
 */
export function commitTime(): string | undefined {
  const git = Bun.spawnSync(["git", "show", "-s", "--format=%cI", "HEAD"], { cwd: ROOT, stderr: "ignore" });
  const at = git.success ? Date.parse(git.stdout.toString().trim()) : Number.NaN;
  return Number.isNaN(at) ? undefined : new Date(at).toISOString().replace(/\.\d+Z$/, "Z");
}

export async function packageVersion(): Promise<string> {
  return (await Bun.file(join(ROOT, "package.json")).json()).version;
}

/**
 * The same constants for every target, Bun or Node: src/shared/version.ts reads them.
 * FLASHLEX_TARGET is the target's name (`linux-arm64`): the agent takes only its own target's
 * binary from a release (docs/updates.md). FLASHLEX_COMMIT_TIME is commitTime()'s.
 */
export function defines(version: string, commit: string, target?: string, committedAt = commitTime()): Record<string, string> {
  return {
    FLASHLEX_VERSION: JSON.stringify(version),
    FLASHLEX_COMMIT: JSON.stringify(commit),
    ...(target ? { FLASHLEX_TARGET: JSON.stringify(target) } : {}),
    ...(committedAt ? { FLASHLEX_COMMIT_TIME: JSON.stringify(committedAt) } : {}),
  };
}

/**
 * Bun.build with `compile` (the JavaScript form of `bun build --compile`, which also takes
 * plugins: quiet-debug.ts). Choices:
 * - bytecode (with format "esm": the default for bytecode is CommonJS, which refuses top-level
 *   await): precompiled JavaScriptCore bytecode, ~2x faster start (measured on x64 and on arm64
 *   under qemu); works for every target because bytecode is made by the same Bun version.
 * - sourcemap: embedded in the executable, so a crash report names src/ files and lines
 *   (+~0.6 MB of ~110 MB).
 * - splitting: every module reached only through `import()` (each command's work, the hub,
 *   MQTT, X.509) becomes a chunk inside the executable that is loaded when first imported, so a
 *   command starts with only what it runs: `--version` 21 -> 11 ms and `collect` 78 -> 50 ms on
 *   x64 (bench rows 2 and 6). Without it the whole bundle is loaded at every start.
 * - no .env or bunfig.toml autoload: a compiled binary would otherwise read them from whatever
 *   directory it is started in.
 * Throws with the bundler's messages when the build fails.
 */
async function compileBun(target: BunTarget, outfile: string, opts: BuildOptions): Promise<void> {
  const result = await Bun.build({
    entrypoints: [opts.entry],
    compile: { target: target.bunTarget, outfile, autoloadDotenv: false, autoloadBunfig: false },
    minify: true,
    sourcemap: "linked",
    splitting: true,
    ...(opts.bytecode ? { bytecode: true, format: "esm" as const } : {}),
    define: defines(opts.version, opts.commit, target.name),
    plugins: [quietDebugPlugin],
    throw: false,
  });
  if (!result.success) throw new Error(`${target.name}: bun build failed:\n${result.logs.join("\n")}`);
}

/** Where the console's bundled script goes for the compiler to embed (src/hub/console/assets.ts imports it). */
export const CONSOLE_CLIENT_FILE = join(ROOT, "src/hub/console/generated/console-client.js");

/**
 * Bundles the console's browser script into CONSOLE_CLIENT_FILE. Returns its size in bytes.
 * Throws when bundling fails or the script is over its bound (build-client.ts). `bun build`
 * would compile without the file and leave the console with no script, so every build writes
 * it first.
 */
export async function writeConsoleClient(): Promise<number> {
  const script = await bundleConsoleClient();
  mkdirSync(dirname(CONSOLE_CLIENT_FILE), { recursive: true });
  writeFileSync(CONSOLE_CLIENT_FILE, script);
  return Buffer.byteLength(script);
}

export async function buildTarget(target: Target, opts: BuildOptions): Promise<Built> {
  mkdirSync(opts.outdir, { recursive: true });
  await writeConsoleClient();
  const file = join(opts.outdir, binaryName(target));
  const started = performance.now();
  if (target.kind === "bun") {
    // Bun also writes a .map per chunk beside the binary (the maps are embedded too): it builds
    // in a folder of its own, and only the binary is kept.
    const scratch = join(opts.outdir, `.build-${target.name}`);
    rmSync(scratch, { recursive: true, force: true });
    mkdirSync(scratch);
    try {
      const built = join(scratch, binaryName(target));
      await compileBun(target, built, opts);
      renameSync(built, file);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  } else {
    await buildNodeSea(target, { outfile: file, entry: opts.entry, define: defines(opts.version, opts.commit, target.name), log: opts.log });
  }
  return { target, file, bytes: statSync(file).size, seconds: (performance.now() - started) / 1000 };
}

export interface Smoke {
  ok: boolean;
  /** for the table: "ok", "ok (qemu)", "failed: ...", "not run: ..." */
  text: string;
}

/** Runs `binary --version` here (natively or under qemu); ok when it prints the version and commit. */
export function smokeVersion(target: Target, file: string, version: string, commit: string): Smoke {
  const runner = runnerFor(target);
  if (!runner.ok) return { ok: true, text: `NOT RUN: ${runner.why}${runner.install ? ` (${runner.install})` : ""}` };
  const run = Bun.spawnSync([...runner.prefix, file, "--version"], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const output = `${run.stdout.toString()}${run.stderr.toString()}`.trim();
  if (!run.success || !output.includes(version) || !output.includes(commit)) {
    return { ok: false, text: `FAILED: --version exit ${run.exitCode}, expected ${version} (${commit}), got: ${output.split("\n")[0] ?? ""}` };
  }
  return { ok: true, text: runner.how === "qemu" ? "ok (qemu)" : "ok" };
}

/** What `bun run build` makes without --target: the two Bun builds most things run. */
export const DEFAULT_TARGETS = ["linux-x64", "linux-arm64"];

/** `--host`: this machine's; `--target`: those named; else `fallback` (build: DEFAULT_TARGETS, release: all). */
export function selectTargets(names: string[] | undefined, host: boolean, fallback: readonly string[] = TARGETS.map((t) => t.name)): Target[] {
  if (host) {
    const target = hostTarget();
    if (!target) throw new Error(`no target for this machine (${process.arch})`);
    return [target];
  }
  if (!names?.length) names = [...fallback];
  return names.map((name) => {
    const target = targetByName(name);
    if (!target) throw new Error(`unknown target ${name}; known: ${TARGETS.map((t) => t.name).join(", ")}`);
    return target;
  });
}

export const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** Prints rows of strings as aligned columns, the first row being the header. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const row of rows) console.log(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "));
}

if (import.meta.main) {
  const args = scriptArgs("build", "usage: bun run build [--target NAME]... [--all] [--host] [--outdir DIR] [--entry FILE] [--no-bytecode]", {
    target: { type: "string", multiple: true },
    host: { type: "boolean", default: false },
    all: { type: "boolean", default: false },
    outdir: { type: "string", default: join(ROOT, "dist") },
    entry: { type: "string", default: join(ROOT, "src/main.ts") },
    "no-bytecode": { type: "boolean", default: false },
  });
  const fail = (message: string): never => {
    console.error(`build: ${message}`);
    process.exit(1);
  };
  const opts: BuildOptions = {
    outdir: resolve(args.outdir),
    entry: resolve(args.entry),
    version: await packageVersion(),
    commit: commitSha(),
    bytecode: !args["no-bytecode"],
    log: (line) => console.log(`  ${line}`),
  };
  if (!existsSync(opts.entry)) fail(`${opts.entry} does not exist`);
  let targets: Target[] = [];
  try {
    targets = selectTargets(args.target, args.host, args.all ? TARGETS.map((t) => t.name) : DEFAULT_TARGETS);
  } catch (err) {
    fail((err as Error).message);
  }

  console.log(`building flashlex ${opts.version} (${opts.commit}) from ${opts.entry}${opts.bytecode ? " with bytecode" : ""}`);
  const consoleBytes = await writeConsoleClient().catch((err: Error) => fail(err.message));
  console.log(`  console script: ${(consoleBytes / 1024).toFixed(1)} KB (bound 100 KB), embedded from ${CONSOLE_CLIENT_FILE.slice(ROOT.length + 1)}`);
  const rows = [["target", "runtime", "file", "build", "size", "--version"]];
  let failed = false;
  for (const target of targets) {
    const built = await buildTarget(target, opts).catch((err: Error) => fail(err.message));
    const smoke = smokeVersion(target, built.file, opts.version, opts.commit);
    failed ||= !smoke.ok;
    rows.push([
      target.name,
      target.kind === "bun" ? "bun" : `node ${target.nodePackage.version}`,
      built.file,
      `${built.seconds.toFixed(1)} s`,
      megabytes(built.bytes),
      smoke.text,
    ]);
  }
  printTable(rows);
  if (failed) fail("a binary did not pass its --version smoke test");
}
