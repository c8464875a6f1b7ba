/**
 * The hub's update key: the Ed25519 key pair whose private half signs releases and whose public
 * half every thing pins (config.yml `flashlex.update.publicKey`, written into every distribution
 * and handed to enrolment). Kept in the hub home:
 *
 *   update-key.pem   the private key, PKCS#8 PEM, 0600; `bun run release --signing-key` reads it
 *                    (it may be moved offline: the hub itself needs only the public half)
 *   update-key.pub   the public key, `ed25519:<base64>` and a newline, 0644
 *
 * and recorded in the hub database the first time it is used (`update_key`), because a thing
 * pins it for good: a home whose two files were lost, or swapped for another hub's, is refused
 * (78) rather than given a new key that every thing made so far would refuse updates under.
 * `hub init` makes it; a home made before updates existed gets it on first use.
 */
import { createPrivateKey } from "node:crypto";
import { join } from "node:path";
import { decodeUpdatePublicKey, encodeUpdatePublicKey, generateUpdateKeyPair } from "../../crypto/update-signing.ts";
import { ConfigError } from "../../shared/errors.ts";
import { createFile } from "../../shared/files.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { readRegularFile } from "../../shared/regular-file.ts";
import type { HubHome } from "../home/home.ts";
import type { HubStore } from "../store/hub-store.ts";

export const UPDATE_PRIVATE_KEY_FILE = "update-key.pem";
export const UPDATE_PUBLIC_KEY_FILE = "update-key.pub";

/** The two files above, in `hubDir`. */
export function updateKeyPaths(hubDir: string): { privateKey: string; publicKey: string } {
  return { privateKey: join(hubDir, UPDATE_PRIVATE_KEY_FILE), publicKey: join(hubDir, UPDATE_PUBLIC_KEY_FILE) };
}

/**
 * Makes the key pair in `hubDir`: the private key created exclusively (createFile: never over
 * another file or through a link), the public one after it, so a crash between the two leaves a
 * private key whose public half is derived again (updateKey). Another process making the pair at
 * the same moment wins quietly (EEXIST): its pair is read then. Throws what createFile throws.
 */
export function makeUpdateKey(hubDir: string): void {
  const paths = updateKeyPaths(hubDir);
  const pair = generateUpdateKeyPair();
  if (createUnlessThere(paths.privateKey, pair.privateKeyPem, 0o600)) createUnlessThere(paths.publicKey, `${pair.publicKey}\n`, 0o644);
}

/** createFile, but false when `file` is already there (another process made it first); throws what else createFile throws. */
function createUnlessThere(file: string, data: string, mode: number): boolean {
  try {
    createFile(file, data, mode);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return false;
  }
}

/**
 * The public key (`ed25519:...`) of the private key file `file`. Throws ConfigError (78) naming it
 * when it is not an Ed25519 private key, and what reading it throws (EACCES: 77).
 */
function publicHalfOf(file: string): string {
  const bytes = readRegularFile(file, "update private key");
  try {
    return encodeUpdatePublicKey(createPrivateKey(bytes));
  } catch (err) {
    throw new ConfigError(`${file}: not an Ed25519 private key (${(err as Error).message}); restore it from your backup of the hub home`);
  }
}

/** The public half of `file`, or undefined when it cannot be read or is no key: the hub itself never uses the private key. */
function publicHalfIfReadable(file: string): string | undefined {
  try {
    return publicHalfOf(file);
  } catch {
    return undefined;
  }
}

/**
 * What the key files in `hubDir` say, written nowhere: the public key of update-key.pub, or,
 * when a crash left only update-key.pem, its public half (`derived`). When both are there and
 * the private key can be read, it must be the public one's (a swapped .pem would sign releases
 * the hub then refuses); one the hub may not read (kept root's) or cannot parse is left to the
 * release step, which is the only one to use it. Throws ConfigError (78) naming the file:
 * neither there, the one needed damaged, or a pair that does not belong together; what reading
 * throws (77).
 */
function readUpdateKeyFiles(hubDir: string): { publicKey: string; derived: boolean } {
  const paths = updateKeyPaths(hubDir);
  const hasPrivate = pathExists(paths.privateKey);
  if (!pathExists(paths.publicKey)) {
    if (!hasPrivate) throw new ConfigError(`${hubDir}: no update key (${UPDATE_PUBLIC_KEY_FILE}, ${UPDATE_PRIVATE_KEY_FILE})`);
    return { publicKey: publicHalfOf(paths.privateKey), derived: true };
  }
  const text = readRegularFile(paths.publicKey, "update public key").toString("utf8").trim();
  try {
    decodeUpdatePublicKey(text);
  } catch (err) {
    throw new ConfigError(`${paths.publicKey}: ${(err as Error).message}; restore it from your backup of the hub home`);
  }
  const pemPublicHalf = hasPrivate ? publicHalfIfReadable(paths.privateKey) : undefined;
  if (pemPublicHalf !== undefined && pemPublicHalf !== text) {
    throw new ConfigError(
      `${paths.privateKey}: not the private half of ${UPDATE_PUBLIC_KEY_FILE} (${text}): releases signed with it would be refused; restore both from your backup of the hub home`,
    );
  }
  return { publicKey: text, derived: false };
}

/**
 * The hub's update public key, checked against the one its database recorded (the first use
 * records it; when the home has no key files and the database none either, a home older than
 * updates, the pair is made first). A public half derived from update-key.pem alone is written
 * to update-key.pub only once it matches the record. Throws ConfigError (78) when the files are
 * gone but the database records a key (lost: restore them), when they hold another key than the
 * recorded one (another hub's), and what readUpdateKeyFiles throws.
 */
export async function updateKey(
  home: Pick<HubHome, "paths" | "database">,
  store: Pick<HubStore, "updateKey" | "adoptUpdateKey">,
  now = Date.now(),
): Promise<string> {
  const hubDir = home.paths.dir;
  const paths = updateKeyPaths(hubDir);
  // several hubs on one served database share one key: the hub that made it has the files
  const elsewhere = home.database.kind === "postgres" ? ", or copy them from the home of the hub on this database that made the key" : "";
  const restore = `restore ${UPDATE_PRIVATE_KEY_FILE} and ${UPDATE_PUBLIC_KEY_FILE} from your backup of the hub home${elsewhere}: a new key would leave every thing made so far unable to take an update`;
  const noFiles = () => !pathExists(paths.publicKey) && !pathExists(paths.privateKey);
  if (noFiles()) {
    const recorded = await store.updateKey();
    // looked at again: another process may have made the pair and recorded it meanwhile
    if (recorded && noFiles()) {
      throw new ConfigError(
        `${hubDir}: ${UPDATE_PUBLIC_KEY_FILE} and ${UPDATE_PRIVATE_KEY_FILE} are missing, but this hub's things pin the update key ${recorded} (recorded in ${home.database.display}); ${restore}`,
      );
    }
    if (!recorded) makeUpdateKey(hubDir);
  }
  const { publicKey, derived } = readUpdateKeyFiles(hubDir);
  const recorded = await store.adoptUpdateKey(publicKey, now);
  if (recorded !== publicKey) {
    const file = derived ? paths.privateKey : paths.publicKey;
    throw new ConfigError(`${file}: ${publicKey} is not the update key this hub's things pin (${recorded}, recorded in ${home.database.display}); ${restore}`);
  }
  // a crash between the two files of makeUpdateKey: the public half is written again
  if (derived) createUnlessThere(paths.publicKey, `${publicKey}\n`, 0o644);
  return publicKey;
}
