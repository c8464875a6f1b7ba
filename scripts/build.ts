/**
 * `bun run build [--target NAME]... [--host] [--outdir DIR] [--entry FILE] [--no-bytecode]`
 *
 * Compiles src/main.ts into one executable per target (scripts/targets.ts), dist/flashlex-<name>,
 * then runs each binary this machine can run (natively, or under qemu when installed) with
 * --version and fails unless it prints the package version. Prints a table of times and sizes.
 */
import { existsSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { TARGETS, hostTarget, targetByName, type Target } from "./targets.ts";

const ROOT = resolve(import.meta.dir, "..");

const { values: args } = parseArgs({
  options: {
    target: { type: "string", multiple: true },
    host: { type: "boolean", default: false },
    outdir: { type: "string", default: join(ROOT, "dist") },
    // for testing this script before the real entry exists; releases always build src/main.ts
    entry: { type: "string", default: join(ROOT, "src/main.ts") },
    "no-bytecode": { type: "boolean", default: false },
  },
  strict: true,
});

function fail(message: string): never {
  console.error(`build: ${message}`);
  process.exit(1);
}

function selectTargets(): Target[] {
  if (args.host) {
    const host = hostTarget();
    if (!host) fail(`no target for this machine (${process.arch})`);
    return [host];
  }
  if (!args.target?.length) return [...TARGETS];
  return args.target.map((name) => targetByName(name) ?? fail(`unknown target ${name}; known: ${TARGETS.map((t) => t.name).join(", ")}`));
}

function commitSha(): string {
  const git = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT, stderr: "ignore" });
  const sha = git.success ? git.stdout.toString().trim() : "";
  return sha || "unknown";
}

const version: string = (await Bun.file(join(ROOT, "package.json")).json()).version;
const commit = commitSha();
const bytecode = !args["no-bytecode"];
const outdir = resolve(args.outdir);
const entry = resolve(args.entry);
if (!existsSync(entry)) fail(`${entry} does not exist`);

/**
 * Flag choices:
 * - --bytecode (with --format=esm: the default for bytecode is CommonJS, which refuses top-level
 *   await): precompiled JavaScriptCore bytecode, ~2x faster start (measured on x64 and on arm64
 *   under qemu); works for every target because bytecode is made by the same Bun version.
 * - --sourcemap: embedded in the executable, so a crash report names src/ files and lines
 *   (+~0.6 MB of ~110 MB). Bun also writes a .map beside the binary; we delete it.
 * - --no-compile-autoload-*: a compiled binary would otherwise read .env and bunfig.toml from
 *   whatever directory it is started in.
 */
function compileArgs(target: Target, outfile: string): string[] {
  return [
    "build",
    "--compile",
    `--target=${target.bunTarget}`,
    "--minify",
    "--sourcemap",
    ...(bytecode ? ["--bytecode", "--format=esm"] : []),
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    "--define",
    `FLASHLEX_VERSION=${JSON.stringify(version)}`,
    "--define",
    `FLASHLEX_COMMIT=${JSON.stringify(commit)}`,
    entry,
    "--outfile",
    outfile,
  ];
}

/** How to run a binary here: natively, under its emulator if installed, or not at all. */
function runner(target: Target): string[] | undefined {
  if (target === hostTarget()) return [];
  const emulator = target.emulator;
  if (!emulator?.[0] || !Bun.which(emulator[0])) return undefined;
  const sysroot = emulator[emulator.indexOf("-L") + 1];
  return sysroot && !existsSync(sysroot) ? undefined : emulator;
}

function smokeTest(target: Target, outfile: string): string {
  const prefix = runner(target);
  if (!prefix) return "skipped (cannot run here)";
  const run = Bun.spawnSync([...prefix, outfile, "--version"], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const output = `${run.stdout.toString()}${run.stderr.toString()}`.trim();
  if (!run.success || !output.includes(version)) {
    fail(`${outfile} --version: expected ${version}, got exit ${run.exitCode}: ${output.split("\n")[0] ?? ""}`);
  }
  return prefix.length ? "ok (qemu)" : "ok";
}

interface Row {
  target: string;
  file: string;
  seconds: string;
  size: string;
  smoke: string;
}

const rows: Row[] = [];
console.log(`building flashlex ${version} (${commit}) from ${entry}${bytecode ? " with bytecode" : ""}`);
for (const target of selectTargets()) {
  const outfile = join(outdir, `flashlex-${target.name}`);
  const started = performance.now();
  const build = Bun.spawnSync([process.execPath, ...compileArgs(target, outfile)], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (!build.success) {
    process.stderr.write(build.stdout.toString() + build.stderr.toString());
    fail(`${target.name}: bun build failed (exit ${build.exitCode})`);
  }
  rmSync(`${outfile}.map`, { force: true });
  const smoke = smokeTest(target, outfile);
  rows.push({ target: target.name, file: outfile, seconds: `${seconds} s`, size: `${(statSync(outfile).size / 1e6).toFixed(1)} MB`, smoke });
}

const headers: Row = { target: "target", file: "file", seconds: "build", size: "size", smoke: "--version" };
const columns = Object.keys(headers) as (keyof Row)[];
const widths = columns.map((c) => Math.max(headers[c].length, ...rows.map((r) => r[c].length)));
for (const row of [headers, ...rows]) console.log(columns.map((c, i) => row[c].padEnd(widths[i] ?? 0)).join("  ").trimEnd());
