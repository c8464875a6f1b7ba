/**
 * The hub's update key: the Ed25519 key pair whose private half signs releases and whose public
 * half every thing pins (config.yml `flashlex.update.publicKey`, written into every distribution
 * and handed to enrolment). Kept in the hub home:
 *
 *   update-key.pem   the private key, PKCS#8 PEM, 0600; `bun run release --signing-key` reads it
 *                    (it may be moved offline: the hub itself needs only the public half)
 *   update-key.pub   the public key, `ed25519:<base64>` and a newline, 0644
 *
 * `hub init` makes it; a home made before updates existed gets it on first use.
 */
import { createPrivateKey } from "node:crypto";
import { join } from "node:path";
import { decodeUpdatePublicKey, encodeUpdatePublicKey, generateUpdateKeyPair } from "../../crypto/update-signing.ts";
import { ConfigError } from "../../shared/errors.ts";
import { createFile } from "../../shared/files.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { readRegularFile } from "../../shared/regular-file.ts";

export const UPDATE_PRIVATE_KEY_FILE = "update-key.pem";
export const UPDATE_PUBLIC_KEY_FILE = "update-key.pub";

/** The two files above, in `hubDir`. */
export function updateKeyPaths(hubDir: string): { privateKey: string; publicKey: string } {
  return { privateKey: join(hubDir, UPDATE_PRIVATE_KEY_FILE), publicKey: join(hubDir, UPDATE_PUBLIC_KEY_FILE) };
}

/**
 * The hub's update public key (`ed25519:<base64>`), made first when the home has none. The
 * private key is created exclusively (createFile: never over another file or through a link), the
 * public one after it, so a crash between the two leaves a private key whose public half is made
 * again here. Throws ConfigError (78) when update-key.pub is damaged, or when only the public half
 * is there and the private one was removed (kept offline: fine) but the public half is unusable.
 */
export function ensureUpdateKey(hubDir: string): string {
  const paths = updateKeyPaths(hubDir);
  if (!pathExists(paths.publicKey)) {
    if (pathExists(paths.privateKey)) {
      // a crash between the two files: derive the public half again
      createFile(paths.publicKey, `${encodeUpdatePublicKey(createPrivateKey(readRegularFile(paths.privateKey, "update private key")))}\n`, 0o644);
    } else {
      const pair = generateUpdateKeyPair();
      createFile(paths.privateKey, pair.privateKeyPem, 0o600);
      createFile(paths.publicKey, `${pair.publicKey}\n`, 0o644);
    }
  }
  const text = readRegularFile(paths.publicKey, "update public key").toString("utf8").trim();
  try {
    decodeUpdatePublicKey(text);
  } catch (err) {
    throw new ConfigError(`${paths.publicKey}: ${(err as Error).message}; restore it from your backup of the hub home`);
  }
  return text;
}
