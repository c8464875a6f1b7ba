/**
 * `hub release add DIR`: a release as the release step made it (manifest.json, manifest.sig and
 * the binaries it lists) is checked and stored in the hub home:
 *
 *   releases/<version>/manifest.json, manifest.sig, flashlex-<target>...   (0644, dir 0755)
 *
 * Checked before anything is stored: the signature over manifest.json's exact bytes with the
 * hub's update public key (a release signed with another key, or not at all, is refused), the
 * manifest's form and its target names (src/protocol/targets.ts), and each binary's size, SHA-256
 * and ELF machine as copied (the stored copy is checked, so what things download is what was
 * checked). Idempotent for the same manifest; another manifest
 * under a version already stored is refused (a version names one set of bytes, for good).
 */
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, closeSync, createReadStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { decodeUpdatePublicKey, verifyRelease } from "../../crypto/update-signing.ts";
import { MANIFEST_FILE, parseManifest, type ReleaseManifest, SIGNATURE_FILE, signedTooLate } from "../../protocol/release-manifest.ts";
import { RELEASE_TARGETS, releaseTarget } from "../../protocol/targets.ts";
import { elfMismatch } from "../../shared/elf.ts";
import { ConflictError, InputError } from "../../shared/errors.ts";
import { removeLeftovers, writeFileAtomically, writeFileAtomicallySync } from "../../shared/files.ts";
import { quoteGiven } from "../../shared/log.ts";
import { notADirectory, pathExists, pathKind } from "../../shared/path-exists.ts";
import { openRegularFile } from "../../shared/regular-file.ts";

export interface StoredRelease {
  manifest: ReleaseManifest;
  /** the signed bytes */
  manifestText: string;
  signature: string;
}

/** `releases/` (one directory per stored version) in `sharedDir`: paths.shared, the home unless hub.sharedDir moves it. */
export function releasesDir(sharedDir: string): string {
  return join(sharedDir, "releases");
}

/** Where the hub keeps `file` of `version`. */
export function releaseFilePath(sharedDir: string, version: string, file: string): string {
  return join(releasesDir(sharedDir), version, file);
}

/**
 * Reads and verifies the release in `dir` with `publicKey` (`ed25519:...`). Throws InputError
 * (65) saying what is wrong: no manifest, bad signature, a bad manifest, a target FlashLex does
 * not ship.
 */
export function readSignedRelease(dir: string, publicKey: string): StoredRelease {
  const manifestPath = join(dir, MANIFEST_FILE);
  const signaturePath = join(dir, SIGNATURE_FILE);
  if (pathKind(dir) !== "directory") {
    const why = notADirectory(dir) ?? "does not exist";
    throw new InputError(`${dir}: ${why}; give the release's folder (it holds ${MANIFEST_FILE}, ${SIGNATURE_FILE} and the binaries)`);
  }
  const missing = [MANIFEST_FILE, SIGNATURE_FILE].filter((name) => !pathExists(join(dir, name)));
  if (missing.length) {
    throw new InputError(`${dir}: no ${missing.join(" and no ")}; make the release with \`npm run release -- --signing-key <hub home>/update-key.pem\``);
  }
  const bytes = readManifestFile(manifestPath);
  const signature = readManifestFile(signaturePath).toString("utf8").trim();
  if (!verifyRelease(bytes, signature, decodeUpdatePublicKey(publicKey))) {
    throw new InputError(
      `${manifestPath}: the signature does not verify with this hub's update key (update-key.pub); was it signed with this hub's update-key.pem?`,
    );
  }
  let manifest: ReleaseManifest;
  try {
    manifest = parseManifest(bytes);
  } catch (err) {
    throw new InputError(`${manifestPath}: ${(err as Error).message}`);
  }
  const future = signedTooLate(manifest, Date.now());
  if (future) throw new InputError(`${manifestPath}: ${future}`);
  // No thing of a target FlashLex does not ship would ever ask for it (a typo such as linux-arm),
  // and its binary's machine cannot be checked.
  const unknown = Object.keys(manifest.targets).filter((name) => !releaseTarget(name));
  if (unknown.length) {
    throw new InputError(
      `${manifestPath}: ${unknown.map((name) => quoteGiven(name)).join(", ")} ${unknown.length === 1 ? "is not a target" : "are not targets"} FlashLex ships ` +
        `(${RELEASE_TARGETS.map((t) => t.name).join(", ")}); a release made by a newer FlashLex needs this hub's binary replaced with that version first`,
    );
  }
  return { manifest, manifestText: bytes.toString("utf8"), signature };
}

/** `.<version>.staging-<pid>-<mkdtemp's six characters>`; group 1 is the pid of the add that made it. */
const STAGING_NAME = /^\..+\.staging-(\d+)-[A-Za-z0-9]{6}$/;

async function sha256Of(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest("hex");
}

/** The largest manifest.json or manifest.sig read, bytes: a manifest is a few hundred. */
const MAX_MANIFEST_BYTES = 1024 * 1024;

