import { createHash, createHmac, type KeyObject, randomBytes, timingSafeEqual } from "node:crypto";
import { linkSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { FlashlexError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { Logger } from "../../shared/log.ts";
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
 * directory (`serve.lock-key`, 0600). Abstract names have no permissions and are listed in
 * /proc/net/unix for every user, so another local user can learn the name and take it while no
 * serve runs: the holder proves it knows the key when asked, and a name held by a process that
 * cannot is not a lock (holdAbstractLock).
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
  /** true when another user's process held the name: nothing is held (a warning was logged) */
  readonly squatted: boolean;
  release(): Promise<void>;
}

/**
 * Takes the lock for `dataDir` (created 0700 if missing) for as long as the process lives or
 * until `release()`. Throws FlashlexError `try-later` (exit 75) when another serve holds it,
 * ConfigError (78) when something else is where the directory belongs (refuseNonDirectory),
 * or a file-system kind (74/77) naming the path when the key cannot be made or read.
 */
export async function acquireServeLock(dataDir: string, log: Logger): Promise<ServeLock> {
  refuseNonDirectory(dataDir);
  const { name, key } = lockName(dataDir);
  return holdAbstractLock({
    name,
    busy: () =>
      new FlashlexError(
        `${dataDir}: another flashlex serve is running for this data directory (or a collect --via mqtt is publishing as the thing)`,
        "try-later",
      ),
    what: `${dataDir}: the single-serve lock`,
    proofKey: createHash("sha256").update("flashlex serve lock proof\0").update(key).digest(),
    log,
  });
}

/**
 * Takes the lock on the thing's MQTT session on this machine, held beside the data directory's by
 * every process that connects as the thing (serve, collect --via mqtt, bootstrap's connect
 * check): a second connection with the thing's client id takes its session over at the broker
 * (MQTT 3.1.1 §3.1.4), and one with another data directory, which that directory's lock does not
 * see, acknowledged messages on their way to serve and stored them elsewhere, or nowhere. Named
 * from the private key (its private number, whatever form the file has) and the thing's name:
 * the same for every data directory and every spelling of the broker's address; its holder
 * proves it knows the key when asked. serve moves it to the new key's name when it renews
 * (agent.ts). Throws `busy()` when another process holds it.
 *
 * FLASHLEX_FAULT_SECOND_DEVICE=1 (the tests only) takes no lock, as a second device with the same
 * identity would not: how the takeover warnings are tested on one machine.
 */
export async function acquireSessionLock(session: { privateKey: KeyObject; thingName: string }, busy: () => FlashlexError, log: Logger): Promise<ServeLock> {
  // the key's private number as JWK gives it: the same however the file wrote the key (an EC key
  // saved with its public point compressed is another PEM, and made another lock)
  const secret = String(session.privateKey.export({ format: "jwk" }).d);
  const derive = (purpose: string) => createHash("sha256").update(purpose).update("\0").update(secret).update("\0").update(session.thingName).digest();
  const name = `flashlex-session-${derive("flashlex session lock").toString("hex").slice(0, 40)}`;
  if (process.env.FLASHLEX_FAULT_SECOND_DEVICE === "1") return { name, squatted: false, release: async () => {} };
  return holdAbstractLock({ name, busy, what: `the MQTT session lock of ${session.thingName}`, proofKey: derive("flashlex session lock proof"), log });
}

/** What `holdAbstractLock` holds and how it answers for itself. */
export interface AbstractLock {
  /** the abstract socket's name, without the leading NUL */
  name: string;
  /** the error when another rightful holder has it (75, most often) */
  busy: () => FlashlexError;
  /** what the lock is, to name it in errors and the log */
  what: string;
  /**
   * A secret only a rightful holder knows (the directory's lock key, the thing's private key): the
   * holder answers a contender's challenge with it, so a flashlex of another user (root, a service
   * user) is told from a squatter. Without it (the enrolment lock) only the holder's user tells.
   */
  proofKey?: Buffer;
  /** where a squatted lock is reported */
  log: Logger;
}

/**
 * Holds the Linux abstract unix socket `lock.name` (the kernel's, so two processes taking it at
 * the same instant cannot both succeed, and it is gone with its process, however that ends) for as
 * long as the process lives or until `release()`.
 *
 * An abstract name has no permissions and shows in /proc/net/unix while it is held, so another
 * local user can take it while no flashlex holds it. When the name is taken, its holder is judged
 * (`judgeHolder`): one that proves it knows `proofKey`, or a process of this user, is a rightful
 * holder and the answer is `busy()`; anything else is a squatter, and the lock is gone without:
 * a warning `lock.squatted` is logged and `squatted` is true, so another user cannot keep serve
 * from starting. Throws `busy()`, or what listening threw as a FlashlexError naming `what`.
 */
export async function holdAbstractLock(lock: AbstractLock): Promise<ServeLock> {
  for (let attempt = 1; ; attempt++) {
    const server = await listenOn(lock);
    if (server) {
      held.add(server);
      return {
        name: lock.name,
        squatted: false,
        release: () =>
          new Promise<void>((resolve) => {
            held.delete(server);
            server.close(() => resolve());
          }),
      };
    }
    const holder = await judgeHolder(lock);
    if (holder === "rightful") throw lock.busy();
    // released between the bind and the look: bind again, a few times
    if (holder === "gone") {
      if (attempt < 3) continue;
      throw lock.busy();
    }
    lock.log.warn("lock.squatted", {
      lock: lock.what,
      name: lock.name,
      note: "another user's process holds this lock's name and cannot prove it is a flashlex that may hold it: going on without the lock (find it with: ss -xlp | grep <name>)",
    });
    return { name: lock.name, squatted: true, release: async () => {} };
  }
}

/** Listens on the abstract name: the server, or undefined when the name is in use. */
async function listenOn(lock: AbstractLock): Promise<Server | undefined> {
  const server: Server = createServer((socket) => (lock.proofKey ? answerChallenge(socket, lock.name, lock.proofKey) : socket.destroy()));
  const listening = await new Promise<boolean>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => (err.code === "EADDRINUSE" ? resolve(false) : reject(toFlashlexError(err, lock.what))));
    server.listen(`\0${lock.name}`, () => resolve(true));
  });
  if (!listening) return undefined;
  // The lock must not keep a stopping process alive; the handle stays open until the process ends.
  server.unref();
  return server;
}

