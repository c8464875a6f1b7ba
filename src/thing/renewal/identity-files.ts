/**
 * The thing's key and certificate files through a renewal, so that a power cut at any instant
 * leaves a thing that still connects. With K the private key file and C the certificate file
 * named in config.yml:
 *
 *   1. key-staged      the new key is written to `K.next` (0600)         [the CSR is sent]
 *   2. cert-staged     the new certificate is written to `C.next`
 *   3. previous-saved  the current pair is copied to `K.previous`, `C.previous`
 *   4. cert-swapped    `C.next` is renamed over C                       (C new, K old: a mismatch)
 *   5. key-swapped     `K.next` is renamed over K                       (the new pair is in place)
 *   6. committed       after the new pair has connected once, the `.previous` files are removed
 *
 * Every write is durable (shared/durable-files.ts: temporary file, fsync, rename, fsync of the
 * directory), every rename is followed by an fsync of the directory. `recoverIdentityFiles`, run
 * by `serve` before it loads the identity, turns whatever a crash left into a matching pair:
 * a staged pair is rolled forward (the hub has already registered its key, and keeps the old key
 * until the new one is used), a half-swapped pair is finished, a lone staged key is dropped. A
 * `.previous` pair left in place means "not yet committed": `serve` connects with the new pair
 * and goes back to the previous one if the broker refuses the new (renewer.ts).
 *
 * FLASHLEX_FAULT_KILL_AT_RENEWAL=<step> kills the process with SIGKILL right after that step, for
 * the tests (test/integration/renewal.test.ts) and only for them.
 */
