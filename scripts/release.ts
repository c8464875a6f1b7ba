/**
 * `bun run release [--target NAME]... [--outdir DIR] [--test]`
 *
 * Builds every target of scripts/targets.ts into dist/ with the version and commit injected
 * (build.ts: one build path), smoke-tests each binary this machine can run (`--version`,
 * natively or under qemu), writes a compressed copy of each (`flashlex-<target>.xz`) and
 * dist/SHA256SUMS over the binaries and the .xz files (`cd dist && sha256sum -c SHA256SUMS`),
 * then prints a table: target, runtime, sizes, build and compression time, smoke result. It also
 * builds the TypeScript SDK package, dist/flashlex-sdk-<version>.tgz (scripts/build-sdk.ts: what
 * apps on a thing install with `npm i ./flashlex-sdk-<version>.tgz`), listed in SHA256SUMS too.
 * `--signing-key FILE` signs the release: dist/manifest.json (each binary's SHA-256 and size) and
 * dist/manifest.sig, its Ed25519 signature with the hub's update key (scripts/sign-release.ts;
 * docs/updates.md), what `flashlex hub release add dist/` takes.
 * `--test` then runs the integration suite against these very binaries (the host one through
 * FLASHLEX_BIN, the others through test/integration/targets.test.ts).
 *
 * Compression: xz -6 with all cores. Measured on the 116 MB x64 binary: gzip -6 55.1 MB in 6 s,
 * xz -6 41.9 MB in 69 s (42.1 MB in 38 s with -T0), xz -9 41.0 MB in 101 s, zstd -19 44.7 MB in
 * 57 s; on the 78 MB armv7 binary gzip 28.3 MB, xz 18.8 MB. xz is a quarter to a third smaller
 * than gzip, which matters more on a Pi's Wi-Fi than a minute of release time; unxz is on every
 * Debian/Raspberry Pi OS image and in Alpine's busybox, and unpacks it in ~2 s on x64.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { type Built, buildTarget, commitSha, megabytes, packageVersion, printTable, ROOT, selectTargets, smokeVersion } from "./build.ts";
import { buildSdkPackage } from "./build-sdk.ts";
import { scriptArgs } from "./script-args.ts";
import { binaryName, hostTarget, type Target } from "./targets.ts";

const XZ = ["xz", "-6", "-T0", "--keep", "--force"];

function fail(message: string): never {
  console.error(`release: ${message}`);
  process.exit(1);
}

async function sha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest("hex");
}

/** xz next to the binary; returns the .xz path and the seconds it took. */
function compress(file: string): { file: string; seconds: number } {
  const started = performance.now();
  const run = Bun.spawnSync([...XZ, file], { stdout: "pipe", stderr: "pipe" });
  if (!run.success) fail(`${XZ.join(" ")} ${file}: exit ${run.exitCode}: ${run.stderr.toString().trim()}`);
  return { file: `${file}.xz`, seconds: (performance.now() - started) / 1000 };
}

