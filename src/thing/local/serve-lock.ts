import { createHash, type KeyObject, randomBytes } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, realpathSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { FlashlexError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { refuseNonDirectory } from "../config-location.ts";

/**
 * One `serve` per data directory, decided by the kernel: the lock is a Linux abstract Unix
 * socket (unix(7): a name that starts with NUL, no file behind it) named after the data
 * directory. Binding a name is atomic, so of two serves started at the same instant exactly one
 * gets it; the kernel releases it when the process ends in any way (SIGKILL, OOM kill), so
 * there is never a stale lock to judge. Bun and Node 20 (the armv7 build) both bind such names.
 *
 * The name is a hash of the data directory's identity (device and inode: the same directory
 * reached through a bind mount or another path is the same) and a random key kept in the
 * directory (`serve.lock-key`, 0600): abstract names have no permissions, and without the key
 * any local user could take the name first and keep serve from starting.
 *
 * Limits: abstract names live in a network namespace, so two serves in different network
 * namespaces (containers sharing a volume) do not see each other's lock; serve also tries the
 * control socket in the directory, which a file system shares (agent.ts), before it takes over.
 * A Bun build and the armv7 Node build name it differently (Node pads the name), which never
 * meet on one machine.
 */
export const LOCK_KEY_FILE = "serve.lock-key";

export interface ServeLock {
  /** the abstract name, for logs (without the leading NUL) */
  readonly name: string;
  release(): Promise<void>;
}

/**
 * Takes the lock for `dataDir` (created 0700 if missing) for as long as the process lives or
 * until `release()`. Throws FlashlexError `try-later` (exit 75) when another serve holds it,
 * ConfigError (78) when something else is where the directory belongs (refuseNonDirectory),
 * or a file-system kind (74/77) naming the path when the key cannot be made or read.
 */
export async function acquireServeLock(dataDir: string): Promise<ServeLock> {
  refuseNonDirectory(dataDir);
  return holdAbstractLock(
    lockName(dataDir),
    () =>
      new FlashlexError(
        `${dataDir}: another flashlex serve is running for this data directory (or a collect --via mqtt is publishing as the thing)`,
        "try-later",
      ),
    `${dataDir}: the single-serve lock`,
  );
}

/**
 * Takes the lock on the thing's MQTT session on this machine, held beside the data directory's by
 * every process that connects as the thing (serve, collect --via mqtt, bootstrap's connect
 * check): a second connection with the thing's client id takes its session over at the broker
 * (MQTT 3.1.1 §3.1.4), and one with another data directory, which that directory's lock does not
 * see, acknowledged messages on their way to serve and stored them elsewhere, or nowhere. Named
 * from the private key (its private number, whatever form the file has) and the thing's name:
 * the same for every data directory and every spelling of the broker's address. serve moves it
 * to the new key's name when it renews (agent.ts). Like the directory's lock, its name shows in
 * /proc/net/unix while it is held, and another local user could take it while no serve runs;
 * serve then refuses to start (75) until that process ends. Throws `busy()` when another process
 * holds it.
 *
 * FLASHLEX_FAULT_SECOND_DEVICE=1 (the tests only) takes no lock, as a second device with the same
 * identity would not: how the takeover warnings are tested on one machine.
 */
export async function acquireSessionLock(session: { privateKey: KeyObject; thingName: string }, busy: () => FlashlexError): Promise<ServeLock> {
  // the key's private number as JWK gives it: the same however the file wrote the key (an EC key
  // saved with its public point compressed is another PEM, and made another lock)
  const secret = String(session.privateKey.export({ format: "jwk" }).d);
  const name = `flashlex-session-${createHash("sha256").update("flashlex session lock\0").update(secret).update("\0").update(session.thingName).digest("hex").slice(0, 40)}`;
  if (process.env.FLASHLEX_FAULT_SECOND_DEVICE === "1") return { name, release: async () => {} };
  return holdAbstractLock(name, busy, `the MQTT session lock of ${session.thingName}`);
}

/**
 * Holds the Linux abstract unix socket `name` (the kernel's, so two processes taking it at the
 * same instant cannot both succeed, and it is gone with its process, however that ends) for as
 * long as the process lives or until `release()`. Throws `busy()` when another process holds it,
 * else what listening threw, as a FlashlexError naming `what`.
 */
export async function holdAbstractLock(name: string, busy: () => FlashlexError, what: string): Promise<ServeLock> {
  const server: Server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => reject(err.code === "EADDRINUSE" ? busy() : toFlashlexError(err, what)));
    server.listen(`\0${name}`, () => resolve());
  });
  // The lock must not keep a stopping process alive; the handle stays open until the process ends.
  server.unref();
  held.add(server);
  return {
    name,
    release: () =>
      new Promise<void>((resolve) => {
        held.delete(server);
        server.close(() => resolve());
      }),
  };
}

/** Locks held by this process, so no garbage collector can ever close one early. */
const held = new Set<Server>();

/** `flashlex-serve-<hash of the directory's device, inode and key>`: the same for every serve of this directory, by any path. */
export function lockName(dataDir: string): string {
  const { real, identity } = directoryIdentity(dataDir, 0o700);
  const key = lockKey(real);
  return `flashlex-serve-${createHash("sha256").update(identity).update("\0").update(key).digest("hex").slice(0, 40)}`;
}

/**
 * `dir` (made with `mode` if missing), its real path, and its identity, `device:inode`: the same
 * for every path to it (a bind mount, a link), which names a lock on the directory. Throws the
 * file system's error as a FlashlexError naming `dir`.
 */
export function directoryIdentity(dir: string, mode: number): { real: string; identity: string } {
  try {
    mkdirSync(dir, { recursive: true, mode });
    const real = realpathSync(dir);
    const { dev, ino } = statSync(real, { bigint: true });
    return { real, identity: `${dev}:${ino}` };
  } catch (err) {
    throw toFlashlexError(err, dir);
  }
}

/**
 * Reads the directory's lock key, making it first if needed. Made under a temporary name and
 * linked into place (link fails if the name exists), so two processes making it at once agree
 * on one key and nobody reads a half-written one.
 */
function lockKey(dir: string): string {
  const file = join(dir, LOCK_KEY_FILE);
  try {
    return readKey(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toFlashlexError(err, file);
  }
  const temp = join(dir, `.${LOCK_KEY_FILE}.${process.pid}.${randomBytes(4).toString("hex")}`);
  try {
    writeFileSync(temp, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
    try {
      linkSync(temp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    return readKey(file);
  } catch (err) {
    throw toFlashlexError(err, file);
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // never written
    }
  }
}

function readKey(file: string): string {
  const key = readFileSync(file, "utf8").trim();
  if (!/^[0-9a-f]{64}$/.test(key)) throw new FlashlexError(`${file}: not a serve lock key (delete it; serve makes a new one)`, "config");
  return key;
}