import { X509Certificate } from "node:crypto";
import { lstatSync, rmSync, type Stats, statSync } from "node:fs";
import { dirname } from "node:path";
import { normalisePrivateKey } from "../../crypto/key-files.ts";
import { spkiDer } from "../../crypto/keys.ts";
import { fsyncDirectory, renameDurably, writeFileDurably } from "../../shared/durable-files.ts";
import { ConfigError, FlashlexError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { Logger } from "../../shared/log.ts";
import { isNotThere, pathExists } from "../../shared/path-exists.ts";
import { MAX_PEM_FILE_BYTES, readRegularFile } from "../../shared/regular-file.ts";

export type RenewalStep = "key-staged" | "cert-staged" | "previous-saved" | "cert-swapped" | "key-swapped" | "committed";

export interface IdentityPaths {
  privateKey: string;
  cert: string;
  /** the public key file, rewritten after a swap (nothing reads it to connect) */
  publicKey?: string;
}

const next = (file: string) => `${file}.next`;
const previous = (file: string) => `${file}.previous`;

/**
 * Recovery's view of a file it may not even look at (EACCES on its directory): absent, so it
 * changes nothing, and the identity check that follows names the problem.
 */
const CANNOT_LOOK_IS_ABSENT = { cannotLook: false };

/** The test-only fault hook: SIGKILL right after `step` when FLASHLEX_FAULT_KILL_AT_RENEWAL names it. */
export function faultPoint(step: RenewalStep): void {
  if (process.env.FLASHLEX_FAULT_KILL_AT_RENEWAL === step) process.kill(process.pid, "SIGKILL");
}

/** The SPKI of a key file's key, or undefined when there is no such file or it is not a key (a torn write); throws what reading it throws otherwise (EACCES). */
function keySpki(file: string): Buffer | undefined {
  return spkiOfKey(readIfThere(file));
}

/** The SPKI of the key in `pem`, or undefined when there is none (absent, torn). */
function spkiOfKey(pem: Buffer | undefined): Buffer | undefined {
  try {
    return pem && spkiDer(normalisePrivateKey(pem).key);
  } catch {
    return undefined;
  }
}

/** The SPKI of a certificate file's first certificate, or undefined; throws as keySpki. */
function certSpki(file: string): Buffer | undefined {
  const bytes = readIfThere(file);
  try {
    return bytes && spkiDer(new X509Certificate(bytes).publicKey);
  } catch {
    return undefined;
  }
}

const KEY_OR_CERT = "key or certificate file";

/**
 * The file's bytes, or undefined when it is not there. A file this user may not read is no sign
 * of a crash: that throws (EACCES), before recovery changes anything; taken as absent, it would
 * have put the previous pair back over a current key it could not read. A FIFO, a socket or a
 * device throws ConfigError (78) at once (readRegularFile), rather than block serve's start:
 * for the thing's own pair; in the place of a renewal file recovery has dropped it first
 * (`dropStrayRenewalFiles`).
 */
function readIfThere(file: string): Buffer | undefined {
  try {
    return readRegularFile(file, KEY_OR_CERT);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if (isNotThere(err)) return undefined;
    throw namingFile(err, file);
  }
}

/** `recoverIdentityFiles`'s word when all it did was `dropStrayRenewalFiles`. */
export const DROPPED_STRAYS = "dropped what no renewal writes where its files go (a link, FIFO, socket, device, oversized or hard-linked file)";

/**
 * Removes what no renewal step writes from the four renewal files' places (`K.next`, `C.next`,
 * `K.previous`, `C.previous`): a symbolic link (renamed over K it would have replaced the key
 * with a link to itself), a FIFO, a socket, a device, a file over MAX_PEM_FILE_BYTES, another
 * name of K or C itself (a hard link: rename(2) between two names of one file does nothing, so
 * it stayed, and each renewal took it for a staged key: the same key certified again). A renewal
 * only ever renames a whole new regular file into these places, so anything else is torn, as a
 * half-written file is, and the rest of recovery sees only such files. Returns the files removed.
 * Throws ConfigError (78) naming a directory there (not removed: it is no file of ours to
 * delete), and a FlashlexError naming the file when it cannot be removed (a read-only keys
 * directory: 77 or 74). A place this user may not look at is left as it is.
 */
function dropStrayRenewalFiles(paths: IdentityPaths): string[] {
  const dropped: string[] = [];
  const own = [paths.privateKey, paths.cert].map((file) => statSync(file, { throwIfNoEntry: false }));
  const isOwnFile = (stat: Stats) => own.some((o) => o !== undefined && o.dev === stat.dev && o.ino === stat.ino);
  for (const file of [next(paths.privateKey), next(paths.cert), previous(paths.privateKey), previous(paths.cert)]) {
    let stat: ReturnType<typeof lstatSync>;
    try {
      stat = lstatSync(file);
    } catch {
      continue; // not there, or not ours to look at (EACCES): the reads that follow say so
    }
    if (stat.isDirectory()) throw new ConfigError(`${file}: a directory where a renewal puts a key or certificate file; remove it`);
    if (stat.isFile() && stat.size <= MAX_PEM_FILE_BYTES && !isOwnFile(stat)) continue;
    try {
      rmSync(file, { force: true });
    } catch (err) {
      const { kind, message } = toFlashlexError(err, file);
      throw new FlashlexError(
        `${message}: removing what no renewal writes (a link, FIFO, socket, device, oversized or hard-linked file) where a renewal file goes; remove it`,
        kind,
      );
    }
    dropped.push(file);
  }
  if (dropped.length) fsyncDirectory(dirname(paths.privateKey));
  return dropped;
}

/** Bun's readFileSync leaves out the path for some errors (EISDIR): the message must name the file. */
function namingFile(err: unknown, file: string): unknown {
  if (!(err as NodeJS.ErrnoException).path) Object.assign(err as object, { path: file });
  return err;
}

function pairMatches(keyFile: string, certFile: string): boolean {
  const key = keySpki(keyFile);
  const cert = certSpki(certFile);
  return key !== undefined && cert !== undefined && key.equals(cert);
}

/**
 * Whether the staged pair matches, with the current pair whole: a staged file this user may not
 * read (left root's by a `sudo` serve stopped with a key staged) cannot be rolled forward, and is
 * dropped as a torn one is (the hub keeps the old key until the new one is used).
 */
function stagedPairUsable(K: string, C: string): boolean {
  try {
    return pairMatches(next(K), next(C));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") return false;
    throw err;
  }
}

/** Step 1: the new key, 0600, durable. */
export function stageKey(paths: IdentityPaths, keyPem: string): void {
  writeFileDurably(next(paths.privateKey), keyPem, 0o600);
  faultPoint("key-staged");
}

/**
 * The key step 1 staged for an attempt that did not get its certificate (the hub away, or a
 * refusal), for the next attempt of the same serve to use again: a retry then makes no new key
 * (seconds of CPU for RSA on a small board) and writes nothing. Undefined when there is none or
 * the file holds no key. (At start, `recoverIdentityFiles` drops a lone staged key; a renewal the
 * hub asked for does not ask for it: renewer.ts.)
 */
export function stagedKey(paths: IdentityPaths): string | undefined {
  const bytes = readIfThere(next(paths.privateKey));
  return bytes && spkiOfKey(bytes) ? bytes.toString("utf8") : undefined;
}

/** Steps 2 to 5: the new certificate staged, the current pair saved, then swapped in: certificate first, key last. */
export function installStaged(paths: IdentityPaths, certPem: string, publicKeyPem?: string): void {
  writeFileDurably(next(paths.cert), certPem, 0o644);
  faultPoint("cert-staged");
  swapStaged(paths);
  if (paths.publicKey && publicKeyPem) writeFileDurably(paths.publicKey, publicKeyPem, 0o644);
}

/** Steps 3 to 5 for a staged pair (also the roll forward of recovery). */
function swapStaged(paths: IdentityPaths): void {
  // The current pair is kept, unless a matching one was saved already (a second pass after a crash).
  if (!pairMatches(previous(paths.privateKey), previous(paths.cert)) && pairMatches(paths.privateKey, paths.cert)) {
    writeFileDurably(previous(paths.privateKey), readRegularFile(paths.privateKey, KEY_OR_CERT), 0o600);
    writeFileDurably(previous(paths.cert), readRegularFile(paths.cert, KEY_OR_CERT), 0o644);
  }
  faultPoint("previous-saved");
  renameDurably(next(paths.cert), paths.cert);
  faultPoint("cert-swapped");
  renameDurably(next(paths.privateKey), paths.privateKey);
  faultPoint("key-swapped");
}

/** Step 6: the new pair connected once; the previous pair is removed. */
export function commitRenewal(paths: IdentityPaths): void {
  rmSync(previous(paths.privateKey), { force: true });
  rmSync(previous(paths.cert), { force: true });
  fsyncDirectory(dirname(paths.privateKey));
  faultPoint("committed");
}

/** True while a renewal is installed but not committed (a `.previous` pair exists). */
export function renewalPending(paths: IdentityPaths): boolean {
  return pathExists(previous(paths.privateKey), CANNOT_LOOK_IS_ABSENT) && pathExists(previous(paths.cert), CANNOT_LOOK_IS_ABSENT);
}

/**
 * The bytes of the previous pair's private key file, for the fall-back's question to the hub
 * (renewer.ts). Opened without blocking; throws ConfigError when it is no regular file of a
 * PEM's size (a FIFO, a device), and what reading it throws (ENOENT, EACCES).
 */
export function previousKeyFile(paths: IdentityPaths): Buffer {
  return readRegularFile(previous(paths.privateKey), "previous private key");
}

/** Puts the previous pair back (the new one was refused): certificate first, then key, each durable. */
export function revertRenewal(paths: IdentityPaths): void {
  writeFileDurably(paths.cert, readRegularFile(previous(paths.cert), KEY_OR_CERT), 0o644);
  writeFileDurably(paths.privateKey, readRegularFile(previous(paths.privateKey), KEY_OR_CERT), 0o600);
  commitRenewal(paths);
}

/**
 * Turns what a crash during a renewal left into a matching pair (see the module comment), and
 * says what it did (`recovered`: a log word, undefined when there was nothing to do) and whether
 * a renewal waits for its first connection (`pending`). What no renewal writes in a renewal
 * file's place (a link, a FIFO, a socket, a device, an oversized or hard-linked file) is dropped first
 * (`dropStrayRenewalFiles`; a directory there is a ConfigError, 78). A missing or damaged file
 * counts as absent (the identity check that follows names what is wrong); one this user may not
 * read throws the read's error (EACCES, 77) before anything is changed.
 */
export function recoverIdentityFiles(paths: IdentityPaths, log: Logger): { pending: boolean; recovered?: string } {
  const K = paths.privateKey;
  const C = paths.cert;
  const dropped = dropStrayRenewalFiles(paths);
  let recovered = dropped.length ? DROPPED_STRAYS : undefined;
  if (pairMatches(K, C)) {
    if (pathExists(next(K), CANNOT_LOOK_IS_ABSENT) && stagedPairUsable(K, C)) {
      swapStaged(paths); // crashed after step 2, 3: roll forward
      recovered = "rolled forward a staged renewal";
    } else if (pathExists(next(K), CANNOT_LOOK_IS_ABSENT) || pathExists(next(C), CANNOT_LOOK_IS_ABSENT)) {
      rmSync(next(K), { force: true }); // crashed after step 1: the key was never certified here
      rmSync(next(C), { force: true });
      fsyncDirectory(dirname(K));
      recovered = "dropped a key staged before its certificate";
    }
  } else if (pathExists(next(K), CANNOT_LOOK_IS_ABSENT) && pairMatches(next(K), C)) {
    renameDurably(next(K), K); // crashed after step 4: finish the swap
    recovered = "finished a half-swapped renewal";
  } else if (pairMatches(previous(K), previous(C))) {
    revertRenewal(paths); // anything else that does not match: the last pair known to be whole
    recovered = "restored the previous identity";
    return { pending: false, recovered };
  }
  if (recovered) log.warn("renewal.recovered", { key: K, what: recovered, ...(dropped.length ? { dropped: dropped.join(" ") } : {}) });
  return { pending: renewalPending(paths), recovered };
}