/** How long a contender waits for the holder's proof, and the holder for the challenge (ms). */
const PROOF_WAIT_MS = 2000;
const NONCE_BYTES = 32;

const proofOf = (key: Buffer, name: string, nonce: Buffer) =>
  createHmac("sha256", key).update("flashlex lock proof\0").update(name).update("\0").update(nonce).digest();

/** The holder's side: reads the contender's nonce and answers HMAC-SHA256(key, name, nonce). */
function answerChallenge(socket: Socket, name: string, key: Buffer): void {
  socket.setTimeout(PROOF_WAIT_MS, () => socket.destroy());
  socket.on("error", () => socket.destroy());
  let nonce = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    nonce = Buffer.concat([nonce, chunk]);
    if (nonce.length < NONCE_BYTES) return;
    socket.end(proofOf(key, name, nonce.subarray(0, NONCE_BYTES)));
  });
}

/** The contender's side: true when the holder of `name` answers a fresh challenge with `key` within PROOF_WAIT_MS. */
function holderProves(name: string, key: Buffer): Promise<boolean> {
  const nonce = randomBytes(NONCE_BYTES);
  const expected = proofOf(key, name, nonce);
  return new Promise((resolve) => {
    let answer = Buffer.alloc(0);
    const socket = connect(`\0${name}`, () => socket.write(nonce));
    const done = (proven: boolean) => {
      socket.destroy();
      resolve(proven);
    };
    socket.setTimeout(PROOF_WAIT_MS, () => done(false));
    socket.on("error", () => done(false));
    socket.on("close", () => done(false));
    socket.on("data", (chunk: Buffer) => {
      answer = Buffer.concat([answer, chunk]);
      if (answer.length >= expected.length) done(timingSafeEqual(answer.subarray(0, expected.length), expected));
    });
  });
}

/**
 * Who holds the name: `rightful` (it proves it knows the lock's secret, or a process of this user
 * holds it: a flashlex stopped with SIGSTOP, or too busy to answer, or an older build that does
 * not answer), `gone` (no longer held), or `squatter` (held by a process of another user that
 * cannot prove it). When /proc cannot tell, the holder is taken as rightful: refusing is the safe
 * side. The process of another user is found as root; otherwise its socket is just not ours.
 */
async function judgeHolder(lock: AbstractLock): Promise<"rightful" | "gone" | "squatter"> {
  if (lock.proofKey && (await holderProves(lock.name, lock.proofKey))) return "rightful";
  let sockets: Set<string>;
  try {
    sockets = listeningSockets(lock.name);
  } catch {
    return "rightful";
  }
  if (sockets.size === 0) return "gone";
  return socketHeldByUser(sockets, process.getuid?.() ?? -1) ? "rightful" : "squatter";
}

/**
 * The inodes of the sockets bound to the abstract `name`, from /proc/net/unix (whose Path column
 * writes the leading NUL, and the NULs Node pads a name with, as `@`). Throws when it cannot be read.
 */
export function listeningSockets(name: string): Set<string> {
  const inodes = new Set<string>();
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    const path = fields[7];
    if (path === `@${name}` || path?.replace(/@+$/, "") === `@${name}`) inodes.add(fields[6]!);
  }
  return inodes;
}

/** True when a process of `uid` has one of `inodes` open (read from /proc/<pid>/fd, which a user sees of its own processes). */
function socketHeldByUser(inodes: Set<string>, uid: number): boolean {
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (statSync(`/proc/${pid}`).uid !== uid) continue;
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`, "utf8");
        if (target.startsWith("socket:[") && inodes.has(target.slice(8, -1))) return true;
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return false;
}

/** Locks held by this process, so no garbage collector can ever close one early. */
const held = new Set<Server>();

/**
 * `flashlex-serve-<hash of the directory's device, inode and key>`: the same for every serve of
 * this directory, by any path; with the key, which only the directory's user may read.
 */
export function lockName(dataDir: string): { name: string; key: string } {
  const { real, identity } = directoryIdentity(dataDir, 0o700);
  const key = lockKey(real);
  return { name: `flashlex-serve-${createHash("sha256").update(identity).update("\0").update(key).digest("hex").slice(0, 40)}`, key };
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
