/**
 * A three-node RabbitMQ 3.10 cluster on loopback, made as docs/scaling.md says: `hub
 * rabbitmq-config` (the compiled binary) writes each node's files into `<work>/rabbit` (and names
 * the cluster in the hub's hub.yml), Debian's `rabbitmq-server` starts each node from them. One
 * way to start it for the cluster tests (rabbitmq-cluster, several-hubs) and `bun run bench:fleet`.
 *
 * `stop()` stops every node (`rabbitmqctl stop`, SIGKILL after 10 s) and the epmd they started,
 * whatever state they are in; call it in a `finally`.
 */
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { binaryPath } from "./binary.ts";
import { freePort, freePorts } from "./mosquitto.ts";

export const RABBIT_BIN = "/usr/lib/rabbitmq/bin";

/** Why a cluster cannot run here, or undefined when it can. */
export const rabbitMissing = () =>
  existsSync(join(RABBIT_BIN, "rabbitmq-server")) ? undefined : "rabbitmq-server is not installed (scripts/install-system-packages.sh)";

export interface RabbitCluster {
  /** MQTT over TLS, one per node */
  servers: { host: string; port: number }[];
  /** `rabbitmqctl ARGS` against node i (synchronous, bounded by `timeoutMs`) */
  ctl(i: number, args: string[], timeoutMs?: number): SpawnSyncReturns<string>;
  /** the last lines of node i's logs, for a failure message */
  nodeLog(i: number): string;
  /** what `hub rabbitmq-config` printed (the commands for each node, the check line) */
  configOutput: string;
  /** the nodes' Erlang VMs (beam.smp), alive now */
  pids: () => number[];
  /** hard-kills node i (SIGKILL to its VM, as a lost machine); resolves when it is gone */
  kill(i: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The Erlang VM under a `rabbitmq-server` process: the script stays as the VM's parent (it
 * forwards signals), so killing the script's pid would leave the node running. Searches the
 * process's descendants for `beam.smp`; undefined when there is none (yet).
 */
function beamUnder(pid: number): number | undefined {
  const children = (p: number): number[] => {
    try {
      return readFileSync(`/proc/${p}/task/${p}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  for (const queue = [pid]; queue.length; ) {
    const p = queue.shift()!;
    try {
      if (readFileSync(`/proc/${p}/comm`, "utf8").trim() === "beam.smp") return p;
    } catch {
      continue;
    }
    queue.push(...children(p));
  }
  return undefined;
}

/**
 * Writes the cluster's files for the hub home `hubDir` (its hub.yml then names the cluster),
 * starts three nodes and waits until they form one cluster (at most `formMs`). Throws, with the
 * first node's log, when a node exits or the cluster does not form; the nodes started so far
 * are stopped first.
 */
export async function startRabbitCluster(hubDir: string, work: string, formMs = 150_000): Promise<RabbitCluster> {
  const confDir = join(work, "rabbit");
  const mqttBase = await freePorts(3, "0.0.0.0");
  const management = await freePorts(3, "0.0.0.0");
  const dist = await freePorts(3, "0.0.0.0", 20_001); // RabbitMQ: the AMQP port + 20000
  const epmdPort = await freePort();
  const authPort = await freePort();
  const config = Bun.spawnSync([
    binaryPath(),
    ...["hub", "rabbitmq-config", "--dir", hubDir, "--out", confDir, "--nodes", "3"],
    ...["--mqtt-port", String(mqttBase), "--management-port", String(management), "--dist-port", String(dist)],
    ...["--epmd-port", String(epmdPort), "--auth-listen", `127.0.0.1:${authPort}`],
  ]);
  if (config.exitCode !== 0) throw new Error(`hub rabbitmq-config exited ${config.exitCode}: ${config.stderr.toString()}`);
  const env = (i: number) => ({
    ...process.env,
    HOME: join(confDir, `node${i + 1}`),
    RABBITMQ_CONF_ENV_FILE: join(confDir, `node${i + 1}`, "rabbitmq-env.conf"),
  });
  const ctl = (i: number, args: string[], timeoutMs = 20_000) =>
    spawnSync(join(RABBIT_BIN, "rabbitmqctl"), args, { env: env(i), encoding: "utf8", timeout: timeoutMs });
  const nodeLog = (i: number) => spawnSync("sh", ["-c", `tail -n 30 ${join(confDir, `node${i + 1}`, "data", "log")}/*.log`], { encoding: "utf8" }).stdout;
  const boot = (i: number) => Bun.spawn([join(RABBIT_BIN, "rabbitmq-server")], { env: env(i), stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  // One node at a time, each once the one before is up (docs/scaling.md says the same to
  // operators): a node that boots while another is still booting can miss the MQTT client-id
  // tracker (RabbitMQ 3.10's mqtt_node Raft cluster, joined best effort at boot) and then
  // refuses every MQTT connection with CONNACK 3, "client ID registration timed out" in its log
  // after "leader not known". Seen in 3 of 7 runs booting all three at once, and in 1 of 3
  // booting the second and third together.
  const procs = [boot(0)];
  // A bench that exits without reaching stop() (an exception, a signal) still leaves no node.
  const onExit = () => {
    for (const proc of procs) {
      const beam = proc.exitCode === null ? beamUnder(proc.pid) : undefined;
      if (beam) process.kill(beam, "SIGKILL");
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
    spawnSync("epmd", ["-port", String(epmdPort), "-kill"], { timeout: 5000 });
  };
  process.once("exit", onExit);
  const stop = async () => {
    for (let i = 0; i < procs.length; i++) if (procs[i]!.exitCode === null) ctl(i, ["stop"], 30_000);
    for (const proc of procs) {
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
      if (!exited) {
        const beam = beamUnder(proc.pid);
        if (beam) process.kill(beam, "SIGKILL");
        proc.kill("SIGKILL");
      }
    }
    spawnSync("epmd", ["-port", String(epmdPort), "-kill"], { timeout: 5000 });
    process.removeListener("exit", onExit);
  };
  const deadline = Date.now() + formMs;
  const secondsLeft = () => Math.max(1, Math.round((deadline - Date.now()) / 1000));
  try {
    // rabbitmqctl is an Erlang VM of its own: on a busy two-core machine one call can take
    // many seconds, so each gets a generous bound, and what it last said goes into a failure.
    const awaitStartup = async (i: number) => {
      for (;;) {
        const up = ctl(i, ["await_startup", "--timeout", String(Math.min(20, secondsLeft()))], 40_000);
        if (up.status === 0) return;
        if (procs[i]!.exitCode !== null) throw new Error(`RabbitMQ node ${i + 1} exited while starting:\n${nodeLog(i)}`);
        if (Date.now() > deadline)
          throw new Error(`RabbitMQ node ${i + 1} did not start within ${formMs / 1000} s (${String(up.stderr).slice(-300)}):\n${nodeLog(i)}`);
        await Bun.sleep(500);
      }
    };
    await awaitStartup(0);
    for (const i of [1, 2]) {
      procs.push(boot(i));
      await awaitStartup(i);
    }
    for (;;) {
      const status = ctl(0, ["cluster_status", "--formatter", "json"], 30_000);
      const running = status.status === 0 ? (JSON.parse(status.stdout).running_nodes as string[]) : [];
      if (running.length === 3) break;
      if (procs.some((p) => p.exitCode !== null)) throw new Error(`a RabbitMQ node exited while starting:\n${nodeLog(0)}`);
      if (Date.now() > deadline) {
        const said = `rabbitmqctl cluster_status: exit ${status.status ?? status.signal}, running ${JSON.stringify(running)}, stderr ${String(status.stderr).slice(-500)}`;
        throw new Error(`the RabbitMQ cluster did not form within ${formMs / 1000} s (${said}):\n${nodeLog(0)}`);
      }
      await Bun.sleep(1000);
    }
    // Every node has booted (its plugins too, the MQTT listener among them), and its client-id
    // tracker knows its leader: until then that node refuses connections, or answers CONNACK 3.
    for (let i = 0; i < 3; i++) {
      for (;;) {
        const leader = ctl(i, ["eval", "ra_leaderboard:lookup_leader(mqtt_node)."], 30_000);
        if (leader.status === 0 && leader.stdout.includes("mqtt_node")) break;
        if (Date.now() > deadline) {
          throw new Error(`RabbitMQ node ${i + 1}'s MQTT client-id tracker has no leader after ${formMs / 1000} s (${leader.stdout.trim()}):\n${nodeLog(i)}`);
        }
        await Bun.sleep(1000);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    servers: [0, 1, 2].map((i) => ({ host: "127.0.0.1", port: mqttBase + i })),
    ctl,
    nodeLog,
    configOutput: config.stdout.toString(),
    pids: () => procs.flatMap((p) => (p.exitCode === null ? [beamUnder(p.pid) ?? []].flat() : [])),
    async kill(i) {
      // the VM first (as a lost machine: no goodbye to its peers or its clients), then its script
      const beam = beamUnder(procs[i]!.pid);
      if (beam) process.kill(beam, "SIGKILL");
      procs[i]!.kill("SIGKILL");
      await procs[i]!.exited;
    },
    stop,
  };
}
