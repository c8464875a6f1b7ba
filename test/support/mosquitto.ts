/**
 * Starts Debian's Mosquitto for a test, on a free loopback port, and stops it again.
 *
 *   const broker = await startMosquitto({ dir, caFile, certFile, keyFile, requireCertificate: true });
 *   ... connect to mqtts://127.0.0.1:${broker.port} ...
 *   await broker.stop();
 *
 * Mosquitto started as root drops to the `mosquitto` user, which then cannot read files in a
 * 0700 temp dir (mkdtemp's default). So the helper copies the certificate, key, ACL and CRL into
 * its own subdirectory of `dir`, with 0755 directories and 0644 files (test keys only!), and makes
 * `dir` itself traversable. Its log is captured; `stop()` and failures include it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, chmodSync, constants, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { dirname, join, resolve } from "node:path";

export const MOSQUITTO_BIN = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => existsSync(p)) ?? "mosquitto";

export interface MosquittoFiles {
  /** the copies Mosquitto reads (all readable by the `mosquitto` user) */
  caFile: string;
  certFile: string;
  keyFile: string;
  aclFile?: string;
  crlFile?: string;
  configFile: string;
}

export interface StartMosquittoOptions {
  /** a directory of the test's own; the broker's files go in a subdirectory */
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** an ACL file; without one every authenticated client may use every topic */
  aclFile?: string;
  /** a PEM CRL (`crlfile`); replace it with `files.crlFile` + `reload()` */
  crlFile?: string;
  /** clients must present a certificate signed by caFile (always true in this project) */
  requireCertificate: true;
  /** use the certificate CN as the username (default true: the ACL's %u is the thing name) */
  useIdentityAsUsername?: boolean;
  /** lines appended to the listener's settings */
  extraConfig?: string;
  /** write the whole config yourself (e.g. renderMosquittoConfig); gets the port and the copied files */
  renderConfig?: (port: number, files: Omit<MosquittoFiles, "configFile">) => string;
  /** how long to wait for the listener; default 10 s */
  startTimeoutMs?: number;
}

export interface MosquittoBroker {
  port: number;
  /** the broker's process id (e.g. for a `kill -HUP` the code under test runs itself) */
  pid: number;
  host: string;
  files: MosquittoFiles;
  /** everything Mosquitto logged so far */
  log(): string;
  /** SIGHUP: Mosquitto re-reads its config, certificates and CRL */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Where the tests' ports come from: below Linux's ephemeral range (32768-60999), so no outgoing
 * connection of another process (a shard's clients, a broker's) is handed the port between this
 * check and the moment a test binds it, sometimes minutes later (a cluster's nodes).
 */
const PORT_RANGE = { from: 10_000, to: 32_768 };

/** A port that was free a moment ago (Mosquitto binds it next; a lost race is retried). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return freePorts(1, host);
}

/**
 * Ports this process handed out: never handed out twice, so two calls in a row (an API's port and
 * its broker's) cannot pick the same free port before either is bound.
 */
const handedOut = new Set<number>();

/** The first of `count` consecutive ports free on `host` a moment ago, from a random start at or above `from`. */
export async function freePorts(count: number, host = "127.0.0.1", from = PORT_RANGE.from): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, host, () => server.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = from + Math.floor(Math.random() * (PORT_RANGE.to - from - count));
    let ok = true;
    for (let port = base; port < base + count && ok; port++) ok = !handedOut.has(port) && (await free(port));
    if (ok) {
      for (let port = base; port < base + count; port++) handedOut.add(port);
      return base;
    }
  }
  throw new Error(`no ${count} free consecutive ports on ${host} in ${from}-${PORT_RANGE.to - 1}`);
}

function makeTraversable(path: string) {
  const mode = statSync(path).mode & 0o7777;
  if ((mode & 0o055) !== 0o055) chmodSync(path, mode | 0o755);
}

function checkAncestors(dir: string) {
  // Every directory above `dir` must be traversable by others, or the mosquitto user cannot reach the files.
  for (let p = dirname(resolve(dir)); ; p = dirname(p)) {
    if ((statSync(p).mode & 0o001) === 0) {
      throw new Error(`startMosquitto: ${p} is not traversable by other users; put the test dir elsewhere (e.g. under /tmp)`);
    }
    if (p === dirname(p)) break;
  }
}

function copyReadable(from: string, dir: string, name: string): string {
  accessSync(from, constants.R_OK);
  const to = join(dir, name);
  copyFileSync(from, to);
  chmodSync(to, 0o644);
  return to;
}

