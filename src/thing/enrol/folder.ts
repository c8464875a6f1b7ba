/**
 * Writing an enrolled thing's folder, all or nothing: the layout of the hub's distribution
 * (`config.yml`, and `keys/` beside it holding the root CA, the certificate, the private key
 * (0600) and the public key), so `bootstrap`, `serve` and `install-service` find it exactly as
 * they find an unzipped distribution.
 *
 * The staging place is one directory inside the folder, `.enrol` (0700). It holds, from the
 * first attempt until the enrolment completes, the key pair made for it (`pending-key.pem`,
 * 0600): an enrolment the hub completed but the device never heard of (the hub or the device
 * killed in between) is retried with the same key, and the hub answers a retry whose key equals
 * the registered one with the same certificate (src/hub/enrolment/enrol.ts). The folder's files
 * are written into `.enrol` too, each fsynced; then `keys/` is renamed into place, then
 * `config.yml`, the commit point: a folder with a config.yml has its keys. Only then is `.enrol`
 * removed. A failure before the commit removes what was placed and keeps the pending key; a
 * kill -9 between the two renames leaves `keys/` without `config.yml` beside `.enrol`, which the
 * next attempt recognises as its own and removes.
 */

import { createPublicKey } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { loadPrivateKey, type ThingKeyType, thingKeyTypeOf } from "../../crypto/keys.ts";
import { fsyncDirectory, writeFileDurably } from "../../shared/durable-files.ts";
import { ConfigError, ConflictError, FlashlexError, UsageError } from "../../shared/errors.ts";
import { type FileLock, holdFileLock } from "../../shared/file-lock.ts";
import { removeLeftovers } from "../../shared/files.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { pathExists } from "../../shared/path-exists.ts";

/** The staging directories of versions before the pending key (`.enrol.<pid>-<8 hex>`), removed once their process is gone. */
const OLD_STAGING = /^\.enrol\.(\d+)-[0-9a-f]{8}$/;
/** The staging directory's name inside the thing's folder. */
export const STAGING_DIR = ".enrol";
const PENDING_KEY = "pending-key.pem";
/** The typed name the pending key was made for: a retry must ask for the same thing. */
const PENDING_NAME = "pending-name";

export interface FolderFile {
  content: string;
  mode: number;
}

export interface PendingKey {
  privateKeyPem: string;
  publicKeyPem: string;
  /** false: made by an earlier attempt that did not complete */
  made: boolean;
}

/**
 * Throws ConflictError (65) when `dir` already holds a thing (a config.yml, or a keys/ that is
 * not empty and not this enrolment's own leftover): enrolment never writes over one.
 */
export function checkFolderFree(dir: string): void {
  if (pathExists(join(dir, "config.yml"))) {
    throw new ConflictError(`${join(dir, "config.yml")} exists: a thing already lives in ${dir}; enrol into an empty folder (--dir)`);
  }
  const keys = join(dir, "keys");
  if (pathExists(keys) && readdirSync(keys).length > 0 && !isOwnLeftover(dir)) {
    throw new ConflictError(`${keys} is not empty: a thing's keys already live in ${dir}; enrol into an empty folder (--dir)`);
  }
}

/**
 * A `keys/` this enrolment placed before it was killed, short of its commit: it holds the
 * pending key itself. A pending key alone does not make keys/ ours: an attempt the hub refused
 * leaves one, and whatever was put in keys/ after it is someone's, not to be removed.
 */
function isOwnLeftover(dir: string): boolean {
  const pending = join(dir, STAGING_DIR, PENDING_KEY);
  if (!pathExists(pending)) return false;
  const key = readFileSync(pending, "utf8");
  const keys = join(dir, "keys");
  return readdirSync(keys).some((name) => {
    try {
      return readFileSync(join(keys, name), "utf8") === key;
    } catch {
      return false; // a directory, or a file this user may not read: not what enrolment writes
    }
  });
}

/**
 * The key pair this folder's enrolment uses: the one an earlier, unfinished attempt kept in
 * `dir/.enrol/pending-key.pem`, or a new one of `want.keyType` (default rsa) made by `generate`
 * and written there (0600, fsynced) with the name it is for, before anything is sent. A kept key
 * is for the thing that attempt asked for, which the hub may already hold: asking for another
 * name, or another key type (`want.keyType` given), is a UsageError (64) saying how to finish
 * that attempt or start over; a damaged kept key is a ConfigError (78) naming its file. Also
 * removes what an interrupted attempt left: an older version's staging directories, and a
 * `keys/` placed without its `config.yml`. Throws ConflictError when `dir` holds a thing, or
 * what the file system throws.
 */
