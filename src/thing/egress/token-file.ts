/**
 * The egress token a one-shot `collect` (or an SDK call with serve stopped) signed, kept in the
 * data directory for the next one. Signing means loading node:crypto (~2 ms in the compiled
 * binary), the thing's key and certificate, and a private-key operation: about a fifth of a
 * `collect` on its own, which a collect run every minute paid each time. serve keeps its token in
 * memory for the same TOKEN_REUSE_SECONDS (tokens.ts).
 *
 * A kept token stands for the identity check that came before its signing (identity.ts
 * `loadIdentity`), so it is used only while that check would still pass: the same thing (id and
 * name), the same three identity files (path, inode, size, modification and change times; a file
 * replaced, rewritten, renamed or chmod-ed is another file), within TOKEN_REUSE_SECONDS of local
 * time since it was signed (a clock stepped back makes it unusable, not older). It also keeps the
 * root CA as the check read it, for an https collect URL.
 *
 * The file holds a bearer token for a few minutes, so it is written 0600 like the private key it
 * was signed with (whoever may read it may read the key); it is a cache, never fsynced: a damaged,
 * foreign or unreadable file is a miss, and a failed write costs the next collect a signature. Only
 * a regular file of this user's is read or replaced (never a link, a FIFO or a device, whose
 * reader would get the token), and only a well-formed token is sent.
 */
import { lstatSync, readFileSync, type Stats, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import type { ThingConfig } from "../settings.ts";
import { TOKEN_REUSE_SECONDS } from "./tokens.ts";

/** The file's name in the thing's data directory. */
export const TOKEN_FILE_NAME = "egress-token.json";

/** A token file is a few kilobytes (a token, a root CA); anything far larger is not one. */
const MAX_TOKEN_FILE_BYTES = 256 * 1024;

/** What a kept token is sent with. */
export interface KeptToken {
  token: string;
  /** what the hub clock added to the local time when it was signed, in ms */
  offsetMs: number;
  /** the identity's root CA, canonical PEM (ThingIdentity.caPem) */
  caPem: string;
}

interface TokenFileContent extends KeptToken {
  /** the identity it stands for (`fingerprintOf`) */
  identity: string;
  /** local time of the signing, Unix ms */
  signedAtMs: number;
}

export class TokenFile {
  readonly file: string;

  constructor(private readonly config: ThingConfig) {
    this.file = join(config.dataDir, TOKEN_FILE_NAME);
  }

  /** The kept token when it may be sent at local time `nowMs` (see above), and when it was signed; undefined otherwise. Never throws. */
  read(nowMs = Date.now()): (KeptToken & { signedAtMs: number }) | undefined {
    try {
      if (!isOwnRegularFile(this.file)) return undefined;
      const kept = JSON.parse(readFileSync(this.file, "utf8")) as Partial<TokenFileContent>;
      const age = nowMs - Number(kept.signedAtMs);
      if (!(age >= 0 && age < TOKEN_REUSE_SECONDS * 1000)) return undefined;
      if (typeof kept.token !== "string" || !TOKEN_SHAPE.test(kept.token) || typeof kept.offsetMs !== "number") return undefined;
      if (typeof kept.caPem !== "string" || !kept.caPem.startsWith("-----BEGIN ")) return undefined;
      if (kept.identity !== this.fingerprint()) return undefined;
      return { token: kept.token, offsetMs: kept.offsetMs, caPem: kept.caPem, signedAtMs: Number(kept.signedAtMs) };
    } catch {
      return undefined;
    }
  }

  /**
   * The identity files as they are now (`fingerprintOf`): taken before the identity is loaded and
   * checked, and given to `write`, so that files replaced meanwhile are not vouched for. Throws
   * when a file cannot be looked at.
   */
  fingerprint(): string {
    return fingerprintOf(this.config);
  }

  /**
   * Keeps `token`, signed at local time `signedAtMs` for the identity files `fingerprint` (taken
   * before they were checked). Only ever a regular file of this user's, replaced by rename: a
   * FIFO, a device or a link at the name is left alone (the token is never written through it).
   * Never throws.
   */
  write(token: KeptToken, signedAtMs: number, fingerprint: string): void {
    try {
      if (lstatOrNone(this.file) !== undefined && !isOwnRegularFile(this.file)) return;
      const content: TokenFileContent = { ...token, identity: fingerprint, signedAtMs };
      writeFileAtomicallySync(this.file, JSON.stringify(content), 0o600, { durable: false });
    } catch {
      // a read-only or full data directory: the next collect signs again
    }
  }

  /** The hub refused the kept token: the next collect signs a new one. Never throws. */
  remove(): void {
    try {
      unlinkSync(this.file);
    } catch {
      // not there, or not ours to remove: a read checks it anyway
    }
  }
}

/** A JWS compact serialisation (RFC 7515 §7.1) of a sane size: anything else in the file is not a token to send. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{1,4096}\.[A-Za-z0-9_-]{1,4096}\.[A-Za-z0-9_-]{1,4096}$/;

/** lstat(2) of `path`, undefined when nothing is there. */
function lstatOrNone(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * A regular file (not a link, a FIFO or a device) of this process's user that no one else may
 * write: a token file another user could have put there, or could change, is not taken (its root
 * CA would be trusted for an https hub).
 */
function isOwnRegularFile(path: string): boolean {
  const stats = lstatOrNone(path);
  if (!stats?.isFile() || stats.size > MAX_TOKEN_FILE_BYTES || (stats.mode & 0o022) !== 0) return false;
  return process.getuid === undefined || stats.uid === process.getuid();
}

/** Whether a collect in `config`'s data directory would now send a kept token (see above). */
export function keptTokenFor(config: ThingConfig): boolean {
  return new TokenFile(config).read() !== undefined;
}

/**
 * The identity a token was signed for, as a string to compare: the thing's id and name and, for
 * each of its three files, the path and what stat(2) says of the file there (device, inode,
 * size, mtime, ctime). Throws when a file cannot be looked at.
 */
function fingerprintOf(config: ThingConfig): string {
  const { rootCA, cert, privateKey } = config.paths;
  const files = [privateKey, cert, rootCA].map((path) => {
    const s = statSync(path);
    return [path, s.dev, s.ino, s.size, s.mtimeMs, s.ctimeMs];
  });
  return JSON.stringify([config.yaml.thing.id, config.yaml.thing.name, files]);
}