function defaultConfig(port: number, files: Omit<MosquittoFiles, "configFile">, opts: StartMosquittoOptions): string {
  return [
    "per_listener_settings true",
    // as `hub mosquitto-config` writes it (docs/broker.md): no ~40 ms wait for each CONNACK
    "set_tcp_nodelay true",
    "persistence false",
    "log_dest stderr",
    "log_type all",
    `listener ${port} 127.0.0.1`,
    `cafile ${files.caFile}`,
    `certfile ${files.certFile}`,
    `keyfile ${files.keyFile}`,
    files.crlFile ? `crlfile ${files.crlFile}` : "",
    "tls_version tlsv1.2",
    "require_certificate true",
    opts.useIdentityAsUsername === false ? "allow_anonymous true" : "use_identity_as_username true\nallow_anonymous false",
    files.aclFile ? `acl_file ${files.aclFile}` : "",
    opts.extraConfig ?? "",
    "",
  ]
    .filter((l, i, all) => l !== "" || i === all.length - 1)
    .join("\n");
}

function waitForListener(host: string, port: number, child: ChildProcess, timeoutMs: number, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolveWait, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        return reject(new Error(`mosquitto exited (${child.exitCode ?? child.signalCode}) before listening:\n${log()}`));
      }
      const socket = createConnection({ host, port });
      socket.once("connect", () => {
        socket.destroy();
        resolveWait();
      });
      socket.once("error", () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`mosquitto did not listen on ${host}:${port} within ${timeoutMs} ms:\n${log()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
  await exited;
  clearTimeout(timer);
}

export async function startMosquitto(opts: StartMosquittoOptions): Promise<MosquittoBroker> {
  if (!exitHookInstalled) {
    // A test that crashes must not leave brokers behind.
    process.once("exit", () => {
      for (const child of running) child.kill("SIGKILL");
    });
    exitHookInstalled = true;
  }
  const host = "127.0.0.1";
  mkdirSync(opts.dir, { recursive: true });
  checkAncestors(opts.dir);
  makeTraversable(opts.dir);

  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(host);
    const dir = join(opts.dir, `mosquitto-${port}`);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o755);
    const files = {
      caFile: copyReadable(opts.caFile, dir, "ca.pem"),
      certFile: copyReadable(opts.certFile, dir, "server-cert.pem"),
      keyFile: copyReadable(opts.keyFile, dir, "server-key.pem"),
      aclFile: opts.aclFile ? copyReadable(opts.aclFile, dir, "acl") : undefined,
      crlFile: opts.crlFile ? copyReadable(opts.crlFile, dir, "crl.pem") : undefined,
    };
    const configFile = join(dir, "mosquitto.conf");
    const config = opts.renderConfig ? opts.renderConfig(port, files) : defaultConfig(port, files, opts);
    writeFileSync(configFile, config, { mode: 0o644 });

    let output = "";
    const child = spawn(MOSQUITTO_BIN, ["-c", configFile], { stdio: ["ignore", "pipe", "pipe"] });
    running.add(child);
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    child.once("exit", () => running.delete(child));
    const log = () => output;
    const spawned = new Promise<void>((ok, fail) => {
      child.once("spawn", ok);
      child.once("error", (err) => fail(new Error(`cannot start ${MOSQUITTO_BIN}: ${err.message}`)));
    });

    try {
      await spawned;
      await waitForListener(host, port, child, opts.startTimeoutMs ?? 10_000, log);
    } catch (err) {
      await stopChild(child);
      lastError = err;
      if (/Address already in use/i.test(output)) continue; // lost the port race: try another port
      throw err;
    }

    return {
      port,
      pid: child.pid!,
      host,
      files: { ...files, configFile },
      log,
      async reload() {
        const before = output.length;
        child.kill("SIGHUP");
        // Mosquitto logs "Reloading config." when it acts on the signal (log_type information).
        const deadline = Date.now() + 5_000;
        while (!output.slice(before).includes("Reloading config") && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
      },
      async stop() {
        await stopChild(child);
      },
    };
  }
  throw lastError;
}

export interface PublishOptions {
  port: number;
  caCertPath: string;
  /** the publisher's certificate; absent: none is sent (the broker must refuse) */
  client?: { certPath: string; privateKeyPath: string };
  clientId?: string;
  topic: string;
  qos?: 0 | 1;
  retain?: boolean;
  /** one message (`-m`), or one per line of stdin (`-l`) */
  message?: string;
  lines?: string[];
}

/** Publishes with Debian's mosquitto_pub over TLS to 127.0.0.1; resolves to its exit code and stderr. */
export async function mosquittoPub(opts: PublishOptions): Promise<{ code: number; stderr: string }> {
  const args = ["-h", "127.0.0.1", "-p", String(opts.port), "--cafile", opts.caCertPath];
  if (opts.client) args.push("--cert", opts.client.certPath, "--key", opts.client.privateKeyPath);
  if (opts.clientId) args.push("-i", opts.clientId);
  if (opts.qos !== undefined) args.push("-q", String(opts.qos));
  if (opts.retain) args.push("-r");
  args.push("-t", opts.topic, ...(opts.lines ? ["-l"] : ["-m", opts.message ?? ""]));
  const pub = Bun.spawn(["mosquitto_pub", ...args], { stdin: opts.lines ? new Blob([`${opts.lines.join("\n")}\n`]) : "ignore", stderr: "pipe" });
  const [code, stderr] = await Promise.all([pub.exited, new Response(pub.stderr).text()]);
  return { code, stderr };
}