export async function pendingKeyPair(
  dir: string,
  want: { name: string; keyType?: ThingKeyType },
  generate: (type: ThingKeyType) => Promise<{ privateKeyPem: string; publicKeyPem: string }>,
): Promise<PendingKey> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  removeLeftovers(dir, OLD_STAGING);
  checkFolderFree(dir);
  const staging = join(dir, STAGING_DIR);
  const file = join(staging, PENDING_KEY);
  if (pathExists(file)) {
    // keys/ holding the pending key, without config.yml: placed by an attempt killed before its
    // commit (checkFolderFree refused any other keys/ that is not empty).
    const startOver = `remove ${staging} to start over (and, if the hub made that thing, \`hub thing delete\` it there)`;
    const keptName = pathExists(join(staging, PENDING_NAME)) ? readFileSync(join(staging, PENDING_NAME), "utf8").trim() : undefined;
    if (keptName !== undefined && keptName !== want.name) {
      throw new UsageError(
        `${dir}: an earlier enrolment here asked for the name ${keptName} and did not complete (the hub may hold it): run enroll again with --name ${keptName} to finish it, or ${startOver}`,
      );
    }
    let privateKeyPem: string;
    let key: ReturnType<typeof loadPrivateKey>;
    let keptType: ThingKeyType;
    try {
      privateKeyPem = readFileSync(file, "utf8");
      key = loadPrivateKey(privateKeyPem);
      keptType = thingKeyTypeOf(key); // a kind FlashLex takes, or CryptoError
    } catch (err) {
      throw new ConfigError(`${file}: the key kept from an earlier enrolment cannot be used (${toFlashlexError(err).message}); ${startOver}`);
    }
    if (want.keyType !== undefined && want.keyType !== keptType) {
      throw new UsageError(
        `${dir}: the key kept from an earlier enrolment here is ${keptType}, not ${want.keyType}: run enroll again without --key-type to finish it with that key, or ${startOver}`,
      );
    }
    if (pathExists(join(dir, "keys"))) rmSync(join(dir, "keys"), { recursive: true, force: true });
    const publicKeyPem = createPublicKey(key).export({ type: "spki", format: "pem" }).toString();
    return { privateKeyPem, publicKeyPem, made: false };
  }
  const pair = await generate(want.keyType ?? "rsa");
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  writeFileDurably(join(staging, PENDING_NAME), `${want.name}\n`, 0o600);
  writeFileDurably(file, pair.privateKeyPem, 0o600);
  fsyncDirectory(dir);
  return { ...pair, made: true };
}

/**
 * The outermost directory that making `dir` would create (`dir` itself or one of its parents),
 * or undefined when `dir` exists: what an enrolment that fails must not leave behind.
 */
export function firstMissingDirectory(dir: string): string | undefined {
  let missing: string | undefined;
  // one that cannot be looked at counts as there: never removed, and the mkdir says what blocks it
  for (let at = resolve(dir); !pathExists(at, { cannotLook: true }); at = dirname(at)) {
    missing = at;
    if (dirname(at) === at) break;
  }
  return missing;
}

/**
 * Removes `dir` and its parents up to `outermost` (firstMissingDirectory before they were made),
 * each only while it is empty: a folder holding a key kept for the retry stays. Never throws.
 */
export function removeEmptyDirectories(dir: string, outermost: string): void {
  const stop = resolve(outermost);
  for (let at = resolve(dir); at.startsWith(stop); at = dirname(at)) {
    try {
      rmdirSync(at); // refuses a directory that is not empty
    } catch {
      return;
    }
    if (at === stop) return;
  }
}

/**
 * Removes the pending key a first attempt made, when the hub refused that attempt (a 4xx, or a
 * TLS or name check before anything reached it): the hub holds nothing made with it, so the
 * folder is free again, for any name. Never for a key kept from an earlier attempt, which the
 * hub may hold.
 */
export function forgetPendingKey(dir: string): void {
  rmSync(join(dir, STAGING_DIR), { recursive: true, force: true });
  fsyncDirectory(dir);
}

/**
 * Writes `config` as `dir/config.yml` and `keys` into `dir/keys/`, all or nothing (see the module
 * comment), staging in `dir/.enrol`, which is removed once `config.yml` is in place. Throws
 * ConflictError when `dir` already holds a thing, or what the file system throws, with nothing
 * of the new thing left in `dir` but the pending key.
 */
export function writeThingFolder(dir: string, config: string, keys: Record<string, FolderFile>): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  removeLeftovers(dir, OLD_STAGING);
  checkFolderFree(dir);
  const staging = join(dir, STAGING_DIR);
  const keysDir = join(dir, "keys");
  let placedKeys = false;
  let committed = false;
  try {
    mkdirSync(staging, { recursive: true, mode: 0o700 });
    rmSync(join(staging, "keys"), { recursive: true, force: true });
    mkdirSync(join(staging, "keys"), { mode: 0o700 });
    for (const [name, file] of Object.entries(keys)) writeFileDurably(join(staging, "keys", name), file.content, file.mode);
    writeFileDurably(join(staging, "config.yml"), config, 0o644);
    if (pathExists(keysDir)) rmSync(keysDir, { recursive: true }); // empty, or our own leftover (checkFolderFree)
    renameSync(join(staging, "keys"), keysDir);
    placedKeys = true;
    fsyncDirectory(dir);
    renameSync(join(staging, "config.yml"), join(dir, "config.yml"));
    fsyncDirectory(dir);
    committed = true;
  } catch (err) {
    if (placedKeys && !pathExists(join(dir, "config.yml"))) rmSync(keysDir, { recursive: true, force: true });
    rmSync(join(staging, "keys"), { recursive: true, force: true });
    rmSync(join(staging, "config.yml"), { force: true });
    throw err;
  }
  // The thing is complete: its key lives in keys/ now, the pending copy goes.
  if (committed) {
    rmSync(staging, { recursive: true, force: true });
    fsyncDirectory(dir);
  }
}

/**
 * Takes the folder `dir` (made 0755 if missing) for this enrolment until `release()`, so a second
 * `enroll` in it at once refuses before it sends anything (two at once both made things on the
 * hub, spent both tokens and left one key staged under the other's name). Throws FlashlexError
 * try-later (75) when another enroll holds it.
 */
export async function acquireEnrolLock(dir: string): Promise<FileLock> {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw toFlashlexError(err, dir);
  }
  return holdFileLock(join(dir, ENROL_LOCK_FILE), {
    removeOnRelease: true,
    busy: () => new FlashlexError(`${dir}: another flashlex enroll is running in this folder; let it finish (or stop it) first`, "try-later"),
    what: `${dir}: the enrolment lock`,
  });
}

/** The enrolment's lock file in the folder, removed when it ends (left by a killed enroll: harmless, taken again). */
export const ENROL_LOCK_FILE = ".flashlex-enroll.lock";