/**
 * `path`, a file of a release's folder, opened for reading once it is a regular file of exactly
 * `size.exactly` or at most `size.atMost` bytes; InputError (65) otherwise. Looked at before
 * anything is read, through the descriptor that is then read: a FIFO there hung the add (past
 * SIGTERM), and a link to /dev/zero (or any binary larger than signed) was copied whole, filling
 * the disk that holds hub.db, before the size was compared.
 */
function openReleaseFile(path: string, size: { exactly: number } | { atMost: number }): number {
  const { fd, size: bytes } = openRegularFile(path, () => new InputError(`${path}: not a regular file; a release is the files its manifest signs`));
  try {
    if ("exactly" in size && bytes !== size.exactly) {
      throw new InputError(`${path}: does not match the signed manifest (${bytes} bytes; signed: ${size.exactly} bytes)`);
    }
    if ("atMost" in size && bytes > size.atMost) throw new InputError(`${path}: ${bytes} bytes is too large (at most ${size.atMost})`);
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** The bytes of manifest.json or manifest.sig in a release's folder (openReleaseFile's checks). */
function readManifestFile(path: string): Buffer {
  const fd = openReleaseFile(path, { atMost: MAX_MANIFEST_BYTES });
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Copies the release's binaries into the hub home, each written atomically and checked against
 * the manifest after the copy. The version's directory is made in a staging directory and
 * renamed into place, so a release is there whole or not at all. Throws InputError for a binary
 * missing or not matching, ConflictError when the version is stored with another manifest.
 */
export async function storeReleaseFiles(sharedDir: string, dir: string, release: StoredRelease): Promise<"stored" | "already stored"> {
  const { manifest } = release;
  const target = join(releasesDir(sharedDir), manifest.version);
  if (pathExists(join(target, MANIFEST_FILE))) {
    if (readFileSync(join(target, MANIFEST_FILE), "utf8") === release.manifestText) return "already stored";
    throw new ConflictError(`release ${manifest.version} is already stored with another manifest; a version names one set of binaries`);
  }
  mkdirSync(releasesDir(sharedDir), { recursive: true, mode: 0o755 });
  // what an add killed mid-copy left (up to a release's size); then one of our own, unique even
  // to two adds at once in this process (the API's)
  removeLeftovers(releasesDir(sharedDir), STAGING_NAME);
  const staging = mkdtempSync(join(releasesDir(sharedDir), `.${manifest.version}.staging-${process.pid}-`));
  chmodSync(staging, 0o755);
  try {
    for (const [name, entry] of Object.entries(manifest.targets)) {
      const source = join(dir, entry.file);
      if (!pathExists(source)) throw new InputError(`${source}: missing (the manifest lists it for ${name})`);
      const copy = join(staging, entry.file);
      const fd = openReleaseFile(source, { exactly: entry.size });
      try {
        // at most the signed size, whatever the file does meanwhile
        await writeFileAtomically(copy, createReadStream("", { fd, start: 0, end: Math.max(0, entry.size - 1), autoClose: false }), 0o644);
      } finally {
        closeSync(fd);
      }
      const size = Bun.file(copy).size;
      const sha256 = await sha256Of(copy);
      if (size !== entry.size || sha256 !== entry.sha256) {
        throw new InputError(`${source}: does not match the signed manifest (${size} bytes, SHA-256 ${sha256}; signed: ${entry.size} bytes, ${entry.sha256})`);
      }
      const mismatch = elfMismatch(copy, releaseTarget(name)!.arch);
      if (mismatch) throw new InputError(`${source}: the manifest lists it for ${name}, but ${mismatch}; were the files mixed up when the release was signed?`);
    }
    writeFileAtomicallySync(join(staging, SIGNATURE_FILE), `${release.signature}\n`, 0o644);
    // the manifest last: its presence says the directory is complete
    writeFileAtomicallySync(join(staging, MANIFEST_FILE), release.manifestText, 0o644);
    renameSync(staging, target);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    // another `release add` of the same release got there first (rename(2) onto its directory)
    const code = (err as NodeJS.ErrnoException | null)?.code;
    if ((code === "ENOTEMPTY" || code === "EEXIST") && pathExists(join(target, MANIFEST_FILE))) return storeReleaseFiles(sharedDir, dir, release);
    throw err;
  }
  return "stored";
}

/**
 * Renames the directory of `version` under releases/ aside, as `hub release remove` does first:
 * to a staging name, which the next add clears if this process dies before removeSetAside, so
 * the release is there whole or not at all. Returns where it went and the bytes its files hold,
 * or undefined when it is not there.
 */
export function setReleaseFilesAside(sharedDir: string, version: string): { dir: string; bytes: number } | undefined {
  const dir = join(releasesDir(sharedDir), version);
  if (!pathExists(dir)) return undefined;
  let bytes = 0;
  for (const name of readdirSync(dir)) bytes += statSync(join(dir, name)).size;
  const aside = join(releasesDir(sharedDir), `.${version}.staging-${process.pid}-${randomBytes(3).toString("hex")}`);
  renameSync(dir, aside);
  return { dir: aside, bytes };
}

/** Removes what setReleaseFilesAside put aside; returns the bytes freed. */
export function removeSetAside(aside: { dir: string; bytes: number }): number {
  rmSync(aside.dir, { recursive: true, force: true });
  return aside.bytes;
}
