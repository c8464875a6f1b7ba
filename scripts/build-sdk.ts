/**
 * `bun run build:sdk [--outdir DIR]`: the TypeScript SDK (src/sdk/index.ts) as an npm package,
 * DIR/flashlex-sdk-<version>.tgz (default dist/), which an app on the thing installs without a
 * network: `npm i ./flashlex-sdk-<version>.tgz`. The release (scripts/release.ts) makes it too.
 *
 * What is inside (`package/`):
 * - `index.mjs`: the SDK bundled for Node >= 20 as one ESM file with no dependency left to
 *   fetch; SQLite is the WebAssembly driver, its .wasm inlined (the armv7 build's mechanism,
 *   scripts/bundle-node.ts `nodeRuntimePlugin`).
 * - `index.bun.mjs`: the same for Bun (the `"bun"` export condition): `bun:sqlite`, no wasm.
 *   Native SQLite takes POSIX locks, so a Bun app may use the database beside a native `flashlex`.
 * - `index.d.ts`: the public types, emitted by tsc from src/sdk/index.ts, which declares every
 *   type of its API itself; the build fails if the file imports anything.
 * - `package.json` (name `flashlex-sdk`, the repository's version, `exports`, `types`,
 *   `engines.node >= 20`) and a short README.md.
 */

import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { nodeRuntimePlugin } from "./bundle-node.ts";
import { scriptArgs } from "./script-args.ts";

const ROOT = resolve(import.meta.dir, "..");
const ENTRY = join(ROOT, "src/sdk/index.ts");
export const SDK_PACKAGE_NAME = "flashlex-sdk";

export interface SdkPackage {
  tarball: string;
  version: string;
  /** the tarball's size */
  bytes: number;
  /** what is inside, unpacked: path in the package → bytes */
  files: Record<string, number>;
  seconds: number;
}

export const sdkTarballName = (version: string) => `${SDK_PACKAGE_NAME}-${version}.tgz`;

