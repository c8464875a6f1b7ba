/**
 * `bun scripts/sign-release.ts --dir DIR --signing-key FILE [--version V] [--commit C]`
 *
 * Writes DIR/manifest.json (canonical, src/protocol/release-manifest.ts) listing every
 * `flashlex-<target>` binary of scripts/targets.ts found in DIR with its SHA-256 and size, and
 * DIR/manifest.sig, its Ed25519 signature made with the PKCS#8 key in FILE (the hub's update key,
 * `<hub home>/update-key.pem`, or wherever it is kept offline). `bun run release --signing-key
 * FILE` does the same after building. `flashlex hub release add DIR` then verifies and stores it.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { loadUpdatePrivateKey, signRelease } from "../src/crypto/update-signing.ts";
import { MANIFEST_FILE, MANIFEST_FORMAT, manifestBytes, type ReleaseManifest, SIGNATURE_FILE } from "../src/protocol/release-manifest.ts";
import { classifyForeign } from "../src/shared/foreign-errors.ts";
import { scriptArgs } from "./script-args.ts";
import { binaryName, TARGETS } from "./targets.ts";

async function sha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest("hex");
}

export interface SignOptions {
  dir: string;
  version: string;
  commit: string;
  signingKeyPem: string;
  /** target name → file in `dir`; default: every `flashlex-<target>` of scripts/targets.ts present in `dir` */
  files?: Record<string, string>;
}

/** Writes the manifest and its signature into `dir`; returns the manifest. Throws when no binary is found or the key is not Ed25519. */
export async function writeSignedManifest(opts: SignOptions): Promise<ReleaseManifest> {
  const key = loadUpdatePrivateKey(opts.signingKeyPem);
  const files = opts.files ?? Object.fromEntries(TARGETS.map((t) => [t.name, binaryName(t)] as const).filter(([, file]) => existsSync(join(opts.dir, file))));
  if (!Object.keys(files).length) throw new Error(`${opts.dir}: no flashlex-<target> binaries to sign`);
  const targets: ReleaseManifest["targets"] = {};
  for (const [target, file] of Object.entries(files)) {
    const path = join(opts.dir, basename(file));
    targets[target] = { file: basename(file), sha256: await sha256(path), size: statSync(path).size };
  }
  const manifest: ReleaseManifest = {
    format: MANIFEST_FORMAT,
    product: "flashlex",
    version: opts.version,
    commit: opts.commit,
    created: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    targets,
  };
  const bytes = manifestBytes(manifest);
  writeFileSync(join(opts.dir, MANIFEST_FILE), bytes);
  writeFileSync(join(opts.dir, SIGNATURE_FILE), `${signRelease(bytes, key)}\n`);
  return manifest;
}

if (import.meta.main) {
  const usage = "usage: bun scripts/sign-release.ts --dir DIR --signing-key FILE [--version V] [--commit C]";
  const args = scriptArgs("sign-release", usage, {
    dir: { type: "string" },
    "signing-key": { type: "string" },
    version: { type: "string" },
    commit: { type: "string" },
  });
  if (!args.dir || !args["signing-key"]) {
    console.error(usage);
    process.exit(64);
  }
  // One line naming the problem (a missing key file, a bad version, no binaries), not a stack;
  // 65 as the product's commands say "bad input" (docs/updates.md).
  try {
    const { packageVersion, commitSha } = await import("./build.ts");
    const manifest = await writeSignedManifest({
      dir: resolve(args.dir),
      version: args.version ?? (await packageVersion()),
      commit: args.commit ?? commitSha(),
      signingKeyPem: readSigningKey(args["signing-key"]),
    });
    console.log(`signed ${manifest.version}: ${Object.keys(manifest.targets).join(", ")} -> ${join(args.dir, MANIFEST_FILE)}, ${SIGNATURE_FILE}`);
  } catch (err) {
    console.error(`sign-release: ${(err as Error).message}`);
    process.exit(65);
  }
}

/** The PEM text of the --signing-key file; an Error naming the flag and the file when it cannot be read. */
function readSigningKey(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`--signing-key ${file}: ${classifyForeign(err)?.reason ?? String(err)}`);
  }
}
