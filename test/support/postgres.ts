/**
 * Starts Debian's PostgreSQL 15 for a test, on loopback, and stops it again.
 *
 *   const pg = await startPostgres(dir);
 *   ... open pg.url (postgres://flashlex:<password>@127.0.0.1:<port>/flashlex) ...
 *   await pg.stop();   // in afterAll: also after failed tests
 *
 * The cluster is the test's own: a data directory, a unix socket directory and a port of its own
 * inside `dir`, nothing of Debian's `main` cluster or /var/run/postgresql. initdb refuses to run
 * as root, so as root the binaries run as the `postgres` user (setpriv), and the helper's
 * subdirectory of `dir` is handed to that user (mkdtemp makes 0700 directories: `dir` itself is
 * made traversable). Password authentication over TCP (scram-sha-256), so the URL the hub gets
 * carries a password, as a real one does.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

export const POSTGRES_BIN = "/usr/lib/postgresql/15/bin";

/** Whether Debian's PostgreSQL 15 is installed (scripts/install-system-packages.sh installs it). */
export const hasPostgres = existsSync(join(POSTGRES_BIN, "initdb"));

export interface TestPostgres {
  /** postgres://flashlex:PASSWORD@127.0.0.1:PORT/flashlex */
  url: string;
  port: number;
  password: string;
  /** a fresh, empty database on this server (for tests that need a schema of their own); its URL */
  createDatabase(name: string): string;
  /** the server's log so far */
  log(): string;
  /** runs one SQL command as the superuser over the unix socket (psql); its output */
  psql(command: string, database?: string): string;
  /** SIGSTOP to the postmaster and every backend: the server accepts TCP and answers nothing (a hang) */
  freeze(): void;
  /** SIGCONT to the same processes */
  thaw(): void;
  /** pg_ctl stop -m fast; safe to call twice */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** Looks up a user's uid and gid in /etc/passwd. */
function userIds(name: string): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no ${name} user: install Debian's postgresql (scripts/install-system-packages.sh)`);
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

export async function startPostgres(dir: string): Promise<TestPostgres> {
  const root = process.getuid?.() === 0;
  const ids = root ? userIds("postgres") : undefined;
  const as = (argv: string[]) => (ids ? ["setpriv", `--reuid=${ids.uid}`, `--regid=${ids.gid}`, "--clear-groups", "--", ...argv] : argv);
  const run = (argv: string[], input?: string) => {
    const [cmd, ...args] = as(argv);
    const result = spawnSync(cmd!, args, { input, encoding: "utf8", timeout: 60_000 });
    if (result.status !== 0) throw new Error(`${argv.join(" ")} failed (${result.status ?? result.signal}): ${result.stderr || result.stdout}`);
    return result.stdout;
  };

  const base = join(dir, "postgres");
  const data = join(base, "data");
  const sockets = join(base, "sockets");
  const logFile = join(base, "server.log");
  mkdirSync(sockets, { recursive: true });
  if (ids) {
    chmodSync(dir, 0o711);
    for (const path of [base, sockets]) chownSync(path, ids.uid, ids.gid);
  }
  const password = `pw-${crypto.randomUUID()}`;
  const passwordFile = join(base, "password");
  writeFileSync(passwordFile, password, { mode: 0o600 });
  if (ids) chownSync(passwordFile, ids.uid, ids.gid);

  run([
    join(POSTGRES_BIN, "initdb"),
    "-D",
    data,
    "-U",
    "flashlex",
    "--pwfile",
    passwordFile,
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    "--no-sync",
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  const port = await freePort();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      run([join(POSTGRES_BIN, "pg_ctl"), "-D", data, "-m", "fast", "-w", "-t", "30", "stop"]);
    } catch (err) {
      // never started, or already gone: nothing left to stop
      if (existsSync(join(data, "postmaster.pid"))) throw err;
    }
  };
  try {
    run([
      join(POSTGRES_BIN, "pg_ctl"),
      "-D",
      data,
      "-l",
      logFile,
      "-w",
      "-t",
      "30",
      "-o",
      `-p ${port} -k ${sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`,
      "start",
    ]);
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  const url = (db: string) => `postgres://flashlex:${password}@127.0.0.1:${port}/${db}`;
  const psql = (command: string, database = "postgres") =>
    run([join(POSTGRES_BIN, "psql"), "-h", sockets, "-p", String(port), "-U", "flashlex", "-d", database, "-v", "ON_ERROR_STOP=1", "-c", command]);
  // the postmaster's pid is postmaster.pid's first line; its children are the backends and workers
  const serverPids = () => {
    const main = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    const children = spawnSync("pgrep", ["-P", String(main)], { encoding: "utf8" })
      .stdout.split("\n")
      .filter(Boolean)
      .map(Number);
    return [main, ...children];
  };
  const signal = (sig: NodeJS.Signals) => {
    for (const pid of serverPids()) {
      try {
        process.kill(pid, sig);
      } catch {
        // a backend that ended meanwhile
      }
    }
  };
  try {
    psql("CREATE DATABASE flashlex");
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return {
    url: url("flashlex"),
    port,
    password,
    createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
      psql(`CREATE DATABASE ${name}`);
      return url(name);
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
    psql,
    freeze: () => signal("SIGSTOP"),
    thaw: () => signal("SIGCONT"),
    async stop() {
      // a frozen server cannot stop: thaw it first
      if (!stopped && existsSync(join(data, "postmaster.pid"))) signal("SIGCONT");
      await stop();
    },
  };
}
