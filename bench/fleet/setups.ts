/**
 * The setups `bun run bench:fleet` compares, each one entry of SETUPS: how many hubs, which
 * database, which broker. Every setup serves copies of the same enrolled hub home (things.ts), so
 * the things and their certificates are the same everywhere.
 *
 *   (a) embedded   one hub, SQLite, its embedded broker (the default)
 *   (b) rabbitmq   one hub, SQLite, the three-node RabbitMQ cluster on loopback
 *   (c) two-hubs   two hubs on one PostgreSQL database and the cluster (two-hubs.ts); the
 *                  bench's API calls alternate between the hubs
 *
 * `startSetup` refuses, naming what is missing, a combination this machine cannot run (no
 * RabbitMQ, no PostgreSQL) or the bench does not make (several hubs on SQLite or the embedded
 * broker), so such an entry reports SKIPPED rather than wrong figures.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { rabbitMissing, startRabbitCluster } from "../../test/support/rabbitmq-cluster.ts";
import { copyHome, type ServedHub, serveHome } from "./hubs.ts";
import type { FleetCache } from "./things.ts";
import { postgresMissing, startTwoHubs } from "./two-hubs.ts";

export interface Setup {
  /** `--setups` takes these */
  id: string;
  label: string;
  hubs: number;
  database: "sqlite" | "postgres";
  broker: "embedded" | "rabbitmq";
}

export const SETUPS: Setup[] = [
  { id: "embedded", label: "(a) one hub, SQLite, embedded broker", hubs: 1, database: "sqlite", broker: "embedded" },
  { id: "rabbitmq", label: "(b) one hub, SQLite, 3-node RabbitMQ cluster", hubs: 1, database: "sqlite", broker: "rabbitmq" },
  { id: "two-hubs", label: "(c) two hubs, PostgreSQL, 3-node RabbitMQ cluster", hubs: 2, database: "postgres", broker: "rabbitmq" },
];

/** A setup up and running: where things and the bench reach it, and how to stop it. */
export interface RunningSetup {
  /** one API base per live hub; the bench spreads its calls over them (a killed hub's is taken out, as a load balancer would) */
  apis: string[];
  /** the things this setup knows when they are not the cached fleet's (a setup with a database of its own) */
  fleet?: FleetCache;
  token: string;
  /** where things connect (MQTT over TLS); a cluster's nodes in order */
  servers: { host: string; port: number }[];
  hubs: ServedHub[];
  /** broker processes apart from the hubs (the cluster's nodes), alive now */
  brokerPids(): number[];
  /** hard-kills broker node i (the resilience run); absent when the setup has no node to lose */
  killNode?(i: number): Promise<void>;
  /** hard-kills hub i (SIGKILL) and takes its API out of `apis`; absent when the setup has one hub */
  killHub?(i: number): Promise<void>;
  /** stops every process the setup started; never throws */
  stop(): Promise<void>;
}

/** Why `setup` cannot run on this machine or with this hub, or undefined. */
export function setupMissing(setup: Setup): string | undefined {
  if (setup.hubs > 1 && (setup.database !== "postgres" || setup.broker !== "rabbitmq")) return "several hubs need PostgreSQL and the RabbitMQ cluster";
  if (setup.hubs > 2) return "the bench starts at most two hubs";
  if (setup.database === "postgres" && setup.hubs === 1) return "the bench runs PostgreSQL with two hubs only";
  if (setup.broker === "rabbitmq" && rabbitMissing()) return rabbitMissing();
  if (setup.database === "postgres") return postgresMissing();
  return undefined;
}

/** Starts `setup` in `work` from the enrolled home of `fleet`; stops what it started when a step fails. */
export async function startSetup(setup: Setup, fleet: FleetCache, work: string, progress: (m: string) => void = () => {}): Promise<RunningSetup> {
  const missing = setupMissing(setup);
  if (missing) throw new Error(missing);
  mkdirSync(work, { recursive: true });
  if (setup.hubs === 2) {
    const two = await startTwoHubs(fleet, work, progress);
    const apis = two.hubs.flatMap((h) => h.apis);
    return {
      apis,
      fleet: two.fleet,
      token: two.fleet.token,
      servers: two.cluster.servers,
      hubs: two.hubs,
      brokerPids: () => two.cluster.pids(),
      killNode: (i) => two.cluster.kill(i),
      async killHub(i) {
        const hub = two.hubs[i]!;
        for (const api of hub.apis) apis.splice(apis.indexOf(api), 1);
        hub.proc.kill("SIGKILL");
        await hub.proc.exited;
      },
      stop: two.stop,
    };
  }
  const home = join(work, "hub");
  await copyHome(fleet.home, home);
  const cluster = setup.broker === "rabbitmq" ? await startRabbitCluster(home, work) : undefined;
  let hub: ServedHub;
  try {
    hub = await serveHome(home, join(work, "hub.log"));
  } catch (err) {
    await cluster?.stop();
    throw err;
  }
  return {
    apis: hub.apis,
    token: fleet.token,
    servers: cluster ? cluster.servers : [{ host: "127.0.0.1", port: hub.brokerPort }],
    hubs: [hub],
    brokerPids: () => cluster?.pids() ?? [],
    killNode: cluster ? (i) => cluster.kill(i) : undefined,
    async stop() {
      await hub.stop().catch(() => {});
      await cluster?.stop().catch(() => {});
    },
  };
}