if (import.meta.main) {
  const args = scriptArgs("release", "usage: bun run release [--target NAME]... [--outdir DIR] [--test] [--signing-key FILE]", {
    target: { type: "string", multiple: true },
    outdir: { type: "string", default: join(ROOT, "dist") },
    test: { type: "boolean", default: false },
    "signing-key": { type: "string" },
  });
  // read before a minute of building, not after it (verify pass 28, F6: a stack trace and an unsigned dist/)
  let signingKeyPem: string | undefined;
  if (args["signing-key"]) {
    try {
      signingKeyPem = readFileSync(args["signing-key"], "utf8");
    } catch (err) {
      fail(`--signing-key ${args["signing-key"]}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  if (!Bun.which("xz")) fail("xz is not installed (apt-get install -y xz-utils)");
  const outdir = resolve(args.outdir);
  const version = await packageVersion();
  const commit = commitSha();
  let targets: Target[];
  try {
    targets = selectTargets(args.target, false);
  } catch (err) {
    fail((err as Error).message);
  }
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"], { cwd: ROOT }).stdout.toString().trim();
  console.log(`release flashlex ${version} (${commit}) into ${outdir}: ${targets.map((t) => t.name).join(", ")}`);
  if (dirty) console.log(`note: the work tree has uncommitted changes; the binaries say ${commit} but are built from the files as they are`);

  const started = performance.now();
  const rows = [["target", "runtime", "binary", "xz", "build", "xz time", "smoke (--version)"]];
  const files: string[] = [];
  let smokeFailed = false;
  for (const target of targets) {
    process.stdout.write(`  ${target.name}: building`);
    const built: Built = await buildTarget(target, { outdir, entry: join(ROOT, "src/main.ts"), version, commit, bytecode: true }).catch((err: Error) => {
      console.log("");
      return fail(err.message);
    });
    process.stdout.write(", smoke test");
    const smoke = smokeVersion(target, built.file, version, commit);
    smokeFailed ||= !smoke.ok;
    process.stdout.write(", compressing");
    const xz = compress(built.file);
    console.log(", done");
    files.push(built.file, xz.file);
    rows.push([
      target.name,
      target.kind === "bun" ? `bun ${Bun.version}` : `node ${target.nodePackage.version} (SEA)`,
      megabytes(built.bytes),
      megabytes(statSync(xz.file).size),
      `${built.seconds.toFixed(1)} s`,
      `${xz.seconds.toFixed(1)} s`,
      smoke.text,
    ]);
  }

  process.stdout.write("  flashlex-sdk: building");
  const sdk = await buildSdkPackage(outdir).catch((err: Error) => {
    console.log("");
    return fail(`the SDK package: ${err.message}`);
  });
  console.log(`, done: ${basename(sdk.tarball)} ${megabytes(sdk.bytes)} in ${sdk.seconds.toFixed(1)} s`);
  files.push(sdk.tarball);

  // sha256sum format: "<hex>  <name>", names relative to dist/ so `sha256sum -c` works there
  const sums = join(outdir, "SHA256SUMS");
  rmSync(sums, { force: true });
  const lines = await Promise.all(files.map(async (file) => `${await sha256(file)}  ${basename(file)}`));
  writeFileSync(sums, `${lines.join("\n")}\n`);
  const check = Bun.spawnSync(["sha256sum", "--check", "--quiet", "SHA256SUMS"], { cwd: outdir, stdout: "pipe", stderr: "pipe" });
  if (!check.success) fail(`sha256sum --check SHA256SUMS failed: ${check.stdout.toString()}${check.stderr.toString()}`);

  if (signingKeyPem) {
    const { writeSignedManifest } = await import("./sign-release.ts");
    const manifest = await writeSignedManifest({ dir: outdir, version, commit, signingKeyPem }).catch((err: Error) => fail(`signing: ${err.message}`));
    console.log(`signed: manifest.json and manifest.sig for ${Object.keys(manifest.targets).length} binaries`);
  } else {
    console.log("not signed (no --signing-key): `flashlex hub release add` refuses an unsigned release");
  }

  console.log("");
  printTable(rows);
  console.log(`\n${files.length} files and SHA256SUMS in ${outdir} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  if (smokeFailed) fail("a binary failed its --version smoke test");

  if (args.test) {
    const host = hostTarget();
    const env: Record<string, string | undefined> = { ...process.env, FLASHLEX_TARGET_BINARIES: outdir, FLASHLEX_EXPECT_COMMIT: commit };
    if (host && existsSync(join(outdir, binaryName(host)))) env.FLASHLEX_BIN = join(outdir, binaryName(host));
    console.log(`\nrunning the integration tests against ${outdir}`);
    const tests = Bun.spawnSync([process.execPath, "test", "test/integration"], { cwd: ROOT, stdout: "inherit", stderr: "inherit", env });
    if (!tests.success) fail("the integration tests failed against the release binaries");
  }
}