/** Builds the package into `outdir` (created if missing); throws with the reason when a step fails. */
export async function buildSdkPackage(outdir: string): Promise<SdkPackage> {
  const started = performance.now();
  const version: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
  const staging = mkdtempSync(join(tmpdir(), "flashlex-sdk-"));
  try {
    const pkg = join(staging, "package");
    mkdirSync(pkg);
    await bundle("node", join(pkg, "index.mjs"));
    await bundle("bun", join(pkg, "index.bun.mjs"));
    emitDeclarations(join(staging, "types"), join(pkg, "index.d.ts"));
    writeFileSync(join(pkg, "package.json"), `${JSON.stringify(packageJson(version), null, 2)}\n`);
    writeFileSync(join(pkg, "README.md"), readme(version));
    mkdirSync(outdir, { recursive: true });
    const tarball = npmPack(pkg, resolve(outdir));
    if (!tarball.endsWith(`/${sdkTarballName(version)}`)) throw new Error(`npm pack wrote ${tarball}, expected ${sdkTarballName(version)}`);
    const files = Object.fromEntries(["index.mjs", "index.bun.mjs", "index.d.ts", "package.json", "README.md"].map((f) => [f, statSync(join(pkg, f)).size]));
    return { tarball, version, bytes: statSync(tarball).size, files, seconds: (performance.now() - started) / 1000 };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function packageJson(version: string) {
  return {
    name: SDK_PACKAGE_NAME,
    version,
    description: "FlashlexSDK for Node and Bun applications on a FlashLex thing: collect (egress), read and acknowledge ingress messages, the outbox.",
    license: "MIT",
    type: "module",
    // the order matters: the first condition that applies wins, `types` first for TypeScript
    exports: {
      ".": { types: "./index.d.ts", bun: "./index.bun.mjs", default: "./index.mjs" },
      "./package.json": "./package.json",
    },
    main: "./index.mjs",
    types: "./index.d.ts",
    files: ["index.mjs", "index.bun.mjs", "index.d.ts"],
    engines: { node: ">=20" },
    sideEffects: false,
  };
}

const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/**
 * One ESM file for `target`. Checks what it still imports at run time: Node's built-ins only
 * (and `bun:sqlite` for Bun), so nothing is left for npm to fetch; and that it names no path of
 * the machine that built it (Bun writes a bundled CommonJS module's `__dirname` as a literal in
 * ESM output: the wasm glue's is replaced, it never reads it since the wasm is inlined).
 */
async function bundle(target: "node" | "bun", outFile: string): Promise<void> {
  const result = await Bun.build({
    entrypoints: [ENTRY],
    target,
    format: "esm",
    // names and line breaks stay, as in the armv7 bundle: an app's stack trace is worth the bytes
    minify: { whitespace: false, syntax: true, identifiers: false },
    plugins: target === "node" ? [nodeRuntimePlugin] : [],
    define: { __dirname: JSON.stringify("/flashlex-sdk"), __filename: JSON.stringify("/flashlex-sdk/index.mjs") },
    throw: false,
  });
  if (!result.success) throw new AggregateError(result.logs, `bundling the SDK for ${target} failed:\n${result.logs.join("\n")}`);
  if (result.outputs.length !== 1) throw new Error(`the SDK bundle for ${target} must be one file, got: ${result.outputs.map((o) => o.path).join(", ")}`);
  const code = await result.outputs[0]!.text();
  const allowed = (id: string) => NODE_BUILTINS.has(id) || (target === "bun" && id === "bun:sqlite");
  // `from` as a keyword follows a space or `}` (`import x from "y"`, `}from"y"`), never a quote:
  // the words `get("from"), get("binary")` in the marker parser read as an import of `), get(`
  const imported = new Set([...code.matchAll(/(?:\brequire\(|\bimport\(|(?<=[\s}])from\s*)"([^"]+)"/g)].map((m) => m[1]!));
  const foreign = [...imported].filter((id) => !allowed(id));
  if (foreign.length) throw new Error(`the SDK bundle for ${target} still imports ${foreign.join(", ")}: it must be self-contained`);
  if (code.includes(ROOT)) throw new Error(`the SDK bundle for ${target} names the build directory ${ROOT}`);
  const hasWasm = /wasmBinary: ?Buffer\.from\("AGFzbQ/.test(code); // base64 of "\0asm"
  if (hasWasm !== (target === "node")) throw new Error(`the SDK bundle for ${target} ${hasWasm ? "carries" : "lacks"} the SQLite wasm`);
  writeFileSync(outFile, code);
}

/**
 * index.d.ts by tsc (declarations only, the repository's compiler options) over the SDK entry
 * and what it reaches, which also typechecks them and the entry's check that each public type
 * equals its internal one. Only the entry's own declarations ship; they must import nothing.
 */
function emitDeclarations(outDir: string, outFile: string): void {
  const tsconfig = join(outDir, "tsconfig.json");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(ROOT, "tsconfig.json"),
      // typeRoots: `types` would otherwise be looked up beside this temporary tsconfig
      compilerOptions: {
        noEmit: false,
        declaration: true,
        emitDeclarationOnly: true,
        outDir,
        rootDir: join(ROOT, "src"),
        typeRoots: [join(ROOT, "node_modules/@types")],
      },
      files: [ENTRY],
      include: [],
    }),
  );
  const tsc = Bun.spawnSync([join(ROOT, "node_modules/.bin/tsc"), "-p", tsconfig], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (!tsc.success) throw new Error(`tsc (declarations for the SDK) failed:\n${tsc.stdout.toString()}${tsc.stderr.toString()}`);
  const dts = readFileSync(join(outDir, "sdk/index.d.ts"), "utf8");
  const reference = dts.match(/^.*(?:\bimport\b|\bfrom\s*["']|\brequire\(|\/\/\/\s*<reference).*$/m);
  if (reference) throw new Error(`the SDK's index.d.ts must be self-contained, but it has: ${reference[0].trim()}`);
  writeFileSync(outFile, dts);
}

/** `npm pack` of the staged package into `outdir`; returns the tarball's path. */
function npmPack(pkgDir: string, outdir: string): string {
  const pack = Bun.spawnSync(["npm", "pack", "--json", "--pack-destination", outdir], {
    cwd: pkgDir,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, npm_config_loglevel: "error", npm_config_update_notifier: "false", npm_config_fund: "false" },
  });
  if (!pack.success) throw new Error(`npm pack failed (exit ${pack.exitCode}): ${pack.stderr.toString().trim()}`);
  const [packed] = JSON.parse(pack.stdout.toString()) as { filename: string }[];
  return join(outdir, packed!.filename);
}

function readme(version: string): string {
  return `# flashlex-sdk ${version}

FlashlexSDK for Node (>= 20) and Bun applications on a FlashLex thing. It reads the thing's
config.yml and reaches the thing's data through the running \`flashlex serve\` (its socket in the
data directory), or the message database itself while serve is stopped.

    npm i ./flashlex-sdk-${version}.tgz

\`\`\`js
import { FlashlexSDK } from "flashlex-sdk";

const sdk = await FlashlexSDK.open({ config: "/home/pi/ecd13b11-mything/config.yml" });
const result = await sdk.collectMessage({ temperature: 21.5 }); // outcome: sent | rejected | queued
for (const message of await sdk.getMessages()) {                // unacknowledged ingress, oldest first
  console.log(message.topic, message.payload);
  await sdk.ackMessages([message.id]);
}
sdk.close();
\`\`\`

Every rejection is a \`FlashlexError\` with a \`kind\` and the \`exitCode\` the flashlex command would
end with. Types are in index.d.ts. Made from src/sdk/index.ts by scripts/build-sdk.ts.
`;
}

if (import.meta.main) {
  const values = scriptArgs("build-sdk", "usage: bun scripts/build-sdk.ts [--outdir DIR]", { outdir: { type: "string", default: join(ROOT, "dist") } });
  try {
    const built = await buildSdkPackage(resolve(values.outdir!));
    const inside = Object.entries(built.files)
      .map(([name, bytes]) => `${name} ${(bytes / 1024).toFixed(0)} KiB`)
      .join(", ");
    console.log(`${built.tarball} ${(built.bytes / 1024).toFixed(0)} KiB in ${built.seconds.toFixed(1)} s (${inside})`);
  } catch (err) {
    console.error(`build:sdk: ${(err as Error).message}`);
    process.exit(1);
  }
}
