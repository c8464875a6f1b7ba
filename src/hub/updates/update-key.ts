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
 * private key whose public half `readUpdateKey` makes again. Throws what createFile throws.
 */
export function makeUpdateKey(hubDir: string): void {
  const paths = updateKeyPaths(hubDir);
  const pair = generateUpdateKeyPair();
  createFile(paths.privateKey, pair.privateKeyPem, 0o600);
  createFile(paths.publicKey, `${pair.publicKey}\n`, 0o644);
}

/**
 * The update public key (`ed25519:<base64>`) of the files in `hubDir`, the public half derived
 * again from the private one when a crash left only that. Never makes a key. Throws ConfigError
 * (78) when neither file is there, or when update-key.pub is damaged.
 */
function readUpdateKey(hubDir: string): string {
  const paths = updateKeyPaths(hubDir);
  if (!pathExists(paths.publicKey)) {
    if (!pathExists(paths.privateKey)) throw new ConfigError(`${hubDir}: no update key (${UPDATE_PUBLIC_KEY_FILE}, ${UPDATE_PRIVATE_KEY_FILE})`);
    // a crash between the two files: derive the public half again
    createFile(paths.publicKey, `${encodeUpdatePublicKey(createPrivateKey(readRegularFile(paths.privateKey, "update private key")))}\n`, 0o644);
  }
  const text = readRegularFile(paths.publicKey, "update public key").toString("utf8").trim();
  try {
    decodeUpdatePublicKey(text);
  } catch (err) {
    throw new ConfigError(`${paths.publicKey}: ${(err as Error).message}; restore it from your backup of the hub home`);
  }
  return text;
}

/**
 * The hub's update public key, checked against the one its database recorded (the first use
 * records it; when the home has no key files and the database none either, a home older than
 * updates, the pair is made first). Throws ConfigError (78) when the files are gone but the
 * database records a key (lost: restore them), or when they hold another key than the recorded
 * one (another hub's); what readUpdateKey throws.
 */
export async function updateKey(
  home: Pick<HubHome, "paths" | "database">,
  store: Pick<HubStore, "updateKey" | "adoptUpdateKey">,
  now = Date.now(),
): Promise<string> {
  const hubDir = home.paths.dir;
  const paths = updateKeyPaths(hubDir);
  const restore = `restore ${UPDATE_PRIVATE_KEY_FILE} and ${UPDATE_PUBLIC_KEY_FILE} from your backup of the hub home: a new key would leave every thing made so far unable to take an update`;
  if (!pathExists(paths.publicKey) && !pathExists(paths.privateKey)) {
    const recorded = await store.updateKey();
    if (recorded) {
      throw new ConfigError(
        `${hubDir}: ${UPDATE_PUBLIC_KEY_FILE} and ${UPDATE_PRIVATE_KEY_FILE} are missing, but this hub's things pin the update key ${recorded} (recorded in ${home.database.display}); ${restore}`,
      );
    }
    makeUpdateKey(hubDir);
  }
  const key = readUpdateKey(hubDir);
  const recorded = await store.adoptUpdateKey(key, now);
  if (recorded !== key) {
    throw new ConfigError(
      `${paths.publicKey}: ${key} is not the update key this hub's things pin (${recorded}, recorded in ${home.database.display}); ${restore}`,
    );
  }
  return key;
}
